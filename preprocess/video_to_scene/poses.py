"""Stages ``features``, ``matches``, ``mapping`` and ``dataset``: camera poses with pycolmap (COLMAP 4).

SIFT features with one camera shared by every frame; matching on an explicit pair list (every pair for
short clips, else neighbours within ``overlap`` plus loop-closure pairs between keyframes), so no
vocabulary tree (a download) is needed; incremental or global (GLOMAP) mapping; the largest model
becomes the trainer's ``images/`` + ``sparse/0/``, undistorted to PINHOLE on request.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from preprocess.video_to_scene.frames import SceneError

EXHAUSTIVE_MAX_FRAMES = 60   # up to this many frames every pair is matched (1770 pairs); beyond, video pairs
FEATURE_CHUNK = 8            # images per extraction call (one progress step)
PAIR_STEPS = 20             # matching calls (progress steps) per stage; fewer, larger calls cost less (~10%)
PAIR_CHUNK_MIN = 64
# models the trainer reads (s3dgs/data/frames.py)
CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "FULL_OPENCV", "OPENCV_FISHEYE")
DATASET_TMP = ".tmp-dataset"  # write_dataset builds the dataset here, beside its target


def import_pycolmap():
    """``pycolmap``, or :class:`SceneError` with the install command."""
    try:
        import pycolmap
    except ImportError:
        raise SceneError("pycolmap is not installed (camera poses need it); pip install 'pycolmap>=4.2'") from None
    pycolmap.logging.minloglevel = 2  # errors only: the stages show progress bars
    return pycolmap


def video_pairs(n: int, overlap: int, loop_every: int) -> list[tuple[int, int]]:
    """Frame index pairs ``(i, j)``, ``i < j``, to match in a clip of ``n`` frames.

    Each frame with the next ``overlap``; every ``loop_every``-th frame (a keyframe) with every other keyframe,
    so a path that comes back to a place is matched there (loop closure). ``loop_every`` 0: no loop pairs."""
    pairs = {(i, j) for i in range(n) for j in range(i + 1, min(i + overlap + 1, n))}
    if loop_every > 0:
        keys = range(0, n, loop_every)
        pairs |= {(i, j) for i in keys for j in keys if i < j}
    return sorted(pairs)


def all_pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def choose_pairs(n: int, matcher: str, overlap: int, loop_every: int) -> list[tuple[int, int]]:
    """``matcher`` auto: every pair up to :data:`EXHAUSTIVE_MAX_FRAMES` frames, else :func:`video_pairs`."""
    if matcher == "exhaustive" or (matcher == "auto" and n <= EXHAUSTIVE_MAX_FRAMES):
        return all_pairs(n)
    return video_pairs(n, overlap, loop_every)


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def extract_features(database: Path, frames_dir: Path, names: list[str], camera_model: str, progress=None) -> None:
    """SIFT features of ``names`` into a new ``database``; every image shares one ``camera_model`` camera."""
    pycolmap = import_pycolmap()
    for p in (database, database.with_name(database.name + "-shm"), database.with_name(database.name + "-wal")):
        p.unlink(missing_ok=True)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    for k, chunk in enumerate(_chunks(names, FEATURE_CHUNK)):
        if k:
            reader.existing_camera_id = 1  # the camera the first chunk created
        pycolmap.extract_features(database, frames_dir, image_names=chunk, camera_mode=pycolmap.CameraMode.SINGLE,
                                  reader_options=reader)
        if progress is not None:
            progress.update(len(chunk))


def match_pairs(database: Path, names: list[str], pairs: list[tuple[int, int]], work_dir: Path,
                progress=None) -> None:
    """Match and geometrically verify the frame ``pairs`` (indices into ``names``), replacing earlier matches."""
    pycolmap = import_pycolmap()
    db = pycolmap.Database.open(database)
    db.clear_matches()
    db.clear_two_view_geometries()
    db.close()
    options = pycolmap.ImportedPairingOptions()
    options.match_list_path = str(work_dir / "pairs.txt")
    for chunk in _chunks(pairs, max(PAIR_CHUNK_MIN, -(-len(pairs) // PAIR_STEPS))):
        Path(options.match_list_path).write_text("".join(f"{names[i]} {names[j]}\n" for i, j in chunk))
        pycolmap.match_image_pairs(database, pairing_options=options)
        if progress is not None:
            progress.update(len(chunk))


def reconstruct(database: Path, frames_dir: Path, models_dir: Path, mapper: str, progress=None) -> Path | None:
    """Map the matched frames into ``models_dir/<k>/``; return the folder of the model with most frames
    (None when no model could be made)."""
    pycolmap = import_pycolmap()
    shutil.rmtree(models_dir, ignore_errors=True)
    models_dir.mkdir(parents=True)
    if mapper == "incremental":
        options = pycolmap.IncrementalPipelineOptions()
        options.min_model_size = 3
        options.random_seed = 0
        models = pycolmap.incremental_mapping(database, frames_dir, models_dir, options,
                                              next_image_callback=(lambda: progress.update(1)) if progress else None)
    else:
        options = pycolmap.GlobalPipelineOptions()
        options.random_seed = 0
        options.min_model_size = 3
        options.mapper.global_positioning.use_gpu = False
        options.mapper.bundle_adjustment.ceres.use_gpu = False
        models = pycolmap.global_mapping(database, frames_dir, models_dir, options)
    if not models:
        return None
    best = max(models, key=lambda k: models[k].num_reg_images())
    if not (models_dir / str(best)).is_dir():  # the global mapper returns the models without writing them
        for k, model in models.items():
            (models_dir / str(k)).mkdir(exist_ok=True)
            model.write(models_dir / str(k))
    return models_dir / str(best)


def model_stats(model_dir: Path, names: list[str]) -> dict[str, Any]:
    """Registered frames, the frames that are not, and COLMAP's quality numbers of the model in ``model_dir``."""
    pycolmap = import_pycolmap()
    model = pycolmap.Reconstruction(model_dir)
    registered = {model.images[i].name for i in model.reg_image_ids()}
    return {"registered": len(registered), "unregistered": [n for n in names if n not in registered],
            "points": model.num_points3D(), "mean_reprojection_error_px": model.compute_mean_reprojection_error(),
            "mean_track_length": model.compute_mean_track_length()}


def camera_info(model_dir: Path) -> dict[str, Any]:
    """The (shared) camera of the model in ``model_dir``: COLMAP model name, size in pixels, parameters."""
    camera = next(iter(import_pycolmap().Reconstruction(model_dir).cameras.values()))
    return {"model": camera.model.name, "width": camera.width, "height": camera.height,
            "params": [float(p) for p in camera.params]}


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_dataset(model_dir: Path, frames_dir: Path, out_dir: Path, undistort: bool) -> None:
    """``out_dir/images/`` (registered frames) and ``out_dir/sparse/0/`` from the model in ``model_dir``.

    ``undistort``: images resampled to a PINHOLE camera by COLMAP's undistorter, else the frames as they are
    (hard links when possible) with the model's camera. Built beside the target, then moved in; ``sparse``
    last, so a half-moved dataset has no model."""
    pycolmap = import_pycolmap()
    tmp = out_dir / DATASET_TMP
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model = pycolmap.Reconstruction(model_dir)
    if undistort:
        pycolmap.undistort_images(tmp, model_dir, frames_dir, output_type="COLMAP")
        (tmp / "sparse" / "0").mkdir()
        for f in (tmp / "sparse").iterdir():
            if f.is_file():
                f.rename(tmp / "sparse" / "0" / f.name)
    else:
        (tmp / "images").mkdir()
        for i in model.reg_image_ids():
            name = model.images[i].name
            _link_or_copy(frames_dir / name, tmp / "images" / name)
        (tmp / "sparse" / "0").mkdir(parents=True)
        model.write(tmp / "sparse" / "0")
    for sub in ("sparse", "images"):
        shutil.rmtree(out_dir / sub, ignore_errors=True)
    (tmp / "images").rename(out_dir / "images")
    (tmp / "sparse").rename(out_dir / "sparse")
    shutil.rmtree(tmp)
