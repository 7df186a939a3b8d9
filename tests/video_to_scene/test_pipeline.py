"""``python -m preprocess.video_to_scene`` on a synthetic H.264 clip with known poses: the real CLI, pycolmap,
the tiny VDA model and the real trainer, in subprocesses."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np

from preprocess.depth_png import DepthMeta, read_depth_png
from preprocess.video_depth.vis import Mp4Writer
from video_to_scene_testing import umeyama
from s3dgs.data import colmap

from .conftest import VIDEO_FPS, cli_args


def registered_centres(out):
    """Camera centres ``{image name: [3]}`` of the dataset's COLMAP model."""
    model = colmap.read_model(out / "sparse" / "0")
    return {im.name: np.linalg.inv(im.world_to_camera())[:3, 3] for im in model.images.values()}


def test_sharpest_frame_of_each_bucket_is_kept_and_recorded(scene, clip):
    out, report, _ = scene
    _, sharp, _ = clip
    frames = json.loads((out / "frames.json").read_text())
    assert [f["source_index"] for f in frames["frames"]] == sharp.tolist()  # the sharp copy of every pose
    assert [f["time_s"] for f in frames["frames"]] == [i / VIDEO_FPS for i in sharp]
    assert [f["name"] for f in frames["frames"]] == [f"frame_{i:06d}.jpg" for i in sharp]
    assert report["frames"]["sampled"] == len(sharp) and report["frames"]["size"] == [320, 240]


def test_frames_register_on_the_true_path(scene, clip):
    out, report, run = scene
    _, _, centres = clip
    names = [f"frame_{i:06d}.jpg" for i in clip[1]]
    est = registered_centres(out)
    assert report["frames"]["registered"] == len(est) >= 0.9 * len(names)
    assert report["frames"]["unregistered"] == [n for n in names if n not in est]
    src = np.stack([est[n] for n in names if n in est])
    dst = np.stack([centres[k] for k, n in enumerate(names) if n in est])
    s, rot, t = umeyama(src, dst)
    path_length = np.linalg.norm(np.diff(centres, axis=0), axis=1).sum()
    # 1% of the path: far above what SIFT on these textures gives (about 0.05% measured), far below a wrong pose
    assert np.linalg.norm(s * src @ rot.T + t - dst, axis=1).max() < 0.01 * path_length
    assert report["camera"]["model"] == "PINHOLE"  # --undistort
    assert abs(report["camera"]["params"][0] - 0.8 * 320) < 0.03 * 256  # the renders' focal length
    assert report["sfm"]["points"] > 500 and report["sfm"]["mean_reprojection_error_px"] < 1.0
    assert f"next: python -m s3dgs.train data_dir={out} lambda_depth=0.1" in run.stdout
    assert report["next"] == f"python -m s3dgs.train data_dir={out} lambda_depth=0.1"


def test_priors_are_made_on_the_training_images(scene):
    out, report, _ = scene
    images = sorted((out / "images").iterdir())
    meta = DepthMeta.load(out / "depth")
    assert (meta.backend, meta.extra["normalization"]) == ("vda", "per_sequence")
    assert sorted(meta.images) == [p.stem for p in images]
    for p in images:  # same grid as the undistorted image the trainer reads
        assert read_depth_png(out / "depth" / f"{p.stem}.png").shape == cv2.imread(str(p)).shape[:2]
    assert report["depth"] == {"backend": "vda", "written": len(images), "skipped": 0, "total": len(images)}


def test_trainer_trains_on_the_result(scene, module_env, tmp_path):
    out, report, _ = scene
    run_dir = tmp_path / "run"
    cmd = report["next"].split()[1:] + ["steps=5", "data.downscale=2", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run([sys.executable, *cmd], cwd=tmp_path, env=module_env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["steps"] == 5 and m["num_train_views"] + m["test"]["num_views"] == report["frames"]["registered"]
    assert m["depth"]["views_with_prior"] == m["num_train_views"]
    assert 5 < m["test"]["psnr"] < 40


def test_rerun_does_no_work_and_a_changed_setting_redoes_only_later_stages(scene, clip, vda_root, module_env):
    out, report, _ = scene
    watched = [out / "frames.json", out / "colmap" / "database.db", out / "sparse" / "0" / "images.bin",
               out / "depth" / "depth_meta.json"]
    before = [p.stat().st_mtime_ns for p in watched]
    run = subprocess.run(cli_args(clip[0], out, vda_root, "--undistort"), env=module_env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    again = json.loads((out / "scene.json").read_text())
    assert all(s["skipped"] and s["seconds"] == 0 for s in again["stages"].values())
    assert [p.stat().st_mtime_ns for p in watched] == before
    assert again["frames"] == report["frames"] and again["camera"] == report["camera"]

    run = subprocess.run(cli_args(clip[0], out, vda_root), env=module_env, capture_output=True, text=True,
                         timeout=300)  # without --undistort: the dataset and the priors are redone, nothing else
    assert run.returncode == 0, run.stderr[-3000:]
    third = json.loads((out / "scene.json").read_text())
    assert {k for k, s in third["stages"].items() if not s["skipped"]} == {"dataset", "depth"}
    assert third["camera"]["model"] == "SIMPLE_RADIAL" and third["camera"]["width"] == 320
    image = out / "images" / "frame_000001.jpg"
    assert os.path.samefile(image, out / "frames" / image.name)  # a hard link, not a copy
    assert read_depth_png(out / "depth" / "frame_000001.png").shape == (240, 320)


def run_cli(env, *args):
    return subprocess.run([sys.executable, "-m", "preprocess.video_to_scene", *map(str, args), "--depth", "none"],
                          env=env, capture_output=True, text=True, timeout=300)


def one_error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "it/s" not in line and "?it" not in line]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_corrupt_video_is_one_line(tmp_path, module_env):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    proc = run_cli(module_env, bad, tmp_path / "out")
    assert proc.returncode == 2
    assert str(bad) in one_error_line(proc) and "ffmpeg" in proc.stderr
    assert not (tmp_path / "out" / ".video_to_scene" / "frames.json").exists()


def test_too_few_frames_is_one_line(tmp_path, module_env):
    short = tmp_path / "short.mp4"
    rng = np.random.default_rng(0)
    with Mp4Writer(short, (64, 48), fps=4.0) as writer:  # 1 s at 4 fps: 2 frames at --fps 2
        for _ in range(4):
            writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    proc = run_cli(module_env, short, tmp_path / "out")
    assert proc.returncode == 2
    assert "only 2 frame(s) sampled, at least 3" in one_error_line(proc)


def test_frames_that_do_not_register_fail_with_advice(tmp_path, module_env):
    folder = tmp_path / "unrelated"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):  # four pictures of different noise: nothing to match
        noise = cv2.GaussianBlur(rng.standard_normal((120, 160, 3)).astype(np.float32), (0, 0), 2.0)
        cv2.imwrite(str(folder / f"{i:02d}.png"), np.clip(128 + 400 * noise, 0, 255).astype(np.uint8))
    proc = run_cli(module_env, folder, tmp_path / "out")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert str(folder) in line and "film slower" in line
    assert not (tmp_path / "out" / "sparse").exists() and not (tmp_path / "out" / "scene.json").exists()


def write_photos(folder, n=4, seed=3) -> dict:
    """``n`` small noise JPEGs in ``folder``; returns ``{path: bytes}`` to compare with afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        cv2.imwrite(str(folder / f"IMG_{i:04d}.jpg"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return {p: p.read_bytes() for p in sorted(folder.iterdir())}


def test_photos_already_in_out_dir_images_are_refused_and_kept(tmp_path, module_env):
    scene = tmp_path / "scene"
    photos = write_photos(scene / "images")
    proc = run_cli(module_env, scene / "images", scene)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert f"{scene / 'images'}: INPUT is inside OUT_DIR where video_to_scene writes images; move it out" in line
    assert {p: p.read_bytes() for p in sorted((scene / "images").iterdir())} == photos
    assert sorted(p.name for p in scene.iterdir()) == ["images"]  # nothing else written either


def test_an_existing_dataset_in_out_dir_is_refused_and_kept(tmp_path, module_env):
    scene = tmp_path / "scene"
    theirs = write_photos(scene / "images") | write_photos(scene / "depth", 2, seed=4)
    write_photos(tmp_path / "shots")
    proc = run_cli(module_env, tmp_path / "shots", scene)
    assert proc.returncode == 2
    assert f"{scene}: OUT_DIR holds files video_to_scene did not write (depth, images); choose a new or empty " \
           "OUT_DIR, or move them out" in one_error_line(proc)
    assert {p: p.read_bytes() for p in sorted([*(scene / "images").iterdir(), *(scene / "depth").iterdir()])} \
        == theirs
    assert sorted(p.name for p in scene.iterdir()) == ["depth", "images"]


def test_an_input_folder_inside_out_dir_is_read_in_place_and_kept(tmp_path, module_env):
    out = tmp_path / "out"
    shots = write_photos(out / "shots")  # noise: read, features and matches made, then mapping fails
    for _ in range(2):  # the rerun resumes in the same folder
        proc = run_cli(module_env, out / "shots", out)
        assert proc.returncode == 2 and "film slower" in one_error_line(proc)
    assert {p: p.read_bytes() for p in sorted((out / "shots").iterdir())} == shots
    assert len(list((out / "frames").iterdir())) == 4
    assert set(json.loads((out / ".video_to_scene" / "manifest.json").read_text())["written"]) == \
        {"frames", "frames.json", "colmap"}
