"""SIGTERM (Slurm preemption, scancel, a time limit) stops the real app like Ctrl-C: ckpt.pt at the next step
boundary, exit status 143, and ``resume=true`` continues from it."""

import json
import re
import signal
import subprocess
import time

import pytest

from s3dgs.checkpoint import StopSignal, read_checkpoint, stop_at_step_boundary

STEPS = 5000  # far more than the test lets it run


def wait_for_steps(proc: subprocess.Popen, log_path, timeout_s: float = 240.0) -> None:
    """Return once the progress bar in ``log_path`` (stderr) shows a finished training step."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        if re.search(r"train:.*\| *[1-9]\d*/\d+", log_path.read_text()):
            return
        time.sleep(0.2)
    raise AssertionError("no training step within the timeout:\n" + log_path.read_text()[-3000:])


def test_sigterm_writes_a_checkpoint_at_a_step_boundary_and_the_run_resumes(python, train_env, example_dir,
                                                                          tmp_path):
    run_dir = tmp_path / "run"
    args = [python, "-m", "s3dgs.train", f"data_dir={example_dir}", f"hydra.run.dir={run_dir}"]
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as err:
        proc = subprocess.Popen([*args, f"steps={STEPS}"], cwd=tmp_path, env=train_env, stdout=subprocess.DEVNULL,
                                stderr=err)
        try:
            wait_for_steps(proc, stderr)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=120) == 128 + signal.SIGTERM, stderr.read_text()[-3000:]
        finally:
            proc.kill()
    ck = read_checkpoint(run_dir / "ckpt.pt")
    assert 1 <= ck["step"] < STEPS
    assert len({len(v) for v in ck["params"].values()}) == 1  # every parameter from the same step
    assert f"interrupted at step {ck['step']}; ckpt.pt saved" in (run_dir / "train.log").read_text()
    assert not (run_dir / "metrics.json").exists()

    resumed = subprocess.run([*args, f"steps={ck['step'] + 5}", "resume=true"], cwd=tmp_path, env=train_env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == ck["step"] + 5
    assert f"at step {ck['step']}" in (run_dir / "train.log").read_text()


def test_submitit_requeue_signal_waits_for_the_step_boundary_then_goes_to_submitit(monkeypatch):
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR1")
    calls = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))  # stands for submitit's
    try:
        with pytest.raises(StopSignal) as stopped:
            with stop_at_step_boundary() as stop:
                signal.raise_signal(signal.SIGUSR1)
                assert stop.requested and calls == []  # deferred: the step finishes, ckpt.pt is written
                raise KeyboardInterrupt  # what the training loop does after writing it
        assert calls == [signal.SIGUSR1] and stopped.value.signum == signal.SIGUSR1
        assert callable(signal.getsignal(signal.SIGUSR1)) and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR1, previous)
