"""A run: its config, its data and its folder (``hydra.run.dir``), for the trainer and for what reads a finished run
(``python -m s3dgs.eval``, the viewer) without training.

A run folder written by ``python -m s3dgs.train`` holds ``.hydra/config.yaml`` (the composed config),
``ckpt.pt`` (:mod:`s3dgs.checkpoint`), ``point_cloud.ply``, ``metrics.json`` (:mod:`s3dgs.report`) and, when
configured, ``renders/`` and ``tb/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from preprocess.devices import pick_device
from s3dgs import checkpoint, example
from s3dgs.data.frames import names_sensor_depth
from s3dgs.data.scene import Scene, View, load_scene
from s3dgs.errors import RunError
from s3dgs.splat import RenderOptions, render


def resolve_data(cfg: DictConfig) -> tuple[Path, Path | None]:
    """``(data_dir, depth_dir)``: the example scene when ``data_dir`` is null; ``<data_dir>/depth`` when
    ``depth_dir`` is null and that folder exists, unless the frames name sensor depth (nerfstudio
    ``depth_file_path``, which such exports keep in ``depth/``: then that is the prior)."""
    data_dir = Path(cfg.data_dir).expanduser() if cfg.data_dir else example.ensure_example()
    if cfg.depth_dir:
        return data_dir, Path(cfg.depth_dir).expanduser()
    guess = data_dir / "depth"
    return data_dir, (guess if guess.is_dir() and not names_sensor_depth(data_dir) else None)


def load_run_scene(cfg: DictConfig, device: torch.device | str = "cpu") -> Scene:
    """The scene of a run's config: its dataset (``data_dir``, ``data.*``) with the priors of ``depth_dir``, its
    images cached on ``device``."""
    data_dir, depth_dir = resolve_data(cfg)
    d = cfg.data
    return load_scene(data_dir, d.type, d.images, d.downscale, d.background, d.test_every, d.num_train_views,
                      depth_dir, d.get("image_cache_gb"), device)


def load_run_config(run_dir: Path, device: str | None = None) -> DictConfig:
    """The run's composed config, relative ``data_dir`` / ``depth_dir`` anchored at the folder training ran
    from (Hydra's ``runtime.cwd``), ``device`` replaced when given."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise RunError(f"{path} not found: RUN_DIR must be a folder written by python -m s3dgs.train "
                       "(its hydra.run.dir, or a job folder of a multirun)")
    cfg = OmegaConf.load(path)
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    cwd = OmegaConf.select(OmegaConf.load(hydra_yaml), "hydra.runtime.cwd") if hydra_yaml.is_file() else None
    for key in ("data_dir", "depth_dir"):
        if cfg[key] and cwd and not Path(cfg[key]).expanduser().is_absolute():
            cfg[key] = str(Path(cwd) / cfg[key])
    if device:
        cfg.device = device
    return cfg


@dataclass
class FinishedRun:
    """A run folder read back: its config, scene, the Gaussians of its ``ckpt.pt`` and what that says of the run."""

    cfg: DictConfig
    scene: Scene
    device: torch.device
    params: dict[str, torch.Tensor]  # gsplat's names, on ``device``
    record: checkpoint.Record

    @torch.no_grad()
    def render(self, view: View) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB ``[1, H, W, 3]`` and z-depth ``[1, H, W]`` of ``view`` as the trainer's final evaluation renders it:
        full SH degree, the run's options, the scene's background."""
        background = torch.tensor(self.scene.background, dtype=torch.float32, device=self.device)
        return render(self.params, view, self.cfg.sh_degree, RenderOptions.of(self.cfg), background)[:2]


def load_run(run_dir: Path, device: str | None = None) -> FinishedRun:
    """The run in ``run_dir`` (:func:`load_run_config`, its scene, ``ckpt.pt``), on ``device`` (default: the
    run's setting)."""
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: not a folder; pass the run folder of python -m s3dgs.train (its hydra.run.dir)")
    cfg = load_run_config(run_dir, device)
    ckpt = run_dir / "ckpt.pt"
    if not ckpt.is_file():
        raise RunError(f"{ckpt} not found: the run stopped before saving a model; pass a finished run's folder "
                       f"or train again into it (python -m s3dgs.train hydra.run.dir={run_dir} ...)")
    dev = pick_device(cfg.device)
    scene = load_run_scene(cfg, dev)
    ck = checkpoint.read_checkpoint(ckpt)
    return FinishedRun(cfg, scene, dev, {k: v.to(dev) for k, v in ck["params"].items()}, checkpoint.record_of(ck))


def lookup(metrics: dict[str, Any], dotted: str) -> float:
    """``metrics["a"]["b"]`` for ``"a.b"``; NaN when absent."""
    cur: Any = metrics
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return math.nan
        cur = cur[part]
    return float(cur)
