"""The viewer on the GPU, without a browser: ``python -m s3dgs.view``'s server (``serve``) puts the run's Gaussians
on the GPU, and the function nerfview calls for each camera (``SplatViewer.render``) draws a test view as training
measured it and as our CPU rasterizer draws it."""

import math

import nerfview
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from s3dgs.data.scene import load_scene
from s3dgs.view import camera_matrices, render_view, serve

from .conftest import GPU

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU: the viewer renders with gsplat's CUDA kernels")


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2))


def test_viewer_renders_a_test_view_on_the_gpu(gpu_main_run, example_dir):
    cfg = OmegaConf.load(gpu_main_run.dir / ".hydra" / "config.yaml")
    d = cfg.data
    scene = load_scene(example_dir, d.type, d.images, d.downscale, d.background, d.test_every, d.num_train_views)
    view = scene.test[0]
    fy = float(view.K[1, 1])
    assert float(view.K[0, 0]) == pytest.approx(fy) and float(view.K[0, 2]) == view.width / 2  # nerfview's camera
    camera = nerfview.CameraState(fov=2 * math.atan(view.height / (2 * fy)), aspect=view.width / view.height,
                                  c2w=view.camtoworld.double().numpy())
    tab = nerfview.RenderTabState(viewer_width=view.width, viewer_height=view.height)

    viewer = serve(gpu_main_run.dir, port=0, device=GPU)
    try:
        g = viewer.params()
        assert all(v.device.type == GPU for v in g.values())
        rgb = viewer.render(camera, tab)  # what nerfview calls for each camera of each browser
        assert viewer.num_gaussians.value == gpu_main_run.metrics["num_gaussians"]
    finally:
        viewer.server.stop()
    assert rgb.shape == (view.height, view.width, 3) and rgb.dtype == np.uint8
    gt = (view.image.numpy() * 255).round().astype(np.uint8)
    measured = gpu_main_run.metrics["views"]["test"][view.key]["psnr"]  # the run's own render of this view
    assert abs(psnr_u8(rgb, gt) - measured) <= 0.3, (psnr_u8(rgb, gt), measured)

    viewmat, K = camera_matrices(camera, view.width, view.height)
    on_cpu = render_view({k: v.cpu() for k, v in g.items()}, viewmat, K, view.width, view.height, depth=False,
                         backend="torch")
    diff = np.abs(rgb.astype(int) - on_cpu)
    assert diff.max() <= 2 and diff.mean() <= 0.05, (diff.max(), diff.mean())  # 8-bit rounding apart

    depth = render_view(g, viewmat, K, view.width, view.height, depth=True)
    assert depth.shape == rgb.shape and depth.dtype == np.uint8
    assert (depth.max(-1) > 0).mean() > 0.9 and not np.array_equal(depth, rgb)  # coloured almost everywhere
