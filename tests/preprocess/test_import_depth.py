"""preprocess.import_depth: every file kind in, our 16-bit format out, read back by the trainer's loader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from preprocess import import_depth
from preprocess.depth_png import DepthMeta
from preprocess.images import InputError
from s3dgs.data.priors import load_priors

H, W = 6, 8
HOLES = [(0, 0), (2, 3), (5, 7)]  # written as 0, NaN and inf


def truth(seed: int = 0) -> np.ndarray:
    """Depth ``[H, W]`` in 1..5 with NaN at :data:`HOLES`."""
    d = np.random.default_rng(seed).uniform(1.0, 5.0, (H, W))
    for y, x in HOLES:
        d[y, x] = np.nan
    return d


def with_holes(d: np.ndarray) -> np.ndarray:
    """``d`` as a file would hold it: the holes as 0, NaN and inf."""
    out = np.nan_to_num(d, nan=0.0)
    out[HOLES[1]], out[HOLES[2]] = np.nan, np.inf
    return out.astype(np.float32)


def write_pfm(path: Path, a: np.ndarray, little: bool = False) -> None:
    """A single-channel PFM, rows bottom to top; big-endian (scale > 0) unless ``little``."""
    data = np.flipud(a).astype("<f4" if little else ">f4")
    path.write_bytes(f"Pf\n{a.shape[1]} {a.shape[0]}\n{-1.0 if little else 1.0}\n".encode() + data.tobytes())


def write_exr(path: Path, a: np.ndarray, channel: str = "Z") -> None:
    import OpenEXR

    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                 {channel: a.astype(np.float32)}).write(str(path))


WRITERS = {
    "npy": lambda p, a: np.save(p.with_suffix(".npy"), a),
    "npz": lambda p, a: np.savez(p.with_suffix(".npz"), depth=a),
    "exr": lambda p, a: write_exr(p.with_suffix(".exr"), a),
    "pfm": lambda p, a: write_pfm(p.with_suffix(".pfm"), a),
    "pfm_le": lambda p, a: write_pfm(p.with_suffix(".pfm"), a, little=True),
    "tiff": lambda p, a: cv2.imwrite(str(p.with_suffix(".tiff")), a),
}


def read_back(out: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """The priors through the trainer's loader (float32 [H, W], NaN where there is no value)."""
    priors = load_priors(out, keys)
    assert not priors.problems
    return {key: levels.decode() for key, levels in priors.maps.items()}


def assert_matches(got: np.ndarray, want: np.ndarray, meta: DepthMeta, key: str) -> None:
    """Same holes, and values within half a 16-bit level."""
    rec = meta.images[key]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    step = (rec["max"] - rec["min"]) / 65535
    ok = ~np.isnan(want)
    assert np.abs(got[ok] - want[ok]).max() <= step / 2 + 1e-6 * np.abs(want[ok]).max()


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_each_file_kind_round_trips_values_and_holes(tmp_path, kind):
    src = tmp_path / "src"
    src.mkdir()
    want = {f"v{i}": truth(i) for i in range(2)}
    for key, d in want.items():
        WRITERS[kind](src / key, with_holes(d))
    summary = import_depth(src, tmp_path / "out", kind="depth", quiet=True)
    assert summary.ok and summary.done == 2
    meta = DepthMeta.load(tmp_path / "out")
    got = read_back(tmp_path / "out", list(want))
    for key, d in want.items():
        assert_matches(got[key], d, meta, key)


def test_millimetre_png_becomes_metres_with_scale_and_meta(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    mm = np.arange(H * W, dtype=np.uint16).reshape(H, W) * 100 + 500  # 0.5 m .. 5.2 m
    mm[1, 1] = 0  # a sensor's hole
    cv2.imwrite(str(src / "f0.png"), mm)
    import_depth(src, tmp_path / "out", kind="depth", units="mm", scale=2.0, quiet=True)
    meta = DepthMeta.load(tmp_path / "out")
    assert (meta.backend, meta.kind, meta.relative, meta.units) == ("import", "depth", False, "m")
    assert meta.extra["source_units"] == "mm" and meta.extra["scale"] == 2.0
    assert meta.images["f0"]["source"] == "f0.png" and meta.images["f0"]["nodata"] == 0
    want = np.where(mm > 0, mm / 1000.0 * 2.0, np.nan)
    assert_matches(read_back(tmp_path / "out", ["f0"])["f0"], want, meta, "f0")


def test_inverse_depth_is_relative(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    disparity = 1.0 / truth()
    np.save(src / "a.npy", with_holes(disparity))
    import_depth(src, tmp_path / "out", kind="inverse_depth", quiet=True)
    meta = DepthMeta.load(tmp_path / "out")
    assert (meta.kind, meta.relative, meta.units, meta.extra["source_units"]) == ("inverse_depth", True, None,
                                                                                  "relative")
    priors = load_priors(tmp_path / "out", ["a"])
    assert priors.kind == "inverse_depth"
    assert_matches(priors.maps["a"].decode(), disparity, meta, "a")
    with pytest.raises(InputError, match="--kind inverse_depth --units m"):
        import_depth(src, tmp_path / "out2", kind="inverse_depth", units="m", quiet=True)


def test_npz_with_several_arrays_needs_a_key(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    np.savez(src / "a.npz", depth=with_holes(truth()), confidence=np.ones((H, W)))
    summary = import_depth(src, tmp_path / "out", kind="depth", quiet=True)
    assert not summary.ok and "holds 2 arrays (depth, confidence); pick one with --npz-key" in summary.failed[
        str(src / "a.npz")]
    assert import_depth(src, tmp_path / "out", kind="depth", npz_key="depth", overwrite=True, quiet=True).ok


def write_images(folder: Path, size: tuple[int, int], keys: list[str]) -> None:
    folder.mkdir(parents=True)
    for key in keys:
        cv2.imwrite(str(folder / f"{key}.png"), np.full((size[1], size[0], 3), 128, np.uint8))


def test_folder_at_half_resolution_is_resized_with_one_warning(tmp_path, capsys):
    src, images = tmp_path / "src", tmp_path / "images"
    src.mkdir()
    write_images(images, (2 * W, 2 * H), ["a", "b", "c"])
    for i, key in enumerate("abc"):
        np.save(src / f"{key}.npy", with_holes(truth(i)))
    summary = import_depth(src, tmp_path / "out", kind="depth", images_dir=images, quiet=True)
    assert summary.ok and summary.resized_from == (W, H)
    assert capsys.readouterr().err.count("resized") == 1
    meta = DepthMeta.load(tmp_path / "out")
    got = read_back(tmp_path / "out", ["a"])["a"]
    want = truth(0).repeat(2, axis=0).repeat(2, axis=1)  # nearest: each value covers 2x2, holes included
    assert got.shape == (2 * H, 2 * W) and meta.images["a"]["resized_from"] == [W, H]
    assert_matches(got, want, meta, "a")


def test_mixed_sizes_are_an_error_naming_the_file(tmp_path):
    src, images = tmp_path / "src", tmp_path / "images"
    src.mkdir()
    write_images(images, (W, H), ["a", "b", "c"])
    np.save(src / "a.npy", truth(0))
    np.save(src / "b.npy", truth(1))
    np.save(src / "c.npy", np.ones((H // 2, W // 2), np.float32))
    with pytest.raises(InputError, match=r"c\.npy: 4x3 for its 8x6 image, while most depth files are 1x1"):
        import_depth(src, tmp_path / "out", kind="depth", images_dir=images, quiet=True)
    assert not (tmp_path / "out" / "a.png").exists()


def test_unmatched_images_are_reported(tmp_path):
    src, images = tmp_path / "src", tmp_path / "images"
    src.mkdir()
    write_images(images, (W, H), ["a", "b"])
    np.save(src / "a.npy", truth(0))
    summary = import_depth(src, tmp_path / "out", kind="depth", images_dir=images, quiet=True)
    assert summary.ok and summary.done == 1 and summary.unmatched == ["b"]


def test_unreadable_and_unknown_files_are_reported_and_skipped(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "good.npy", truth())
    (src / "broken.exr").write_bytes(b"not an exr")
    cv2.imwrite(str(src / "rgb.png"), np.zeros((H, W, 3), np.uint8))
    (src / "notes.jpg").write_bytes(b"jpeg")
    summary = import_depth(src, tmp_path / "out", kind="depth", quiet=True)
    assert summary.done == 1 and not summary.ok
    assert sorted(Path(f).name for f in summary.failed) == ["broken.exr", "notes.jpg", "rgb.png"]
    err = capsys.readouterr().err.splitlines()
    assert f"warning: {src / 'notes.jpg'}: found .jpg, not a depth file kind this reads; accepted: .npy, .npz, " \
           ".exr, .pfm, .png, .tif, .tiff (convert it, or move it out of the folder)" in err
    assert any(line.startswith(f"warning: {src / 'broken.exr'}: cannot read it as OpenEXR") for line in err)
    assert any(line.startswith(f"warning: {src / 'rgb.png'}: found 3-channel uint8 pixels; accepted: 16-bit "
                               "single-channel PNG") for line in err)
    assert (tmp_path / "out" / "good.png").exists() and not (tmp_path / "out" / "rgb.png").exists()


def test_rerun_skips_finished_files_and_redoes_changed_ones(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i, key in enumerate("ab"):
        np.save(src / f"{key}.npy", truth(i))
    import_depth(src, out, kind="depth", quiet=True)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    again = import_depth(src, out, kind="depth", quiet=True)
    assert (again.done, again.skipped) == (0, 2)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")} == before
    np.save(src / "b.npy", truth(5) * 2)
    third = import_depth(src, out, kind="depth", quiet=True)
    assert (third.done, third.skipped) == (1, 1) and (out / "a.png").stat().st_mtime_ns == before["a.png"]
    with pytest.raises(Exception, match="--overwrite"):
        import_depth(src, out, kind="depth", units="mm", quiet=True)  # another conversion: not mixed in


def write_scene(folder: Path, keys: list[str]) -> None:
    """A tiny nerfstudio scene of W x H images ``images/<key>.png``, no distortion."""
    write_images(folder / "images", (W, H), keys)
    frames = [{"file_path": f"images/{k}.png", "transform_matrix": np.eye(4).tolist()} for k in keys]
    (folder / "transforms.json").write_text(json.dumps({"fl_x": 10.0, "w": W, "h": H, "camera_model": "PINHOLE",
                                                        "frames": frames}))


def test_confidence_is_written_and_loaded_into_the_view(tmp_path):
    from s3dgs.data.scene import load_scene

    src, conf, scene = tmp_path / "src", tmp_path / "conf", tmp_path / "scene"
    src.mkdir()
    conf.mkdir()
    write_scene(scene, ["a", "b"])
    rng = np.random.default_rng(3)
    raw = {k: rng.uniform(0.0, 10.0, (H, W)).astype(np.float32) for k in "ab"}  # any range: divided by its max
    for i, key in enumerate("ab"):
        np.save(src / f"{key}.npy", with_holes(truth(i)))
        np.save(conf / f"{key}.npy", raw[key])
    summary = import_depth(src, tmp_path / "depth", kind="depth", confidence_dir=conf, images_dir=scene / "images",
                           quiet=True)
    assert summary.ok and summary.done == 2
    top = max(float(c.max()) for c in raw.values())
    meta = DepthMeta.load(tmp_path / "depth")
    assert meta.images["a"]["confidence"] == "confidence/a.png" and meta.images["a"]["confidence_scale"] == 1 / top
    assert (tmp_path / "depth" / "confidence" / "b.png").exists()
    views = {v.key: v for v in load_scene(scene, kind="nerfstudio", test_every=0, depth_dir=tmp_path / "depth").views}
    for i, key in enumerate("ab"):
        v = views[key]
        holes = np.isnan(truth(i))
        np.testing.assert_array_equal(v.prior_valid.numpy(), ~holes)
        want = np.where(holes, 0.0, raw[key] / top)
        np.testing.assert_allclose(v.prior_confidence.numpy(), want, atol=0.5 / 65535 + 1e-6)
    assert views["a"].prior_confidence.dtype == views["a"].prior.dtype
    rerun = import_depth(src, tmp_path / "depth", kind="depth", confidence_dir=conf, images_dir=scene / "images",
                         quiet=True)
    assert rerun.skipped == 2


def test_cli_bad_arguments_are_one_line(tmp_path, repo_env):
    src = tmp_path / "src"
    src.mkdir()
    np.save(src / "a.npy", truth())
    for args, text in ((["--scale", "1"], "error: the following arguments are required: --kind (see --help)"),
                       (["--kind", "depth", "--scale", "-1"], "error: --scale -1.0: must be a positive number"),
                       (["--kind", "depth", "--images", str(tmp_path / "nope")],
                        f"error: {tmp_path / 'nope'}: input folder does not exist")):
        proc = subprocess.run([sys.executable, "-m", "preprocess.import_depth", str(src), str(tmp_path / "out"), *args],
                              capture_output=True, text=True, env=repo_env)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [proc.stderr.strip()]
        assert proc.stderr.startswith(text)


def test_ctrl_c_keeps_finished_entries_and_no_temp_file(tmp_path, monkeypatch):
    from preprocess import import_depth as module

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i, key in enumerate("abc"):
        np.save(src / f"{key}.npy", truth(i))
    real = module.import_one

    def stop_at_b(out_dir, job, *args):
        if job.key == "b":
            raise KeyboardInterrupt
        return real(out_dir, job, *args)

    monkeypatch.setattr(module, "import_one", stop_at_b)
    with pytest.raises(KeyboardInterrupt):
        import_depth(src, out, kind="depth", quiet=True)
    assert list(DepthMeta.load(out).images) == ["a"] and sorted(p.name for p in out.iterdir()) == [
        ".depth_meta.json.lock", "a.png", "depth_meta.json"]
    monkeypatch.undo()
    resumed = import_depth(src, out, kind="depth", quiet=True)
    assert (resumed.done, resumed.skipped) == (2, 1)
