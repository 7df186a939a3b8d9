"""``generate_depth --shard`` as a real ``sbatch --array`` of 4 tasks writing into one folder at the same time."""

import re
import subprocess

import numpy as np
import pytest

from depth_test_images import write_rgb
from preprocess import generate_depth
from preprocess.atomic_io import TEMP_PREFIX
from preprocess.depth_png import DepthMeta, read_depth_png
from tiny_depth_model import save_tiny_depth_anything

N_IMAGES, N_TASKS = 9, 4   # 9 over 4: shards of 3, 2, 2, 2 images


def test_array_of_shards_does_each_image_once(slurm, wait_job, tmp_path, repo_env, python):
    src, out, logs = tmp_path / "images", tmp_path / "depth", tmp_path / "logs"
    src.mkdir()
    logs.mkdir()
    stems = [f"img{i:02d}" for i in range(N_IMAGES)]
    for i, stem in enumerate(stems):
        write_rgb(src / f"{stem}.png", seed=300 + i)
    model = save_tiny_depth_anything(tmp_path / "model")
    # The job runs under slurmd: the venv's interpreter by absolute path, this checkout on PYTHONPATH (repo_env).
    job = tmp_path / "depth.sh"
    job.write_text("#!/bin/bash\n"
                   f"exec {python} -m preprocess.generate_depth {src} {out} --model {model} --device cpu "
                   "--shard $((SLURM_ARRAY_TASK_ID + 1))/$SLURM_ARRAY_TASK_COUNT\n")
    # --oversubscribe: all 4 tasks run at once on a 2-core node, so their depth_meta.json merges really race.
    submitted = subprocess.run(["sbatch", "--parsable", f"--array=0-{N_TASKS - 1}", "--oversubscribe",
                                "--cpus-per-task=1", f"--output={logs}/%a.out", f"--error={logs}/%a.err", str(job)],
                               env=repo_env | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True, check=True)
    tasks = wait_job(submitted.stdout.strip().split(";")[0], timeout=180)

    def logs_text() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.iterdir()))
    assert {k: (t["JobState"], t["ExitCode"]) for k, t in tasks.items()} == \
        {str(k): ("COMPLETED", "0:0") for k in range(N_TASKS)}, logs_text()
    assert max(t["StartTime"] for t in tasks.values()) <= min(t["EndTime"] for t in tasks.values())  # side by side

    done = {}
    for k in range(N_TASKS):
        m = re.search(r"done (\d+), skipped (\d+), failed (\d+) of (\d+) images", (logs / f"{k}.out").read_text())
        assert m, logs_text()
        done[k] = tuple(map(int, m.groups()))
    assert done == {0: (3, 0, 0, 3), 1: (2, 0, 0, 2), 2: (2, 0, 0, 2), 3: (2, 0, 0, 2)}   # each image done once

    meta = DepthMeta.load(out)   # one file, complete JSON, every shard's entries merged
    assert sorted(meta.images) == stems
    assert (meta.backend, meta.model, meta.kind) == ("transformers", str(model), "inverse_depth")
    assert sorted(p.stem for p in out.glob("*.png")) == stems and not list(out.glob(TEMP_PREFIX + "*"))

    # Same numbers as one unsharded run in this process. The jobs ran torch on 1 thread, this process on
    # more: float32 sums in another order differ by ~1e-6 relative, far inside 1e-4 of the value range.
    ref = tmp_path / "ref"
    assert generate_depth(src, ref, model=str(model), device="cpu", quiet=True).ok
    ref_meta = DepthMeta.load(ref)
    for stem in stems:
        got, want = meta.images[stem], ref_meta.images[stem]
        span = want["max"] - want["min"]
        assert got["min"] == pytest.approx(want["min"], abs=1e-4 * span)
        assert got["max"] == pytest.approx(want["max"], abs=1e-4 * span)
        np.testing.assert_allclose(meta.to_float(stem, read_depth_png(out / f"{stem}.png")),
                                   ref_meta.to_float(stem, read_depth_png(ref / f"{stem}.png")), atol=2e-4 * span)

    # A rerun of the whole folder finds every image done and valid: nothing to compute, no model loaded.
    again = generate_depth(src, out, model=str(model), device="cpu", quiet=True, verify=True, num_samples=N_IMAGES)
    assert (again.done, again.skipped, again.model_calls) == (0, N_IMAGES, 0) and again.verify.ok
