"""What video_to_scene wrote in OUT_DIR, in ``OUT_DIR/.video_to_scene/manifest.json``: the only entries it
ever deletes or replaces.

The manifest lists top-level entries of OUT_DIR (``images``, ``depth``, ``scene.json`` ...). A stage claims
each entry before it writes it: an entry that exists but is not listed belongs to someone else, and the run
stops with one line instead of touching it. An OUT_DIR without a manifest must be empty, apart from an INPUT
inside it, which is read in place.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from preprocess.atomic_io import atomic_write_json
from preprocess.video_to_scene.frames import SceneError

STATE_DIR = ".video_to_scene"
MANIFEST = "manifest.json"


class Manifest:
    """The set of OUT_DIR entries this tool wrote; :meth:`open` makes or loads it."""

    def __init__(self, out_dir: Path, written: set[str]):
        self.out_dir = out_dir
        self.path = out_dir / STATE_DIR / MANIFEST
        self.written = written

    @classmethod
    def open(cls, out_dir: Path, input_path: Path | None = None) -> Manifest:
        """Load ``out_dir``'s manifest, or start one in a new or empty ``out_dir``.

        ``input_path``: the INPUT, whose top-level entry may sit in ``out_dir`` (read in place, never claimed).
        Raises :class:`SceneError` when ``out_dir`` has no manifest and holds anything else."""
        path = out_dir / STATE_DIR / MANIFEST
        if path.is_file():
            try:
                return cls(out_dir, set(json.loads(path.read_text())["written"]))
            except (OSError, ValueError, KeyError, TypeError):
                raise SceneError(f"{path}: unreadable; delete {out_dir} to start over, or choose another "
                                 "OUT_DIR") from None
        keep = input_top_entry(out_dir, input_path) if input_path is not None else None
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name != keep) if out_dir.is_dir() else []
        if foreign:
            listed = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
            raise SceneError(f"{out_dir}: OUT_DIR holds files video_to_scene did not write ({listed}); choose a "
                             "new or empty OUT_DIR, or move them out")
        (out_dir / STATE_DIR).mkdir(parents=True, exist_ok=True)
        manifest = cls(out_dir, set())
        manifest._save()
        return manifest

    def _save(self) -> None:
        atomic_write_json(self.path, {"written": sorted(self.written)})

    def owns(self, path: Path) -> bool:
        return path.parent == self.out_dir and path.name in self.written

    def claim(self, path: Path) -> None:
        """Record ``path`` (an entry of OUT_DIR) as this tool's before writing it; :class:`SceneError` when it
        exists and is not."""
        if path.parent != self.out_dir:
            raise ValueError(f"{path}: not an entry of {self.out_dir}")
        if self.owns(path):
            return
        if path.exists() or path.is_symlink():
            raise SceneError(f"{path}: exists and video_to_scene did not write it; move it out of {self.out_dir} "
                             "or choose another OUT_DIR")
        self.written.add(path.name)
        self._save()

    def remove(self, path: Path) -> None:
        """Delete ``path`` if this tool wrote it; anything else is left alone."""
        if not self.owns(path):
            return
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def input_top_entry(out_dir: Path, input_path: Path) -> str | None:
    """The entry of ``out_dir`` that holds ``input_path`` (None when the input is outside ``out_dir``)."""
    try:
        rel = input_path.resolve().relative_to(out_dir.resolve())
    except ValueError:
        return None
    return rel.parts[0] if rel.parts else None
