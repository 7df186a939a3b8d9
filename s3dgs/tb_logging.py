"""TensorBoard logging of a training run into ``RUN_DIR/tb/`` (``log.*`` in ``configs/train.yaml``).

Every ``log.every`` steps: ``train/loss``, ``train/photometric``, ``train/depth`` (the weighted depth term),
``train/psnr`` (of that step's view), ``train/num_gaussians``, ``train/sec_per_step``, ``time/train_seconds`` and
``time/train_cpu_seconds`` (wall and CPU time of this process's training so far, evaluations excluded: the
x-axis of a time-to-quality curve), ``lr/<param>``, and with
priors ``depth/mean_weight`` and ``depth/views_<state>`` (their verdicts, :mod:`s3dgs.reliability`; each
view's weight ``depth_weight/<key>`` at every evaluation).
Every ``log.eval_every`` steps and at the last step: ``test/<metric>`` (the means of
:func:`s3dgs.metrics.view_metrics` over the test views, as in ``metrics.json``) and, for the first
``MAX_IMAGES`` test views, an image ``test_view/<key>``: render | ground truth | rendered depth | prior
aligned to it (depths as colour-mapped inverse depth over the render's range). The global step is the
number of optimisation steps done, so a resumed run continues its curves (later events are purged).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from s3dgs import reliability
from s3dgs.checkpoint import State
from s3dgs.data.scene import Scene, View
from s3dgs.errors import TrainError
from s3dgs.images import depth_colors, disparity_range, to_uint8
from s3dgs.metrics import evaluate_views, prior_fitted_to, psnr
from s3dgs.splat import Params

log = logging.getLogger(__name__)

MAX_IMAGES = 4  # test views shown as images at each evaluation


def panel(view: View, rgb: torch.Tensor, depth: torch.Tensor, kind: str | None) -> np.ndarray:
    """render | ground truth | rendered depth | aligned prior (black without a prior): ``[H, 4W, 3]`` uint8
    from ``rgb [H, W, 3]`` and z-depth ``depth [H, W]`` (CPU)."""
    bounds = disparity_range(depth)
    prior = np.zeros_like(to_uint8(rgb))
    if view.prior is not None and kind is not None and view.prior_valid.any():
        z = prior_fitted_to(view.prior, view.prior_valid, kind, depth)
        prior = depth_colors(z, bounds) * (z > 0).numpy()[..., None].astype(np.uint8)
    return np.hstack([to_uint8(rgb), to_uint8(view.image), depth_colors(depth, bounds), prior])


ModelRender = Callable[[Params, View], tuple[torch.Tensor, torch.Tensor]]
"""``(params, view) -> (rgb [1, H, W, 3], z-depth [1, H, W])`` as the final evaluation renders."""


class TensorBoardLog:
    """Writes one training run's events into ``out_dir/tb``; :meth:`after_step` is called by the loop after every
    step of a run of ``steps`` steps on ``scene``, whose test views it evaluates with ``render``."""

    def __init__(self, out_dir: Path, cfg: DictConfig, steps: int, scene: Scene, render: ModelRender,
                 start_step: int):
        if cfg.every < 1 or cfg.eval_every < 0:
            raise TrainError(f"log.every={cfg.every} log.eval_every={cfg.eval_every}: every must be at least 1 "
                             "and eval_every at least 0 (0 = only at the last step)")
        self.every, self.eval_every, self.steps = cfg.every, cfg.eval_every, steps
        self.scene, self.render = scene, render
        if not scene.test:
            log.warning("no test views: TensorBoard gets the training scalars only")
        # a resumed run drops what an earlier run logged after the checkpoint it continues from
        purge = start_step + 1 if start_step else None
        self.writer = SummaryWriter(str(Path(out_dir) / "tb"), purge_step=purge)
        self.logged_seconds, self.logged_step = 0.0, start_step  # train_seconds at the last logged step
        self.train_seconds = self.train_cpu_seconds = 0.0
        self.mark, self.cpu_mark = time.perf_counter(), time.process_time()

    def after_step(self, st: State, terms: dict[str, torch.Tensor], rgb: torch.Tensor, gt: torch.Tensor,
                   mask: torch.Tensor | None) -> float:
        """Log step ``st.step`` (steps done): scalars when due (``terms``: ``loss``, ``photometric``,
        ``depth``; ``rgb`` / ``gt [1, H, W, 3]``, ``mask [1, H, W]`` of the step's view), evaluation when due.
        Returns the seconds spent evaluating."""
        step, last = st.step, st.step == self.steps
        self.train_seconds += time.perf_counter() - self.mark
        self.train_cpu_seconds += time.process_time() - self.cpu_mark
        if step % self.every == 0 or last:
            w = self.writer
            w.add_scalar("time/train_seconds", self.train_seconds, step)
            w.add_scalar("time/train_cpu_seconds", self.train_cpu_seconds, step)
            for name, value in terms.items():
                w.add_scalar(f"train/{name}", float(value), step)
            w.add_scalar("train/psnr", float(psnr(rgb, gt, mask)), step)
            w.add_scalar("train/num_gaussians", len(st.params["means"]), step)
            w.add_scalar("train/sec_per_step",
                         (self.train_seconds - self.logged_seconds) / max(step - self.logged_step, 1), step)
            for name, opt in st.optimizers.items():
                w.add_scalar(f"lr/{name}", opt.param_groups[0]["lr"], step)
            if st.trust:
                w.add_scalar("depth/mean_weight", reliability.mean_weight(st.trust), step)
                for state, n in reliability.state_counts(st.trust).items():
                    w.add_scalar(f"depth/views_{state}", n, step)
        if st.trust and ((self.eval_every and step % self.eval_every == 0) or last):
            for key, t in st.trust.items():
                self.writer.add_scalar(f"depth_weight/{key}", t.weight, step)
        t_eval = time.perf_counter()
        if self.scene.test and ((self.eval_every and step % self.eval_every == 0) or last):
            self.evaluate(st)
        t_eval = time.perf_counter() - t_eval
        if step % self.every == 0 or last:
            self.writer.flush()
            self.logged_seconds, self.logged_step = self.train_seconds, step
        self.mark, self.cpu_mark = time.perf_counter(), time.process_time()
        return t_eval

    @torch.no_grad()
    def evaluate(self, st: State) -> None:
        """Test-view metrics and images at step ``st.step``, at full SH degree as the final evaluation."""
        scene = self.scene
        renders: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def render(view: View) -> tuple[torch.Tensor, torch.Tensor]:
            renders[view.key] = self.render(st.params, view)
            return renders[view.key]

        metrics = evaluate_views(render, scene.test, prior_kind=scene.prior_kind)[0]
        for name, value in metrics.items():
            if name != "num_views" and value is not None:
                self.writer.add_scalar(f"test/{name}", value, st.step)
        for view in scene.test[:MAX_IMAGES]:
            rgb, depth = renders[view.key]
            image = panel(view, rgb[0].clamp(0, 1).cpu(), depth[0].cpu(), scene.prior_kind)
            self.writer.add_image(f"test_view/{view.key}", image, st.step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()
