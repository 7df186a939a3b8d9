"""Seconds per stage and registration rate of ``preprocess.video_to_scene`` on a synthetic 720p clip.

The clip (``write_clip`` of tests/helpers/video_to_scene_testing.py): a textured room with a box, 60 poses on a
100-degree arc, each written blurred then sharp into an H.264 mp4 at 4 fps, so the default ``--fps 2``
keeps 60 frames. Prints, from one run:

* seconds per stage of the pipeline (first run), the registration rate and the camera-centre error after
  a similarity alignment, as a fraction of the path length;
* the reference, measured in the same run on the same frames: plain pycolmap calls with the same options
  (``extract_features`` once, ``match_exhaustive``, ``incremental_mapping``), and our stages as multiples
  of it (the cost of chunked calls for progress bars and of the explicit pair list), in wall clock and in
  CPU time of the process (all threads; robust to other jobs sharing the cores);
* the seconds of a rerun (every stage finished: should be ~0 besides start-up).

On a shared machine compare the CPU ratios, not the seconds.

Usage: ``python benchmarks/video_to_scene.py [--frames 60] [--width 1280 --height 720] [--work DIR]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))  # video_to_scene_testing

from preprocess.video_to_scene import Options, video_to_scene  # noqa: E402
from preprocess.video_to_scene.poses import import_pycolmap  # noqa: E402
from video_to_scene_testing import umeyama, write_clip  # noqa: E402
from s3dgs.data import colmap  # noqa: E402


def plain_pycolmap(frames_dir: Path, work: Path, camera_model: str) -> dict[str, tuple[float, float]]:
    """The reference: pycolmap's own one-call pipeline on ``frames_dir``; ``(wall, cpu)`` seconds per step."""
    pycolmap = import_pycolmap()
    shutil.rmtree(work, ignore_errors=True)
    (work / "sparse").mkdir(parents=True)
    db = work / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    options = pycolmap.IncrementalPipelineOptions()
    options.random_seed = 0
    steps = {"features": lambda: pycolmap.extract_features(db, frames_dir, camera_mode=pycolmap.CameraMode.SINGLE,
                                                           reader_options=reader),
             "matches": lambda: pycolmap.match_exhaustive(db),
             "mapping": lambda: pycolmap.incremental_mapping(db, frames_dir, work / "sparse", options)}
    seconds = {}
    for name, step in steps.items():
        start, cpu = time.perf_counter(), time.process_time()
        step()
        seconds[name] = (time.perf_counter() - start, time.process_time() - cpu)
    return seconds


def centre_error(out: Path, sharp: np.ndarray, centres: np.ndarray) -> float:
    """Largest camera-centre error after a similarity alignment, as a fraction of the path length."""
    model = colmap.read_model(out / "sparse" / "0")
    est = {im.name: np.linalg.inv(im.world_to_camera())[:3, 3] for im in model.images.values()}
    names = [f"frame_{i:06d}.jpg" for i in sharp]
    src = np.stack([est[n] for n in names if n in est])
    dst = np.stack([c for n, c in zip(names, centres) if n in est])
    s, rot, t = umeyama(src, dst)
    return float(np.linalg.norm(s * src @ rot.T + t - dst, axis=1).max()
                 / np.linalg.norm(np.diff(centres, axis=0), axis=1).sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--mapper", choices=("incremental", "global"), default="incremental")
    p.add_argument("--work", type=Path, default=None, help="keep the clip and outputs here (default: a temp dir)")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-v2s-"))
    work.mkdir(parents=True, exist_ok=True)
    clip = work / f"clip_{args.frames}_{args.width}x{args.height}.mp4"
    truth = clip.with_suffix(".npz")
    if not truth.exists():
        start = time.perf_counter()
        sharp, centres = write_clip(clip, args.frames, args.width, args.height)
        np.savez(truth, sharp=sharp, centres=centres)
        print(f"rendered the clip in {time.perf_counter() - start:.0f} s: {clip}")
    sharp, centres = np.load(truth)["sharp"], np.load(truth)["centres"]

    out = work / "scene"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    report = video_to_scene(clip, out, Options(mapper=args.mapper, depth="none", quiet=True))
    total = time.perf_counter() - start
    start = time.perf_counter()
    video_to_scene(clip, out, Options(mapper=args.mapper, depth="none", quiet=True))
    rerun = time.perf_counter() - start
    ref = plain_pycolmap(out / "frames", work / "reference", "SIMPLE_RADIAL")

    f = report["frames"]
    print(f"clip: {args.frames} poses at {args.width}x{args.height}, {f['sampled']} frames sampled, "
          f"{f['registered']} registered ({100 * f['registration_rate']:.0f}%), centre error "
          f"{100 * centre_error(out, sharp, centres):.3f}% of the path, {report['sfm']['points']} points, "
          f"reprojection error {report['sfm']['mean_reprojection_error_px']:.2f} px")
    print(f"{'stage':10s} {'wall s':>8s} {'ref wall':>9s} {'ratio':>6s} {'cpu s':>8s} {'ref cpu':>8s} {'ratio':>6s}")
    for name, stage in report["stages"].items():
        row = f"{name:10s} {stage['seconds']:8.1f} "
        if name in ref:
            (rw, rc), c = ref[name], stage["cpu_seconds"]
            row += f"{rw:9.1f} {stage['seconds'] / rw:6.2f} {c:8.1f} {rc:8.1f} {c / rc:6.2f}"
        else:
            row += f"{'':9s} {'':6s} {stage['cpu_seconds']:8.1f}"
        print(row)
    ref_wall, ref_cpu = sum(w for w, _ in ref.values()), sum(c for _, c in ref.values())
    cpu = sum(s["cpu_seconds"] for s in report["stages"].values())
    print(f"{'total':10s} {total:8.1f} {ref_wall:9.1f} {total / ref_wall:6.2f} {cpu:8.1f} {ref_cpu:8.1f} "
          f"{cpu / ref_cpu:6.2f}")
    print(f"rerun (all stages finished): {rerun:.2f} s")
    print(json.dumps({"stages": {k: [round(v["seconds"], 2), round(v["cpu_seconds"], 2)]
                                 for k, v in report["stages"].items()},
                      "reference": {k: [round(w, 2), round(c, 2)] for k, (w, c) in ref.items()},
                      "rerun_s": round(rerun, 2), "registration_rate": f["registration_rate"]}))


if __name__ == "__main__":
    main()
