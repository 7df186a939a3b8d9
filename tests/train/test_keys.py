"""Views are keyed by their path, not their stem: a Blender scene with ``train/r_0.png`` and ``test/r_0.png``
gives each view its own prior and ground truth, and writes one render and one metrics row per view."""

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from hydra import compose, initialize_config_dir

from preprocess.depth_png import DepthMeta, read_depth_png
from s3dgs.trainer import Trainer, train

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_blender_views_with_repeated_stems_keep_their_own_files(blender_scene, tmp_path):
    with initialize_config_dir(str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data_dir={blender_scene}", "steps=4", "init.num_random=200"])
    trainer = Trainer(cfg, tmp_path)
    views = trainer.scene.views
    assert sorted(v.key for v in trainer.scene.test) == ["test/r_0", "test/r_1", "test/r_2"]
    assert len({v.key for v in views}) == len(views) == 24
    meta = DepthMeta.load(blender_scene / "depth")
    for v in views:  # priors at the views' resolution: attached unresampled, so equal to the file's decoding
        own = meta.to_float(v.key, read_depth_png(blender_scene / "depth" / f"{v.key}.png"))
        np.testing.assert_allclose(v.prior.numpy(), own, rtol=1e-6)
        gt = np.load(blender_scene / "gt_depth" / f"{v.key}.npy")
        np.testing.assert_array_equal(v.gt_depth.numpy(), np.where(np.isfinite(gt) & (gt > 0), gt, 0))
    by_key = {v.key: v for v in views}
    assert not torch.equal(by_key["train/r_0"].prior, by_key["test/r_0"].prior)

    metrics = train(cfg, tmp_path)
    assert metrics["depth"]["views_with_prior"] == 21
    assert sorted(metrics["views"]["test"]) == ["test/r_0", "test/r_1", "test/r_2"]
    assert len(metrics["views"]["train"]) == 21 and "train/r_0" in metrics["views"]["train"]
    rows = json.loads((tmp_path / "metrics.json").read_text())["views"]["test"]
    assert len({row["psnr"] for row in rows.values()}) == 3  # three different views, three different scores
    renders = sorted(p.relative_to(tmp_path / "renders").as_posix() for p in (tmp_path / "renders").rglob("*.png"))
    assert renders == ["test/r_0.png", "test/r_1.png", "test/r_2.png"]
    assert cv2.imread(str(tmp_path / "renders" / "test" / "r_0.png")).shape == (30, 120, 3)
