"""Host memory of ``run_video_depth_anything`` against video length: streaming stays flat, batch grows.

Writes one synthetic H.264 clip, saves the vits architecture with random weights in the official layout
(memory and speed do not depend on the weights), then runs the tool in a fresh process per
configuration (streaming / batch x frame counts, with the vis mp4 and the NPZ, which need the whole
run) and prints wall time, frames/s and the process's peak RSS. The network input is kept small
(``--input-size``) so that the frames, depths and outputs, not the network, dominate what changes with
length; the growth per frame is what the table is for.

Usage: ``python benchmarks/bench_video_tool_memory.py [--frames 64 256] [--size 640x360] [--input-size 70]``
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))  # video_depth_testing


def child(video: str, out: str, ckpt_root: str, frames: int, streaming: bool, input_size: int) -> None:
    from preprocess.video_depth import run_video_depth_anything

    start = time.perf_counter()
    run_video_depth_anything(video, out, input_size=input_size, max_len=frames, streaming=streaming,
                             checkpoint_root=ckpt_root, save_npz=True, save_depth_video=True)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, nargs="+", default=[64, 256])
    p.add_argument("--size", default="640x360")
    p.add_argument("--input-size", type=int, default=70)
    p.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        video, out, root, frames, streaming, input_size = args.child
        return child(video, out, root, int(frames), streaming == "1", int(input_size))

    import imageio_ffmpeg

    from video_depth_testing import save_random_checkpoint, synthetic_clip

    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = tmp / "clip.mp4"
        writer = imageio_ffmpeg.write_frames(str(video), (width, height), fps=30, codec="libx264", quality=None,
                                             macro_block_size=2, output_params=["-crf", "18"],
                                             ffmpeg_log_level="error")
        writer.send(None)
        for frame in synthetic_clip(max(args.frames), height, width):
            writer.send(frame.tobytes())
        writer.close()
        save_random_checkpoint(tmp / "ckpt", "vits")
        print(f"clip {width}x{height}, vits (random weights), input_size {args.input_size}, outputs: "
              f"depth.ndjson + vis mp4 + NPZ; torch threads default")
        print(f"{'mode':<10} {'frames':>6} {'seconds':>8} {'frames/s':>8} {'peak RSS MiB':>12}")
        rows = {}
        for streaming in (True, False):
            for n in args.frames:
                out = tmp / f"out_{int(streaming)}_{n}"
                proc = subprocess.run([sys.executable, __file__, "--child", str(video), str(out), str(tmp / "ckpt"),
                                       str(n), str(int(streaming)), str(args.input_size)],
                                      capture_output=True, text=True, check=True)
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                rows[(streaming, n)] = r
                mode = "streaming" if streaming else "batch"
                print(f"{mode:<10} {n:>6} {r['seconds']:>8.1f} {n / r['seconds']:>8.2f} {r['peak_mib']:>12.0f}")
        lo, hi = min(args.frames), max(args.frames)
        for streaming in (True, False):
            growth = (rows[(streaming, hi)]["peak_mib"] - rows[(streaming, lo)]["peak_mib"]) / (hi - lo)
            print(f"{'streaming' if streaming else 'batch'}: peak RSS grows {growth:.2f} MiB per extra frame "
                  f"(one {width}x{height} frame is {width * height * 7 / 2**20:.2f} MiB as RGB + float32 depth)")


if __name__ == "__main__":
    main()
