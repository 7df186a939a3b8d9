"""Priors that share one scale/shift over a sequence (video depth): one pooled alignment to the sparse points,
``depth_loss.alignment`` resolved from the priors, and the video tool's ``depth.ndjson`` as a depth folder."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from preprocess.depth_png import DepthFileError
from preprocess.video_depth import ndjson
from s3dgs import alignment, example
from s3dgs.example import HEIGHT, WIDTH
from s3dgs.data.priors import frame_number
from s3dgs.data.scene import View
from s3dgs.trainer import TrainError, Trainer

REPO_ROOT = Path(__file__).resolve().parents[2]
H, W, F = 24, 32, 30.0
A, B = 3.0, 0.1  # the sequence's one affine: true inverse depth = A * prior + B


def _cfg(*overrides):
    with initialize_config_dir(str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def _sequence(scales: list[float], per_view: int = 8, outliers: float = 0.2):
    """Views of different surfaces (camera i moved 0.3*i along x), each seeing ``per_view`` exact points of its own
    (fewer than a per-image fit needs), a share ``outliers`` moved along their rays; view i's prior is
    ``(1/z - B) / scales[i]``: one affine for the sequence when every scale is ``A``."""
    g = torch.Generator().manual_seed(0)
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    K = torch.tensor([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]])
    views, points = [], []
    for i, s in enumerate(scales):
        depth = 2 + 0.5 * i + 3 * v / H + 0.5 * torch.sin(6 * u / W)
        c2w = torch.eye(4)
        c2w[0, 3] = 0.3 * i
        pix = torch.randperm(H * W, generator=g)[:per_view]
        z = depth.reshape(-1)[pix]
        cam = torch.stack([(u.reshape(-1)[pix] - W / 2) / F * z, (v.reshape(-1)[pix] - H / 2) / F * z, z], -1)
        bad = torch.rand(per_view, generator=g) < outliers
        off = 0.3 + 0.4 * torch.rand(int(bad.sum()), 1, generator=g)
        cam[bad] *= 1 + torch.where(torch.rand(int(bad.sum()), 1, generator=g) < 0.5, -off, off)  # 30-70% along rays
        ids = np.arange(len(points) * per_view, (len(points) + 1) * per_view)
        points.append(cam + c2w[:3, 3])
        views.append(View(f"frame_{i:03d}.png", f"frame_{i:03d}", torch.zeros(H, W, 3), K, c2w, prior=(1 / depth - B) / s,
                          prior_valid=torch.ones(H, W, dtype=torch.bool), point_ids=ids))
    return views, torch.cat(points)


def test_sequence_alignment_recovers_the_one_affine_where_per_image_fits_cannot():
    views, pts = _sequence([A] * 6)
    fit = alignment.sequence_alignment(views, pts, "inverse_depth")
    assert fit == pytest.approx((A, B), rel=1e-3)
    fits, failed = alignment.anchored_alignments(views, pts, "inverse_depth")
    assert fits == {} and set(failed.values()) == {"fewer than 10 sparse points seen"}  # 8 points each
    # priors normalised per image (a different scale per frame): no one line holds half the points
    views, pts = _sequence([1.0, 3.0, 9.0, 27.0, 0.3, 81.0], per_view=20, outliers=0.0)
    assert "inliers" in alignment.sequence_alignment(views, pts, "inverse_depth")
    assert alignment.sequence_alignment(views, pts[:0], "inverse_depth") == "the dataset has no sparse points"


def test_sequence_alignments_keep_the_shared_line_where_points_are_few_and_correct_warps_where_many():
    views, pts = _sequence([A] * 6, per_view=8)
    line = alignment.sequence_alignment(views, pts, "inverse_depth")
    fits = alignment.sequence_alignments(views, pts, "inverse_depth", line, max_nodes=4)
    assert set(fits) == {v.key for v in views} and all(f == line for f in fits.values())
    # 200 points per view; frame 0's prior tilted (its inverse depth scaled by 0.85 on the left, 1.15 on the right)
    views, pts = _sequence([A] * 6, per_view=200, outliers=0.1)
    u = (torch.arange(W) + 0.5) / W
    true_disp = A * views[0].prior + B
    views[0].prior = (true_disp / (1 + 0.3 * (u - 0.5)) - B) / A
    line = alignment.sequence_alignment(views, pts, "inverse_depth")
    fits = alignment.sequence_alignments(views, pts, "inverse_depth", line, max_nodes=4)
    assert all(isinstance(f, alignment.ScaleField) for f in fits.values())
    scale, offset = fits[views[0].key].maps(H, W)
    field_err = ((scale * views[0].prior + offset) / true_disp - 1).abs().mean()
    line_err = ((line[0] * views[0].prior + line[1]) / true_disp - 1).abs().mean()
    assert field_err < 0.02 < 0.06 < line_err  # 0.011 vs 0.076: the field removes most of the tilt


def test_example_sequence_priors_share_one_distortion_and_jitter_moves_each_frame():
    depth = 2 + np.random.default_rng(1).uniform(0, 3, (HEIGHT, WIDTH))
    shared = example.draw_distortion(np.random.default_rng(0))
    a, b = (example.make_prior(depth, np.random.default_rng(seed), shared) for seed in (1, 2))
    assert np.abs(a - b).max() < 0.1 * a.std()  # the same map up to each frame's noise
    c = example.make_prior(depth, np.random.default_rng(2), shared, jitter=0.2)
    (scale, shift), *_ = np.linalg.lstsq(np.stack([b.ravel(), np.ones(b.size)], 1), c.ravel(), rcond=None)
    assert 0.8 <= scale <= 1.2 and (abs(scale - 1) > 1e-3 or abs(shift) > 1e-3)
    assert np.abs(scale * b + shift - c).max() < 1e-4 * np.abs(c).max()  # jitter is one affine per frame


def test_frame_number_is_the_last_integer_in_the_stem():
    assert [frame_number(s) for s in ("frame_000123", "00042", "cam2_0007", "view")] == [123, 42, 7, None]


def test_alignment_auto_follows_the_priors_and_per_sequence_needs_anchored(example_dir, tmp_path, caplog):
    t = Trainer(_cfg(f"data_dir={example_dir}"), tmp_path)
    assert t.scene.prior_normalization == "per_image" and t.depth.alignment == "per_image"
    # per-image priors forced into one fit: unreliable, so per-image fits, said once
    caplog.clear()
    t = Trainer(_cfg(f"data_dir={example_dir}", "depth_loss.alignment=per_sequence"), tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert t.depth.alignment == "per_image" and len(t.depth.fits) == 21 and len(set(t.depth.fits.values())) == 21
    assert len(warnings) == 1 and "pooled fit to the sparse points is unreliable" in warnings[0]
    with pytest.raises(TrainError, match="depth_loss.alignment=per_sequence .* depth_loss=ssi does not: use "
                                         "depth_loss=anchored"):
        Trainer(_cfg(f"data_dir={example_dir}", "depth_loss=ssi", "depth_loss.alignment=per_sequence"), tmp_path)


def test_per_sequence_example_trains_with_one_alignment(run_train, tmp_path):
    scene = example.write_example(tmp_path / "seq", priors="sequence")
    meta = json.loads((scene / "depth" / "depth_meta.json").read_text())
    assert meta["extra"]["normalization"] == "per_sequence"
    run_train(f"data_dir={scene}", "steps=3", "save_renders=false", f"hydra.run.dir={tmp_path / 'run'}")
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {k: m["depth"][k] for k in ("loss", "alignment", "views_with_prior", "views_anchored", "views_scale_field",
                                       "train_views", "views_trusted")} == {
        "loss": "anchored", "alignment": "per_sequence", "views_with_prior": 21, "views_anchored": 21,
        "views_scale_field": 21, "train_views": 21, "views_trusted": 21}  # dense points: own fields


def _write_ndjson(folder: Path, gt_dir: Path, first_frame: int = 0) -> Path:
    """The video tool's output for the example: frame ``first_frame + i`` holds view i's true inverse depth
    under one affine (a sequence-consistent relative prior), written with the tool's own record writer."""
    folder.mkdir()
    with ndjson.RecordAppender(folder / ndjson.NDJSON_NAME) as out:
        for i, f in enumerate(sorted(gt_dir.glob("view_*.npy"))):
            disp = 0.5 / np.load(f) + 0.2
            out.append(ndjson.depth_record(disp, frame_index=first_frame + i, video_name="clip.mp4",
                                           kind="inverse_depth", units=None, model="video_depth_anything_vits"))
    return folder


def _maps_to(fit: alignment.Alignment, scale: float, offset: float) -> bool:
    """``fit`` is ``scale * prior + offset`` on every pixel of an 80x60 view (one line, or a field of the example's
    dense points, flat on these exact priors) within 5% / 0.02."""
    s, o = (torch.as_tensor(m) for m in alignment.alignment_maps(fit, HEIGHT, WIDTH))
    return bool(torch.allclose(s, torch.tensor(scale), rtol=0.05)
                and torch.allclose(o, torch.tensor(offset), atol=0.02))


def test_depth_ndjson_folder_as_depth_dir(run_train, example_dir, tmp_path):
    vda = _write_ndjson(tmp_path / "vda", example_dir / "gt_depth")
    t = Trainer(_cfg(f"data_dir={example_dir}", f"depth_dir={vda}"), tmp_path)
    assert t.scene.prior_normalization == "per_sequence" and t.depth.alignment == "per_sequence"
    assert _maps_to(next(iter(t.depth.fits.values())), 2.0, -0.4)  # 1/z = 2 * prior - 0.4
    run_train(f"data_dir={example_dir}", f"depth_dir={vda}", "steps=3", "save_renders=false",
              f"hydra.run.dir={tmp_path / 'run'}")
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["depth"]["alignment"] == "per_sequence" and m["depth"]["views_with_prior"] == 21
    # frame indices that no image name carries: one line naming the file, an image and the indices there
    wrong = _write_ndjson(tmp_path / "wrong", example_dir / "gt_depth", first_frame=100)
    proc = run_train(f"data_dir={example_dir}", f"depth_dir={wrong}", f"hydra.run.dir={tmp_path / 'r2'}", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {wrong / 'depth.ndjson'}: no image matches a frame_index (image 'view_00' -> frame 0; indices "
        "available: 100, 101, 102, ..., 123 (24 records)); name the images by source frame index (e.g. "
        "frame_000123.png), map them in depth_frames.json beside it, or set depth_dir to a folder of <stem>.png "
        "priors")


def test_depth_frames_json_maps_images_to_frames(example_dir, tmp_path):
    """Images not named by frame: an explicit {key: frame index} map beside depth.ndjson matches them; a key
    the map leaves out trains without a prior; a malformed map is one error naming it."""
    vda = _write_ndjson(tmp_path / "vda", example_dir / "gt_depth", first_frame=100)
    mapping = {f"view_{i:02d}": 100 + i for i in range(24) if i != 5}
    (vda / "depth_frames.json").write_text(json.dumps(mapping))
    t = Trainer(_cfg(f"data_dir={example_dir}", f"depth_dir={vda}"), tmp_path)
    with_prior = {v.key for v in t.scene.train + t.scene.test if v.prior is not None}
    assert with_prior == set(mapping) & {v.key for v in t.scene.train + t.scene.test} and "view_05" not in with_prior
    assert _maps_to(next(iter(t.depth.fits.values())), 2.0, -0.4)
    (vda / "depth_frames.json").write_text(json.dumps({"view_00": "100"}))
    with pytest.raises((DepthFileError, TrainError), match="depth_frames.json: not an object of non-negative integers"):
        Trainer(_cfg(f"data_dir={example_dir}", f"depth_dir={vda}"), tmp_path)
