"""CLI: ``python -m preprocess.video_depth VIDEO OUTPUT_DIR [options]`` (see docs/video_depth.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tqdm import tqdm

from preprocess.errors import S3dgsError
from preprocess.video_depth.inference import PRECISIONS
from preprocess.video_depth.model import ENCODERS
from preprocess.video_depth.run import run_video_depth_anything

BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m preprocess.video_depth",
        description="Video Depth Anything on a video, writing Annolid's depth files (depth.ndjson and, on "
                    "request, the vis mp4, depth PNGs, NPZ, EXR, point-cloud CSVs). Rerun to resume.")
    p.add_argument("input_video", metavar="VIDEO")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", nargs="?", default=None,
                   help="default: the video's path without its suffix, where Annolid's GUI looks (videos/mice/)")
    p.add_argument("--encoder", choices=list(ENCODERS), default="vits")
    p.add_argument("--input-size", "--input_size", type=int, default=518, help="network input short side")
    p.add_argument("--max-res", "--max_res", type=int, default=1280, help="shrink frames whose longer side exceeds this")
    p.add_argument("--max-len", "--max_len", type=int, default=-1, help="at most this many sampled frames")
    p.add_argument("--target-fps", "--target_fps", type=int, default=-1, help="sample the video at about this rate")
    p.add_argument("--metric", action="store_true", help="metric model: depth in metres")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="fp32, fp16 (CUDA), bf16 (CUDA, or a CPU with AVX512-BF16/AMX; opt-in, faster, about "
                        "2e-2 of a frame's largest value from fp32 at worst); default fp16 on CUDA, fp32 on CPU")
    p.add_argument("--fp32", action="store_true", help="Annolid's spelling of --precision fp32")
    p.add_argument("--grayscale", action="store_true", help="grey instead of inferno in the vis mp4/PNGs")
    p.add_argument("--batch", dest="streaming", action="store_false",
                   help="official 32-frame windows (holds all frames in memory) instead of streaming")
    p.add_argument("--save-npz", "--save_npz", action="store_true")
    p.add_argument("--save-exr", "--save_exr", action="store_true")
    p.add_argument("--save-depth-video", action="store_true", help="write <stem>_vis.mp4")
    p.add_argument("--save-depth-frames", action="store_true", help="write depth_frames/depth_NNNNN.png")
    p.add_argument("--save-point-clouds", action="store_true", help="write point_clouds/point_NNNN.csv")
    p.add_argument("--include-region-labels", action="store_true", help="region column from Annolid annotations")
    p.add_argument("--point-clouds-as-depth", action="store_true",
                   help="relative model: write z = 1/value (still not metric)")
    p.add_argument("--focal-length-x", "--focal_length_x", type=float, default=470.4)
    p.add_argument("--focal-length-y", "--focal_length_y", type=float, default=470.4)
    p.add_argument("--checkpoint-root", default=None, help="folder holding the .pth checkpoints")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    p.add_argument("--overwrite", action="store_true", help="replace results made with other settings")
    return p


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    if args["output_dir"] is None:
        args["output_dir"] = str(Path(args["input_video"]).expanduser().with_suffix(""))
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own messages would bury ours
    bars: list[tqdm] = []

    def progress(percent: int) -> None:
        if not bars:
            bars.append(tqdm(total=100, desc="video depth", bar_format=BAR_FORMAT))
        bars[0].update(max(percent - bars[0].n, 0))

    try:
        result = run_video_depth_anything(progress_callback=progress, **args)
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (S3dgsError, OSError, ValueError, RuntimeError) as e:  # plain ones: bad arguments
        for bar in bars:
            bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 1
    for bar in bars:
        bar.close()
    for key, paths in result.items():
        if key != "output_dir":
            print(f"{key}: {paths[0]}" + (f" (+{len(paths) - 1} more)" if len(paths) > 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
