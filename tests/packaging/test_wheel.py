"""The wheel ``pip wheel .`` builds: every package of the checkout, the top-level configs/ as s3dgs.configs, and
the console scripts. (tools/check_wheel.sh goes further: installs it in a fresh venv and trains the example.)"""

import configparser
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {"s3dgs-train": "s3dgs.train:main", "s3dgs-eval": "s3dgs.eval:main", "s3dgs-view": "s3dgs.view:main",
           "s3dgs-export": "s3dgs.export:main", "s3dgs-depth": "preprocess.generate_depth:main",
           "s3dgs-video-depth": "preprocess.video_depth.__main__:main",
           "s3dgs-video-to-scene": "preprocess.video_to_scene.__main__:main"}


def test_wheel_ships_every_package_the_configs_and_the_console_scripts(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO_ROOT), "-w", str(tmp_path), "--no-deps",
                           "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = tmp_path.glob("s3dgs-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"s3dgs/configs/{p.relative_to(REPO_ROOT / 'configs')}" for p in (REPO_ROOT / "configs").rglob("*.yaml")}
    assert "s3dgs/configs/train.yaml" in configs and configs <= names, sorted(configs - names)
    packages = {str(p.parent.relative_to(REPO_ROOT)) for top in ("s3dgs", "preprocess")
                for p in (REPO_ROOT / top).rglob("__init__.py")}
    assert {f"{p}/__init__.py" for p in packages} <= names, sorted(packages)
    helpers = [n for n in names if Path(n).name.startswith("test") and n.endswith(".py")]  # test_*, testing.py
    assert not helpers, helpers
    entry_points = configparser.ConfigParser()
    entry_points.read_string(zipfile.ZipFile(wheel).read(f"{wheel.name.split('-py3')[0]}.dist-info/entry_points.txt")
                             .decode())
    assert dict(entry_points["console_scripts"]) == SCRIPTS


def test_a_checkout_that_is_not_installed_reads_configs_directly():
    proc = subprocess.run([sys.executable, "-S", "-c",  # -S: no site-packages, so no install of s3dgs is seen
                           "from s3dgs.config_dir import config_path; print(config_path())"],
                          cwd="/", env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(REPO_ROOT / "configs")
