"""CLI: ``python -m preprocess.video_to_scene INPUT OUT_DIR [options]`` (see docs/tutorial.md)."""

from __future__ import annotations

import argparse
import os
import sys

from preprocess.errors import S3dgsError
from preprocess.images import InputError
from preprocess.video_depth.frames import VideoReadError
from preprocess.video_to_scene.frames import SceneError
from preprocess.video_to_scene.pipeline import Options, video_to_scene
from preprocess.video_to_scene.poses import CAMERA_MODELS, EXHAUSTIVE_MAX_FRAMES
from preprocess.video_to_scene.priors import DEPTH_CHOICES


def build_parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(
        prog="python -m preprocess.video_to_scene",
        description="From a video (or a folder of frames) to a training dataset: sharp frames, camera poses "
                    "(pycolmap), depth priors and a report. Rerun the same command to resume.")
    p.add_argument("input", metavar="INPUT", help="video file, or folder of frames in time order (sorted names)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="dataset folder: images/, sparse/0/, depth/, scene.json")
    p.add_argument("--fps", type=float, default=None, help="video: frames kept per second, the sharpest of each "
                                                           "1/fps s (default 2)")
    p.add_argument("--max-frames", type=int, default=d.max_frames, help="at most this many frames, spread over "
                                                                        "the whole input (default %(default)s)")
    p.add_argument("--max-size", type=int, default=d.max_size, help="shrink frames to this long side in pixels "
                                                                    "(0: keep; default %(default)s)")
    p.add_argument("--image-format", choices=("jpg", "png"), default=d.image_format)
    p.add_argument("--matcher", choices=("auto", "exhaustive", "sequential"), default=d.matcher,
                   help=f"auto: every pair up to {EXHAUSTIVE_MAX_FRAMES} frames, else sequential")
    p.add_argument("--overlap", type=int, default=d.overlap, help="sequential: match each frame with the next N")
    p.add_argument("--loop-every", type=int, default=d.loop_every,
                   help="sequential: loop closure, match every N-th frame with all others of them (0: off)")
    p.add_argument("--mapper", choices=("incremental", "global"), default=d.mapper)
    p.add_argument("--camera-model", default=d.camera_model, choices=CAMERA_MODELS,
                   help="one camera shared by all frames (default %(default)s)")
    p.add_argument("--undistort", action="store_true", help="write undistorted PINHOLE images (the trainer "
                                                            "also reads distorted cameras)")
    p.add_argument("--depth", choices=DEPTH_CHOICES, default=d.depth,
                   help="depth priors: vda (Video Depth Anything, one scale for the clip), transformers "
                        "(Depth Anything V2 per image), space (the Hugging Face Space) or none")
    p.add_argument("--depth-model", default=None, help="vda: vits (default), vitb, vitl ...; transformers: "
                                                       "hub id or folder")
    p.add_argument("--checkpoint-root", default=None, help="vda: folder of the .pth checkpoints")
    p.add_argument("--input-size", type=int, default=d.input_size, help="vda: network input short side")
    p.add_argument("--device", default=d.device, help="depth model device: auto | cpu | cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary; errors only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    source, out_dir = args.pop("input"), args.pop("out_dir")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own messages would bury ours
    try:
        video_to_scene(source, out_dir, Options(**args))
    except (SceneError, VideoReadError, InputError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (S3dgsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: finished stages are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
