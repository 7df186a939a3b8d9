"""run_video_depth_anything end to end on small synthetic videos with the tiny random vits checkpoint.

Every file is read back with independent readers (cv2, OpenEXR, numpy, csv) and checked against the model
run directly on the frames the tool should have sampled.
"""

import csv
import inspect
import json
import os
import shutil
import time
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from preprocess.atomic_io import TEMP_PREFIX, atomic_path
from preprocess.video_depth import build_model, infer_video_depth, run_video_depth_anything, stream_video_depth
from preprocess.video_depth import run as run_module
from preprocess.video_depth.ndjson import decode_depth
from preprocess.video_depth.state import OutputFolderError
from video_depth_testing import synthetic_clip

W, H, FPS, N_SRC = 45, 33, 10, 11   # odd frame size on purpose
INPUT_SIZE = 28


def write_video(path, n=N_SRC, size=(W, H), fps=FPS, seed=0):
    """Near-lossless H.264 (yuv444p, so odd sizes work) of the shared synthetic clip; returns the frames as
    OpenCV decodes them (RGB)."""
    writer = imageio_ffmpeg.write_frames(str(path), size, fps=fps, codec="libx264", pix_fmt_out="yuv444p",
                                         macro_block_size=1, quality=None, output_params=["-qp", "0"],
                                         ffmpeg_log_level="error")
    writer.send(None)
    for frame in synthetic_clip(n, size[1], size[0], seed=seed):
        writer.send(frame.tobytes())
    writer.close()
    cap, decoded = cv2.VideoCapture(str(path)), []
    while (item := cap.read())[0]:
        decoded.append(cv2.cvtColor(item[1], cv2.COLOR_BGR2RGB))
    assert len(decoded) == n
    return np.stack(decoded)


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def model(tiny_vda_checkpoint):
    return build_model("vits", tiny_vda_checkpoint).eval()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_vda_checkpoint):
    """One streaming run with every output, target_fps 5 (stride 2) and max_len 5 -> source frames 0..8."""
    root = tmp_path_factory.mktemp("full")
    video = root / "mice.mp4"
    frames = write_video(video)
    progress, previews, records_written = [], [], []

    def on_progress(percent):
        progress.append(percent)
        ndjson_path = root / "out" / "depth.ndjson"
        records_written.append(len(ndjson_path.read_text().splitlines()) if ndjson_path.exists() else 0)

    result = run_video_depth_anything(
        str(video), str(root / "out"), input_size=INPUT_SIZE, max_len=5, target_fps=5,
        checkpoint_root=str(tiny_vda_checkpoint.parent), save_npz=True, save_exr=True, save_depth_video=True,
        save_depth_frames=True, save_point_clouds=True, progress_callback=on_progress,
        preview_callback=previews.append, focal_length_x=100.0, focal_length_y=120.0)
    return {"root": root, "out": root / "out", "frames": frames, "result": result, "progress": progress,
            "previews": previews, "records_written": records_written}


def test_signature_is_annolids():
    params = list(inspect.signature(run_video_depth_anything).parameters.values())
    annolid = [("input_video", inspect.Parameter.empty), ("output_dir", inspect.Parameter.empty),
               ("encoder", "vits"), ("input_size", 518), ("max_res", 1280), ("max_len", -1), ("target_fps", -1),
               ("metric", False), ("fp32", False), ("grayscale", False), ("save_npz", False), ("save_exr", False),
               ("focal_length_x", 470.4), ("focal_length_y", 470.4), ("checkpoint_root", None),
               ("progress_callback", None), ("preview_callback", None), ("streaming", True),
               ("save_depth_video", False), ("save_depth_frames", False), ("save_point_clouds", False),
               ("include_region_labels", False)]
    assert [(p.name, p.default) for p in params[:len(annolid)]] == annolid
    assert all(p.kind == p.POSITIONAL_OR_KEYWORD for p in params[:len(annolid)])
    assert all(p.kind == p.KEYWORD_ONLY for p in params[len(annolid):])


def test_returned_paths(full_run):
    out, result = full_run["out"], full_run["result"]
    assert list(result) == ["output_dir", "depth_visualization", "depth_frames", "depth_ndjson", "npz", "exr",
                            "point_cloud_csv"]
    assert result["output_dir"] == [str(out)]
    assert result["depth_visualization"] == [str(out / "mice_vis.mp4")]
    assert result["depth_frames"] == [str(out / "depth_frames" / f"depth_{i:05d}.png") for i in range(5)]
    assert result["depth_ndjson"] == [str(out / "depth.ndjson")]
    assert result["npz"] == [str(out / "mice_depths.npz")]
    assert result["exr"] == [str(out / "mice_depths_exr")]
    assert result["point_cloud_csv"] == [str(out / "point_clouds" / f"point_{i:04d}.csv") for i in range(5)]
    for key, paths in result.items():
        assert all(Path(p).exists() for p in paths), key
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp or parts left behind


def test_ndjson_records_sampling_and_npz(full_run, model):
    out, frames = full_run["out"], full_run["frames"]
    records = read_lines(out / "depth.ndjson")
    assert [r["frame_index"] for r in records] == [0, 2, 4, 6, 8]        # source indices, stride 2, max_len 5
    assert [r["timestamp_sec"] for r in records] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert {(r["imageWidth"], r["imageHeight"], r["video_name"]) for r in records} == {(W, H, "mice.mp4")}
    dm = records[0]["otherData"]["depth_map"]
    assert (dm["kind"], dm["units"], dm["model"]) == ("inverse_depth", None, "video_depth_anything_vits")
    with np.load(out / "mice_depths.npz") as data:
        assert data.files == ["depths"]
        depths = data["depths"]
    assert depths.shape == (5, H, W) and depths.dtype == np.float32
    # the model ran, in streaming mode, on exactly the sampled source frames
    expected = np.stack(list(stream_video_depth(model, frames[0:10:2], input_size=INPUT_SIZE)))
    np.testing.assert_allclose(depths, expected, rtol=1e-5, atol=1e-6)
    assert np.ptp(depths) > 0 and not np.allclose(depths[0], depths[1])
    for rec, d in zip(records, depths):
        step = (d.max() - d.min()) / 65535
        assert rec["otherData"]["depth_map"]["scale"] == {"min": float(d.min()), "max": float(d.max())}
        assert np.abs(decode_depth(rec) - d).max() <= step / 2 + 1e-6


def test_exr_csv_and_pngs(full_run):
    import OpenEXR

    out, frames = full_run["out"], full_run["frames"]
    depths = np.load(out / "mice_depths.npz")["depths"]
    for i, d in enumerate(depths):
        with OpenEXR.File(str(out / "mice_depths_exr" / f"frame_{i:05d}.exr")) as f:
            z = f.channels()["Z"].pixels
        assert z.dtype == np.float32
        np.testing.assert_array_equal(z, d)
    with open(out / "point_clouds" / "point_0003.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["x", "y", "z", "intensity", "red", "green", "blue"]
    table = np.array(rows[1:], dtype=np.float64)
    assert table.shape == (W * H, 7)
    z = depths[3].astype(np.float64).ravel()
    v, u = np.divmod(np.arange(W * H), W)
    np.testing.assert_allclose(table[:, 2], z, atol=1e-6)
    np.testing.assert_allclose(table[:, 3], z, atol=1e-6)
    np.testing.assert_allclose(table[:, 0], (u - W / 2) / 100.0 * z, atol=1e-6)
    np.testing.assert_allclose(table[:, 1], (v - H / 2) / 120.0 * z, atol=1e-6)
    np.testing.assert_array_equal(table[:, 4:], frames[6].reshape(-1, 3))  # source frame 6 = sequence 3
    # depth PNGs: 8-bit RGB at the frame size, one colour range for the whole run
    pngs = [cv2.imread(str(out / "depth_frames" / f"depth_{i:05d}.png"), cv2.IMREAD_UNCHANGED) for i in range(5)]
    assert {p.shape for p in pngs} == {(H, W, 3)} and pngs[0].dtype == np.uint8
    lo, hi = np.unravel_index(depths.argmin(), depths.shape), np.unravel_index(depths.argmax(), depths.shape)
    inferno = cv2.applyColorMap(np.array([[0, 255]], np.uint8), cv2.COLORMAP_INFERNO)[0]
    assert np.abs(pngs[lo[0]][lo[1:]].astype(int) - inferno[0]).max() <= 3
    assert np.abs(pngs[hi[0]][hi[1:]].astype(int) - inferno[1]).max() <= 3


def test_vis_mp4_plays_at_padded_size(full_run):
    cap = cv2.VideoCapture(str(full_run["out"] / "mice_vis.mp4"))
    shapes = []
    while (item := cap.read())[0]:
        shapes.append(item[1].shape)
    assert shapes == [(H + 1, W + 1, 3)] * 5
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(5)  # the sampled rate: plays at real speed


def test_callbacks(full_run):
    assert full_run["progress"][-1] == 100 and full_run["progress"] == sorted(full_run["progress"])
    assert full_run["progress"][:5] == [20, 40, 60, 80, 100]
    assert full_run["records_written"][:5] == [1, 2, 3, 4, 5]   # each frame is on disk before the next is read
    previews = full_run["previews"]
    assert [p["frame_index"] for p in previews] == [0, 2, 4, 6, 8]
    assert previews[0]["overlay"].shape == (H, W, 3) and previews[0]["overlay"].dtype == np.uint8
    depths = np.load(full_run["out"] / "mice_depths.npz")["depths"]
    assert previews[2]["depth_stats"]["max"] == pytest.approx(float(depths[2].max()))


def test_rerun_resumes_without_duplicates(tmp_path, tiny_vda_checkpoint, model):
    video = tmp_path / "clip.mp4"
    frames = write_video(video, n=6)
    ckpt_root = tmp_path / "ckpt"
    ckpt_root.mkdir()
    shutil.copy(tiny_vda_checkpoint, ckpt_root)
    kwargs = dict(input_size=INPUT_SIZE, checkpoint_root=str(ckpt_root), save_npz=True, save_exr=True,
                  save_point_clouds=True)
    out = tmp_path / "out"

    def stop_after(n):
        def callback(percent):
            if percent >= n * 100 // 6:
                raise KeyboardInterrupt
        return callback

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C after the 3rd frame
        run_video_depth_anything(str(video), str(out), progress_callback=stop_after(3), **kwargs)
    assert [r["frame_index"] for r in read_lines(out / "depth.ndjson")] == [0, 1, 2]
    assert not list(out.rglob(".tmp-*"))

    run_video_depth_anything(str(video), str(out), **kwargs)
    records = read_lines(out / "depth.ndjson")
    assert [r["frame_index"] for r in records] == list(range(6))
    # with fewer frames before the stop than the warm-up length, the resumed run replays them all: the
    # result is the uninterrupted one
    depths = np.load(out / "clip_depths.npz")["depths"]
    expected = np.stack(list(stream_video_depth(model, frames, input_size=INPUT_SIZE)))
    np.testing.assert_allclose(depths, expected, rtol=1e-5, atol=1e-6)
    assert len(list((out / "point_clouds").glob("*.csv"))) == 6

    # a complete rerun computes nothing: it needs no checkpoint and leaves depth.ndjson as it is
    before = (out / "depth.ndjson").read_bytes()
    (ckpt_root / tiny_vda_checkpoint.name).unlink()
    result = run_video_depth_anything(str(video), str(out), **kwargs)
    assert (out / "depth.ndjson").read_bytes() == before
    assert len(result["point_cloud_csv"]) == 6
    np.testing.assert_array_equal(np.load(out / "clip_depths.npz")["depths"], depths)

    # other depth settings: refused with the fix named, unless overwrite
    with pytest.raises(OutputFolderError, match="input_size.*overwrite=True"):
        run_video_depth_anything(str(video), str(out), **{**kwargs, "input_size": 42})
    assert (out / "depth.ndjson").read_bytes() == before
    shutil.copy(tiny_vda_checkpoint, ckpt_root)
    run_video_depth_anything(str(video), str(out), **{**kwargs, "input_size": 42, "max_len": 1}, overwrite=True)
    assert [r["frame_index"] for r in read_lines(out / "depth.ndjson")] == [0]
    assert sorted(p.name for p in (out / "clip_depths_exr").iterdir()) == ["frame_00000.exr"]
    assert np.load(out / "clip_depths.npz")["depths"].shape == (1, H, W)


def test_batch_mode_matches_infer_video_depth(tmp_path, tiny_vda_checkpoint, model):
    video = tmp_path / "clip.avi"
    frames = write_video(video, n=6, size=(40, 24))
    out = tmp_path / "out"
    result = run_video_depth_anything(str(video), str(out), input_size=INPUT_SIZE, streaming=False, save_npz=True,
                                      checkpoint_root=str(tiny_vda_checkpoint.parent), max_res=30)
    records = read_lines(out / "depth.ndjson")
    assert [(r["imageWidth"], r["imageHeight"]) for r in records] == [(30, 18)] * 6   # max_res: longer side 30
    assert list(result) == ["output_dir", "depth_ndjson", "npz"]
    small = np.stack([cv2.resize(f, (30, 18), interpolation=cv2.INTER_AREA) for f in frames])
    expected = infer_video_depth(model, small, input_size=INPUT_SIZE)
    np.testing.assert_allclose(np.load(out / "clip_depths.npz")["depths"], expected, rtol=1e-5, atol=1e-6)


def test_batch_resume_continues_the_uninterrupted_alignment_chain(tmp_path, tiny_vda_checkpoint, model, monkeypatch):
    # Ctrl-C after 4 of 6 frames, with a streaming warm-up (2) shorter than what was done, as in a long video
    monkeypatch.setattr(run_module, "WARMUP", 2)
    video = tmp_path / "clip.avi"
    frames = write_video(video, n=6, size=(30, 18))
    out = tmp_path / "out"
    kwargs = dict(input_size=INPUT_SIZE, streaming=False, save_npz=True,
                  checkpoint_root=str(tiny_vda_checkpoint.parent))

    def stop_after_4(percent):
        if percent >= 4 * 100 // 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_video_depth_anything(str(video), str(out), progress_callback=stop_after_4, **kwargs)
    assert len(read_lines(out / "depth.ndjson")) == 4
    run_video_depth_anything(str(video), str(out), **kwargs)
    assert [r["frame_index"] for r in read_lines(out / "depth.ndjson")] == list(range(6))
    # same process, same threads, same window: equal up to float32 summation order (1e-5)
    expected = infer_video_depth(model, frames, input_size=INPUT_SIZE)
    np.testing.assert_allclose(np.load(out / "clip_depths.npz")["depths"], expected, rtol=1e-5, atol=1e-6)


def test_a_run_leaves_the_temp_files_of_another_run_writing_there(tmp_path, tiny_vda_checkpoint):
    video = tmp_path / "clip.avi"
    write_video(video, n=2, size=(30, 18))
    out = tmp_path / "out"
    out.mkdir()
    killed = out / f"{TEMP_PREFIX}killed.ndjson"  # left by a run killed two hours ago
    killed.write_text("{")
    os.utime(killed, (time.time() - 7200,) * 2)
    kwargs = dict(input_size=INPUT_SIZE, checkpoint_root=str(tiny_vda_checkpoint.parent))
    with atomic_path(out / "notes.txt") as writing:  # another run, in the middle of an atomic write here
        writing.write_text("written by the other run")
        run_video_depth_anything(str(video), str(out), **kwargs)
        assert writing.exists() and not killed.exists()
    assert (out / "notes.txt").read_text() == "written by the other run"
    assert [r["frame_index"] for r in read_lines(out / "depth.ndjson")] == [0, 1]


def test_region_labels_in_point_clouds(tmp_path, tiny_vda_checkpoint):
    video = tmp_path / "mice.mp4"
    write_video(video, n=2)
    (tmp_path / "mice").mkdir()
    (tmp_path / "mice" / "mice_000000001.json").write_text(json.dumps({
        "imageWidth": W * 2, "imageHeight": H * 2,
        "shapes": [{"label": "nest", "shape_type": "rectangle", "points": [[0, 0], [20, 20]]}]}))
    result = run_video_depth_anything(str(video), str(tmp_path / "mice"), input_size=INPUT_SIZE,
                                      checkpoint_root=str(tiny_vda_checkpoint.parent), save_point_clouds=True,
                                      include_region_labels=True)
    first, second = (list(csv.reader(open(p, newline=""))) for p in result["point_cloud_csv"])
    assert first[0] == ["x", "y", "z", "intensity", "red", "green", "blue"]          # frame 0: no shapes
    assert second[0] == ["x", "y", "z", "intensity", "region", "red", "green", "blue"]
    regions = np.array([row[4] for row in second[1:]]).reshape(H, W)
    assert (regions[:10, :10] == "nest").all() and (regions[11:, :] == "").all() and (regions[:, 11:] == "").all()


def test_metric_model_records_metres(tmp_path, tiny_vda_checkpoint):
    video = tmp_path / "clip.mp4"
    write_video(video, n=2)
    root = tmp_path / "ckpt"
    root.mkdir()
    shutil.copy(tiny_vda_checkpoint, root / "metric_video_depth_anything_vits.pth")  # same architecture and keys
    result = run_video_depth_anything(str(video), str(tmp_path / "out"), input_size=INPUT_SIZE, metric=True,
                                      checkpoint_root=str(root), save_point_clouds=True, point_clouds_as_depth=True)
    dm = read_lines(tmp_path / "out" / "depth.ndjson")[0]["otherData"]["depth_map"]
    assert (dm["kind"], dm["units"], dm["model"]) == ("depth", "m", "metric_video_depth_anything_vits")
    table = np.loadtxt(result["point_cloud_csv"][0], delimiter=",", skiprows=1)
    assert table.shape == (W * H, 7)                                    # metric: z is the value, never inverted
    np.testing.assert_allclose(table[:, 2], decode_depth({"otherData": {"depth_map": dm}}).ravel(),
                               atol=float(dm["scale"]["max"] - dm["scale"]["min"]) / 65535 + 1e-6)


def test_precision_is_checked_first_and_recorded(tmp_path, tiny_vda_checkpoint):
    """A contradictory precision fails before anything is written; the folder's settings name the precision,
    so a rerun in another one does not mix its frames in."""
    from preprocess.video_depth.inference import native_bf16

    video = tmp_path / "clip.mp4"
    write_video(video, n=2)
    out, kwargs = tmp_path / "out", dict(input_size=INPUT_SIZE, checkpoint_root=str(tiny_vda_checkpoint.parent),
                                         device="cpu")
    with pytest.raises(ValueError, match="contradicts precision 'bf16'"):
        run_video_depth_anything(str(video), str(out), fp32=True, precision="bf16", **kwargs)
    assert not out.exists()
    if not native_bf16():
        pytest.skip("this CPU has no native bf16 matmul (AVX512-BF16 or AMX)")
    run_video_depth_anything(str(video), str(out), precision="bf16", **kwargs)
    assert json.loads((out / "depth.ndjson").read_text().splitlines()[0])["frame_index"] == 0
    with pytest.raises(OutputFolderError, match="precision: 'bf16' -> 'fp32'"):
        run_video_depth_anything(str(video), str(out), **kwargs)
