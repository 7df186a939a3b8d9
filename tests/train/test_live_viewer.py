"""viewer=true: a real headless Chromium watches the real Hydra app train (the step counter advances, the scene
is drawn); the endless run is killed at the end."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "viewer"))
from viewer_browser import CHROMIUM, SKIP_REASON, Browser  # noqa: E402

STEP_JS = """(() => {
  const label = [...document.querySelectorAll('label,p,div')]
    .find(e => e.childElementCount === 0 && e.textContent.trim() === 'Step');
  for (let n = label; n; n = n.parentElement) { const i = n.querySelector('input'); if (i) return Number(i.value); }
  return null; })()"""


@pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
def test_browser_follows_training(python, train_env, example_dir, tmp_path):
    out = tmp_path / "train.out"
    with open(out, "w") as f:  # a file, not a pipe: nothing blocks on unread output
        proc = subprocess.Popen([python, "-m", "s3dgs.train", f"data_dir={example_dir}", "steps=100000", "viewer=true",
                                 "viewer_port=0", "init.from_priors=false", "lambda_depth=0", "log.tensorboard=false",
                                 f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=train_env,
                                stdout=f, stderr=subprocess.STDOUT)
    browser = None
    try:
        deadline = time.monotonic() + 120
        while not (m := re.search(r"viewer at http://localhost:(\d+)", out.read_text())):
            assert time.monotonic() < deadline and proc.poll() is None, out.read_text()[-3000:]
            time.sleep(0.3)
        profile = tmp_path / "chromium"
        profile.mkdir()
        browser = Browser(profile)
        browser.call("Emulation.setDeviceMetricsOverride", width=1200, height=700, deviceScaleFactor=1, mobile=False)
        browser.open(f"http://127.0.0.1:{m.group(1)}")
        seen = []
        while len(set(seen)) < 3:
            assert time.monotonic() < deadline and proc.poll() is None, (seen, out.read_text()[-3000:])
            if step := browser.evaluate(STEP_JS):
                seen.append(step)
            time.sleep(0.5)
        assert seen == sorted(seen), seen  # the counter follows training
        canvas = browser.screenshot()[150:650, 0:500]
        assert canvas.std() > 15, canvas.std()  # the scene drawn from the first training camera, not a blank page
    finally:
        if browser is not None:
            browser.close()
        proc.kill()
        proc.wait()
