"""A loopback stand-in for the ``depth-anything/Depth-Anything-V2`` Space (Gradio, numpy, Pillow; no torch).

Same endpoint as the real Space: ``/on_submit`` with one ``gr.Image(type="numpy")`` input and three
outputs in order: an ImageSlider pair, a ``gr.File`` 8-bit gray PNG (per-image min-max), a ``gr.File``
16-bit "raw" PNG made with the Space's recipe ``depth.astype('uint16')``. The fake model is
``fake_disparity`` (luminance x scale / 255; scale 1000 > 255 so an accidental 8-bit path shows).

Failure injection is keyed on the top-left pixel of the uploaded image, so one server serves every test:

* magenta ``(255, 0, 255)``: the app raises (generic ``AppError`` on the client, every attempt);
* yellow ``(255, 255, 0)``: the first attempt for that image raises, later ones succeed (retry path);
* cyan ``(0, 255, 255)``: a ZeroGPU-style quota ``gr.Error``;
* blue ``(0, 0, 255)``: the "raw" file is an 8-bit PNG (a Space whose 16-bit output broke);
* orange ``(255, 128, 0)``: both depth files are empty (a Space whose outputs broke for this image).

Run as a script it binds 127.0.0.1 on a free port and prints ``FAKE_SPACE_URL=<url>``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

MAGENTA, YELLOW, CYAN, BLUE, ORANGE = (255, 0, 255), (255, 255, 0), (0, 255, 255), (0, 0, 255), (255, 128, 0)
QUOTA_MESSAGE = "You have exceeded your GPU quota (60s requested vs. 56s left). Try again in 0:09:48"


def fake_disparity(rgb: np.ndarray, scale: float = 1000.0) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` -> float32 ``[H, W]`` disparity, ``luminance * scale / 255``.

    Luminance in exact integer thousandths, then one rounded multiply: the server process and a test's
    process get the same bits on any CPU (a float dot product may sum in another order)."""
    lum = rgb.astype(np.int64) @ np.array([299, 587, 114], np.int64)
    return lum.astype(np.float32) * np.float32(scale / 255_000.0)


def build(scale: float = 1000.0, show_error: bool = False):
    """The Gradio app (not launched)."""
    import gradio as gr

    seen_yellow: set[bytes] = set()
    lock = threading.Lock()
    tmp = tempfile.mkdtemp(prefix="fake-space-")

    def on_submit(image: np.ndarray):
        corner = tuple(int(v) for v in image[0, 0, :3])
        if corner == MAGENTA:
            raise RuntimeError("fake model failure")
        if corner == CYAN:
            raise gr.Error(QUOTA_MESSAGE)
        if corner == YELLOW:
            key = image.tobytes()
            with lock:
                first = key not in seen_yellow
                seen_yellow.add(key)
            if first:
                raise RuntimeError("fake transient failure")
        depth = fake_disparity(image[..., :3], scale)
        fd, raw_path = tempfile.mkstemp(suffix=".png", dir=tmp)
        os.close(fd)
        Image.fromarray(depth.astype("uint16") if corner != BLUE else np.zeros(depth.shape, np.uint8)).save(raw_path)
        span = float(depth.max() - depth.min()) or 1.0
        gray = ((depth - depth.min()) / span * 255.0).astype(np.uint8)
        fd, gray_path = tempfile.mkstemp(suffix=".png", dir=tmp)
        os.close(fd)
        Image.fromarray(gray).save(gray_path)
        if corner == ORANGE:
            for empty in (raw_path, gray_path):
                open(empty, "wb").close()
        colored = np.repeat(gray[..., None], 3, axis=2)
        return [(image, colored), gray_path, raw_path]

    with gr.Blocks(analytics_enabled=False) as demo:
        input_image = gr.Image(label="Input Image", type="numpy")
        submit = gr.Button("Compute Depth")
        slider = gr.ImageSlider(label="Depth Map with Slider View")
        gray_file = gr.File(label="Grayscale depth map")
        raw_file = gr.File(label="16-bit raw output (can be considered as disparity)")
        submit.click(on_submit, inputs=[input_image], outputs=[slider, gray_file, raw_file])
    demo.queue(default_concurrency_limit=1)
    demo.fake_tmp = tmp
    demo.fake_show_error = show_error
    return demo


def launch(scale: float = 1000.0, show_error: bool = False):
    """Start in this process on 127.0.0.1; return ``(url, demo)``. Stop with ``demo.close()``."""
    demo = build(scale, show_error)
    demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True,
                show_error=show_error)
    return demo.local_url, demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1000.0)
    parser.add_argument("--show-error", action="store_true")
    args = parser.parse_args()
    url, demo = launch(args.scale, args.show_error)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"FAKE_SPACE_URL={url}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    demo.close()
    import shutil

    shutil.rmtree(demo.fake_tmp, ignore_errors=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
