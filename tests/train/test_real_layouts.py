"""The real Hydra app on the example scene re-written in the layouts real captures come in: nerfstudio with and
without ``ply_file_path``, and Blender RGBA (an object on a transparent background)."""

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import plyfile
import pytest
import torch
from PIL import Image

from s3dgs.data.frames import read_colmap
from s3dgs.init import random_init_box

GL = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV <-> OpenGL camera axes


def _frames(example_dir):
    return read_colmap(example_dir)


def _write_nerfstudio(example_dir, root, with_points: bool):
    layout = _frames(example_dir)
    (root / "images").mkdir(parents=True)
    frames = []
    for f in layout.frames:
        shutil.copy(f.path, root / "images" / f.name)
        frames.append({"file_path": f"images/{f.name}", "transform_matrix": (f.camtoworld @ GL).tolist()})
    K = layout.frames[0].K
    meta = {"camera_model": "OPENCV", "fl_x": K[0, 0], "fl_y": K[1, 1], "cx": K[0, 2], "cy": K[1, 2],
            "w": layout.frames[0].width, "h": layout.frames[0].height, "frames": frames}
    if with_points:
        v = np.empty(len(layout.points), [(c, "f4") for c in "xyz"] + [(c, "u1") for c in ("red", "green", "blue")])
        v["x"], v["y"], v["z"] = layout.points.T
        v["red"], v["green"], v["blue"] = layout.points_rgb.T
        plyfile.PlyData([plyfile.PlyElement.describe(v, "vertex")]).write(str(root / "sparse_pc.ply"))
        meta["ply_file_path"] = "sparse_pc.ply"
    (root / "transforms.json").write_text(json.dumps(meta))
    return layout


def _trained_from(run_dir) -> int:
    return int(re.search(r"training (\d+) Gaussians", (run_dir / "train.log").read_text()).group(1))


def test_nerfstudio_ply_file_path_initialises_from_those_points(run_train, example_dir, tmp_path):
    layout = _write_nerfstudio(example_dir, tmp_path / "ns", with_points=True)
    run = tmp_path / "run"
    run_train(f"data_dir={tmp_path / 'ns'}", "steps=10", "save_renders=false", "lambda_depth=0", f"hydra.run.dir={run}")
    assert _trained_from(run) == len(layout.points) > 500
    m = json.loads((run / "metrics.json").read_text())
    assert m["test"]["psnr"] > 12  # SfM-initialised: already close after 10 steps (random init gives ~8 dB)


def test_nerfstudio_without_points_gets_the_documented_random_init(run_train, example_dir, tmp_path):
    layout = _write_nerfstudio(example_dir, tmp_path / "ns", with_points=False)
    run = tmp_path / "run"
    run_train(f"data_dir={tmp_path / 'ns'}", "steps=2", "save_renders=false", "lambda_depth=0", "init.num_random=700",
              f"hydra.run.dir={run}")
    assert _trained_from(run) == 700
    train = [f for i, f in enumerate(layout.frames) if i % 8]  # the default split's training views
    centre, half = random_init_box(torch.tensor(np.stack([f.camtoworld for f in train]), dtype=torch.float32),
                                   torch.tensor(np.stack([f.K for f in train]), dtype=torch.float32),
                                   torch.tensor([[f.width, f.height] for f in train]), extent=1.0)
    line = re.search(r"700 random Gaussians in a cube of half-size ([\d.]+) around \[(.*)\]",
                     (run / "train.log").read_text())
    assert float(line.group(1)) == pytest.approx(half, rel=1e-3) and 0.5 < half < 3  # the plant, not the room
    assert np.allclose([float(c) for c in line.group(2).split(",")], centre.numpy(), atol=2e-3)


def _write_blender_rgba(example_dir, root):
    """The example's views as RGBA: what lies nearer than 3.2 (the plant, pot, box, ball) is opaque."""
    layout = _frames(example_dir)
    for split, frames in (("train", layout.frames[1::2]), ("test", layout.frames[::8])):
        (root / split).mkdir(parents=True)
        entries = []
        for f in frames:
            rgb = np.asarray(Image.open(f.path).convert("RGB"))
            stem = Path(f.name).stem
            near = np.load(example_dir / "gt_depth" / f"{stem}.npy") < 3.2
            Image.fromarray(np.dstack([rgb, np.where(near, 255, 0).astype(np.uint8)])).save(root / split / f"{stem}.png")
            entries.append({"file_path": f"./{split}/{stem}", "transform_matrix": (f.camtoworld @ GL).tolist()})
        fov = 2 * np.arctan(0.5 * f.width / f.K[0, 0])
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": fov, "frames": entries}))


def test_blender_rgba_trains_on_white_and_its_metrics_count_the_background(run_train, example_dir, tmp_path):
    _write_blender_rgba(example_dir, tmp_path / "bl")
    run = tmp_path / "run"
    run_train(f"data_dir={tmp_path / 'bl'}", "steps=20", "lambda_depth=0", f"hydra.run.dir={run}")
    m = json.loads((run / "metrics.json").read_text())
    assert "psnr_masked" not in m["test"]  # no user masks: nothing is masked
    psnrs = []
    for png in sorted((run / "renders").glob("*.png")):
        panels = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB).astype(np.float64) / 255
        render, gt = panels[:, :80], panels[:, 80:160]
        alpha = np.asarray(Image.open(tmp_path / "bl" / "test" / png.name))[..., 3]
        assert np.allclose(gt[alpha == 0], 1.0)  # transparent pixels are white in the target
        psnrs.append(-10 * np.log10(((render - gt) ** 2).mean()))  # over the full image
    assert len(psnrs) == 3
    assert np.mean(psnrs) == pytest.approx(m["test"]["psnr"], abs=0.1)  # 8-bit PNGs: not exact


def test_random_background_needs_transparent_images(run_train, example_dir, tmp_path):
    proc = run_train(f"data_dir={example_dir}", "data.background=random", f"hydra.run.dir={tmp_path / 'r'}",
                     check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: data.background=random re-composites")
