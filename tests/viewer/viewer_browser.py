"""A real headless Chromium driven over the DevTools protocol (Debian's ``chromium``; no Python browser driver)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
from websockets.sync.client import connect



def find_chromium() -> tuple[str | None, str]:
    """A Chromium on PATH; else, as root with apt-get (CI), Debian's ``chromium`` installed first, as the Slurm
    tests install theirs. Returns its path, or None and why the browser tests skip."""
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if found:
        return found, ""
    if os.environ.get("S3DGS_SKIP_BROWSER"):
        return None, "S3DGS_SKIP_BROWSER is set: browser tests not run"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "no chromium on PATH and no root apt-get to install it (Debian: apt-get install -y chromium)"
    proc = subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True, capture_output=True,
                          text=True, timeout=1200, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    found = shutil.which("chromium")
    why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return found, "" if found else f"chromium not installable with apt-get: {why}"


CHROMIUM, SKIP_REASON = find_chromium()


class Browser:
    """One headless Chromium with one page, ``size`` pixels; WebGL through SwiftShader (no GPU needed)."""

    def __init__(self, profile: Path, size: tuple[int, int] = (640, 480)):
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu-sandbox", "--use-angle=swiftshader",
             "--enable-unsafe-swiftshader", "--no-first-run", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools server")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        new_page = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
        page = json.load(urllib.request.urlopen(new_page, timeout=30))
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def open(self, url: str, timeout: float = 30) -> None:
        """Navigate to ``url`` and wait for the document to load."""
        self.call("Page.navigate", url=url)
        end = time.monotonic() + timeout
        while not (self.evaluate("document.URL") == url.rstrip("/") + "/" or self.evaluate("document.URL") == url) \
                or self.evaluate("document.readyState") != "complete":
            if time.monotonic() > end:
                raise RuntimeError(f"{url} did not load in {timeout} s")
            time.sleep(0.2)

    def evaluate(self, js: str):
        return self.call("Runtime.evaluate", expression=js, returnByValue=True)["result"].get("value")

    def screenshot(self) -> np.ndarray:
        """The page as ``[H, W, 3]`` uint8 RGB."""
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.kill()
        self.proc.wait()
