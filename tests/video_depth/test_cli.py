"""``python -m preprocess.video_depth``: a real run, and bad input giving one clear line and a non-zero exit."""

import json
import subprocess

import cv2
import imageio_ffmpeg
import numpy as np

from video_depth_testing import synthetic_clip


def write_clip(path, n=3, size=(31, 23)):
    writer = imageio_ffmpeg.write_frames(str(path), size, fps=8, codec="libx264", pix_fmt_out="yuv444p",
                                         macro_block_size=1, quality=None, output_params=["-qp", "0"],
                                         ffmpeg_log_level="error")
    writer.send(None)
    for frame in synthetic_clip(n, size[1], size[0]):
        writer.send(frame.tobytes())
    writer.close()


def cli(python, repo_env, *args):
    return subprocess.run([python, "-m", "preprocess.video_depth", *map(str, args)], env=repo_env,
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr            # no traceback, no progress bar, no FFmpeg noise
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cli_run_with_progress_bar(tmp_path, python, repo_env, tiny_vda_checkpoint):
    video = tmp_path / "clip.mp4"
    write_clip(video)
    out = tmp_path / "out"
    proc = cli(python, repo_env, video, out, "--input-size", 28, "--checkpoint-root", tiny_vda_checkpoint.parent,
               "--save-depth-video", "--save-npz", "--grayscale")
    assert proc.returncode == 0, proc.stderr
    assert "video depth: 100%" in proc.stderr                          # tqdm bar reached the end
    assert f"depth_ndjson: {out / 'depth.ndjson'}" in proc.stdout
    records = [json.loads(line) for line in (out / "depth.ndjson").read_text().splitlines()]
    assert [r["frame_index"] for r in records] == [0, 1, 2]
    depths = np.load(out / "clip_depths.npz")["depths"]
    assert depths.shape == (3, 23, 31)
    cap = cv2.VideoCapture(str(out / "clip_vis.mp4"))
    frames = []
    while (item := cap.read())[0]:
        frames.append(item[1])
    assert len(frames) == 3 and frames[0].shape == (24, 32, 3)
    assert all(np.abs(f[..., 0].astype(int) - f[..., 2]).max() <= 2 for f in frames)  # grey


def test_cli_precision_errors(tmp_path, python, repo_env, tiny_vda_checkpoint):
    video = tmp_path / "clip.mp4"
    write_clip(video, n=1)
    root = ("--checkpoint-root", tiny_vda_checkpoint.parent, "--device", "cpu")
    assert_one_line_error(cli(python, repo_env, video, tmp_path / "a", "--precision", "fp16", *root),
                          "fp16 needs CUDA", "use bf16 or fp32")
    assert_one_line_error(cli(python, repo_env, video, tmp_path / "b", "--precision", "bf16", "--fp32", *root),
                          "--fp32", "contradicts precision 'bf16'")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_missing_checkpoint(tmp_path, python, repo_env):
    video = tmp_path / "clip.mp4"
    write_clip(video, n=1)
    proc = cli(python, repo_env, video, tmp_path / "out", "--checkpoint-root", tmp_path / "nowhere")
    assert_one_line_error(proc, "video_depth_anything_vits", "python -m preprocess.download_weights")


def test_cli_unreadable_and_empty_and_absent_video(tmp_path, python, repo_env):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    assert_one_line_error(cli(python, repo_env, bad, tmp_path / "out"), str(bad), "re-encode")
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24)).release()  # header, no frames
    assert_one_line_error(cli(python, repo_env, empty, tmp_path / "out"), str(empty), "no frame")
    assert_one_line_error(cli(python, repo_env, tmp_path / "absent.mp4", tmp_path / "out"), "absent.mp4")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # nothing written
