import subprocess

import pytest

from preprocess.download_weights import format_table
from preprocess.weights import MODELS, WeightsError, checkpoint_path, download, resolve, resolve_root


def test_table_and_aliases():
    assert resolve("vitl").repo == "depth-anything/Video-Depth-Anything-Large"
    assert resolve("METRIC_VITS").filename == "metric_video_depth_anything_vits.pth"
    assert resolve("metric_vitb").repo == "depth-anything/Metric-Video-Depth-Anything-Base"
    assert resolve("da2-small").repo == "depth-anything/Depth-Anything-V2-Small-hf"
    assert resolve("depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf").name == "da2-indoor-small"
    assert resolve("da2-metric-outdoor-large").metric
    names = [m.name for m in MODELS]
    assert len(names) == len(set(names)) == 15
    with pytest.raises(WeightsError, match="--list"):
        resolve("vitx")


def test_checkpoint_root_and_missing_message(tmp_path, monkeypatch):
    monkeypatch.setenv("S3DGS_CHECKPOINT_ROOT", str(tmp_path / "ck"))
    assert resolve_root() == tmp_path / "ck"
    with pytest.raises(WeightsError) as e:
        checkpoint_path("vitb")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "ck" / "video_depth_anything_vitb.pth") in msg
    assert "python -m preprocess.download_weights --model vitb" in msg
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "video_depth_anything_vitb.pth").write_bytes(b"x")
    assert checkpoint_path("video_depth_anything_vitb") == tmp_path / "ck" / "video_depth_anything_vitb.pth"
    with pytest.raises(WeightsError, match="--dest"):
        checkpoint_path("vitl", tmp_path / "elsewhere")
    table = {line.split()[0]: line.split()[-1] for line in format_table().splitlines()[1:-1]}
    assert table["video_depth_anything_vitb"] == "yes" and table["vitl".join(["video_depth_anything_", ""])] == "no"


def test_offline_download_fails_in_one_line(tmp_path):
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE") as e:
        download(resolve("metric_vits"), tmp_path)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "metric_video_depth_anything_vits.pth").exists()


def test_cli_list_and_errors(tmp_path, repo_env, python):
    run = lambda *a: subprocess.run([python, "-m", "preprocess.download_weights", *a], env=repo_env,
                                    capture_output=True, text=True, timeout=60)
    r = run("--list", "--dest", str(tmp_path))
    assert r.returncode == 0 and "metric_video_depth_anything_vitl" in r.stdout and str(tmp_path) in r.stdout
    r = run("--model", "vits", "da2-small", "--dest", str(tmp_path))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 2 and all(l.startswith("error: failed to download") for l in lines)
    r = run("--model", "nope")
    assert r.returncode == 2 and r.stderr.strip() == ("error: unknown model 'nope'; list the known ones with: "
                                                      "python -m preprocess.download_weights --list")
    assert run().returncode == 2
