"""The training loop: Gaussians + Adam + a gsplat densification strategy + photometric and depth losses.

:func:`train` is what ``python -m s3dgs.train`` runs inside Hydra's run directory; it takes the composed
config and writes ``metrics.json``, ``point_cloud.ply``, ``ckpt.pt`` and ``renders/`` there.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from preprocess.atomic_io import atomic_write_json
from preprocess.devices import pick_device
from s3dgs import alignment, checkpoint, reliability, splat
from s3dgs.checkpoint import Record, State
from s3dgs.data.scene import Scene, View
from s3dgs.densification import make_densification
from s3dgs.depth_terms import make_depth_term
from s3dgs.errors import TrainError
from s3dgs.gaussians import make_optimizers, save_ply
from s3dgs.init import init_gaussians, initial_points, uses_prior_points
from s3dgs.losses import photometric_loss, to_prior_space
from s3dgs.metrics import psnr
from s3dgs.report import depth_facts, run_metrics
from s3dgs.run import load_run_scene, resolve_data
from s3dgs.strategy import gaussian_budget, scaled_steps
from s3dgs.tb_logging import TensorBoardLog

log = logging.getLogger(__name__)


class Trainer:
    """One run of ``cfg`` into ``out_dir``: its scene, densification, depth term and the priors' verdicts, built
    once; states (:class:`~s3dgs.checkpoint.State`) are trained by :meth:`fit`."""

    def __init__(self, cfg: DictConfig, out_dir: Path):
        self.cfg, self.out_dir = cfg, out_dir
        self.device = pick_device(cfg.device)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)  # gsplat samples with NumPy beyond 2^24 Gaussians
        if cfg.steps < 1:
            raise TrainError(f"steps={cfg.steps}: must be at least 1")
        self.scene: Scene = load_run_scene(cfg, self.device)
        self.background = torch.tensor(self.scene.background, dtype=torch.float32, device=self.device)
        self.random_background = cfg.data.background == "random"
        if self.random_background and all(v.alpha is None for v in self.scene.train):
            raise TrainError("data.background=random re-composites transparent pixels, but no training image has an "
                             "alpha channel; use data.background=null or [r, g, b]")
        self.extent = self.scene.extent()
        self.densify = make_densification(cfg.strategy, cfg.steps, sum(v.width * v.height for v in self.scene.train),
                                          self.device)
        self.render_options = splat.RenderOptions.of(cfg, absgrad=self.densify.absgrad)
        self.depth = make_depth_term(cfg.depth_loss)
        self.trust, self.anchors = self.prepare_priors()
        self.sh_interval = scaled_steps(cfg.sh_degree_interval, cfg.steps)

    def prepare_priors(self) -> tuple[dict[str, reliability.Trust], dict[str, alignment.Alignment]]:
        """``(trust, anchors)``: the depth term prepared on the scene (:meth:`DepthTerm.prepare
        <s3dgs.depth_terms.base.DepthTerm.prepare>`: it checks the loss fits the prior kind), each view's
        :class:`~s3dgs.reliability.Trust` in its prior as the sparse points judge it (``depth_loss.trust``), and each
        view's anchor fit to the points (those of trusted views seed points from their priors, :attr:`init_fits`).
        Checks that a depth folder given with ``lambda_depth > 0`` holds a usable prior for some training image. Both
        empty (and the term unprepared) without priors, or when neither the depth term nor the initialisation uses
        them."""
        kind = self.scene.prior_kind
        if kind is None:
            if self.cfg.lambda_depth > 0:
                log.warning("lambda_depth=%s but no depth priors (set depth_dir=...): training without the depth term",
                            self.cfg.lambda_depth)
            return {}, {}
        if self.cfg.lambda_depth <= 0 and not uses_prior_points(self.cfg.init, kind):
            return {}, {}
        if self.cfg.lambda_depth > 0 and all(v.prior is None for v in self.scene.train):
            if self.scene.prior_source == "sensor":
                raise TrainError("none of the training images has readable sensor depth (depth_file_path; see the "
                                 "warnings above): fix the depth files or set lambda_depth=0")
            depth_dir = resolve_data(self.cfg)[1]
            key = self.scene.train[0].key
            if not any((depth_dir / f"{v.key}.png").exists() for v in self.scene.train):
                there = sorted(p.relative_to(depth_dir).as_posix() for p in depth_dir.rglob("*")
                               if p.is_file() and not p.name.startswith("."))
                example = next((n for n in there if n.endswith(".png")), there[0]) if there else None
                found = f"found e.g. {example}" if example else "it is empty"
                raise TrainError(f"depth_dir {depth_dir}: no depth PNG matches a training image (expected "
                                 f"<image key>.png, e.g. {key}.png; {found}); make the priors with "
                                 "python -m preprocess.generate_depth on the scene's image folder, point depth_dir at "
                                 "the right folder, or set lambda_depth=0")
            raise TrainError(f"depth_dir {depth_dir}: none of the {len(self.scene.train)} training images has a usable "
                             "prior (see the warning above); regenerate them with python -m preprocess.generate_depth "
                             "or set lambda_depth=0")
        anchors = self.depth.prepare(self.scene, self.cfg.seed)
        return self._judge_priors(anchors.fits, anchors.problems), anchors.fits

    def _judge_priors(self, anchors: dict[str, alignment.Alignment], problems: dict[str, str]
                      ) -> dict[str, reliability.Trust]:
        """Each training view's :class:`~s3dgs.reliability.Trust` in its prior as the sparse points judge it
        (``depth_loss.trust.mode=all``: every prior fully trusted; sensor depth is trusted as measured, without
        the points' verdict or the probe), logged in one line."""
        t, train = self.cfg.depth_loss.trust, self.scene.train
        if t.mode not in ("measured", "all"):
            raise TrainError(f"depth_loss.trust.mode={t.mode!r}: use measured or all")
        if t.mode == "all" or self.scene.prior_source == "sensor":
            why = "sensor depth" if self.scene.prior_source == "sensor" else "depth_loss.trust.mode=all"
            return {v.key: reliability.Trust(1.0, "trusted", why) for v in train if v.prior is not None}
        trust = reliability.point_trusts(train, self.scene.points, self.scene.prior_kind, set(anchors), problems,
                                         t.points_agree, t.points_reject)
        log.info("depth prior, judged by the sparse points: %s", reliability.summary(trust))
        return trust

    @property
    def init_fits(self) -> dict[str, alignment.Alignment]:
        """The anchor fits of the views whose priors are trusted: only these seed points from their priors."""
        return {k: f for k, f in self.anchors.items() if k in self.trust and self.trust[k].state == "trusted"}

    def probe_priors(self) -> float:
        """Judge the priors the sparse points left ``pending`` by the render of a probe: ``depth_loss.trust.probe`` x
        ``steps`` photometric-only steps from the initialisation without any prior (its own state, same schedule),
        then each pending view's :func:`~s3dgs.reliability.render_verdict`. The run proper then starts afresh with
        the same seeds. Nothing to do without pending views (none when neither the depth term nor the
        initialisation uses the priors). Returns the probe's seconds (part of the run's training time)."""
        pending = [v for v in self.scene.train if v.key in self.trust and self.trust[v.key].state == "pending"]
        steps = int(self.cfg.depth_loss.trust.probe * self.cfg.steps)
        if not pending or steps < 1:
            return 0.0
        log.info("depth prior: a %d-step photometric probe judges the %d priors the sparse points could not", steps,
                 len(pending))
        t0 = time.perf_counter()
        st = self._initial_state(prior_fits={})
        for step in tqdm(range(steps), desc="probe", mininterval=1.0, dynamic_ncols=True):
            self.train_step(st, step, self.next_view(st), use_depth=False)
        with torch.no_grad():
            self.judge_by_render(lambda v: self.render(st.params, v, self.cfg.sh_degree)[1:3], pending)
        torch.manual_seed(self.cfg.seed)  # the run proper draws as it would without the probe
        np.random.seed(self.cfg.seed)
        return time.perf_counter() - t0

    def judge_by_render(self, render: Callable[[View], tuple[torch.Tensor, torch.Tensor]], views: list[View]) -> None:
        """Each of ``views``' verdict from ``render(view) -> (z-depth, alpha)`` (``[1, H, W]`` each): by the sparse
        points, relative to how well the render agrees with them (:func:`~s3dgs.reliability.points_reverdict`),
        else :func:`~s3dgs.reliability.render_verdict` from its prior's rank agreement with the render over the
        rendered surface; logged in one line."""
        t = self.cfg.depth_loss.trust
        renders: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

        def rendered(v: View) -> tuple[torch.Tensor, torch.Tensor]:  # each view rendered once
            if v.key not in renders:
                renders[v.key] = tuple(x[0].detach() for x in render(v))
            return renders[v.key]

        qualities: dict[str, float] = {}  # the render's rank agreement with the sparse points, per view
        for v in self.scene.train:
            if v.prior is None or len(self.scene.points) == 0:
                continue
            _, z, uv = alignment.seen_points(v, self.scene.points)
            if len(z) >= alignment.MIN_POINTS:
                qualities[v.key] = reliability.render_points_agreement(rendered(v)[0], z, uv)
        q = reliability.median_agreement(list(qualities.values()))
        bar = reliability.points_bar(q, t.points_agree, t.probe_reference, t.probe_least)
        for v in views:
            verdict = reliability.points_reverdict(self.trust[v.key], bar, qualities.get(v.key), t.probe_margin)
            if verdict is None:
                depth, alpha = rendered(v)
                mask = self.depth_mask(v, alpha)
                rho = reliability.render_agreement(to_prior_space(depth, self.scene.prior_kind, self.cfg.near_plane),
                                                   v.prior.to(self.device), mask)
                verdict = reliability.render_verdict(self.trust[v.key], rho, t.render_reject, t.render_agree)
            self.trust[v.key] = verdict
        if q is not None:
            log.info("depth prior: the probe's render agrees with the sparse points at %.2f (median rank correlation):"
                     " a prior agreeing at %.2f or more is trusted", q, bar)
        log.info("depth prior, judged by the sparse points and the probe's render: %s",
                 reliability.summary(self.trust))

    # ------------------------------------------------------------ state

    def init_state(self) -> State:
        """The first state of the run proper: the initial Gaussians, with points from the trusted priors."""
        return self._initial_state(self.init_fits)

    def _initial_state(self, prior_fits: dict[str, alignment.Alignment]) -> State:
        cfg = self.cfg
        gen = torch.Generator().manual_seed(cfg.seed)
        cap = gaussian_budget(cfg.strategy.cap_max, 0, 0, self.device)  # the device's cap, not the pixel budget
        pts, rgb, scale = initial_points(self.scene, cfg.init, self.extent, gen, prior_fits, cap)
        params = init_gaussians(pts, rgb, cfg.sh_degree, cfg.init.opacity, scale, gen).to(self.device)
        return self._state_for(params, gen)

    def _state_for(self, params: torch.nn.ParameterDict, gen: torch.Generator) -> State:
        optimizers = make_optimizers(params, self.learning_rates(0))
        return State(params, optimizers, self.densify.initial_state(params, optimizers, self.extent), gen,
                     trust=self.trust)

    def learning_rates(self, step: int) -> dict[str, float]:
        """Adam's learning rate per parameter at ``step`` (the config's; the means' decays, :meth:`means_lr`)."""
        lr = self.cfg.lr
        return {"means": self.means_lr(step), "scales": lr.scales, "quats": lr.quats, "opacities": lr.opacities,
                "sh0": lr.sh0, "shN": lr.shN}

    def means_lr(self, step: int) -> float:
        """The means' learning rate at ``step``: ``lr.means x extent``, decayed exponentially to
        ``lr.means_final x extent`` at ``steps`` (a function of the current config, so a resumed run with more
        steps stretches the decay)."""
        lr = self.cfg.lr
        return lr.means * self.extent * (lr.means_final / lr.means) ** (step / self.cfg.steps)

    def save_checkpoint(self, st: State) -> None:
        checkpoint.save_checkpoint(self.out_dir / "ckpt.pt", st, checkpoint.run_facts(self.cfg, self.scene.train),
                                   self.depth_facts(), self.device)

    def load_checkpoint(self, path: Path) -> State:
        """The state in ``path``, checked against this config and with every RNG restored (a continued run draws
        what the uninterrupted one would have)."""
        ck = checkpoint.read_checkpoint(path)
        checkpoint.check_resumable(path, ck, checkpoint.run_facts(self.cfg, self.scene.train), self.cfg.steps)
        params = torch.nn.ParameterDict({k: torch.nn.Parameter(v) for k, v in ck["params"].items()}).to(self.device)
        st = self._state_for(params, torch.Generator())
        checkpoint.restore(st, ck, self.device)
        for k, rate in self.learning_rates(st.step).items():  # the current config's, not the checkpoint's
            st.optimizers[k].param_groups[0]["lr"] = rate
        log.info("resumed from %s at step %d", path, st.step)
        return st

    # ------------------------------------------------------------ rendering and losses

    def render(self, params: splat.Params, view: View, sh_degree: int, background: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """:func:`s3dgs.splat.render` of ``view`` with the run's options on ``background`` ``[3]`` (default: the
        scene's): RGB ``[1, H, W, 3]``, expected z-depth ``[1, H, W]``, alpha ``[1, H, W]``, info."""
        return splat.render(params, view, sh_degree, self.render_options,
                            self.background if background is None else background)

    def render_final(self, params: splat.Params, view: View) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB ``[1, H, W, 3]`` and z-depth ``[1, H, W]`` of ``view`` at full SH degree, as evaluations see it."""
        return self.render(params, view, self.cfg.sh_degree)[:2]

    def depth_weight(self, step: int) -> float:
        """``lambda_depth`` at ``step``, decayed exponentially to ``decay x lambda_depth`` at the last step."""
        return self.cfg.lambda_depth * self.cfg.depth_loss.decay ** (step / self.cfg.steps)

    def depth_mask(self, view: View, alpha: torch.Tensor) -> torch.Tensor:
        """``[H, W]`` bool: where ``view``'s prior is compared with a render of alpha ``[H, W]``: valid prior pixels the
        render covers (``depth_loss.min_alpha``) that the image mask allows."""
        mask = view.prior_valid.to(self.device) & (alpha > self.cfg.depth_loss.min_alpha)
        return mask if view.mask is None else mask & view.mask.to(self.device)

    def view_depth_loss(self, view: View, depth: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor | None:
        """``view``'s depth loss for the rendered z-depth and alpha ``[H, W]``, times the weight its prior has earned
        (:mod:`s3dgs.reliability`); None without a weight."""
        trust = self.trust.get(view.key)
        if view.prior is None or trust is None or trust.weight <= 0:
            return None
        dev = self.device
        r = to_prior_space(depth, self.scene.prior_kind, self.cfg.near_plane)
        confidence = None if view.prior_confidence is None else view.prior_confidence.to(dev)
        loss = self.depth.loss(view, r, view.prior.to(dev), self.depth_mask(view, alpha), confidence)
        return None if loss is None else trust.weight * loss

    def target(self, view: View, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Training image ``[1, H, W, 3]`` and the background ``[3]`` to render it on: the scene's, or with
        ``data.background=random`` a random colour per step that the image's transparent pixels take too (so
        background Gaussians cannot pass for a colour)."""
        gt, alpha = view.rgba_on(self.device)
        gt = gt[None]
        if not (self.random_background and alpha is not None):
            return gt, self.background
        bg = torch.rand(3, generator=gen).to(self.device)
        return gt + (bg - self.background) * (1 - alpha[None, ..., None]), bg

    # ------------------------------------------------------------ loop

    def train_step(self, st: State, step: int, view: View, use_depth: bool
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One optimisation step on ``view``: render, losses, backward, densification, Adam. Returns the loss
        terms (``loss``, ``photometric``, weighted ``depth``) and the rendered / target images and mask (for the
        progress bar and TensorBoard)."""
        cfg = self.cfg
        st.optimizers["means"].param_groups[0]["lr"] = self.means_lr(step)
        gt, bg = self.target(view, st.order)
        mask = None if view.mask is None else view.mask.to(self.device)[None]
        rgb, depth, alpha, info = self.render(st.params, view, min(step // self.sh_interval, cfg.sh_degree), bg)
        self.densify.before_backward(st.params, st.optimizers, st.strategy_state, step, info)
        photo = photometric_loss(rgb, gt, mask, cfg.ssim_lambda)
        dl = self.view_depth_loss(view, depth[0], alpha[0]) if use_depth else None
        dl = torch.zeros((), device=self.device) if dl is None else self.depth_weight(step) * dl
        loss = photo + dl + self.densify.regulariser(st.params)
        loss.backward()
        self.densify.after_backward(st.params, st.optimizers, st.strategy_state, step, info,
                                    st.optimizers["means"].param_groups[0]["lr"], cfg.packed)
        for opt in st.optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        st.step = step + 1
        return {"loss": loss.detach(), "photometric": photo.detach(), "depth": dl.detach()}, rgb.detach(), gt, mask

    def next_view(self, st: State) -> View:
        """The training view of the next step: each view once per epoch, in an order drawn with ``st.order``."""
        if not st.order_left:
            st.order_left = torch.randperm(len(self.scene.train), generator=st.order).tolist()
        return self.scene.train[st.order_left.pop()]

    def fit(self, st: State) -> None:
        """Train from ``st.step`` to ``cfg.steps``, one random training view per step (each view once per epoch).
        Ctrl-C stops at the next step boundary, writes ``ckpt.pt`` and raises KeyboardInterrupt."""
        cfg = self.cfg
        use_depth = cfg.lambda_depth > 0 and self.scene.prior_kind is not None
        bar = tqdm(range(st.step, cfg.steps), initial=st.step, total=cfg.steps, mininterval=1.0,
                   desc="train", dynamic_ncols=True)
        tb = (TensorBoardLog(self.out_dir, cfg.log, cfg.steps, self.scene, self.render_final, st.step)
              if cfg.log.tensorboard else None)
        if cfg.viewer:
            from s3dgs.view import TrainingViewer  # viser and nerfview load in seconds: only when asked for
        live = TrainingViewer(self.scene, st, cfg.viewer_port, cfg.backend) if cfg.viewer else None
        t0 = time.perf_counter()
        try:
            with checkpoint.stop_at_step_boundary() as stop:
                for step in bar:
                    with live.training_step() if live else contextlib.nullcontext():
                        terms, rgb, gt, mask = self.train_step(st, step, self.next_view(st), use_depth)
                    if tb:
                        t0 += tb.after_step(st, terms, rgb, gt, mask)  # its evaluations are not training time
                    if step % 25 == 0 or st.step == cfg.steps:
                        bar.set_postfix(loss=f"{terms['loss'].item():.4f}",
                                        psnr=f"{psnr(rgb, gt, mask).item():.2f}",
                                        gaussians=len(st.params["means"]), refresh=False)
                    save = cfg.save_every and st.step % cfg.save_every == 0 and st.step < cfg.steps
                    if save or stop.requested:
                        st.train_seconds += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        self.save_checkpoint(st)
                    if stop.requested:
                        log.warning("interrupted at step %d; ckpt.pt saved: continue with resume=true "
                                    "hydra.run.dir=%s", st.step, self.out_dir)
                        raise KeyboardInterrupt
        finally:
            bar.close()
            st.train_seconds += time.perf_counter() - t0
            if tb:
                tb.close()
            if live:
                live.close()

    # ------------------------------------------------------------ evaluation and outputs

    def depth_facts(self) -> dict[str, Any]:
        """How the priors were aligned, for ``metrics.json`` and the checkpoint (:func:`s3dgs.report.depth_facts`)."""
        return depth_facts(self.cfg, self.scene, self.depth.report())

    def evaluate(self, st: State, renders_dir: Path | None = None) -> dict[str, Any]:
        """``metrics.json``'s content for ``st`` (:func:`s3dgs.report.run_metrics`; test views' PNGs into
        ``renders_dir`` if given)."""
        record = Record(st.step, st.train_seconds, st.trust, self.depth_facts())
        return run_metrics(lambda v: self.render_final(st.params, v), self.scene, self.cfg, record,
                           len(st.params["means"]), self.device, renders_dir)

    def write_outputs(self, st: State) -> dict[str, Any]:
        """Write ``point_cloud.ply`` and ``ckpt.pt`` first (a failing evaluation never loses the model), then
        evaluate into ``metrics.json`` (and ``renders/`` with ``save_renders``); returns the metrics."""
        save_ply(st.params, self.out_dir / "point_cloud.ply")
        self.save_checkpoint(st)
        metrics = self.evaluate(st, self.out_dir / "renders" if self.cfg.save_renders else None)
        atomic_write_json(self.out_dir / "metrics.json", metrics)
        return metrics


def train(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Train with ``cfg`` and write every output into ``out_dir``; returns the metrics."""
    trainer = Trainer(cfg, out_dir)
    resume = cfg.resume
    if resume:
        path = out_dir / "ckpt.pt" if resume is True else Path(str(resume)).expanduser()
        if not path.exists():
            raise TrainError(f"resume: {path} does not exist; point hydra.run.dir at the earlier run's folder "
                             "(or resume=<path to ckpt.pt>)")
        st = trainer.load_checkpoint(path)
    else:
        probe_seconds = trainer.probe_priors()
        st = trainer.init_state()
        st.train_seconds = probe_seconds
    log.info("training %d Gaussians for %d steps on %s (%d train views, lambda_depth=%s, depth_loss=%s)",
             len(st.params["means"]), cfg.steps, trainer.device, len(trainer.scene.train), cfg.lambda_depth,
             cfg.depth_loss.name)
    trainer.fit(st)
    metrics = trainer.write_outputs(st)
    log.info("done: %s", {k: v for k, v in metrics.items() if k not in ("train", "views", "depth")})
    depth = metrics["depth"]
    if depth["loss"] != "none" and depth.get("mean_weight", 1.0) < 0.5:
        log.warning("the depth prior was mostly rejected (%s): this run trained almost without it; metrics.json "
                    "depth.views says why per view", depth["summary"])
    elif "summary" in depth:
        log.info("depth prior: %s", depth["summary"])
    return metrics
