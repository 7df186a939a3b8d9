"""``run_video_depth_anything``: Annolid's video depth tool (same signature, defaults and files), streaming.

One pass decodes the sampled frames, runs the model only on frames not already done, and writes each
frame's outputs as soon as its depth exists (ndjson record, EXR, point-cloud CSV, NPZ part). A second
pass over ``depth.ndjson`` makes what needs the whole run's value range (``<stem>_vis.mp4``,
``depth_frames/``) and the NPZ. Memory stays flat in streaming mode; batch mode holds the frames of
the run it infers (the official algorithm needs them all).
"""

from __future__ import annotations

import shutil
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import cv2
import numpy as np

from preprocess.atomic_io import LIVE_TEMP_AGE_S, atomic_path, atomic_write_bytes, remove_stale_temps
from preprocess.devices import pick_device
from preprocess.video_depth import ndjson, rawfiles
from preprocess.video_depth.frames import Sampling, iter_sampled_frames, plan_sampling, probe_video
from preprocess.video_depth.model import check_encoder
from preprocess.video_depth.pointcloud import write_point_csv
from preprocess.video_depth.regions import RegionLabeler, annotation_dir
from preprocess.video_depth.state import check_resumable, load_state, save_state
from preprocess.video_depth.vis import Mp4Writer, colorize, preview_payload, to_uint8

# Streaming: sampled frames replayed through the model before a resumed stretch, so the temporal context is
# rebuilt: frame 0 plus the last WARMUP frames before the stretch. (Batch mode replays every frame.)
WARMUP = 32


@dataclass
class _Frame:
    seq: int          # position in the sampled sequence (names the per-frame files)
    index: int        # source video frame index (ndjson frame_index)
    rgb: np.ndarray   # uint8 [H, W, 3] at the processed size


def run_video_depth_anything(
    input_video: str,
    output_dir: str,
    encoder: str = "vits",
    input_size: int = 518,
    max_res: int = 1280,
    max_len: int = -1,
    target_fps: int = -1,
    metric: bool = False,
    fp32: bool = False,
    grayscale: bool = False,
    save_npz: bool = False,
    save_exr: bool = False,
    focal_length_x: float = 470.4,
    focal_length_y: float = 470.4,
    checkpoint_root: Optional[str] = None,
    progress_callback: Optional[Callable[[int], None]] = None,
    preview_callback: Optional[Callable[[dict], None]] = None,
    streaming: bool = True,
    save_depth_video: bool = False,
    save_depth_frames: bool = False,
    save_point_clouds: bool = False,
    include_region_labels: bool = False,
    *,
    point_clouds_as_depth: bool = False,
    overwrite: bool = False,
    device: Optional[str] = None,
    precision: Optional[str] = None,
) -> dict[str, list[str]]:
    """Estimate depth for every sampled frame of ``input_video`` and write Annolid's files to ``output_dir``.

    Parameters up to ``include_region_labels`` are Annolid's, same order and defaults. Keyword-only
    additions: ``point_clouds_as_depth`` writes ``1 / value`` as ``z`` for a relative model (still not
    metric), ``overwrite`` replaces results made with other settings (otherwise a rerun resumes them or
    stops with an error), ``device`` (default: CUDA if available, else CPU), ``precision`` (``fp32``,
    ``fp16`` on CUDA, ``bf16`` on CUDA or a CPU with native bf16; default: Annolid's rule, fp16 on CUDA
    unless ``fp32``, else fp32; ``fp32=True`` is the same as ``precision="fp32"``).

    Returns Annolid's dict of absolute paths: ``output_dir``, ``depth_visualization``, ``depth_frames``,
    ``depth_ndjson``, ``npz``, ``exr`` (the folder), ``point_cloud_csv`` (keys present as Annolid's).
    """
    check_encoder(encoder)
    device = str(pick_device(device))
    precision = _resolve_precision(precision, fp32, device)
    info = probe_video(input_video)
    out = Path(output_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    sampling = plan_sampling(info, target_fps, max_len, max_res)
    stem = info.path.stem
    paths = _OutputPaths(out, stem)
    model_name = f"{'metric_' if metric else ''}video_depth_anything_{encoder}"

    settings = {"video_name": info.path.name, "video_size": [info.width, info.height],
                "video_bytes": info.path.stat().st_size, "model": model_name, "input_size": int(input_size),
                "max_res": int(max_res), "stride": sampling.stride, "streaming": bool(streaming),
                "precision": precision}
    pc_settings = ({"fx": float(focal_length_x), "fy": float(focal_length_y), "as_depth": bool(point_clouds_as_depth),
                    "regions": bool(include_region_labels)} if save_point_clouds else None)
    state = _prepare_folder(paths, settings, pc_settings, overwrite, save_npz)
    pc_state = pc_settings if save_point_clouds else state.get("point_clouds")  # CSVs on disk are made so

    labeler = None
    if save_point_clouds and include_region_labels:
        folder = annotation_dir(info.path)
        labeler = RegionLabeler(folder) if folder else None

    done = ndjson.index_records(paths.ndjson)

    def is_done(f: _Frame) -> bool:
        return (f.index in done
                and (not save_exr or paths.exr(f.seq).exists())
                and (not save_point_clouds or paths.csv(f.seq).exists())
                and (not save_npz or rawfiles.part_path(paths.npz, f.seq).exists()))

    kind, units = ("depth", "m") if metric else ("inverse_depth", None)
    expected = sampling.expected_count(info.frame_count)

    def write_frame(f: _Frame, depth: np.ndarray) -> None:
        if preview_callback is not None and streaming:
            preview_callback(preview_payload(depth, f.index, grayscale))
        if save_exr:
            paths.exr_dir.mkdir(exist_ok=True)
            rawfiles.write_exr(paths.exr(f.seq), depth)
        if save_point_clouds:
            paths.csv_dir.mkdir(exist_ok=True)
            labels = labeler.labels(f.index, depth.shape[1], depth.shape[0]) if labeler else None
            write_point_csv(paths.csv(f.seq), depth, f.rgb, focal_length_x, focal_length_y, labels,
                            as_depth=point_clouds_as_depth and not metric)
        if save_npz:
            rawfiles.write_part(paths.npz, f.seq, depth)
        if not appender.opened:  # the first new record: say what the folder's records are made with
            save_state(out, settings, pc_state)
        appender.append(ndjson.depth_record(
            depth, frame_index=f.index, video_name=info.path.name, kind=kind, units=units, model=model_name,
            timestamp_sec=f.index / info.fps if info.fps > 0 else None))

    def report(n_seen: int) -> None:
        if progress_callback is not None and expected:
            progress_callback(min(int(n_seen / expected * 100), 100))

    engine = _LazyEngine(encoder, metric, checkpoint_root, device, input_size, precision, streaming)
    frames = (_Frame(seq, index, rgb) for seq, (index, rgb) in enumerate(iter_sampled_frames(info, sampling)))
    with ndjson.RecordAppender(paths.ndjson) as appender:
        n_frames, computed = (_process(frames, is_done, engine, write_frame, report, WARMUP if done else 0)
                              if streaming else _process_batch(frames, is_done, engine, write_frame, report))
    if progress_callback is not None:
        progress_callback(100)

    ndjson.compact(paths.ndjson)
    save_state(out, settings, pc_state)
    return _finish(paths, sampling, n_frames, computed, grayscale, save_depth_video, save_depth_frames,
                   save_npz, save_exr, save_point_clouds)


class _OutputPaths:
    """Annolid's file names inside the output folder."""

    def __init__(self, out: Path, stem: str):
        self.out = out
        self.ndjson = out / ndjson.NDJSON_NAME
        self.vis = out / f"{stem}_vis.mp4"
        self.frames_dir = out / "depth_frames"
        self.npz = out / f"{stem}_depths.npz"
        self.exr_dir = out / f"{stem}_depths_exr"
        self.csv_dir = out / "point_clouds"

    def depth_frame(self, seq: int) -> Path:
        return self.frames_dir / f"depth_{seq:05d}.png"

    def exr(self, seq: int) -> Path:
        return self.exr_dir / f"frame_{seq:05d}.exr"

    def csv(self, seq: int) -> Path:
        return self.csv_dir / f"point_{seq:04d}.csv"


def _prepare_folder(paths: _OutputPaths, settings: dict[str, Any], pc_settings: dict[str, Any] | None,
                    overwrite: bool, save_npz: bool) -> dict[str, Any]:
    """Check the folder can be resumed (or clear it with ``overwrite``); tidy what a killed run left.

    Returns the previous state (``{}`` if none)."""
    for folder in (paths.out, paths.frames_dir, paths.exr_dir, paths.csv_dir, rawfiles.parts_dir(paths.npz)):
        if folder.is_dir():
            remove_stale_temps(folder, LIVE_TEMP_AGE_S)  # not those of another run writing here now
    state = load_state(paths.out)
    if overwrite:
        paths.ndjson.unlink(missing_ok=True)
        paths.npz.unlink(missing_ok=True)
        shutil.rmtree(rawfiles.parts_dir(paths.npz), ignore_errors=True)
        for folder in (paths.exr_dir, paths.csv_dir):
            shutil.rmtree(folder, ignore_errors=True)
        state = None
    check_resumable(paths.out, paths.ndjson, settings, state)
    ndjson.repair_tail(paths.ndjson)
    state = state or {}
    if pc_settings is not None and state.get("point_clouds") != pc_settings and paths.csv_dir.is_dir():
        shutil.rmtree(paths.csv_dir)  # made with other intrinsics/options: redo them all
    if save_npz and paths.npz.exists() and not rawfiles.parts_dir(paths.npz).is_dir():
        rawfiles.unpack_npz(paths.npz)  # its frames count as done; the NPZ is rebuilt at the end
    return state


def _process(frames: Iterable[_Frame], is_done: Callable[[_Frame], bool],
             engine: Callable[[Iterable[np.ndarray]], Iterator[np.ndarray]],
             write_frame: Callable[[_Frame, np.ndarray], None],
             report: Callable[[int], None], warmup: int) -> tuple[int, int]:
    """Run ``engine`` over each stretch of frames that are not done, preceded by warm-up frames: the
    first frame and the ``warmup`` frames before the stretch (0 when nothing was done before).

    Returns ``(frames seen, frames computed)``.
    """
    source = _Peekable(iter(frames))
    history: deque[_Frame] = deque(maxlen=warmup)
    first: _Frame | None = None
    seen = computed = 0
    for frame in source:
        if first is None:
            first = frame
        if is_done(frame):
            history.append(frame)
            seen += 1
            report(seen)
            continue
        warm = list(history)
        if warmup and first.seq < frame.seq and (not warm or first.seq < warm[0].seq):
            warm.insert(0, first)
        owners: deque[_Frame | None] = deque()

        def stretch(frame: _Frame = frame, warm: list[_Frame] = warm) -> Iterator[np.ndarray]:
            for w in warm:
                owners.append(None)
                yield w.rgb
            current = frame
            while True:
                owners.append(current)
                yield current.rgb
                history.append(current)
                upcoming = source.peek()
                if upcoming is None or is_done(upcoming):
                    return
                current = next(source)

        for depth in engine(stretch()):
            owner = owners.popleft()
            if owner is None:
                continue
            write_frame(owner, np.asarray(depth, dtype=np.float32))
            seen += 1
            computed += 1
            report(seen)
    return seen, computed


def _process_batch(frames: Iterable[_Frame], is_done: Callable[[_Frame], bool],
                   engine: Callable[[Iterable[np.ndarray]], Iterator[np.ndarray]],
                   write_frame: Callable[[_Frame, np.ndarray], None], report: Callable[[int], None]
                   ) -> tuple[int, int]:
    """Batch mode: the official windows and their scale/shift chain span the whole sequence, so when any
    frame is not done the engine runs over all of them (the frames are held anyway) and only those not
    done are written: a resumed run continues the uninterrupted run's chain. Returns ``(seen, computed)``."""
    frames = list(frames)
    todo = [not is_done(f) for f in frames]
    depths = engine(f.rgb for f in frames) if any(todo) else repeat(None)
    computed = 0
    for seen, (frame, needed, depth) in enumerate(zip(frames, todo, depths), start=1):
        if needed:
            write_frame(frame, np.asarray(depth, dtype=np.float32))
            computed += 1
        report(seen)
    return len(frames), computed


class _Peekable:
    def __init__(self, it: Iterator[_Frame]):
        self._it = it
        self._next: list[_Frame] = []

    def __iter__(self) -> "_Peekable":
        return self

    def __next__(self) -> _Frame:
        return self._next.pop() if self._next else next(self._it)

    def peek(self) -> _Frame | None:
        if not self._next:
            try:
                self._next.append(next(self._it))
            except StopIteration:
                return None
        return self._next[0]


class _LazyEngine:
    """Loads the model on first use (a fully done rerun needs no checkpoint), then maps frames to depths."""

    def __init__(self, encoder: str, metric: bool, checkpoint_root: str | None, device: str, input_size: int,
                 precision: str, streaming: bool):
        self.encoder, self.metric, self.checkpoint_root = encoder, metric, checkpoint_root
        self.device, self.input_size, self.precision, self.streaming = device, input_size, precision, streaming
        self._model = None

    def __call__(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        from preprocess.video_depth.inference import infer_video_depth
        from preprocess.video_depth.model import load_model
        from preprocess.video_depth.streaming import stream_video_depth

        if self._model is None:
            self._model = load_model(self.encoder, metric=self.metric, checkpoint_root=self.checkpoint_root,
                                     device=self.device)
        if self.streaming:
            yield from stream_video_depth(self._model, frames, input_size=self.input_size,
                                          precision=self.precision, device=self.device)
        else:
            stack = np.stack(list(frames))
            yield from infer_video_depth(self._model, stack, input_size=self.input_size,
                                         precision=self.precision, metric=self.metric, device=self.device)


def _resolve_precision(precision: str | None, fp32: bool, device: str) -> str:
    """The precision to run: ``precision``, else Annolid's rule (fp16 on CUDA unless ``fp32``, else fp32);
    ValueError when ``fp32`` contradicts it or ``device`` cannot run it."""
    import torch

    from preprocess.video_depth.inference import check_precision

    if precision is None:
        precision = "fp16" if str(device).startswith("cuda") and not fp32 else "fp32"
    elif fp32 and precision != "fp32":
        raise ValueError(f"fp32 (--fp32) contradicts precision {precision!r}; give one of them")
    return check_precision(precision, torch.device(device))




def _finish(paths: _OutputPaths, sampling: Sampling, n_frames: int, computed: int,
            grayscale: bool, save_depth_video: bool, save_depth_frames: bool, save_npz: bool, save_exr: bool,
            save_point_clouds: bool) -> dict[str, list[str]]:
    """Second pass: outputs that need the whole run (vis mp4, depth_frames, NPZ); the returned dict."""
    index = ndjson.index_records(paths.ndjson)
    seqs = list(range(n_frames))
    entries = [index[s * sampling.stride] for s in seqs]
    result: dict[str, list[str]] = {"output_dir": [str(paths.out)]}
    if save_depth_video or save_depth_frames:
        _write_visuals(paths, entries, sampling, grayscale, save_depth_video, save_depth_frames)
    if save_depth_video:
        result["depth_visualization"] = [str(paths.vis)]
    if save_depth_frames and seqs:
        result["depth_frames"] = [str(paths.depth_frame(s)) for s in seqs]
    result["depth_ndjson"] = [str(paths.ndjson)]
    if save_npz:
        if computed or rawfiles.npz_frame_count(paths.npz) != n_frames:
            rawfiles.assemble_npz(paths.npz, seqs, sampling.size)
        shutil.rmtree(rawfiles.parts_dir(paths.npz), ignore_errors=True)
        result["npz"] = [str(paths.npz)]
    if save_exr:
        result["exr"] = [str(paths.exr_dir)]
    if save_point_clouds and seqs:
        result["point_cloud_csv"] = [str(paths.csv(s)) for s in seqs]
    return result


def _write_visuals(paths: _OutputPaths, entries: list[tuple[int, float, float]], sampling: Sampling,
                   grayscale: bool, save_video: bool, save_frames: bool) -> None:
    """Colour every frame with one range for the whole run (decoded back from depth.ndjson)."""
    vmin = min((e[1] for e in entries), default=0.0)
    vmax = max((e[2] for e in entries), default=0.0)
    if save_frames:
        paths.frames_dir.mkdir(exist_ok=True)
    with atomic_path(paths.vis) if save_video else nullcontext() as tmp:
        writer = Mp4Writer(tmp, sampling.size, sampling.fps) if save_video else None
        with writer or nullcontext():
            for seq, (offset, _, _) in enumerate(entries):
                depth = ndjson.decode_depth(ndjson.read_record_at(paths.ndjson, offset))
                image = colorize(to_uint8(depth, vmin, vmax), grayscale)
                if writer is not None:
                    writer.write(image)
                if save_frames:
                    bgr = image if image.ndim == 2 else image[..., ::-1]
                    ok, buf = cv2.imencode(".png", bgr)
                    if not ok:
                        raise OSError(f"{paths.depth_frame(seq)}: PNG encoding failed")
                    atomic_write_bytes(paths.depth_frame(seq), buf.tobytes())

