"""``ckpt.pt``: everything a run needs to continue exactly where it stopped, written atomically.

A checkpoint holds the parameters, Adam's state, the densification strategy's state, every random number
generator the run draws from (the training-view generator, torch's global CPU generator that gsplat's
strategies use, CUDA's on CUDA, NumPy's, which gsplat samples with beyond 2^24 Gaussians), the rest of the
current epoch's view order, each view's verdict on its prior (:class:`s3dgs.reliability.Trust`), how the priors
were aligned (the ``depth`` block of ``metrics.json`` without the verdicts, so an evaluation reports on the run as
trained without aligning again: :class:`Record`), and the facts a resumed config must share with it
(:func:`run_facts`).
Learning rates are not restored: they are the current config's (the means' a function of the step).
Everything in it is a tensor or plain data (dicts, lists, numbers, strings), so it is read with
``torch.load(weights_only=True)``: a file holding other Python objects is refused, never unpickled.

Ctrl-C and SIGTERM (Slurm preemption, ``scancel``, a time limit) are handled by :func:`stop_at_step_boundary`:
gsplat replaces the parameters one at a time while it densifies, so a checkpoint is only ever written between
two steps.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import signal
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from preprocess.atomic_io import atomic_path
from s3dgs.data.scene import View
from s3dgs.errors import TrainError
from s3dgs.reliability import Trust

FORMAT = 3  # 1: no RNG states, no view order, no run facts (before issue 13); 2: NumPy's state pickled (issue 20)


@dataclass
class State:
    """The training state a checkpoint holds."""

    params: torch.nn.ParameterDict
    optimizers: dict[str, torch.optim.Adam]
    strategy_state: dict[str, Any]
    order: torch.Generator  # draws the training views
    order_left: list[int] = field(default_factory=list)  # the current epoch's views still to train, popped from the end
    step: int = 0
    train_seconds: float = 0.0
    trust: dict[str, Trust] = field(default_factory=dict)  # each view's verdict on its prior (changes in training)


@dataclass
class Record:
    """What a checkpoint says of its run: steps done, training seconds, each view's verdict on its prior, and the
    depth term's facts for ``metrics.json`` (:func:`s3dgs.report.depth_facts`; empty in a checkpoint written before
    they were kept)."""

    step: int
    train_seconds: float
    trust: dict[str, Trust]
    depth: dict[str, Any]


def run_facts(cfg: DictConfig, train: list[View]) -> dict[str, Any]:
    """What a resumed run must share with its checkpoint: the training views ``train`` (names and sizes), the SH
    degree and every strategy setting (``steps`` may grow)."""
    names = "\n".join(f"{v.name} {v.width}x{v.height}" for v in train)
    digest = hashlib.sha1(names.encode()).hexdigest()[:8]
    first, last = train[0], train[-1]
    views = f"{len(train)} views at {first.width}x{first.height} ({first.name}..{last.name}, #{digest})"
    strategy = OmegaConf.to_container(cfg.strategy, resolve=True)
    return ({"training views": views, "sh_degree": cfg.sh_degree}
            | {f"strategy.{k}": v for k, v in strategy.items() if k != "verbose"})


def rng_states(device: torch.device) -> dict[str, Any]:
    """The global generators' states as tensors and numbers: torch CPU, CUDA (on a CUDA ``device``) and NumPy."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    states: dict[str, Any] = {"torch": torch.get_rng_state(),
                              "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                                        "has_gauss": has_gauss, "cached_gaussian": cached}}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict[str, Any], device: torch.device) -> None:
    """Restore :func:`rng_states` (CUDA's only when both runs are on CUDA)."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


def save_checkpoint(path: Path, st: State, facts: dict[str, Any], depth: dict[str, Any], device: torch.device
                    ) -> None:
    """Write ``st`` with the run's ``facts``, its ``depth`` facts (:class:`Record`) and the global RNG states to
    ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "facts": facts, "step": st.step, "train_seconds": st.train_seconds,
                    "params": {k: v.detach().cpu() for k, v in st.params.items()},
                    "optimizers": {k: o.state_dict() for k, o in st.optimizers.items()},
                    "strategy_state": {k: v.cpu() if torch.is_tensor(v) else v for k, v in st.strategy_state.items()},
                    "order": st.order.get_state(), "order_left": list(st.order_left),
                    "trust": {k: asdict(t) for k, t in st.trust.items()}, "depth": depth, "rng": rng_states(device)}, tmp)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The content of ``path``; :class:`TrainError` when it cannot be read."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise TrainError(f"{path}: holds Python objects besides tensors and plain data (another program's file or an "
                         "older s3dgs's), not loaded as that could run code; start a new run (resume=false)") from None
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainError(f"{path}: not a readable checkpoint ({reason}); delete it or set resume=false") from None
    if not isinstance(ck, dict) or "params" not in ck:
        raise TrainError(f"{path}: not a checkpoint of python -m s3dgs.train; delete it or set resume=false")
    return ck


def check_resumable(path: Path, ck: dict[str, Any], facts: dict[str, Any], steps: int) -> None:
    """Refuse (:class:`TrainError`, one line) to continue ``ck`` with a config whose ``facts`` differ from the
    checkpoint's, or whose ``steps`` end before the checkpoint's step (``steps`` may grow)."""
    if ck.get("format") != FORMAT:
        raise TrainError(f"resume: {path} was written by an older s3dgs without the random generators' state, so "
                         "the run cannot continue exactly; start a new run (resume=false)")
    for key, saved in ck["facts"].items():
        if facts.get(key) != saved:
            raise TrainError(f"resume: {path} was trained with {key}={_short(saved)}, this config has "
                             f"{key}={_short(facts.get(key))}; resume with the same {key} or start a new run")
    if steps < ck["step"]:
        raise TrainError(f"resume: {path} is at step {ck['step']}, past steps={steps}; set steps to at least "
                         f"{ck['step']} (steps is the run's total)")


def _short(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def restore(st: State, ck: dict[str, Any], device: torch.device) -> None:
    """Load ``ck``'s optimizer and strategy states, view order, step and RNG states into ``st``, whose
    parameters and optimizers were built from ``ck["params"]``."""
    for k, o in st.optimizers.items():
        o.load_state_dict(ck["optimizers"][k])
    st.strategy_state = {k: v.to(device) if torch.is_tensor(v) else v for k, v in ck["strategy_state"].items()}
    st.order.set_state(ck["order"])
    st.order_left = list(ck["order_left"])
    record = record_of(ck)
    st.step, st.train_seconds = record.step, record.train_seconds
    st.trust.clear()  # in place: the trainer holds the same dict
    st.trust.update(record.trust)
    set_rng_states(ck["rng"], device)


def record_of(ck: dict[str, Any]) -> Record:
    """What the checkpoint ``ck`` (:func:`read_checkpoint`) says about its run."""
    return Record(ck["step"], ck["train_seconds"], {k: Trust(**t) for k, t in ck["trust"].items()},
                  ck.get("depth", {}))


class StopRequest:
    """Set by the first stop signal inside :func:`stop_at_step_boundary`; the loop reads it between steps."""

    requested: bool = False
    signum: int | None = None  # the signal that asked


class StopSignal(KeyboardInterrupt):
    """The KeyboardInterrupt that leaves :func:`stop_at_step_boundary` after a stop signal: ``signum`` says which,
    so the app exits with ``128 + signum`` (130 for Ctrl-C, 143 for SIGTERM), as a shell reports such a kill."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def submitit_signal() -> signal.Signals | None:
    """The signal submitit requeues on (``SUBMITIT_PREEMPT_SIGNAL``, default USR2) when submitit has a handler on
    it, i.e. this process is a submitit job (hydra-submitit-launcher); else None."""
    sig = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
    return sig if sig is not None and callable(signal.getsignal(sig)) else None


@contextlib.contextmanager
def stop_at_step_boundary() -> Iterator[StopRequest]:
    """Within the block the first SIGINT or SIGTERM only sets ``requested`` (the loop stops and checkpoints at the
    next step boundary, then raises KeyboardInterrupt, leaving as :class:`StopSignal`); a second one raises
    KeyboardInterrupt at once. In a submitit job its requeue signal is deferred the same way, then handed to
    submitit's handler, which requeues the job and exits. Outside the main thread (where Python cannot take
    signals) nothing changes, and an ignored signal (a job started in the background) stays ignored."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    requeue = submitit_signal()
    caught = [s for s in (signal.SIGINT, signal.SIGTERM, requeue) if s is not None
              and signal.getsignal(s) is not signal.SIG_IGN]

    def handler(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested, stop.signum = True, signum

    previous = {s: signal.signal(s, handler) for s in caught}
    try:
        yield stop
    except KeyboardInterrupt:
        if stop.signum is None:
            raise
        if stop.signum == requeue:
            previous[requeue](requeue, None)  # submitit: requeue, then exit
        raise StopSignal(stop.signum) from None
    finally:
        for s, h in previous.items():
            if h is not None:  # None: a handler set outside Python, which cannot be put back
                signal.signal(s, h)
