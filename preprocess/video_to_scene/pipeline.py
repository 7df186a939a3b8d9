"""The pipeline: frames -> features -> matches -> mapping -> dataset -> depth -> report, each stage resumable."""

from __future__ import annotations

import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from preprocess.atomic_io import atomic_write_json
from preprocess.video_to_scene import poses
from preprocess.video_to_scene.frames import MIN_FRAMES, SceneError, sample_frames
from preprocess.video_to_scene.manifest import STATE_DIR, Manifest, input_top_entry
from preprocess.video_to_scene.priors import make_priors
from preprocess.video_to_scene.report import REPORT_NAME, build_report, summary_lines
from preprocess.video_to_scene.stages import Stages

STAGES = ["frames", "features", "matches", "mapping", "dataset", "depth"]
FRAMES_DIR, COLMAP_DIR = "frames", "colmap"
# the OUT_DIR entries each stage writes (matches and mapping write inside colmap/)
OUTPUTS = {"frames": [FRAMES_DIR, "frames.json"], "features": [COLMAP_DIR],
           "dataset": ["images", "sparse", poses.DATASET_TMP], "depth": ["depth"]}
MIN_REGISTERED = 0.5   # below this fraction of frames registered the run fails with advice


@dataclass(frozen=True)
class Options:
    """Settings of a run (the CLI flags); see ``python -m preprocess.video_to_scene --help``."""

    fps: float | None = None
    max_frames: int = 300
    max_size: int = 1600
    image_format: str = "jpg"
    matcher: str = "auto"
    overlap: int = 10
    loop_every: int = 10
    mapper: str = "incremental"
    camera_model: str = "SIMPLE_RADIAL"
    undistort: bool = False
    depth: str = "vda"
    depth_model: str | None = None
    device: str = "auto"
    checkpoint_root: str | None = None
    input_size: int = 518
    quiet: bool = False


def check_options(source: Path, out_dir: Path, o: Options) -> None:
    """Raise :class:`SceneError` for settings that cannot work or would do nothing."""
    if not source.exists():
        raise SceneError(f"{source}: does not exist; pass a video file or a folder of frames")
    if out_dir.exists() and not out_dir.is_dir():
        raise SceneError(f"{out_dir}: exists and is not a folder; choose another OUT_DIR")
    if source.is_dir() and out_dir.resolve() == source.resolve():
        raise SceneError(f"{out_dir}: OUT_DIR is the input folder; choose another OUT_DIR")
    inside = input_top_entry(out_dir, source)
    if inside in {STATE_DIR, REPORT_NAME, *(name for names in OUTPUTS.values() for name in names)}:
        raise SceneError(f"{source}: INPUT is inside OUT_DIR where video_to_scene writes {inside}; move it out "
                         f"of {out_dir} (or into another folder of it, e.g. {out_dir / 'input'}) and pass that")
    if o.camera_model not in poses.CAMERA_MODELS:
        raise SceneError(f"--camera-model {o.camera_model}: the trainer reads {', '.join(poses.CAMERA_MODELS)}")
    if o.max_frames < MIN_FRAMES or o.overlap < 1 or o.loop_every < 0:
        raise SceneError(f"--max-frames must be >= {MIN_FRAMES}, --overlap >= 1 and --loop-every >= 0")
    if o.matcher == "exhaustive" and (o.overlap, o.loop_every) != (Options.overlap, Options.loop_every):
        raise SceneError("--overlap/--loop-every: exhaustive matching pairs every frame with every other; "
                         "use --matcher sequential (or auto) to set them")
    if o.depth == "none" and o.depth_model:
        raise SceneError("--depth-model: --depth none makes no priors; drop it or pick a backend")
    if o.depth != "vda" and (o.checkpoint_root or o.input_size != Options.input_size):
        raise SceneError(f"--checkpoint-root/--input-size: only the vda backend reads them, not --depth {o.depth}")


def _bar(desc: str, total: int | None, quiet: bool) -> tqdm:
    return tqdm(total=total, desc=desc, disable=quiet, file=sys.stderr, dynamic_ncols=True, leave=True)


def video_to_scene(source: str | Path, out_dir: str | Path, options: Options = Options()) -> dict[str, Any]:
    """Make the training dataset ``out_dir`` (images/, sparse/0/, depth/, scene.json) from ``source``.

    Returns the scene.json record. Raises :class:`SceneError` (bad input, too few frames, poses failed),
    :class:`~preprocess.video_depth.frames.VideoReadError` and the depth backends' errors."""
    source, out_dir, o = Path(source).expanduser(), Path(out_dir).expanduser(), options
    check_options(source, out_dir, o)
    manifest = Manifest.open(out_dir, source)
    frames_dir, colmap_dir = out_dir / FRAMES_DIR, out_dir / COLMAP_DIR
    stat = source.stat()
    stages = Stages(manifest, STAGES, summary=out_dir / REPORT_NAME,
                    outputs={stage: [out_dir / name for name in names] for stage, names in OUTPUTS.items()})

    fps = 2.0 if o.fps is None and not source.is_dir() else o.fps

    def frames_stage(fresh: bool) -> dict:
        shutil.rmtree(frames_dir, ignore_errors=True)
        with _bar("frames (source frames read)", None, o.quiet) as bar:
            record = sample_frames(source, frames_dir, fps, o.max_frames, o.max_size, o.image_format, bar)
        atomic_write_json(out_dir / "frames.json", record)
        return record

    frames = stages.run("frames", {"source": str(source.resolve()), "mtime_ns": stat.st_mtime_ns,
                                   "bytes": stat.st_size, "fps": fps, "max_frames": o.max_frames,
                                   "max_size": o.max_size, "image_format": o.image_format}, frames_stage)
    names = [f["name"] for f in frames["frames"]]
    if o.matcher == "auto" and len(names) <= poses.EXHAUSTIVE_MAX_FRAMES \
            and (o.overlap, o.loop_every) != (Options.overlap, Options.loop_every):
        raise SceneError(f"--overlap/--loop-every: {len(names)} frames are matched exhaustively (auto, up to "
                         f"{poses.EXHAUSTIVE_MAX_FRAMES}); add --matcher sequential to use them")
    database = colmap_dir / "database.db"

    def features_stage(fresh: bool) -> dict:
        colmap_dir.mkdir(exist_ok=True)
        with _bar("features (frames)", len(names), o.quiet) as bar:
            poses.extract_features(database, frames_dir, names, o.camera_model, bar)
        return {}

    stages.run("features", {"camera_model": o.camera_model}, features_stage)
    pairs = poses.choose_pairs(len(names), o.matcher, o.overlap, o.loop_every)

    def matches_stage(fresh: bool) -> dict:
        with _bar("matches (pairs)", len(pairs), o.quiet) as bar:
            poses.match_pairs(database, names, pairs, colmap_dir, bar)
        return {"pairs": len(pairs)}

    stages.run("matches", {"matcher": o.matcher, "overlap": o.overlap, "loop_every": o.loop_every,
                           "pairs": len(pairs)}, matches_stage)

    def mapping_stage(fresh: bool) -> dict:
        with _bar(f"mapping ({o.mapper}, frames tried)", len(names) if o.mapper == "incremental" else None,
                  o.quiet) as bar:
            model_dir = poses.reconstruct(database, frames_dir, colmap_dir / "sparse", o.mapper, bar)
        stats = poses.model_stats(model_dir, names) if model_dir is not None else {"registered": 0}
        if stats["registered"] < MIN_REGISTERED * len(names):
            raise SceneError(f"{source}: only {stats['registered']} of {len(names)} frames registered; film slower "
                             "(less motion between frames), raise --fps, avoid motion blur, and keep textured "
                             "surfaces in view")
        return {"model": str(model_dir.relative_to(out_dir)), **stats}

    stats = stages.run("mapping", {"mapper": o.mapper}, mapping_stage)

    def dataset_stage(fresh: bool) -> dict:
        with _bar("dataset (undistort)" if o.undistort else "dataset", None, o.quiet):
            poses.write_dataset(out_dir / stats["model"], frames_dir, out_dir, o.undistort)
        return {"camera": poses.camera_info(out_dir / "sparse" / "0")}

    dataset = stages.run("dataset", {"undistort": o.undistort}, dataset_stage)
    depth = None
    if o.depth != "none":
        depth = stages.run("depth", {"backend": o.depth, "model": o.depth_model, "input_size": o.input_size},
                           lambda fresh: make_priors(out_dir / "images", out_dir / "depth", o.depth, o.depth_model,
                                                     fresh, o.quiet, device=o.device, input_size=o.input_size,
                                                     checkpoint_root=o.checkpoint_root))
    report = build_report(out_dir, frames, stats, dataset["camera"], depth, stages.report, asdict(o))
    manifest.claim(out_dir / REPORT_NAME)
    atomic_write_json(out_dir / REPORT_NAME, report)
    if not o.quiet:
        print("\n".join(summary_lines(report)))
    return report
