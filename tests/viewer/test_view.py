"""python -m s3dgs.view: a real server on 127.0.0.1 opened by a real headless Chromium."""

import re
import subprocess
import time

import numpy as np
import pytest
import torch

from s3dgs.gaussians import gaussians_from_ply
from s3dgs.view import main, render_view

from viewer_browser import CHROMIUM, SKIP_REASON, Browser

VIEWPORT = (1200, 700)
CANVAS = (slice(150, 650), slice(0, 500))  # left of viser's control panel, below its notifications


def colourful(img: np.ndarray) -> np.ndarray:
    """Pixels with chroma (the random splat colours); a blank, white or grey page has none."""
    return (img.max(-1).astype(int) - img.min(-1)) > 60


def settle(browser: Browser, timeout: float = 60, region: tuple[slice, slice] = CANVAS) -> np.ndarray:
    """Screenshot of ``region`` once it shows colour and two shots 1 s apart agree (nerfview refines a
    low-resolution frame into a full one)."""
    end, prev = time.monotonic() + timeout, None
    while time.monotonic() < end:
        img = browser.screenshot()[region]
        if colourful(img).mean() > 0.02 and prev is not None and np.abs(img.astype(int) - prev).mean() < 1:
            return img
        prev = img
        time.sleep(1)
    raise AssertionError("the canvas never showed a steady splat")


@pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
def test_browser_shows_the_splat_and_it_moves_with_the_camera(run_dir, python, repo_env, tmp_path):
    proc = subprocess.Popen([python, "-m", "s3dgs.view", str(run_dir), "--port", "0", "--device", "cpu"],
                            env=repo_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    browser = None
    try:
        url = next(m.group(1) for line in proc.stdout if (m := re.search(r"viewer at (http://127\.0\.0\.1:\d+)", line)))
        profile = tmp_path / "chromium"
        profile.mkdir()
        browser = Browser(profile)
        browser.call("Emulation.setDeviceMetricsOverride", width=VIEWPORT[0], height=VIEWPORT[1], deviceScaleFactor=1,
                     mobile=False)
        browser.open(url)
        before = settle(browser)
        cols = np.nonzero(colourful(before))[1]
        assert 0.02 < colourful(before).mean() < 0.9 and cols.min() > 0  # a splat on a black background
        for kind, x in (("mousePressed", 250), ("mouseMoved", 300), ("mouseMoved", 350), ("mouseReleased", 350)):
            browser.call("Input.dispatchMouseEvent", type=kind, x=x, y=400, button="left",
                         buttons=0 if kind == "mouseReleased" else 1, clickCount=1)
            time.sleep(0.1)  # a drag over time, as a hand makes it
        time.sleep(1)
        after = settle(browser)
        # both frames are steady, so what differs is the camera: the drag orbited it around the splat
        assert np.abs(after.astype(int) - before).mean() > 10 and colourful(after).mean() > 0.02
    finally:
        if browser is not None:
            browser.close()
        proc.kill()
        proc.wait()


@pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
def test_exported_page_shows_the_splat_from_disk_without_a_server(run_dir, python, repo_env, tmp_path):
    page_dir = tmp_path / "page"
    proc = subprocess.run([python, "-m", "s3dgs.view", str(run_dir), "--export", str(page_dir)], env=repo_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr  # the command has exited: nothing serves the page
    assert proc.stdout.strip().endswith(f"wrote {page_dir / 'index.html'}")
    assert [p.name for p in page_dir.iterdir()] == ["index.html"]
    profile = tmp_path / "chromium"
    profile.mkdir()
    browser = Browser(profile)
    try:
        browser.call("Emulation.setDeviceMetricsOverride", width=VIEWPORT[0], height=VIEWPORT[1], deviceScaleFactor=1,
                     mobile=False)
        browser.open((page_dir / "index.html").as_uri())
        img = settle(browser, region=(slice(150, 700), slice(0, 1200)))
        assert 0.02 < colourful(img).mean() < 0.9  # the splat's colours drawn by viser's WebGL renderer
    finally:
        browser.close()


def test_depth_mode_colours_near_warm_and_far_cool(run_dir):
    g = gaussians_from_ply(run_dir / "point_cloud.ply")
    near = {k: v[:300] for k, v in g.items()}
    near["means"] = near["means"] * 0.4 + torch.tensor([-0.8, 0.0, 0.0])
    far = {k: v[300:] for k, v in g.items()}
    far["means"] = far["means"] * 0.4 + torch.tensor([1.8, 0.0, 4.0])
    both = {k: torch.cat([near[k], far[k]]) for k in g}
    K = torch.tensor([[[60.0, 0, 64], [0, 60, 48], [0, 0, 1]]])
    viewmat = torch.eye(4)[None]
    viewmat[0, 2, 3] = 2.0  # camera 2 units before the near cluster (centre at u = 40), 6 before the far (u = 82)
    img = render_view(both, viewmat, K, 128, 96, depth=True, backend="torch")
    rgb = render_view(both, viewmat, K, 128, 96, depth=False, backend="torch")
    assert img.shape == rgb.shape == (96, 128, 3) and img.dtype == np.uint8
    near_px, far_px = img[44:52, 36:44].reshape(-1, 3).mean(0), img[46:50, 81:84].reshape(-1, 3).mean(0)
    assert near_px[0] - near_px[2] > far_px[0] - far_px[2] + 100  # turbo: red near, blue far
    assert not np.array_equal(img, rgb)


def test_bad_input_is_one_error_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing"), "--export", str(tmp_path / "page")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'missing' / 'point_cloud.ply'} not found: pass a finished run folder of "
                   "python -m s3dgs.train or a 3DGS .ply file"]
    assert not (tmp_path / "page").exists()
