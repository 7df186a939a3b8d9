"""``python -m s3dgs.train`` (``s3dgs-train``): the Hydra app that trains 3DGS with a depth prior (configs in
``configs/``, installed as ``s3dgs.configs``).

Examples::

    python -m s3dgs.train                                   # built-in example scene, CPU is fine
    python -m s3dgs.train data_dir=scene depth_dir=scene/depth lambda_depth=0.1
    python -m s3dgs.train -m lambda_depth=0,0.1,0.5         # sweep; table in the sweep folder
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from preprocess.errors import S3dgsError
from s3dgs.config_dir import config_path
from s3dgs.run import lookup
from s3dgs.sweep import register_resolvers
from s3dgs.trainer import train

log = logging.getLogger("s3dgs.train")
register_resolvers()


@hydra.main(config_path=config_path(), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float:
    """Train; returns ``cfg.objective`` (e.g. test PSNR) for sweepers. Bad input: one line, exit status 1."""
    try:
        metrics = train(cfg, Path(HydraConfig.get().runtime.output_dir))
    except S3dgsError as e:
        log.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt as e:  # a stop signal after ckpt.pt was written: 130 for Ctrl-C, 143 for SIGTERM
        raise SystemExit(128 + getattr(e, "signum", signal.SIGINT)) from None
    return lookup(metrics, cfg.objective)


if __name__ == "__main__":
    main()
