"""Peak memory and start-up time of training on a large capture, against just decoding its images.

Writes a synthetic COLMAP scene once into ``DATA`` (``--views`` JPEGs of ``--size``, one shared camera, a few
thousand sparse points with tracks; kept for later runs with the same settings), then measures, each in a fresh
process after the JPEGs were read once (warm page cache):

- ``decode``: decode every image with PIL, keeping none of them (the reference);
- ``ours``: what ``python -m s3dgs.train data_dir=DATA`` does before its first step (Trainer construction: the
  scene loaded, then the initial Gaussians), without priors.

Prints wall seconds and the process's peak RSS (``getrusage`` maxrss) of each, their ratio, and what float32
images alone would need. For example (docs/performance.md)::

    python benchmarks/scene_memory.py /tmp/scene_1000 --views 1000 --size 1920x1080

``--code DIR`` measures the ``s3dgs`` of another checkout (e.g. a ``git worktree`` of an older commit), and
trailing ``key=value`` arguments are passed to the trainer's config (``data.image_cache_gb=4``, ``device=cuda``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MANIFEST = "scene_memory.json"


def texture(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A photo-like uint8 ``[2H, 2W, 3]`` texture (smooth colour fields and fine detail) to crop views from."""
    import cv2

    h, w = 2 * height, 2 * width
    coarse = cv2.resize(rng.uniform(0, 255, (h // 64, w // 64, 3)).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.normal(0, 40, (h, w, 3)).astype(np.float32), (0, 0), 1.5)
    return np.clip(coarse + fine, 0, 255).astype(np.uint8)


def write_scene(data: Path, views: int, size: tuple[int, int], points: int, seed: int = 0) -> None:
    """A COLMAP dataset in ``data``: ``images/view_NNNN.jpg`` cropped from one texture, cameras on a circle
    around the origin looking at it (PINHOLE), ``points`` points near the origin each seen by 3 to 6 views."""
    import cv2

    sys.path.insert(0, str(REPO))
    from s3dgs.data import colmap

    width, height = size
    rng = np.random.default_rng(seed)
    base = texture(width, height, rng)
    (data / "images").mkdir(parents=True, exist_ok=True)
    f = 0.8 * width
    images = {}
    track_views = [rng.choice(views, rng.integers(3, 7), replace=False) for _ in range(points)]
    seen_by: list[list[int]] = [[] for _ in range(views)]
    for p, vs in enumerate(track_views):
        for v in vs:
            seen_by[v].append(p)
    tracks: list[list[tuple[int, int]]] = [[] for _ in range(points)]
    for i in range(views):
        x, y = rng.integers(0, width), rng.integers(0, height)
        crop = base[y:y + height, x:x + width]
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
        (data / "images" / f"view_{i:04d}.jpg").write_bytes(buf.tobytes())
        angle = 2 * np.pi * i / views
        eye = np.array([4 * np.cos(angle), 0.3 * np.sin(3 * angle), 4 * np.sin(angle)])
        fwd = -eye / np.linalg.norm(eye)
        right = np.cross(fwd, [0, 1.0, 0])
        right /= np.linalg.norm(right)
        rot = np.stack([right, np.cross(fwd, right), fwd])  # world-to-camera rows: x right, y down, z forward
        for k, p in enumerate(seen_by[i]):
            tracks[p].append((i + 1, k))
        images[i + 1] = colmap.Image(i + 1, colmap.rotmat_to_qvec(rot), -rot @ eye, 1, f"view_{i:04d}.jpg",
                                     rng.uniform(0, [width, height], (len(seen_by[i]), 2)),
                                     np.array(seen_by[i], np.int64) + 1)
    cam = colmap.Camera(1, "PINHOLE", width, height, np.array([f, f, width / 2, height / 2]))
    pts = colmap.Points3D(np.arange(1, points + 1), rng.normal(0, 0.5, (points, 3)),
                          rng.integers(0, 256, (points, 3), np.uint8), rng.uniform(0, 1, points),
                          [np.array(t, np.int64) for t in tracks])
    colmap.write_model(colmap.Model({1: cam}, images, pts), data / "sparse" / "0")


def measure_decode(data: Path) -> None:
    """Child: decode every image of ``data`` with PIL, keeping none."""
    from PIL import Image

    start = time.perf_counter()
    for path in sorted((data / "images").iterdir()):
        with Image.open(path) as im:
            np.asarray(im.convert("RGB"))
    report(start)


def measure_ours(data: Path, code: Path, overrides: list[str]) -> None:
    """Child: the trainer up to its first step (Trainer construction, probe, initial state) on ``data``."""
    start = time.perf_counter()
    sys.path.insert(0, str(code))
    from hydra import compose, initialize_config_dir

    from s3dgs.trainer import Trainer

    with initialize_config_dir(str(code / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data_dir={data}", "log.tensorboard=false", *overrides])
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(cfg, Path(out))
        trainer.probe_priors()
        trainer.init_state()
        report(start)


def report(start: float) -> None:
    """Print the seconds since ``start`` and this process's peak RSS (Linux: maxrss in KiB) as JSON."""
    print(json.dumps({"seconds": time.perf_counter() - start,
                      "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}))


def run_child(*args: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="folder of the generated scene (written once, e.g. under /tmp)")
    p.add_argument("--views", type=int, default=1000)
    p.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT of the images")
    p.add_argument("--points", type=int, default=3000, help="sparse points (each seen by 3 to 6 views)")
    p.add_argument("--code", type=Path, default=REPO, help="checkout whose s3dgs is measured")
    p.add_argument("--child", choices=["decode", "ours"], help=argparse.SUPPRESS)
    args, overrides = p.parse_known_args()
    if args.child == "decode":
        return measure_decode(args.data)
    if args.child == "ours":
        return measure_ours(args.data, args.code.resolve(), overrides)
    width, height = map(int, args.size.split("x"))
    settings = {"views": args.views, "size": [width, height], "points": args.points}
    manifest = args.data / MANIFEST
    if not manifest.exists() or json.loads(manifest.read_text()) != settings:
        print(f"writing {args.views} views at {width}x{height} into {args.data} ...", flush=True)
        write_scene(args.data, args.views, (width, height), args.points)
        manifest.write_text(json.dumps(settings))
    jpeg_bytes = sum(len(f.read_bytes()) for f in (args.data / "images").iterdir())  # warms the page cache
    decode = run_child(str(args.data), "--child", "decode")
    ours = run_child(str(args.data), "--child", "ours", "--code", str(args.code), *overrides)
    float32_gb = args.views * width * height * 3 * 4 / 1e9
    print(f"{args.views} views at {width}x{height} ({jpeg_bytes / 1e6:.0f} MB of JPEG), code {args.code}"
          f"{' ' + ' '.join(overrides) if overrides else ''}")
    print(f"{'':28} {'seconds':>8} {'peak RSS GB':>12}")
    print(f"{'decode every image (PIL)':28} {decode['seconds']:8.1f} {decode['peak_gb']:12.2f}")
    print(f"{'ours, up to the first step':28} {ours['seconds']:8.1f} {ours['peak_gb']:12.2f}")
    print(f"start-up / decode: {ours['seconds'] / decode['seconds']:.2f}x; the images as float32 would take "
          f"{float32_gb:.1f} GB")


if __name__ == "__main__":
    main()
