"""The driver: resume after SIGKILL, no model calls for a finished folder, shards sharing a folder, bad input."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from depth_test_images import write_rgb
from fake_depth_space import fake_disparity
from preprocess import generate_depth
from preprocess.atomic_io import TEMP_PREFIX
from preprocess.depth_png import DepthMeta, quantize, read_depth_png
from preprocess.images import InputError, load_rgb

UNREACHABLE = "http://127.0.0.1:9/"


def cli(python, env, *args, timeout=120):
    return subprocess.run([python, "-m", "preprocess.generate_depth", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def start_space_run(python, env, src, out, url, *extra, **popen) -> subprocess.Popen:
    """The CLI on the Space backend as a background process."""
    return subprocess.Popen([python, "-m", "preprocess.generate_depth", src, out, "--backend", "space", "--space",
                             url, "--quiet", *extra], env=env, **popen)


def make_images(src, names, seed):
    src.mkdir()
    for i, name in enumerate(names):
        write_rgb(src / name, seed=seed + i)


def assert_all_valid(src, out, names):
    meta = DepthMeta.load(out)
    for name in names:
        stem = name.split(".")[0]
        raw = fake_disparity(load_rgb(src / name)).astype(np.uint16)
        png = read_depth_png(out / f"{stem}.png")
        np.testing.assert_array_equal(png, quantize(raw.astype(np.float32))[0])
        assert (meta.images[stem]["min"], meta.images[stem]["max"]) == (raw.min(), raw.max())
    assert sorted(meta.images) == sorted(n.split(".")[0] for n in names)
    assert not list(out.glob(TEMP_PREFIX + "*"))


def n_entries(out) -> int:
    try:
        return len(json.loads((out / "depth_meta.json").read_text())["images"])
    except FileNotFoundError:
        return 0


def test_sigkill_mid_run_then_rerun_finishes(tmp_path, fake_space_url, repo_env, python):
    src, out = tmp_path / "in", tmp_path / "out"
    names = [f"frame_{i:07d}.png" for i in range(32)]
    make_images(src, names, seed=100)
    proc = start_space_run(python, repo_env, src, out, fake_space_url, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while n_entries(out) < 1 and proc.poll() is None and time.monotonic() < deadline:  # first meta flush (2 s)
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = sorted(out.glob("frame_*.png"))
    assert 3 <= len(written) < len(names), "the run was not killed mid-way"
    json.loads((out / "depth_meta.json").read_text())         # never half-written
    for p in written:
        assert read_depth_png(p).shape == (24, 32)            # every PNG on disk is complete

    summary = generate_depth(src, out, backend="space", space=fake_space_url, quiet=True)
    assert summary.ok and summary.done + summary.skipped == len(names) and summary.skipped >= 1
    assert_all_valid(src, out, names)

    again = generate_depth(src, out, backend="space", space=fake_space_url, quiet=True, verify=True, num_samples=3)
    assert again.ok and (again.done, again.skipped, again.model_calls) == (0, len(names), 0)
    assert len(again.verify.lines) == 3


def test_sigterm_keeps_every_finished_entry(tmp_path, fake_space_url, repo_env, python):
    """Slurm stops a job (scancel, time limit, preemption) with SIGTERM: the run stops like Ctrl-C, so every PNG
    written so far has its depth_meta.json entry (none is computed again) and no temp file is left."""
    src, out = tmp_path / "in", tmp_path / "out"
    names = [f"frame_{i:07d}.png" for i in range(32)]
    make_images(src, names, seed=150)
    proc = start_space_run(python, repo_env, src, out, fake_space_url, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while n_entries(out) < 1 and proc.poll() is None and time.monotonic() < deadline:  # first meta flush (2 s)
        time.sleep(0.02)
    time.sleep(0.3)   # more PNGs written since that flush, their entries still in memory
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert "interrupted: finished outputs are kept" in proc.stderr.read()
    written = sorted(p.stem for p in out.glob("frame_*.png"))
    assert n_entries(out) < len(names), "the run was not stopped mid-way"
    assert sorted(DepthMeta.load(out).images) == written
    assert not list(out.glob(TEMP_PREFIX + "*"))


def test_shards_share_one_folder(tmp_path, fake_space_url, repo_env, python):
    src, out = tmp_path / "in", tmp_path / "out"
    names = [f"img{i:02d}.jpg" for i in range(6)]
    make_images(src, names, seed=200)
    procs = [start_space_run(python, repo_env, src, out, fake_space_url, "--shard", f"{k}/3", stderr=subprocess.PIPE,
                             text=True) for k in (1, 2, 3)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    assert_all_valid(src, out, names)


def test_overwrite_and_other_model_in_folder(tmp_path, fake_space_url, tiny_model):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    write_rgb(src / "a.png")
    generate_depth(src, out, backend="space", space=fake_space_url, quiet=True)
    with pytest.raises(ValueError, match="holds space priors from .*use another output folder or --overwrite"):
        generate_depth(src, out, model=str(tiny_model), device="cpu", quiet=True)
    summary = generate_depth(src, out, model=str(tiny_model), device="cpu", overwrite=True, quiet=True)
    assert summary.ok and summary.done == 1
    assert DepthMeta.load(out).backend == "transformers" and list(DepthMeta.load(out).images) == ["a"]


def _bad_inputs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("x")
    ok = tmp_path / "ok"
    ok.mkdir()
    write_rgb(ok / "a.png")
    dup = tmp_path / "dup"
    dup.mkdir()
    write_rgb(dup / "a.png")
    write_rgb(dup / "a.JPG")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = tmp_path / "out"
    return [
        ((tmp_path / "missing", out), "input folder does not exist"),
        ((empty, out), "input folder is empty"),
        ((notes, out), "no images found; accepted extensions (any case): .jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp"),
        ((dup, out), "both would write a.png"),
        ((ok, blocker / "out"), "output folder is not writable"),
        ((ok, blocker), "exists and is not a folder"),
        ((ok, ok), "output folder is the input folder"),
        ((ok, out, "--shard", "4/3"), "expected K/N with 1 <= K <= N"),
        ((ok, out, "--shard", "two"), "expected K/N with 1 <= K <= N"),
    ]


def test_bad_input_one_line_error_no_output(tmp_path, repo_env, python):
    for args, message in _bad_inputs(tmp_path):
        r = cli(python, repo_env, *args, "--backend", "space", "--space", UNREACHABLE)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("error: ") and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, \
            (args, r.stderr)
        assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["a.png"]


def test_ctrl_c_keeps_finished_work(tmp_path, fake_space_url, repo_env, python):
    src, out = tmp_path / "in", tmp_path / "out"
    names = [f"f{i:02d}.png" for i in range(24)]
    make_images(src, names, seed=300)
    proc = start_space_run(python, repo_env, src, out, fake_space_url, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    while len(list(out.glob("f*.png"))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    assert "interrupted: finished outputs are kept; rerun the same command to resume" in proc.stderr.read()
    written = sorted(p.stem for p in out.glob("f*.png"))
    assert 2 <= len(written) < len(names)
    assert sorted(DepthMeta.load(out).images) == written           # entries flushed on the way out
    assert not list(out.glob(TEMP_PREFIX + "*"))


def test_function_and_module_share_one_name():
    import importlib

    import preprocess

    module = importlib.import_module("preprocess.generate_depth")
    assert preprocess.generate_depth is module and callable(module) and callable(module.main)
    with pytest.raises(InputError, match="does not exist"):
        preprocess.generate_depth("/nonexistent/images", "/nonexistent/out")   # the call reaches the function


def test_subfolders_with_repeated_stems_write_the_keys_the_trainer_reads(tmp_path, tiny_model):
    """A Blender-like folder (``train/r_0.png`` and ``test/r_0.png``) with its output folder inside it: outputs
    mirror the subfolders, a rerun skips them all, and ``s3dgs.data.priors`` finds each image's own prior."""
    from preprocess.depth_png import prior_keys
    from s3dgs.data.priors import load_priors

    scene = tmp_path / "scene"
    names = ["test/r_0.png", "train/r_0.png", "train/r_1.png"]
    for i, name in enumerate(names):
        (scene / name).parent.mkdir(parents=True, exist_ok=True)
        write_rgb(scene / name, seed=40 + i)
    out = scene / "depth"
    summary = generate_depth(scene, out, model=str(tiny_model), device="cpu", quiet=True, verify=True)
    assert summary.ok and summary.done == 3 and summary.verify.ok
    keys = ["test/r_0", "train/r_0", "train/r_1"]
    assert sorted(DepthMeta.load(out).images) == keys
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [f"{k}.png" for k in keys]
    again = generate_depth(scene, out, model=str(tiny_model), device="cpu", quiet=True)
    assert (again.total, again.skipped, again.done) == (3, 3, 0)  # the depth folder inside is no input

    # the trainer's side: Blender names its images train/r_0.png ... relative to the scene folder
    priors = load_priors(out, prior_keys(names))
    assert not priors.problems and sorted(priors.maps) == keys
    assert not np.array_equal(priors.maps["test/r_0"].levels, priors.maps["train/r_0"].levels)  # each its own
    for key in keys:
        meta = DepthMeta.load(out)
        np.testing.assert_array_equal(priors.maps[key].decode(), meta.to_float(key, read_depth_png(out / f"{key}.png")))

    # unique stems in subfolders keep the flat <stem>.png names
    rig, rig_out = tmp_path / "rig", tmp_path / "rig_depth"
    for name in ("cam0/a.png", "cam1/b.png"):
        (rig / name).parent.mkdir(parents=True, exist_ok=True)
        write_rgb(rig / name)
    assert generate_depth(rig, rig_out, model=str(tiny_model), device="cpu", quiet=True).ok
    assert sorted(p.name for p in rig_out.iterdir() if p.suffix == ".png") == ["a.png", "b.png"]
    assert prior_keys(["cam0/a.png", "cam1/b.png"]) == ["a", "b"]
