"""Fixtures for the trainer tests: the example scene generated once per session, and a runner for the
real Hydra app in a subprocess."""

import shutil
import subprocess
from pathlib import Path

import pytest

from s3dgs import example


@pytest.fixture(scope="session")
def cache_home(tmp_path_factory) -> Path:
    """An XDG cache folder already holding the generated example scene (what ``data_dir=null`` uses)."""
    home = tmp_path_factory.mktemp("xdg_cache")
    example.write_example(home / "s3dgs" / example.VERSION)
    return home


@pytest.fixture(scope="session")
def example_dir(cache_home) -> Path:
    return cache_home / "s3dgs" / example.VERSION


@pytest.fixture
def train_env(repo_env, cache_home) -> dict[str, str]:
    return repo_env | {"XDG_CACHE_HOME": str(cache_home), "NUMBA_NUM_THREADS": "2"}


@pytest.fixture
def run_train(python, train_env, tmp_path):
    """Run ``python -m s3dgs.train ARGS`` from a folder outside the checkout; returns the CompletedProcess."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([python, "-m", "s3dgs.train", *args], cwd=cwd, env=train_env, capture_output=True,
                              text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-3000:]}")
        return proc
    return run


@pytest.fixture
def small_copy(example_dir, tmp_path) -> Path:
    """A writable copy of the example scene (tests break files in it)."""
    dst = tmp_path / "scene"
    shutil.copytree(example_dir, dst)
    return dst


@pytest.fixture(scope="session")
def blender_scene(example_dir, tmp_path_factory) -> Path:
    """The example scene at 40x30 as a NeRF/Blender layout whose stems collide: every 8th view is
    ``test/r_<i>.png``, the others ``train/r_<i>.png`` (so ``r_0``, ``r_1``, ``r_2`` are in both), with
    ``gt_depth/<split>/r_<i>.npy`` and priors ``depth/<split>/r_<i>.png`` keyed ``<split>/r_<i>``."""
    import json
    import math

    import cv2
    import numpy as np

    from preprocess.depth_png import DepthMeta, read_depth_png, write_depth_png
    from s3dgs.data import colmap

    root = tmp_path_factory.mktemp("blender") / "scene"
    model = colmap.read_model(colmap.find_model_dir(example_dir))
    cam = next(iter(model.cameras.values()))
    size = (cam.width // 2, cam.height // 2)
    meta = DepthMeta.load(example_dir / "depth")
    images = sorted(model.images.values(), key=lambda im: im.name)
    frames: dict[str, list] = {"train": [], "test": []}
    for i, im in enumerate(images):
        split = "test" if i % 8 == 0 else "train"
        key = f"{split}/r_{len(frames[split])}"
        stem = Path(im.name).stem
        for folder in (root, root / "depth", root / "gt_depth"):
            (folder / split).mkdir(parents=True, exist_ok=True)
        rgb = cv2.imread(str(example_dir / "images" / im.name))
        cv2.imwrite(str(root / f"{key}.png"), cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
        prior = read_depth_png(example_dir / "depth" / f"{stem}.png")
        write_depth_png(root / "depth" / f"{key}.png", cv2.resize(prior, size, interpolation=cv2.INTER_NEAREST))
        meta.images[key] = meta.images.pop(stem) | {"width": size[0], "height": size[1], "source": f"{key}.png"}
        gt = np.load(example_dir / "gt_depth" / f"{stem}.npy")
        np.save(root / "gt_depth" / f"{key}.npy", cv2.resize(gt, size, interpolation=cv2.INTER_NEAREST))
        c2w = np.linalg.inv(im.world_to_camera()) @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV -> OpenGL axes
        frames[split].append({"file_path": f"./{key}", "transform_matrix": c2w.tolist()})
    meta.save(root / "depth")
    angle = 2 * math.atan(0.5 * cam.width / cam.params[0])
    for split, fr in frames.items():
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": fr}))
    return root
