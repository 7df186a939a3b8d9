"""Import depth maps made elsewhere: ``python -m preprocess.import_depth SRC_DIR OUT_DIR --kind depth|inverse_depth``.

Reads every file in ``SRC_DIR`` and its subfolders (:mod:`preprocess.depth_files`: ``.npy .npz .exr .pfm``,
16-bit ``.png``, float ``.tif``) and writes our format into ``OUT_DIR``: ``<key>.png`` + ``depth_meta.json``
(docs/formats.md), keyed like generate_depth's priors (:func:`preprocess.depth_png.prior_keys`). Pixels that are
0, negative, NaN or inf have no value and stay so (level 0, ``"nodata": 0``). ``--units mm`` values are converted
to metres; every value is multiplied by ``--scale``. With ``--images`` each image must find the file with its key,
and the files are checked against the images' sizes (a whole folder at another resolution is resized, nearest
neighbour, with one warning). ``--confidence DIR`` adds ``confidence/<key>.png`` per prior (docs/formats.md).

Resumable and atomic like generate_depth: a file whose output exists with an entry recording the same source
(path, size, modification time) is skipped; every write is a rename; Ctrl-C keeps finished entries.

Python API: ``from preprocess import import_depth; summary = import_depth(src_dir, out_dir, kind="depth")``
(this module is callable, like :mod:`preprocess.generate_depth`).
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from preprocess.atomic_io import remove_stale_temps
from preprocess.callable_module import make_callable
from preprocess.depth_files import DepthReadError, accepted_kinds, check_kind, read_depth_file
from preprocess.depth_png import (META_NAME, NODATA, VALUE_KINDS, DepthFileError, DepthMeta, quantize_with_holes,
                                  read_depth_png, update_meta, write_confidence_png, write_depth_png)
from preprocess.errors import S3dgsError
from preprocess.generate_depth import META_FLUSH_S, _interrupt, image_keys, prepare_output_dir
from preprocess.images import ImageReadError, InputError, image_size, list_images, visible_files

BACKEND = "import"
UNITS = {"m": 1.0, "mm": 1e-3, "relative": 1.0}  # source unit -> factor to the written unit (metres, or as is)
CONFIDENCE_DIR = "confidence"  # confidence maps: OUT_DIR/confidence/<key>.png


@dataclass
class Job:
    """One depth file to import as prior ``key`` (with its image and confidence file when given)."""

    key: str
    source: Path
    image: Path | None = None
    confidence: Path | None = None


@dataclass
class ImportSummary:
    """What a run did. ``ok`` is False if any file failed; images without a depth file are only reported."""

    output_dir: Path
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # file -> why it was not imported
    unmatched: list[str] = field(default_factory=list)  # image keys without a depth file (with --images)
    resized_from: tuple[int, int] | None = None  # (width, height) of the depth files when they were resized
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def fail(self, path: Path, why: str) -> None:
        """Record that ``path`` was not imported and say why on stderr at once, in one line."""
        from tqdm import tqdm

        self.failed[str(path)] = why
        tqdm.write(f"warning: {why}", file=sys.stderr)

    def lines(self) -> list[str]:
        out = [f"imported {self.done}, skipped {self.skipped}, failed {len(self.failed)} of {self.total} depth files "
               f"in {self.seconds:.1f} s -> {self.output_dir}"]
        if self.failed:
            names = sorted(self.failed)
            out.append(f"failed: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''} (see the warnings)")
        if self.unmatched:
            out.append(self.unmatched_line())
        return out

    def unmatched_line(self) -> str:
        return (f"no depth file for {len(self.unmatched)} images: {', '.join(self.unmatched[:10])}"
                f"{' ...' if len(self.unmatched) > 10 else ''}")


def check_options(kind: str, units: str | None, scale: float) -> str:
    """The source units (``units``, or ``m`` for depth and ``relative`` for inverse depth); :class:`InputError`
    for a combination that does not make sense."""
    if kind not in VALUE_KINDS:
        raise InputError(f"--kind {kind!r}: use one of {', '.join(VALUE_KINDS)}")
    units = units or ("m" if kind == "depth" else "relative")
    if units not in UNITS:
        raise InputError(f"--units {units!r}: use one of {', '.join(UNITS)}")
    if kind == "inverse_depth" and units != "relative":
        raise InputError(f"--kind inverse_depth --units {units}: inverse depth is imported as relative (unknown scale "
                         "and shift); for metric maps pass depth with --kind depth")
    if not (math.isfinite(scale) and scale > 0):
        raise InputError(f"--scale {scale}: must be a positive number")
    return units


def depth_files(folder: Path, skip: Path, summary: ImportSummary) -> dict[str, Path]:
    """Key -> file for the readable kinds in ``folder`` (outside ``skip``, the output folder); files of other kinds
    go to ``summary.failed`` with the reason. Raises :class:`InputError` for a missing or empty folder, or two
    files sharing a key."""
    files = []
    for p in visible_files(folder, "depth files", accepted_kinds()):
        if skip in p.resolve().parents:
            continue
        try:
            check_kind(p)
            files.append(p)
        except DepthReadError as e:
            summary.fail(p, str(e))
    return {key: p for p, key in image_keys(files, folder).items()}


def plan_jobs(src_dir: Path, out: Path, images_dir: Path | None, confidence_dir: Path | None,
              summary: ImportSummary) -> list[Job]:
    """Match depth files (and confidence files) to images by key; files of unknown kinds, files without an image and
    depth files without a confidence file go to ``summary.failed``, images without a depth file to
    ``summary.unmatched``."""
    skip = out.resolve()
    sources = depth_files(src_dir, skip, summary)
    if images_dir is None:
        jobs = [Job(key, path) for key, path in sources.items()]
    else:
        images = [p for p in list_images(images_dir) if skip not in p.resolve().parents]
        by_key = {key: p for p, key in image_keys(images, images_dir).items()}
        jobs = [Job(key, sources[key], image) for key, image in by_key.items() if key in sources]
        if not jobs:
            raise InputError(f"{src_dir}: no depth file has the key of an image in {images_dir} (image e.g. "
                             f"{next(iter(by_key))!r}, depth file e.g. {next(iter(sources), 'none')!r}); name each "
                             "file after its image (same stem, or same relative path without extension)")
        summary.unmatched = [key for key in by_key if key not in sources]
        for key in sorted(sources.keys() - by_key.keys()):
            summary.fail(sources[key], f"{sources[key]}: no image in {images_dir} has its key {key!r}; rename it "
                                       "or remove it")
    if confidence_dir is not None:
        clash = next((j.key for j in jobs if j.key.split("/")[0] == CONFIDENCE_DIR), None)
        if clash:
            raise InputError(f"{clash}: a prior under {CONFIDENCE_DIR}/ would mix with the confidence maps; "
                             "rename that subfolder")
        confidences = depth_files(confidence_dir, skip, summary)
        for job in jobs:
            job.confidence = confidences.get(job.key)
            if job.confidence is None:
                summary.fail(job.source, f"{job.source}: no confidence file with key {job.key!r} in {confidence_dir}")
        jobs = [j for j in jobs if j.confidence is not None]
    summary.total = len(jobs) + len(summary.failed)
    return jobs


def stamp(path: Path) -> list[int]:
    """``[size in bytes, modification time in ns]``: what tells a rerun that a source file is unchanged."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def is_done(out: Path, job: Job, meta: DepthMeta | None, src_dir: Path) -> bool:
    """True if ``job``'s outputs exist at their recorded size with an entry for this very source (and confidence
    file)."""
    rec = meta.images.get(job.key) if meta is not None else None
    if rec is None or rec.get("source") != job.source.relative_to(src_dir).as_posix():
        return False
    if rec.get("source_stamp") != stamp(job.source) or rec.get("confidence_stamp") != (
            stamp(job.confidence) if job.confidence else None):
        return False
    try:
        shapes = {read_depth_png(out / f"{job.key}.png").shape}
        if job.confidence:
            shapes.add(read_depth_png(out / rec["confidence"]).shape)
        if job.image is not None:
            shapes.add(image_size(job.image)[::-1])
    except (DepthFileError, ImageReadError, KeyError):
        return False
    return shapes == {(rec["height"], rec["width"])}


def size_plan(jobs: list[Job], npz_key: str | None, summary: ImportSummary
              ) -> tuple[list[Job], tuple[int, int] | None]:
    """Read every source once and compare its size with its image's: the jobs that could be read (the others go to
    ``summary.failed``), and ``None`` when each file has its image's size, or the ``(width, height)`` of the first
    file when all are at one other resolution (same aspect ratio) and are to be resized. Raises
    :class:`InputError` naming a file when the sizes are mixed."""
    readable, sizes = [], []
    for job in jobs:
        try:
            h, w = read_depth_file(job.source, npz_key).shape
            iw, ih = image_size(job.image)
        except (DepthReadError, ImageReadError) as e:
            summary.fail(job.source, str(e))
            continue
        readable.append(job)
        sizes.append(((round(w / iw, 3), round(h / ih, 3)), (w, h), (iw, ih)))
    if not sizes:
        return readable, None
    common = Counter(ratio for ratio, _, _ in sizes).most_common(1)[0][0]
    for job, (ratio, (w, h), (iw, ih)) in zip(readable, sizes):
        if ratio != common:
            raise InputError(f"{job.source}: {w}x{h} for its {iw}x{ih} image, while most depth files are "
                             f"{common[0]:g}x{common[1]:g} their images' size; depth files must all have their "
                             "images' size or all one other resolution: re-export this one")
    if common == (1.0, 1.0):
        return readable, None
    (rx, ry), size, image = sizes[0]
    if abs(rx / ry - 1) > 0.01:
        raise InputError(f"{readable[0].source}: {size[0]}x{size[1]} for its {image[0]}x{image[1]} image, another "
                         "aspect ratio; export the depth at the images' aspect ratio")
    return readable, size


def to_prior(depth: np.ndarray, factor: float, size: tuple[int, int] | None) -> np.ndarray:
    """Source values float32 ``[h, w]`` -> float64 ``[H, W]`` times ``factor``, NaN where there is no value (0,
    negative, NaN, inf); resized to ``size = (W, H)`` with nearest-neighbour sampling, so holes keep their
    extent and no value blends into another."""
    x = np.where(np.isfinite(depth) & (depth > 0), depth.astype(np.float64) * factor, np.nan)
    return x if size is None else cv2.resize(x, size, interpolation=cv2.INTER_NEAREST)


def confidence_scale(jobs: list[Job], summary: ImportSummary) -> tuple[float, list[Job]]:
    """1 when every confidence map lies in [0, 1], else 1 / the folder's largest finite value (one scale for the
    folder, so maps stay comparable); and the jobs whose map could be read (the others go to ``summary.failed``)."""
    top, readable = 0.0, []
    for job in jobs:
        try:
            c = read_depth_file(job.confidence)
        except DepthReadError as e:
            summary.fail(job.confidence, str(e))
            continue
        readable.append(job)
        top = max(top, float(c[np.isfinite(c)].max(initial=0.0)))
    return (1.0 if top <= 1.0 else 1.0 / top), readable


def import_one(out: Path, job: Job, src_dir: Path, factor: float, npz_key: str | None, size: tuple[int, int] | None,
               conf_scale: float) -> dict:
    """Write ``job``'s prior (and confidence) PNGs, resized to its image when ``size`` is set; returns its
    depth_meta.json entry. Raises :class:`DepthReadError`."""
    raw = read_depth_file(job.source, npz_key)
    target = image_size(job.image) if size is not None else None
    x = to_prior(raw, factor, target)
    if not np.isfinite(x).any():
        raise DepthReadError(f"{job.source}: no pixel has a value (all 0, negative, NaN or inf)")
    png, lo, hi = quantize_with_holes(x)
    entry = {"min": lo, "max": hi, "width": png.shape[1], "height": png.shape[0], "nodata": NODATA,
             "source": job.source.relative_to(src_dir).as_posix(), "source_stamp": stamp(job.source)}
    if target is not None:
        entry["resized_from"] = [raw.shape[1], raw.shape[0]]
    if job.confidence is not None:
        c = read_depth_file(job.confidence)
        if c.shape != raw.shape:
            raise DepthReadError(f"{job.confidence}: {c.shape[1]}x{c.shape[0]}, its depth file {job.source.name} "
                                 f"{raw.shape[1]}x{raw.shape[0]}; a confidence map must match its depth file")
        c = np.where(np.isfinite(c), c * conf_scale, 0.0)
        c = c if target is None else cv2.resize(c, target, interpolation=cv2.INTER_NEAREST)
        entry.update(confidence=f"{CONFIDENCE_DIR}/{job.key}.png", confidence_stamp=stamp(job.confidence),
                     confidence_scale=conf_scale)
        write_confidence_png(out / entry["confidence"], c)
    write_depth_png(out / f"{job.key}.png", png)
    return entry


def import_depth(src_dir: str | Path, output_dir: str | Path, *, kind: str, units: str | None = None,
                 scale: float = 1.0, confidence_dir: str | Path | None = None, images_dir: str | Path | None = None,
                 npz_key: str | None = None, overwrite: bool = False, quiet: bool = False) -> ImportSummary:
    """Import the depth files in ``src_dir`` into ``output_dir`` (priors ``<key>.png`` + depth_meta.json).

    ``kind``: ``depth`` or ``inverse_depth``; ``units``: ``m``, ``mm`` (written in metres) or ``relative``
    (default ``m`` for depth, ``relative`` for inverse depth); values are multiplied by ``scale``. Raises
    :class:`InputError` (bad arguments or folders, mixed sizes) or :class:`DepthFileError` (the output folder
    holds other priors). Files that cannot be read are reported on stderr and in the returned summary
    (``summary.ok``). Prints the summary unless ``quiet``.
    """
    start = time.perf_counter()
    units = check_options(kind, units, scale)
    src_dir = Path(src_dir)
    images_dir = Path(images_dir) if images_dir is not None else None
    confidence_dir = Path(confidence_dir) if confidence_dir is not None else None
    if images_dir is not None and Path(output_dir).resolve() == images_dir.resolve():
        raise InputError(f"{output_dir}: output folder is the images folder (outputs would overwrite .png images); "
                         "choose another output folder")
    summary = ImportSummary(Path(output_dir))
    jobs = plan_jobs(src_dir, Path(output_dir), images_dir, confidence_dir, summary)
    if summary.unmatched:
        print(f"warning: {summary.unmatched_line()}", file=sys.stderr)
    out, _ = prepare_output_dir(output_dir, src_dir)
    header = DepthMeta(backend=BACKEND, model=str(src_dir), kind=kind, relative=units == "relative",
                       units=None if units == "relative" else "m",
                       extra={"normalization": "per_image", "source_units": units, "scale": scale,
                              **({"npz_key": npz_key} if npz_key else {})})
    existing = DepthMeta.load(out)
    if existing is not None and not overwrite and (
            existing.backend, existing.model, existing.kind, existing.units, existing.extra) != (
            header.backend, header.model, header.kind, header.units, header.extra):
        raise DepthFileError(f"{out / META_NAME}: holds {existing.backend} priors from {existing.model} "
                             f"({existing.kind}, {existing.extra}); this run imports {src_dir} ({kind}, "
                             f"{header.extra}); use another output folder or --overwrite")
    for folder in sorted({(out / f"{j.key}.png").parent for j in jobs}
                         | {(out / CONFIDENCE_DIR / f"{j.key}.png").parent for j in jobs if j.confidence}):
        if folder.is_dir():
            remove_stale_temps(folder)
    todo = {j.key for j in jobs if overwrite or not is_done(out, j, existing, src_dir)}
    conf_scale = 1.0
    if confidence_dir is not None and todo:  # the folder's scale may change with new files: then redo them all
        conf_scale, jobs = confidence_scale(jobs, summary)
        todo = {j.key for j in jobs if j.key in todo or existing.images[j.key].get("confidence_scale") != conf_scale}
    summary.skipped = len(jobs) - len(todo)
    pending, size = [j for j in jobs if j.key in todo], None
    if images_dir is not None and pending:
        pending, size = size_plan(pending, npz_key, summary)
    if size is not None:
        summary.resized_from = size
        print(f"warning: the depth files are {size[0]}x{size[1]}, not their images' size; each is resized to its "
              "image's size (nearest neighbour: holes stay holes)", file=sys.stderr)
    if pending:
        _run(out, header, pending, src_dir, UNITS[units] * scale, npz_key, size, conf_scale, summary, overwrite, quiet)
    summary.seconds = time.perf_counter() - start
    if not quiet:
        print("\n".join(summary.lines()))
    return summary


def _run(out: Path, header: DepthMeta, pending: list[Job], src_dir: Path, factor: float, npz_key: str | None,
         size: tuple[int, int] | None, conf_scale: float, summary: ImportSummary, overwrite: bool, quiet: bool
         ) -> None:
    """Import ``pending`` and merge their entries into depth_meta.json (every few seconds and at the end, Ctrl-C
    included)."""
    from tqdm import tqdm

    for job in pending:
        (out / f"{job.key}.png").parent.mkdir(parents=True, exist_ok=True)
        if job.confidence is not None:
            (out / CONFIDENCE_DIR / f"{job.key}.png").parent.mkdir(parents=True, exist_ok=True)
    update_meta(out, header, {}, drop=[j.key for j in pending], replace=overwrite)
    entries: dict[str, dict] = {}
    last_flush = time.monotonic()
    try:
        for job in tqdm(pending, unit="file", desc="import depth", disable=quiet, file=sys.stderr, dynamic_ncols=True):
            try:
                entries[job.key] = import_one(out, job, src_dir, factor, npz_key, size, conf_scale)
            except (DepthReadError, ImageReadError) as e:
                summary.fail(job.source, str(e))
                continue
            summary.done += 1
            if time.monotonic() - last_flush > META_FLUSH_S:
                update_meta(out, header, entries)
                entries, last_flush = {}, time.monotonic()
    finally:
        if entries:
            update_meta(out, header, entries)


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line (argparse prints the usage above it)."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m preprocess.import_depth",
        description="Import depth maps made elsewhere (Depth Pro, Marigold, MoGe, sensors, ...) as s3dgs depth "
                    f"priors: one 16-bit PNG per file plus depth_meta.json. Reads {accepted_kinds()} (any case). "
                    "Pixels that are 0, negative, NaN or inf count as missing. Reruns skip finished files.",
        epilog="example: python -m preprocess.import_depth depthpro_out scene/depth --kind depth --units m "
               "--images scene/images")
    p.add_argument("src_dir", metavar="SRC_DIR", help="folder of depth files, one per image, named by the image's "
                                                      "stem (or relative path when stems repeat)")
    p.add_argument("output_dir", metavar="OUT_DIR", help="where the priors go (the trainer's depth_dir)")
    p.add_argument("--kind", required=True, choices=VALUE_KINDS,
                   help="depth: distance along the optical axis; inverse_depth: disparity-like, larger = nearer "
                        "(relative)")
    p.add_argument("--units", choices=tuple(UNITS), default=None,
                   help="m or mm: metric depth (mm is converted to metres); relative: known only up to scale "
                        "(and shift). Default: m for depth, relative for inverse_depth")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every value by S (default 1)")
    p.add_argument("--confidence", default=None, metavar="DIR",
                   help="folder of per-pixel confidence maps with the same names, kept as confidence/<key>.png "
                        "(values in [0, 1], or divided by the folder's largest value)")
    p.add_argument("--images", default=None, metavar="IMAGES_DIR",
                   help="the scene's images: every image must find its depth file, whose size is checked")
    p.add_argument("--npz-key", default=None, metavar="NAME", help="the array to read from .npz files holding several")
    p.add_argument("--overwrite", action="store_true",
                   help="reimport everything (and replace a folder holding other priors)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary; warnings and errors only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # Slurm's stop: like Ctrl-C
    try:
        summary = import_depth(args.src_dir, args.output_dir, kind=args.kind, units=args.units, scale=args.scale,
                               confidence_dir=args.confidence, images_dir=args.images, npz_key=args.npz_key,
                               overwrite=args.overwrite, quiet=args.quiet)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except S3dgsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0 if summary.ok else 1


make_callable(__name__)  # preprocess.import_depth(...) calls import_depth

if __name__ == "__main__":
    sys.exit(main())
