"""Sensor depth from a nerfstudio dataset (issue 19 item 3): each frame's ``depth_file_path`` is a metric prior, one
scale relates it to the scene, and it is trusted as measured. The dataset is the example scene written by
``s3dgs.example --sensor-depth`` (millimetre PNGs with holes, 0.4 m per scene unit)."""

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from preprocess.depth_files import read_depth_file
from s3dgs import example
from s3dgs.data.scene import load_scene
from s3dgs.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sensor_scene(tmp_path_factory) -> Path:
    return example.write_example(tmp_path_factory.mktemp("sensor") / "scene", sensor_depth=True)


@pytest.fixture
def sensor_copy(sensor_scene, tmp_path) -> Path:
    """A writable copy of the sensor dataset (tests break or rewrite files in it)."""
    return Path(shutil.copytree(sensor_scene, tmp_path / "scene"))


def _edit_transforms(root: Path, edit) -> None:
    meta = json.loads((root / "transforms.json").read_text())
    edit(meta)
    (root / "transforms.json").write_text(json.dumps(meta))


def test_trains_with_metric_sensor_depth_trusted_under_one_scale(run_train, sensor_scene, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(f"data_dir={sensor_scene}", "steps=20", "data.num_train_views=6", "save_renders=false",
                     f"hydra.run.dir={run_dir}")
    depth = json.loads((run_dir / "metrics.json").read_text())["depth"]
    # depth/ holds the sensor PNGs: not guessed as a folder of monocular priors
    assert {k: depth[k] for k in ("loss", "alignment", "kind", "source", "views_with_prior", "views_anchored",
                                  "train_views", "views_trusted", "mean_weight")} == {
        "loss": "anchored", "alignment": "per_scene", "kind": "depth", "source": "sensor", "views_with_prior": 6,
        "views_anchored": 6, "train_views": 6, "views_trusted": 6, "mean_weight": 1.0}
    assert all(v["state"] == "trusted" and v["why"] == "sensor depth" for v in depth["views"].values())
    logs = proc.stdout + proc.stderr
    scale = re.search(r"sensor depth, one scale for the scene: ([\d.]+) metres per scene unit", logs)
    assert scale and float(scale.group(1)) == pytest.approx(example.SENSOR_UNIT_M, rel=0.01)
    assert "probe" not in logs


def test_holes_are_invalid_pixels(sensor_scene):
    scene = load_scene(sensor_scene)
    assert (scene.prior_kind, scene.prior_source) == ("depth", "sensor")
    for v in scene.views:
        mm = read_depth_file(sensor_scene / "depth" / f"{v.key}.png")
        assert torch.equal(v.prior_valid, torch.from_numpy(mm > 0))
        assert 0.15 < 1 - float(v.prior_valid.float().mean()) < 0.25
        assert torch.allclose(v.prior[v.prior_valid], torch.from_numpy(mm[mm > 0] * 1e-3))
        assert v.prior_step == pytest.approx(1e-3)
        # exact depth x 0.4 m, 2% noise
        rel = v.prior[v.prior_valid] / (example.SENSOR_UNIT_M * v.gt_depth[v.prior_valid]) - 1
        assert float(rel.abs().median()) < 0.03


def test_depth_unit_scale_factor(sensor_copy):
    """Depth in metres as float .npy (NaN and negative holes) with a top-level factor 1.0, and one frame still in
    millimetres with its own factor: the same priors as the millimetre PNGs."""
    before = {v.key: v for v in load_scene(sensor_copy).views}
    (sensor_copy / "metres").mkdir()
    for i, key in enumerate(before):
        mm = read_depth_file(sensor_copy / "depth" / f"{key}.png")
        metres = np.where(mm > 0, mm * 1e-3, np.nan if i % 2 else -1.0).astype(np.float32)
        np.save(sensor_copy / "metres" / f"{key}.npy", mm if key == "view_05" else metres)

    def to_metres(meta: dict) -> None:
        meta["depth_unit_scale_factor"] = 1.0
        for fr in meta["frames"]:
            key = Path(fr["file_path"]).stem
            fr["depth_file_path"] = f"metres/{key}.npy"
            if key == "view_05":
                fr["depth_unit_scale_factor"] = 0.001
    _edit_transforms(sensor_copy, to_metres)
    after = load_scene(sensor_copy)
    for v in after.views:
        assert torch.equal(v.prior_valid, before[v.key].prior_valid)
        assert torch.allclose(v.prior, before[v.key].prior, rtol=1e-6)
        assert v.prior_step == pytest.approx(1e-3 if v.key == "view_05" else 0.0)


def test_missing_or_unreadable_depth_file_is_one_warning_and_no_prior(sensor_copy, caplog):
    (sensor_copy / "depth" / "view_03.png").unlink()
    (sensor_copy / "depth" / "view_05.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING):
        scene = load_scene(sensor_copy)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2
    assert "images/view_03.png" in warnings[0] and "depth/view_03.png: not a file" in warnings[0]
    assert "images/view_05.png" in warnings[1] and "view_05.png" in warnings[1]
    assert all("trains without a depth prior" in w for w in warnings)
    assert [v.key for v in scene.views if v.prior is None] == ["view_03", "view_05"]
    assert scene.prior_source == "sensor"


def test_explicit_depth_dir_wins_with_one_log_line(sensor_scene, example_dir, caplog):
    with caplog.at_level(logging.INFO):
        scene = load_scene(sensor_scene, depth_dir=example_dir / "depth")
    assert (scene.prior_kind, scene.prior_source) == ("inverse_depth", "depth_dir")
    assert sum("its priors are used, not the sensor depth (depth_file_path) of 24 frames" in r.getMessage()
               for r in caplog.records) == 1


def _cfg(*overrides):
    with initialize_config_dir(str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_without_sparse_points_the_poses_are_taken_as_metric(sensor_copy, tmp_path, caplog):
    t = Trainer(_cfg(f"data_dir={sensor_copy}"), tmp_path)
    scales = {s for s, _ in t.depth.fits.values()}
    assert len(scales) == 1 and scales.pop() == pytest.approx(1 / example.SENSOR_UNIT_M, rel=0.01)
    assert len(t.depth.fits) == 21 and all(o == 0 for _, o in t.depth.fits.values())
    _edit_transforms(sensor_copy, lambda meta: meta.pop("ply_file_path"))
    with caplog.at_level(logging.WARNING):
        t = Trainer(_cfg(f"data_dir={sensor_copy}"), tmp_path)
    assert set(t.depth.fits.values()) == {(1.0, 0.0)} and len(t.depth.fits) == 21
    assert any("assuming the scene is metric (scale 1)" in r.getMessage() for r in caplog.records)
    assert {tr.state for tr in t.trust.values()} == {"trusted"}
