"""``python -m s3dgs.view RUN_DIR|PLY [--port P]``: look at trained Gaussians in a web browser.

A viser server with nerfview's viewer, as gsplat's ``examples/simple_viewer.py``: the browser sends its camera,
the server renders with :func:`s3dgs.splat.rasterize` (gsplat on CUDA, our rasterizer on CPU; nerfview
lowers the resolution while the camera moves) and streams the image back. Orbit with the mouse, fly with
WASD / QE; the Rendering panel switches between RGB and depth (colour-mapped inverse depth). It listens on
127.0.0.1 (forward the port over SSH: ``ssh -L 8080:localhost:8080 host``). During training (``viewer=true``)
:class:`TrainingViewer` shows the Gaussians as they are optimised, the step and the Gaussian count, and can
pause training.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import nerfview
import numpy as np
import torch
import viser
from gsplat.cuda._torch_impl import _quat_scale_to_covar_preci

from preprocess.atomic_io import atomic_write_bytes
from preprocess.devices import pick_device
from preprocess.errors import S3dgsError
from s3dgs.checkpoint import State
from s3dgs.data.frames import DataError, read_layout
from s3dgs.data.scene import Scene
from s3dgs.errors import RunError
from s3dgs.images import depth_colors, disparity_range
from s3dgs.export import load_model
from s3dgs.gaussians import SH_C0
from s3dgs.run import load_run_config, resolve_data
from s3dgs.splat import RenderOptions, rasterize

log = logging.getLogger(__name__)

CPU_VIEWER_RES = 512  # longest side of the still image on CPU (nerfview's default, 2048, takes seconds there)
Params = Callable[[], "dict[str, torch.Tensor]"]  # the Gaussians to draw now (gsplat's names, activations not applied)


def camera_matrices(camera: nerfview.CameraState, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """World-to-camera ``[1, 4, 4]`` and intrinsics ``[1, 3, 3]`` of a viser camera (OpenCV axes, vertical fov)."""
    c2w = torch.from_numpy(np.asarray(camera.c2w, dtype=np.float64))
    K = torch.from_numpy(camera.get_K((width, height)).astype(np.float32))
    return torch.linalg.inv(c2w).float()[None], K[None]


@torch.no_grad()
def render_view(g: dict[str, torch.Tensor], viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,
                depth: bool, backend: str = "auto") -> np.ndarray:
    """``[H, W, 3]`` uint8: the Gaussians ``g`` in RGB (black background) or, with ``depth``, their expected
    depth as colour-mapped inverse depth (:func:`s3dgs.images.depth_colors` over the range of the pixels
    they cover at least half, faded to black with their opacity)."""
    rgb, z, alpha, _ = rasterize(g, viewmat, K, width, height, options=RenderOptions(backend=backend))
    if depth:
        z, a = z[0].cpu(), alpha[0].cpu()
        covered = z[a > 0.5]
        if not len(covered):
            return np.zeros((height, width, 3), np.uint8)
        return (depth_colors(z, disparity_range(covered)) * a[..., None].numpy()).round().astype(np.uint8)
    return (rgb[0].clamp(0, 1) * 255).round().byte().cpu().numpy()


class SplatViewer(nerfview.Viewer):
    """nerfview's viewer drawing ``params()`` with :func:`render_view`, plus a render-mode dropdown and the
    Gaussian count."""

    def __init__(self, server: viser.ViserServer, params: Params, mode: str = "rendering", backend: str = "auto"):
        self.params, self.backend = params, backend
        super().__init__(server, self.render, mode=mode)
        server.gui.set_panel_label("s3dgs")
        if params()["means"].device.type == "cpu":
            self.render_tab_state.viewer_res = CPU_VIEWER_RES
            self._rendering_tab_handles["viewer_res_slider"].value = CPU_VIEWER_RES

    def _populate_rendering_tab(self) -> None:
        with self._rendering_folder:
            self.render_mode = self.server.gui.add_dropdown("Render mode", ("RGB", "Depth"), initial_value="RGB")
            self.num_gaussians = self.server.gui.add_number("Gaussians", initial_value=0, disabled=True)
        self.render_mode.on_update(self.rerender)
        super()._populate_rendering_tab()

    def render(self, camera: nerfview.CameraState, tab: nerfview.RenderTabState) -> np.ndarray:
        w, h = (tab.render_width, tab.render_height) if tab.preview_render else (tab.viewer_width, tab.viewer_height)
        viewmat, K = camera_matrices(camera, w, h)
        g = self.params()
        self.num_gaussians.value = len(g["means"])
        return render_view(g, viewmat, K, w, h, self.render_mode.value == "Depth", self.backend)


def look_from(server: viser.ViserServer, camtoworld: np.ndarray, target: np.ndarray) -> None:
    """Start new clients at ``camtoworld [4, 4]`` (OpenCV axes) looking at ``target [3]``, its up as world up."""
    up = -camtoworld[:3, 1]
    server.scene.set_up_direction(tuple(up))
    server.initial_camera.position = tuple(camtoworld[:3, 3])
    server.initial_camera.look_at = tuple(target)
    server.initial_camera.up_direction = tuple(up)


def default_camera(means: torch.Tensor) -> np.ndarray:
    """A camera-to-world ``[4, 4]`` looking at the median of ``means [N, 3]`` along +z from 2.5 x the
    90th-percentile distance (for a bare PLY, whose cameras are unknown)."""
    centre = means.median(0).values
    radius = float((means - centre).norm(dim=1).quantile(0.9))
    c2w = np.eye(4)
    c2w[:3, 3] = centre.double().numpy() - np.array([0.0, 0.0, 2.5 * max(radius, 1e-3)])
    return c2w


def run_camera(model: str | Path) -> np.ndarray | None:
    """The first training camera by name (camera-to-world ``[4, 4]``, OpenCV axes) of the run folder ``model``,
    read from its dataset; None for a PLY file, or (with a warning) when the dataset cannot be read."""
    model = Path(model).expanduser()
    if not (model / ".hydra" / "config.yaml").is_file():
        return None
    try:
        cfg = load_run_config(model)
        frames = read_layout(resolve_data(cfg)[0], cfg.data.type, cfg.data.images).frames
    except (RunError, DataError, OSError) as e:
        log.warning("%s: the run's cameras cannot be read (%s); starting from a view of the whole model", model, e)
        return None
    return min(frames, key=lambda f: f.name).camtoworld


def start_view(server: viser.ViserServer, model: str | Path, means: torch.Tensor) -> None:
    """Start new clients at the run's first camera (else :func:`default_camera`) looking at the median of
    ``means [N, 3]``."""
    c2w = run_camera(model)
    look_from(server, default_camera(means) if c2w is None else c2w, means.median(0).values.double().numpy())


def serve(model: str | Path, port: int = 8080, host: str = "127.0.0.1", device: str = "auto") -> SplatViewer:
    """Start the viewer of a run folder or PLY on ``host:port``; returns it (the server runs in threads)."""
    dev = pick_device(device)
    g = {k: v.to(dev) for k, v in load_model(model).items()}
    server = viser.ViserServer(host=host, port=port, verbose=False)
    start_view(server, model, g["means"].cpu())
    return SplatViewer(server, lambda: g)


def export_page(model: str | Path, out_dir: str | Path) -> Path:
    """Write ``<out_dir>/index.html``: viser's client (from its wheel) with the Gaussians of ``model`` (run folder
    or PLY) embedded as a recorded scene, drawn by viser's WebGL splat renderer in the browser. Opens from disk,
    no server. Colours are the SH degree-0 (view-independent) ones; returns the page's path."""
    g = load_model(model)
    covars, _ = _quat_scale_to_covar_preci(g["quats"], torch.exp(g["scales"]), compute_preci=False)
    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        start_view(server, model, g["means"])
        rgbs = (g["sh0"][:, 0] * SH_C0 + 0.5).clamp(0, 1)
        server.scene.add_gaussian_splats("/splats", centers=g["means"].numpy(), covariances=covars.numpy(),
                                         rgbs=rgbs.numpy(), opacities=torch.sigmoid(g["opacities"])[:, None].numpy())
        html = server.scene.as_html(dark_mode=True)
    finally:
        server.stop()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "index.html", html.encode())
    return out / "index.html"


class TrainingViewer:
    """The viewer during training (``viewer=true``) of ``st``'s Gaussians on ``port``, starting at ``scene``'s first
    training camera: the loop runs each step inside :meth:`training_step`."""

    def __init__(self, scene: Scene, st: State, port: int, backend: str = "auto"):
        self.st = st
        self.server = viser.ViserServer(host="127.0.0.1", port=port, verbose=False)
        view = scene.train[0]
        points = scene.points if len(scene.points) else st.params["means"].detach().cpu()
        look_from(self.server, view.camtoworld.double().numpy(), points.median(0).values.double().numpy())
        self.viewer = SplatViewer(self.server, lambda: {k: v.detach() for k, v in st.params.items()}, mode="training",
                                  backend=backend)
        self.pixels = view.width * view.height
        log.info("viewer at http://localhost:%d (over SSH: ssh -L %d:localhost:%d <this host>)",
                 self.server.get_port(), self.server.get_port(), self.server.get_port())

    @contextlib.contextmanager
    def training_step(self) -> Iterator[None]:
        """Wait while paused in the browser; hold the render lock for the step; then update the viewer."""
        while self.viewer.state == "paused":
            time.sleep(0.05)
        tic = time.perf_counter()
        with self.viewer.lock:
            yield
        self.viewer.render_tab_state.num_train_rays_per_sec = self.pixels / max(time.perf_counter() - tic, 1e-9)
        self.viewer.update(self.st.step, self.pixels)

    def close(self) -> None:
        self.viewer.complete()
        self.server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m s3dgs.view",
                                description="Look at trained Gaussians in a web browser (viser + nerfview), or write "
                                            "a page that shows them with no server (--export).",
                                epilog="example: python -m s3dgs.view outputs/2025-01-31/12-00-00 --port 8080")
    p.add_argument("model", metavar="RUN_DIR|PLY", help="a run folder of python -m s3dgs.train, or a 3DGS .ply")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--export", type=Path, metavar="DIR", default=None,
                   help="instead of serving, write DIR/index.html: a page that shows the splat from disk, no server")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.export:
            print(f"wrote {export_page(args.model, args.export)}")
            return 0
        viewer = serve(args.model, args.port, args.host, args.device)
    except (S3dgsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"viewer at http://{args.host}:{viewer.server.get_port()} (Ctrl-C to stop)", flush=True)
    try:
        viewer.server.sleep_forever()
    except KeyboardInterrupt:
        viewer.server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
