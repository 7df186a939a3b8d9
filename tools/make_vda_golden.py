"""Regenerate tests/video_depth/data/vda_golden.npz and official_keys.json.gz from the OFFICIAL code.

Needs a checkout of https://github.com/DepthAnything/Video-Depth-Anything (read only; we recorded
commit 4f5ae23) and its model dependencies einops and easydict (e.g. ``pip install --target DIR einops
easydict`` and add DIR to PYTHONPATH). torchvision is not needed: its ``transforms.Compose`` is
replaced by a stand-in when missing. Run from the repository root:

    PYTHONPATH=DIR python tools/make_vda_golden.py --official /path/to/Video-Depth-Anything

The official model gets the deterministic random weights of tests/helpers/video_depth_testing.py
(strict load, which also proves our key layout); the fixture records its outputs for short synthetic
clips (``CASES``, stored with each output) so tests compare our implementation with the official numbers without the checkout.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "video_depth" / "data"
SEED = 0  # random weights
# name: (mode, frames, height, width, input_size, metric, clip seed); every case uses vits
CASES = {
    "one_window": ("batch", 12, 21, 28, 56, False, 1),
    "windows": ("batch", 50, 18, 24, 56, False, 2),  # 3 windows, the last one changes frames 46..49
    "wide": ("batch", 26, 14, 34, 56, False, 3),  # aspect 2.43 > 1.78: input size 56 -> 42
    "odd": ("batch", 27, 15, 21, 42, False, 4),  # odd frame sizes, 2 windows
    "half_even": ("batch", 8, 20, 25, 28, False, 5),  # 25 * 1.4 / 14 = 2.5 rounds to 2 (half to even)
    "metric": ("batch", 30, 18, 24, 56, True, 6),  # no scale/shift alignment
    "stream": ("stream", 45, 12, 16, 56, False, 7),  # past the 42-frame cache limit
}
ARCH = {"vits": (64, [48, 96, 192, 384]), "vitb": (128, [96, 192, 384, 768]), "vitl": (256, [256, 512, 1024, 1024])}


def import_official(root: Path):
    """The official batch and streaming model classes, with a stand-in for torchvision's Compose."""
    try:
        import torchvision.transforms  # noqa: F401
    except ImportError:
        class Compose:
            def __init__(self, steps):
                self.steps = steps

            def __call__(self, sample):
                for step in self.steps:
                    sample = step(sample)
                return sample
        sys.modules["torchvision"] = types.ModuleType("torchvision")
        sys.modules["torchvision.transforms"] = types.SimpleNamespace(Compose=Compose)
    sys.path.insert(0, str(root))
    from video_depth_anything.video_depth import VideoDepthAnything
    from video_depth_anything.video_depth_stream import VideoDepthAnything as VideoDepthAnythingStream
    return VideoDepthAnything, VideoDepthAnythingStream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, required=True, help="checkout of DepthAnything/Video-Depth-Anything")
    args = parser.parse_args()
    sys.path[:0] = [str(REPO), str(REPO / "tests" / "helpers")]  # the checkout, video_depth_testing
    from video_depth_testing import random_state_dict, synthetic_clip

    batch_cls, stream_cls = import_official(args.official)
    commit = subprocess.run(["git", "-C", str(args.official), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    torch.manual_seed(0)
    keys = {}
    for encoder, (features, channels) in ARCH.items():
        model = batch_cls(encoder=encoder, features=features, out_channels=channels)
        keys[encoder] = {k: list(v.shape) for k, v in model.state_dict().items()}
        if encoder == "vits":
            model.load_state_dict(random_state_dict(encoder, SEED), strict=True)
            official = model.eval()
        del model
    with gzip.GzipFile(DATA / "official_keys.json.gz", "wb", mtime=0) as f:
        f.write(json.dumps(keys, indent=0, sort_keys=False).encode())

    golden = {"official_commit": np.array(commit), "weights_seed": np.array(SEED)}
    for name, (mode, n, height, width, size, metric, clip_seed) in CASES.items():
        frames = synthetic_clip(n, height, width, seed=clip_seed)
        if mode == "batch":
            official.metric = metric
            depth, _ = official.infer_video_depth(frames, -1, input_size=size, device="cpu", fp32=True)
        else:
            stream = stream_cls(encoder="vits", features=ARCH["vits"][0], out_channels=ARCH["vits"][1])
            stream.load_state_dict(official.state_dict(), strict=True)
            stream.eval()
            depth = np.stack([stream.infer_video_depth_one(f, input_size=size, device="cpu", fp32=True)
                              for f in frames])
        golden[f"{name}/depth"] = depth.astype(np.float32)
        golden[f"{name}/case"] = np.array([mode == "stream", n, height, width, size, metric, clip_seed])
        print(f"{name}: {depth.shape} range {depth.min():.4g}..{depth.max():.4g}")
    np.savez_compressed(DATA / "vda_golden.npz", **golden)
    print(f"wrote {DATA / 'vda_golden.npz'} ({(DATA / 'vda_golden.npz').stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
