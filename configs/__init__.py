"""Hydra configs of ``s3dgs.train``; installed as the package ``s3dgs.configs`` (pyproject.toml's package-dir)."""
