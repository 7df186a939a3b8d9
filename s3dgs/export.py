"""``python -m s3dgs.export RUN_DIR|PLY --format ply|splat|ply-compressed``: the trained Gaussians in web formats.

Reads the run's ``point_cloud.ply`` (or any 3DGS PLY) and writes it through gsplat's exporter
(:func:`gsplat.export_splats`):

- ``ply``: the standard 3DGS PLY (every SH band kept), without the unused normals;
- ``splat``: antimatter15's 32-byte records (position, scale, RGBA from the SH degree-0 colour, rotation),
  sorted along a Morton curve; the format has no higher SH bands;
- ``ply-compressed``: SuperSplat / PlayCanvas compressed PLY (chunks of 256 quantised Gaussians, SH bands
  kept as 8-bit), Gaussians with opacity below 1/255 dropped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gsplat import export_splats

from preprocess.atomic_io import atomic_write_bytes
from preprocess.errors import S3dgsError
from s3dgs.gaussians import gaussians_from_ply

# --format -> (gsplat's name, file suffix)
FORMATS = {"ply": ("ply", ".ply"), "splat": ("splat", ".splat"),
           "ply-compressed": ("ply_compressed", ".compressed.ply")}


class ExportError(S3dgsError, ValueError):
    """An input that cannot be exported; the message names the file and the fix."""


def model_ply(path: str | Path) -> Path:
    """The Gaussians' PLY of ``path``: a run folder's ``point_cloud.ply``, or ``path`` itself if it is a file."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    ply = path / "point_cloud.ply"
    if not ply.is_file():
        raise ExportError(f"{ply} not found: pass a finished run folder of python -m s3dgs.train or a 3DGS .ply file")
    return ply


def load_model(path: str | Path) -> dict:
    """:func:`s3dgs.gaussians.gaussians_from_ply` of :func:`model_ply`; a bad file is an :class:`ExportError`."""
    ply = model_ply(path)
    try:
        return gaussians_from_ply(ply)
    except ValueError as e:
        raise ExportError(str(e)) from None


def export(path: str | Path, fmt: str, out: str | Path | None = None) -> Path:
    """Write the Gaussians of ``path`` (run folder or PLY) in format ``fmt`` (a key of ``FORMATS``) to ``out``
    (default: ``model<ext>`` beside the PLY); returns the written path."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    name, ext = FORMATS[fmt]
    g = load_model(path)
    out = Path(out) if out else model_ply(path).parent / f"model{ext}"
    atomic_write_bytes(out, export_splats(g["means"], g["scales"], g["quats"], g["opacities"], g["sh0"], g["shN"],
                                          format=name))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m s3dgs.export",
                                description="Write trained Gaussians as ply, splat or ply-compressed through gsplat's "
                                            "exporter.",
                                epilog="example: python -m s3dgs.export outputs/2025-01-31/12-00-00 --format splat")
    p.add_argument("model", metavar="RUN_DIR|PLY", help="a run folder of python -m s3dgs.train, or a 3DGS .ply")
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="output file (default: model.ply, model.splat or model.compressed.ply beside the PLY)")
    args = p.parse_args(argv)
    try:
        out = export(args.model, args.format, args.out)
    except (S3dgsError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
