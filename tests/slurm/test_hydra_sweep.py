"""A Hydra ``-m`` sweep of the real training app through hydra-submitit-launcher on the local Slurm node."""

import csv
import json
import re
import subprocess
from pathlib import Path

import yaml
from hydra import compose, initialize_config_dir

from s3dgs import example

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_submitit_sweep_writes_the_sweep_table(slurm, tmp_path, repo_env, python):
    scene = example.write_example(tmp_path / "scene")
    sweep = tmp_path / "sweep"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # sbatch passes this environment to the jobs; submitit starts them with this interpreter (sys.executable).
    env = repo_env | {"XDG_CACHE_HOME": str(tmp_path / "cache"), "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    args = ["-m", "hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=10",
            f"hydra.sweep.dir={sweep}", f"data_dir={scene}", "lambda_depth=0,0.1", "steps=2", "init.from_priors=false",
            "save_renders=false"]

    def logs() -> str:
        queue = subprocess.run(["squeue"], capture_output=True, text=True).stdout
        return queue + "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted(sweep.glob(".submitit/*/*_log.*")))
    try:
        proc = subprocess.run([python, "-m", "s3dgs.train", *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=300)
    except subprocess.TimeoutExpired:
        text = logs()
        subprocess.run(["scancel", "--name=train"])   # submitit names the jobs after the Hydra app
        raise AssertionError(f"sweep not finished after 300 s\n{text}") from None
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n{logs()}"
    assert "sweep table of 2 jobs" in proc.stdout

    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["steps"] == 2
        # Each job ran as a task of one Slurm array: submitit gives Hydra the Slurm id "<array job>_<task>".
        job_id = yaml.safe_load((sweep / job / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["id"]
        assert re.fullmatch(rf"\d+_{job}", str(job_id)), job_id
    with open(sweep / "sweep_metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["overrides"] for r in rows] == ["lambda_depth=0", "lambda_depth=0.1"]
    assert all(float(r["test.psnr"]) > 5 and r["steps"] == "2" for r in rows)
    table = (sweep / "sweep_metrics.md").read_text().splitlines()
    assert len(table) == 4   # header, rule, one row per job
    assert table[2].startswith("| 0 | lambda_depth=0 |") and table[3].startswith("| 1 | lambda_depth=0.1 |")


def test_example_launcher_config_composes():
    """configs/hydra/launcher/submitit_slurm_example.yaml: every key is one the installed launcher knows (its
    schema is a structured config, so an unknown or misspelt key fails to compose)."""
    with initialize_config_dir(str(REPO_ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=submitit_slurm_example"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.array_parallelism) == ("gpu", 1, 8)
