"""Resumable stages: a stage is finished when its marker ``OUT_DIR/.video_to_scene/<stage>.json`` exists.

The marker is written atomically after the stage's outputs, with the settings the stage ran with, its
result and its seconds. A rerun skips a stage whose marker holds the same settings; a stage whose marker
is missing (killed) or holds other settings runs again, and so does every stage after it (their markers
and outputs are deleted before it starts, so a killed run never leaves a later stage looking finished).
A stage claims its outputs in the :class:`~preprocess.video_to_scene.manifest.Manifest` before it runs, and
only claimed outputs are ever deleted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from preprocess.atomic_io import atomic_write_json
from preprocess.video_to_scene.manifest import STATE_DIR, Manifest


class Stages:
    """Runs named stages in a fixed ``order`` under ``out_dir``; ``report`` collects seconds and skips.

    ``seconds``: wall clock of this call (0 when skipped); ``cpu_seconds``: CPU time of this process, all threads
    (what the stage costs whatever else shares the cores); ``ran_seconds``: wall clock when the stage ran."""

    def __init__(self, manifest: Manifest, order: list[str], outputs: dict[str, list[Path]] | None = None,
                 summary: Path | None = None):
        self.manifest = manifest
        self.dir = manifest.out_dir / STATE_DIR
        self.order = order
        self.outputs = outputs or {}  # stage -> OUT_DIR entries it writes: claimed before it runs, deleted when
        self.summary = summary        # an earlier stage runs; the summary is deleted when any stage runs
        self.redone = False   # True once a stage ran in this call: every later stage runs too
        self.report: dict[str, dict[str, Any]] = {}

    def marker(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def _load(self, name: str) -> dict | None:
        try:
            return json.loads(self.marker(name).read_text())
        except (OSError, ValueError):
            return None

    def run(self, name: str, settings: dict, fn: Callable[[bool], Any]) -> Any:
        """Return stage ``name``'s result: from its marker if finished with ``settings``, else ``fn(fresh)``.

        ``fresh`` is True when outputs of other settings may be on disk (the marker held other settings
        or an earlier stage ran again), so ``fn`` must not resume from them."""
        settings = json.loads(json.dumps(settings))
        old = self._load(name)
        if not self.redone and old is not None and old.get("settings") == settings:
            self.report[name] = {"seconds": 0.0, "skipped": True, "ran_seconds": old["seconds"],
                                 "cpu_seconds": 0.0}
            return old["result"]
        fresh = self.redone or old is not None
        for path in self.outputs.get(name, []):
            self.manifest.claim(path)
        for later in self.order[self.order.index(name):]:
            self.marker(later).unlink(missing_ok=True)
            if later != name:  # outputs of later stages came from this stage's old outputs
                for path in self.outputs.get(later, []):
                    self.manifest.remove(path)
        if self.summary is not None:
            self.manifest.remove(self.summary)
        self.redone = True
        start, cpu_start = time.perf_counter(), time.process_time()
        result = fn(fresh)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.marker(name), {"settings": settings, "result": result, "seconds": seconds,
                                              "cpu_seconds": cpu})
        self.report[name] = {"seconds": seconds, "skipped": False, "ran_seconds": seconds, "cpu_seconds": cpu}
        return result
