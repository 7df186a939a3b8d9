"""Stage ``depth``: monocular depth priors on the trainer's images, through :func:`preprocess.generate_depth`.

``vda`` (the default) runs Video Depth Anything over the frames in time order (their sorted names), so one
scale holds for the whole sequence; ``transformers`` and ``space`` run Depth Anything V2 per image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from preprocess.backends import DEFAULT_MODEL
from preprocess.video_to_scene.frames import SceneError

DEPTH_CHOICES = ("vda", "transformers", "space", "none")


def make_priors(images_dir: Path, depth_dir: Path, backend: str, model: str | None, fresh: bool,
                quiet: bool, **options: Any) -> dict[str, Any]:
    """Write ``depth_dir/<stem>.png`` + ``depth_meta.json`` for every image in ``images_dir``.

    ``model`` None: the backend's default (vits for vda). ``fresh``: recompute outputs already there (they may
    belong to other images). ``options``: device, checkpoint_root, input_size (see generate_depth).
    Raises :class:`SceneError` when some image got no prior."""
    from preprocess import generate_depth

    summary = generate_depth(images_dir, depth_dir, backend=backend, model=model or DEFAULT_MODEL,
                             overwrite=fresh, quiet=quiet, **options)
    if not summary.ok:
        raise SceneError(f"{depth_dir}: depth priors failed for {len(summary.failed)} image(s) "
                         f"({'; '.join(list(summary.failed.values())[:1]) or summary.stopped}); rerun to retry, "
                         "or --depth none")
    return {"backend": backend, "written": summary.done, "skipped": summary.skipped, "total": summary.total}
