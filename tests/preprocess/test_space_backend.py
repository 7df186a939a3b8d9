"""The Space backend against a real Gradio server on 127.0.0.1, through the real gradio_client."""

import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from depth_test_images import write_rgb
from fake_depth_space import BLUE, CYAN, MAGENTA, ORANGE, YELLOW, fake_disparity
from preprocess import generate_depth
from preprocess.atomic_io import TEMP_PREFIX
from preprocess.backends import BackendError
from preprocess.backends.space import SpaceBackend, check_api
from preprocess.depth_png import DepthMeta, quantize, read_depth_png
from preprocess.images import load_rgb


def expected_raw(path) -> np.ndarray:
    """What the Space's 16-bit raw file holds for this image (the Space's own recipe)."""
    return fake_disparity(load_rgb(path)).astype(np.uint16)


def test_outputs_are_rescaled_raw_with_recoverable_values(tmp_path, fake_space_url, own_tmp):
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "a.png", seed=1)
    write_rgb(src / "b.jpg", h=20, w=30, seed=2, exif_orientation=6)      # re-encoded without its tag
    Image.fromarray((np.arange(24 * 32).reshape(24, 32) * 85).astype(np.uint16)).save(src / "c.png")  # 16-bit gray
    write_rgb(src / "d.png", seed=3, corner=YELLOW)                       # first attempt fails: retried
    summary = generate_depth(src, tmp_path / "out", backend="space", space=fake_space_url, quiet=True)
    assert summary.ok and summary.done == 4 and summary.model_calls == 5
    meta = DepthMeta.load(tmp_path / "out")
    assert (meta.backend, meta.model, meta.kind, meta.relative) == ("space", fake_space_url, "inverse_depth", True)
    assert "integer-truncated" in meta.extra["raw_output"]
    for name in ("a.png", "b.jpg", "c.png", "d.png"):
        stem = name.split(".")[0]
        raw = expected_raw(src / name)
        png = read_depth_png(tmp_path / "out" / f"{stem}.png")
        assert png.shape == raw.shape and png.min() == 0 and png.max() == 65535
        np.testing.assert_array_equal(png, quantize(raw.astype(np.float32))[0])
        rec = meta.images[stem]
        assert (rec["min"], rec["max"], rec["output"]) == (raw.min(), raw.max(), "raw16")
        np.testing.assert_array_equal(np.rint(meta.to_float(stem, png)), raw)   # the Space's integers come back
    assert meta.images["b"]["width"] == 30 and meta.images["b"]["height"] == 20  # stored pixels, tag ignored
    assert raw.max() > 255  # scale 1000: an 8-bit path would have been caught
    assert list(own_tmp.iterdir()) == [] and not list((tmp_path / "out").glob(TEMP_PREFIX + "*"))


def test_app_error_on_one_image_goes_on_and_exits_nonzero(tmp_path, fake_space_url, repo_env, python):
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "f0.png", seed=4)
    write_rgb(src / "f1.png", seed=5, corner=MAGENTA)
    write_rgb(src / "f2.png", seed=6)
    r = subprocess.run([python, "-m", "preprocess.generate_depth", str(src), str(tmp_path / "out"), "--backend",
                        "space", "--space", fake_space_url, "--quiet"], env=repo_env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1
    assert "f1.png: the Space failed on this image (AppError" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".depth_meta.json.lock", "depth_meta.json",
                                                                    "f0.png", "f2.png"]
    assert sorted(json.loads((tmp_path / "out" / "depth_meta.json").read_text())["images"]) == ["f0", "f2"]
    assert list((tmp_path / "_tmp").iterdir()) == []   # gradio_client left nothing in TMPDIR


def test_unreadable_answers_fail_their_image_only(tmp_path, fake_space_url, monkeypatch):
    """Only a call the endpoint's signature refuses means the API changed; an answer that cannot be read
    (empty files, a ValueError while reading it) fails that image and the run goes on."""
    src = tmp_path / "in"
    src.mkdir()
    for i, (name, corner) in enumerate((("u0.png", None), ("u1.png", ORANGE), ("u2.png", None), ("u3.png", None))):
        write_rgb(src / name, seed=20 + i, corner=corner)
    read_outputs = SpaceBackend._read_outputs

    def malformed_for_u2(self, path, outputs, size):
        if path.name == "u2.png":
            raise ValueError("could not convert string to float: 'x'")  # e.g. a Space answering in another form
        return read_outputs(self, path, outputs, size)

    monkeypatch.setattr(SpaceBackend, "_read_outputs", malformed_for_u2)
    summary = generate_depth(src, tmp_path / "out", backend="space", space=fake_space_url, quiet=True)
    assert not summary.ok and summary.stopped is None and summary.done == 2
    assert summary.failed == {"u1.png": f"{src / 'u1.png'}: the Space returned no readable depth PNG",
                              "u2.png": f"{src / 'u2.png'}: the Space's answer is unreadable (ValueError: could not "
                                        "convert string to float: 'x')"}
    assert sorted(DepthMeta.load(tmp_path / "out").images) == ["u0", "u3"]


def test_quota_stops_cleanly_and_resume_finishes(tmp_path, fake_space_url):
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "q0.png", seed=7)
    write_rgb(src / "q1.png", seed=8, corner=CYAN)
    write_rgb(src / "q2.png", seed=9)
    summary = generate_depth(src, tmp_path / "out", backend="space", space=fake_space_url, quiet=True)
    assert not summary.ok and summary.done == 1 and "GPU quota" in summary.stopped
    assert "rerun the same command later to resume" in summary.stopped and "--hf-token" in summary.stopped
    assert not (tmp_path / "out" / "q2.png").exists()
    write_rgb(src / "q1.png", seed=8)  # "quota back": the image no longer triggers it
    summary = generate_depth(src, tmp_path / "out", backend="space", space=fake_space_url, quiet=True)
    assert summary.ok and (summary.done, summary.skipped, summary.model_calls) == (2, 1, 2)
    assert sorted(DepthMeta.load(tmp_path / "out").images) == ["q0", "q1", "q2"]


def test_connection_failure_is_one_line(tmp_path, repo_env, python):
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "a.png")
    for space, expect in (("http://127.0.0.1:9/", "cannot reach Space http://127.0.0.1:9/ (ConnectError"),
                          ("depth-anything/Depth-Anything-V2", "HF_HUB_OFFLINE is set")):
        r = subprocess.run([python, "-m", "preprocess.generate_depth", str(src), str(tmp_path / "out"),
                            "--backend", "space", "--space", space], env=repo_env, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1 and r.stderr.startswith("error: ") and expect in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.png"))


def test_token_only_when_given_and_api_check(fake_space_url, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_from_env")
    with SpaceBackend(fake_space_url) as backend:   # a URL: the environment's token is not sent
        assert backend.token is False
        assert not any("hf_secret" in str(v) for v in backend.client.headers.values())
        info = backend.client.view_api(print_info=False, return_format="dict")
    assert SpaceBackend("depth-anything/Depth-Anything-V2").token == "hf_secret_from_env"
    assert SpaceBackend(fake_space_url, token="hf_given").token == "hf_given"
    check_api(info, fake_space_url)
    info["named_endpoints"]["/on_submit"]["returns"] = info["named_endpoints"]["/on_submit"]["returns"][:2]
    with pytest.raises(BackendError, match="API changed.*returns 2 outputs"):
        check_api(info, fake_space_url)
    with pytest.raises(BackendError, match="no /on_submit endpoint"):
        check_api({"named_endpoints": {"/predict": {}}}, fake_space_url)


def test_check_depth_api_cli(fake_space_url, repo_env, python):
    r = subprocess.run([python, "-m", "preprocess.check_depth_api", "--space", fake_space_url], env=repo_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "output 2: File '16-bit raw output (can be considered as disparity)' -> filepath" in r.stdout
    line = next(l for l in r.stdout.splitlines() if l.startswith("  output 2: uint16"))
    assert "64x48" in line and "64 levels" in line
    r = subprocess.run([python, "-m", "preprocess.check_depth_api", "--space", "http://127.0.0.1:9/"], env=repo_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("error: cannot reach Space")


def test_falls_back_to_gray_with_a_warning(tmp_path, fake_space_url, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "g.png", seed=11, corner=BLUE)
    summary = generate_depth(src, tmp_path / "out", backend="space", space=fake_space_url, quiet=True)
    assert summary.ok
    assert "g.png: 16-bit raw output missing; used the 8-bit per-image-normalised map" in capsys.readouterr().err
    rec = DepthMeta.load(tmp_path / "out").images["g"]
    depth = fake_disparity(load_rgb(src / "g.png"))
    gray = ((depth - depth.min()) / (depth.max() - depth.min()) * 255.0).astype(np.uint8)   # the Space's recipe
    assert (rec["output"], rec["min"], rec["max"]) == ("gray8", gray.min(), gray.max())
    np.testing.assert_array_equal(read_depth_png(tmp_path / "out" / "g.png"), quantize(gray.astype(np.float32))[0])


def test_silent_server_fails_fast_instead_of_hanging():
    """A Space that accepts connections but never answers (building, asleep) hits the connection deadline."""
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/"
        with pytest.raises(BackendError, match=r"did not answer within 1 s \(building or waking up\?\)"):
            SpaceBackend(url, connect_timeout_s=1).open()


def test_which_errors_are_retried():
    import concurrent.futures

    import httpx
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError, TooManyRequestsError

    from preprocess.backends.space import is_transient

    retried = [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), concurrent.futures.CancelledError(),
               TimeoutError(), QueueError("Queue is full!"), TooManyRequestsError("429"), KeyError("unexpected_error")]
    assert all(is_transient(e) for e in retried)
    assert not any(is_transient(e) for e in (AppError("boom"), ValueError("api"), KeyError("other"), OSError(28)))
