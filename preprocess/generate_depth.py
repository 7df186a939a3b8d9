"""Depth priors for a folder of images: ``python -m preprocess.generate_depth IMAGES_DIR OUTPUT_DIR``.

Writes one 16-bit PNG per image (same width x height as the stored pixels: EXIF orientation is ignored) and ``depth_meta.json`` (see
docs/formats.md). Images in subfolders are included; each output is named after the image's key
(``preprocess.depth_png.prior_keys``: its stem, or its relative path ``train/r_0.png`` when stems repeat).
Resumable: outputs that exist, decode as 16-bit PNGs of the right size and have a depth_meta.json entry are
skipped; every write is atomic. ``--shard K/N`` lets N jobs share one folder.

Python API: ``from preprocess import generate_depth; summary = generate_depth(images_dir, output_dir, ...)``
(this module is itself callable, so ``preprocess.generate_depth`` is both the CLI module and the function).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from preprocess.atomic_io import LIVE_TEMP_AGE_S, TEMP_PREFIX, remove_stale_temps
from preprocess.backends import (BACKENDS, DEFAULT_MODEL, DEFAULT_SPACE, BackendOptions, DepthBackend, RunStopped,
                                 make_backend)
from preprocess.callable_module import make_callable
from preprocess.depth_files import DEPTH_FILE_KINDS, accepted_kinds
from preprocess.depth_png import (META_NAME, DepthFileError, DepthMeta, prior_keys, quantize, read_depth_png,
                                  update_meta, write_depth_png)
from preprocess.errors import S3dgsError
from preprocess.images import (IMAGE_EXTENSIONS, ImageReadError, InputError, list_images, image_size, parse_shard,
                               select_shard, visible_files)

META_FLUSH_S = 2.0          # how often finished entries are merged into depth_meta.json


@dataclass
class VerifyReport:
    """``--verify`` result: one line per sampled output, and the problems found."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Summary:
    """What a run did. ``ok`` is False if any image failed, the run stopped early, or verification failed."""

    output_dir: Path
    total: int
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)   # image name (relative path if stems repeat) -> error
    stopped: str | None = None
    seconds: float = 0.0        # whole run, including model loading / connecting
    predict_seconds: float = 0.0  # the prediction loop only
    model_calls: int = 0
    verify: VerifyReport | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and self.stopped is None and (self.verify is None or self.verify.ok)

    @property
    def seconds_per_image(self) -> float:
        return self.predict_seconds / self.done if self.done else 0.0

    def lines(self) -> list[str]:
        out = [f"done {self.done}, skipped {self.skipped}, failed {len(self.failed)} of {self.total} images "
               f"in {self.seconds:.1f} s ({self.seconds_per_image:.2f} s/image, {self.model_calls} model calls) "
               f"-> {self.output_dir}"]
        if self.failed:
            names = sorted(self.failed)
            out.append(f"failed: {', '.join(names[:10])}{' ...' if len(names) > 10 else ''} "
                       "(rerun the same command to retry them)")
        if self.stopped:
            out.append(f"stopped: {self.stopped}")
        if self.verify is not None:
            out += self.verify.lines + [f"verify: {'ok' if self.verify.ok else 'FAILED'}"]
        return out


def prepare_output_dir(output_dir: str | Path, images_dir: Path) -> tuple[Path, bool]:
    """Create ``output_dir`` if needed and check it can be written; raise :class:`InputError` otherwise.
    Returns ``(folder, created)``."""
    out = Path(output_dir)
    if out.resolve() == images_dir.resolve():
        raise InputError(f"{out}: output folder is the input folder (outputs would overwrite .png inputs); "
                         "choose another output folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; choose another output folder")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        if created and out.is_dir():
            out.rmdir()
        raise InputError(f"{out}: output folder is not writable ({e.strerror or e}); "
                         "choose a folder you can write to") from None
    return out, created


def image_keys(images: list[Path], images_dir: Path) -> dict[Path, str]:
    """Each image's key in the output folder (:func:`preprocess.depth_png.prior_keys`); :class:`InputError` when
    two images would write the same output."""
    try:
        return dict(zip(images, prior_keys([p.relative_to(images_dir).as_posix() for p in images])))
    except DepthFileError as e:
        raise InputError(str(e)) from None


def prompt_files(folder: str | Path, keys: dict[Path, str]) -> dict[Path, Path]:
    """Each image's prompt depth file in ``folder``: the file named by the image's key (``a.jpg`` -> ``a.npy``,
    ``train/r_0.png`` -> ``train/r_0.png``) with any extension :mod:`preprocess.depth_files` reads. Images without one
    are left out (the backend reports each). Raises :class:`InputError` for a missing or empty folder, two files with
    one key, or a folder where no file is named like an image."""
    folder = Path(folder)
    found: dict[str, Path] = {}
    for path in visible_files(folder, "prompt depth maps", accepted_kinds()):
        if path.suffix.lower() not in DEPTH_FILE_KINDS:
            continue
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in found:
            raise InputError(f"{folder}: {found[key].name} and {path.name} are both a prompt for {key!r}; keep one")
        found[key] = path
    matched = {image: found[key] for image, key in keys.items() if key in found}
    if keys and not matched:
        raise InputError(f"{folder}: no prompt depth file ({accepted_kinds()}) is named like an image (e.g. "
                         f"{next(iter(keys.values()))}.png); name each sensor depth map after its image")
    return matched


def is_done(out: Path, image: Path, key: str, meta: DepthMeta | None) -> bool:
    """True if ``image``'s output ``<key>.png`` exists, has a meta entry, and decodes as a 16-bit PNG of the
    image's size."""
    if meta is None or key not in meta.images:
        return False
    try:
        png = read_depth_png(out / f"{key}.png")
        w, h = image_size(image)
    except (DepthFileError, ImageReadError):
        return False
    return png.shape == (h, w)


def verify_outputs(out: Path, images: list[Path], keys: dict[Path, str], num_samples: int) -> VerifyReport:
    """Check ``num_samples`` evenly spaced outputs of ``images``: 16-bit, right size, not constant, not all zeros,
    has a meta entry. Images without an output (failed ones) are not sampled."""
    report = VerifyReport()
    meta = DepthMeta.load(out)
    images = [p for p in images if (out / f"{keys[p]}.png").exists()]
    if not images or num_samples < 1:
        report.problems.append(f"{out}: no outputs to verify")
        return report
    step = len(images) / min(num_samples, len(images))
    for image in [images[math.floor(i * step)] for i in range(min(num_samples, len(images)))]:
        key = keys[image]
        path = out / f"{key}.png"
        try:
            png = read_depth_png(path)
            w, h = image_size(image)
        except (DepthFileError, ImageReadError) as e:
            report.problems.append(str(e))
            continue
        problems = []
        if png.shape != (h, w):
            problems.append(f"size {png.shape[1]}x{png.shape[0]} != image {w}x{h}")
        if not png.any():
            problems.append("all zeros")
        elif png.min() == png.max():
            problems.append("constant")
        if meta is None or key not in meta.images:
            problems.append(f"no entry in {META_NAME}")
        rec = meta.images.get(key, {}) if meta is not None else {}
        report.lines.append(f"  {key}.png: {png.shape[1]}x{png.shape[0]} uint16, values {png.min()}..{png.max()} "
                            f"mean {png.mean():.0f}, {len(set(png.ravel().tolist()))} levels, "
                            f"{meta.kind if meta else '?'} {rec.get('min', float('nan')):.4g}.."
                            f"{rec.get('max', float('nan')):.4g}"
                            + (f"  PROBLEM: {'; '.join(problems)}" if problems else ""))
        report.problems += [f"{path}: {p}" for p in problems]
    return report


def generate_depth(images_dir: str | Path, output_dir: str | Path, *, backend: str = "transformers",
                   model: str = DEFAULT_MODEL, space: str = DEFAULT_SPACE, hf_token: str | None = None,
                   device: str = "auto", batch_size: int = 1, overwrite: bool = False, shard: str | None = None,
                   verify: bool = False, num_samples: int = 5, quiet: bool = False, checkpoint_root: str | None = None,
                   input_size: int = 518, fp32: bool = False, prompt_depth: str | Path | None = None,
                   prompt_scale: float = 1e-3) -> Summary:
    """Write 16-bit depth PNGs + depth_meta.json for every image in ``images_dir`` (or shard ``"K/N"`` of them).

    Raises :class:`InputError` (bad folder/shard), :class:`BackendError` (backend cannot run) or
    :class:`DepthFileError` (output folder holds another model's priors). Per-image failures, a stopped
    run and verification problems are reported in the returned :class:`Summary` (``summary.ok``).
    Shows a progress bar and prints the summary unless ``quiet``; per-image warnings always go to stderr.
    ``checkpoint_root``, ``input_size`` and ``fp32`` configure the vda backend (preprocess/backends/vda.py).
    ``prompt_depth`` (a folder of sensor depth maps named like the images, values x ``prompt_scale`` = metres) is the
    prompt of a Prompt Depth Anything model (transformers backend).
    """
    start = time.perf_counter()
    images_dir = Path(images_dir)
    if prompt_depth is not None and backend != "transformers":
        raise InputError(f"--prompt-depth: only the transformers backend takes a prompt, not {backend}")
    if not (math.isfinite(prompt_scale) and prompt_scale > 0):
        raise InputError(f"--prompt-scale {prompt_scale}: must be a positive number (metres per stored unit)")
    # an output or prompt folder inside the input folder holds no inputs
    inside = [Path(d).resolve() for d in (output_dir, prompt_depth) if d is not None]
    images = [p for p in list_images(images_dir) if not any(d in p.resolve().parents for d in inside)]
    keys = image_keys(images, images_dir)
    prompts = prompt_files(prompt_depth, keys) if prompt_depth is not None else {}
    k, n = parse_shard(shard)
    runner = make_backend(backend, BackendOptions(model=model, device=device, batch_size=batch_size,
                                                  space=space, hf_token=hf_token, checkpoint_root=checkpoint_root,
                                                  input_size=input_size, fp32=fp32, work_dir=Path(output_dir),
                                                  prompt_depth=None if prompt_depth is None else Path(prompt_depth),
                                                  prompt_files=prompts, prompt_scale=prompt_scale, quiet=quiet))
    if runner.normalization == "per_sequence" and n > 1:
        raise InputError(f"--shard {shard}: the {backend} backend treats the folder as one sequence; run one job")
    mine = select_shard(images, (k, n))
    out, created = prepare_output_dir(output_dir, images_dir)
    try:
        summary = _run(runner, mine, keys, out, overwrite, sharded=n > 1, quiet=quiet)
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # a run that failed before writing anything leaves no empty folder behind
        raise
    summary.seconds = time.perf_counter() - start
    if verify:
        summary.verify = verify_outputs(out, mine, keys, num_samples)
    if not quiet:
        print("\n".join(summary.lines()))
    return summary


def _run(runner: DepthBackend, mine: list[Path], keys: dict[Path, str], out: Path, overwrite: bool, sharded: bool,
         quiet: bool) -> Summary:
    """Skip finished images, run the backend on the rest, write PNGs ``<key>.png`` and merge depth_meta.json
    entries."""
    from tqdm import tqdm

    folders = sorted({(out / keys[p]).parent for p in mine})
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(folder, LIVE_TEMP_AGE_S if sharded else 0)  # shards write side by side
    summary = Summary(output_dir=out, total=len(mine))

    existing = DepthMeta.load(out)
    if existing is not None and (existing.backend, existing.model) != (runner.name, runner.model) and not overwrite:
        raise DepthFileError(f"{out / META_NAME}: holds {existing.backend} priors from {existing.model}, this run "
                             f"makes {runner.name} priors from {runner.model}; use another output folder or "
                             "--overwrite")
    pending = list(mine) if overwrite else [p for p in mine if not is_done(out, p, keys[p], existing)]
    if runner.normalization == "per_sequence" and pending:
        pending = list(mine)
    summary.skipped = len(mine) - len(pending)

    if pending:
        with runner:
            header = DepthMeta(backend=runner.name, model=runner.model, kind=runner.kind,
                               relative=runner.kind == "inverse_depth", units=runner.units, extra=runner.extra)
            update_meta(out, header, {}, drop=[keys[p] for p in pending], replace=overwrite)
            entries: dict[str, dict] = {}
            last_flush = loop_start = time.monotonic()
            bar = tqdm(total=len(pending), unit="img", desc=f"depth ({runner.name})", disable=quiet,
                       file=sys.stderr, dynamic_ncols=True)
            try:
                for result in runner.predict(pending):
                    bar.update(1)
                    key = keys[result.path]
                    if result.error is not None:
                        summary.failed[key + result.path.suffix] = result.error
                        bar.write(f"warning: {result.error}", file=sys.stderr)
                        continue
                    if "warning" in result.info:
                        bar.write(f"warning: {result.path}: {result.info['warning']}", file=sys.stderr)
                    if not np.isfinite(result.depth).any():  # nothing to quantise: no prior, not a flat one
                        summary.failed[result.path.name] = (f"{result.path}: the model's output is NaN or inf "
                                                            "everywhere; check the model and its weights")
                        bar.write(f"warning: {summary.failed[result.path.name]}", file=sys.stderr)
                        continue
                    vmin, vmax = result.value_range or (None, None)
                    png, lo, hi = quantize(result.depth, vmin, vmax)
                    write_depth_png(out / f"{key}.png", png)
                    entries[key] = {"min": lo, "max": hi, "width": png.shape[1], "height": png.shape[0],
                                    "source": key + result.path.suffix, **result.info}
                    summary.done += 1
                    if time.monotonic() - last_flush > META_FLUSH_S:
                        update_meta(out, header, entries)
                        entries, last_flush = {}, time.monotonic()
            except RunStopped as e:
                summary.stopped = str(e)
            finally:
                bar.close()
                if entries:
                    update_meta(out, header, entries)
                summary.model_calls = runner.calls
                summary.predict_seconds = time.monotonic() - loop_start
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m preprocess.generate_depth",
                                description="16-bit depth priors (PNG + depth_meta.json) for a folder of images. "
                                            f"Accepted images: {', '.join(IMAGE_EXTENSIONS)} (any case).")
    p.add_argument("images_dir", metavar="IMAGES_DIR")
    p.add_argument("output_dir", metavar="OUTPUT_DIR")
    p.add_argument("--backend", choices=sorted(BACKENDS), default="transformers",
                   help="transformers: local model (default); space: the public Hugging Face Space; "
                        "vda: Video Depth Anything, the sorted images are one video")
    p.add_argument("--model", default=DEFAULT_MODEL, help="transformers: hub id or local folder of any supported "
                                                          "depth-estimation family (default %(default)s); "
                                                          "vda: vits (default), vitb, vitl, metric_vits, ...")
    p.add_argument("--space", default=DEFAULT_SPACE, help="space: Space id or URL (default %(default)s)")
    p.add_argument("--hf-token", default=None, help="Hugging Face token (default: $HF_TOKEN for hub ids only)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=1, help="transformers: images per forward pass")
    p.add_argument("--checkpoint-root", default=None,
                   help="vda: folder of the .pth checkpoints (default $S3DGS_CHECKPOINT_ROOT or the user cache)")
    p.add_argument("--input-size", type=int, default=518, help="vda: short side of the network input")
    p.add_argument("--fp32", action="store_true", help="vda: float32 on CUDA too (default fp16 there)")
    p.add_argument("--prompt-depth", default=None, metavar="DIR",
                   help="transformers, Prompt Depth Anything: sensor depth maps named like the images "
                        f"({accepted_kinds()}; 0/NaN = missing)")
    p.add_argument("--prompt-scale", type=float, default=1e-3, metavar="S",
                   help="metres per stored unit of the prompt maps (default %(default)s: millimetres; 1 for metres)")
    p.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    p.add_argument("--shard", default=None, metavar="K/N", help="process only shard K of N (cluster arrays)")
    p.add_argument("--verify", action="store_true", help="check sample outputs afterwards")
    p.add_argument("--num_samples", "--num-samples", type=int, default=5, help="outputs checked by --verify")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary; errors only")
    return p


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Slurm stops a job (scancel, time limit, preemption) with SIGTERM, then SIGKILL after KillWait: stop like
    # Ctrl-C, so finished entries are merged into depth_meta.json and no temp file is left behind.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = generate_depth(args.images_dir, args.output_dir, backend=args.backend, model=args.model,
                                 space=args.space, hf_token=args.hf_token,
                                 device=args.device, batch_size=args.batch_size, overwrite=args.overwrite,
                                 shard=args.shard, verify=args.verify, num_samples=args.num_samples, quiet=args.quiet,
                                 checkpoint_root=args.checkpoint_root, input_size=args.input_size, fp32=args.fp32,
                                 prompt_depth=args.prompt_depth, prompt_scale=args.prompt_scale)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except S3dgsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    if args.quiet and not summary.ok:
        print("\n".join(summary.lines()[1:]), file=sys.stderr)
    return 0 if summary.ok else 1


make_callable(__name__)  # preprocess.generate_depth(...) calls generate_depth

if __name__ == "__main__":
    sys.exit(main())
