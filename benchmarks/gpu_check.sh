#!/usr/bin/env bash
# benchmarks/gpu_check.sh [--steps N] [--budget SECONDS] [--no-tests] [--no-run] [--no-build] [--device DEV]
#
# The CUDA path in one script, on a machine with one NVIDIA GPU (issue 20 item 6); one table at the end:
#   1. the GPU (nvidia-smi) and the Python stack;
#   2. the wheels in .whl/ installed first when that folder exists (benchmarks/gpu_wheels.sh fetches them where pip
#      works: the lent H100/H200 image has torch but not hydra, gsplat, viser, ...);
#   3. gsplat's CUDA extension built (a JIT build, once per machine; minutes when cold) and timed;
#   4. python -m pytest -q tests/cuda tests/render/test_cuda_parity.py (estimated 2-3 minutes on one H100);
#   5. python -m s3dgs.train device=cuda steps=N (default 30000) on the built-in example, timed, with its peak GPU
#      memory (torch.cuda.max_memory_allocated in the training process, and nvidia-smi's reading of the device);
#   6. the table: each test's result and time, the run's test PSNR, SSIM, depth AbsRel, train_seconds, Gaussians,
#      peak memory. Printed, and written to $OUT/gpu_check.txt when OUT is set.
#
# Time: the whole script keeps within --budget seconds (default 470: under 8 minutes). The long run gets what the
# build and the tests left, less a minute for its evaluation; when that runs out it is stopped with SIGTERM (the
# trainer checkpoints at the next step boundary), evaluated from its ckpt.pt, and the table says at which step.
# Nothing ran on a GPU when this was written, so step times are guesses: the example's step (80x60, ~22k Gaussians)
# is launch-bound, perhaps 10 ms, i.e. about 5 minutes for 30000 steps, more than the tests leave of 8 minutes.
# What to use on the lent machine (15 minutes of device time in all, its start included; warm for 30 s after a call):
#   first call:   bash benchmarks/gpu_check.sh                (build, tests, and as much of the run as fits)
#   second call, within 30 s, so that the machine and its gsplat build are still there:
#                 bash benchmarks/gpu_check.sh --no-tests --budget 270 --steps N
#   with N = 0.8 x (270 - 90) / (the s/step of the first table): a whole run of N steps, whose schedules are scaled to
#   N, says more than a 30000-step schedule cut short (a stopped run's metrics are the latter, and say so).
#
# Output: with OUT set, $OUT gets gpu_check.txt (the table), pytest.log, gsplat_build.log, train.log and
# metrics.json of the long run (the device machine brings back at most 8 files, so the run folder itself stays in
# the work folder, $GPU_CHECK_WORK, default /tmp/gpu_check).
# Exit status 0 when the build, every test (none skipped) and the run went through (a run stopped by the budget
# counts, and says so); 1 otherwise; 2 for a bad argument or missing packages.
#
# --no-build skips step 3 and --device cpu trains on the CPU: only to try the script's plumbing on a machine
# without a GPU (docs/performance.md, "CUDA check").
set -uo pipefail

STEPS=30000
BUDGET=470
TESTS=1
RUN=1
BUILD=1
DEVICE=cuda
while [ $# -gt 0 ]; do
    case "$1" in
        --steps) STEPS=$2; shift 2 ;;
        --budget) BUDGET=$2; shift 2 ;;
        --no-tests) TESTS=0; shift ;;
        --no-run) RUN=0; shift ;;
        --no-build) BUILD=0; shift ;;
        --device) DEVICE=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2
PY=${PYTHON:-$(command -v python3 || command -v python)}
export PATH="$(dirname "$PY"):$PATH"  # ninja, for gsplat's JIT build, sits beside the interpreter
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check}
mkdir -p "$WORK"
[ -z "${OUT:-}" ] || mkdir -p "$OUT"
rm -rf "$WORK/site" "$WORK/run" "$WORK"/*.log "$WORK"/*.txt "$WORK"/*.json "$WORK"/*.xml
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
START=$SECONDS
status=0

echo "== 1. GPU and Python"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi
    GPU_NAME=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)
else
    echo "nvidia-smi: not found"
    GPU_NAME="none (nvidia-smi not found)"
fi

echo "== 2. packages"
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
        .whl/*.whl \
        || { echo "installing .whl/ failed"; exit 2; }
    export PYTHONPATH="$REPO:$WORK/site${PYTHONPATH#"$REPO"}"
    echo "installed $(ls .whl/*.whl | wc -l) wheels from .whl/ into $WORK/site"
fi
"$PY" - <<'EOF' || exit 2
import importlib, sys
missing = []
for name in ("torch", "numpy", "hydra", "omegaconf", "gsplat", "plyfile", "pycolmap", "numba", "cv2", "scipy",
             "tensorboard", "viser", "nerfview", "pytest", "tqdm"):
    try:
        importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - any failure to import is what we report
        missing.append(f"{name} ({type(e).__name__}: {e})")
if missing:
    print("cannot import: " + "; ".join(missing) + "\nfetch the wheels with benchmarks/gpu_wheels.sh where pip works "
          "and carry .whl/ (docs/performance.md, CUDA check)", file=sys.stderr)
    sys.exit(1)
import gsplat, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}, available: "
      f"{torch.cuda.is_available()}), gsplat {gsplat.__version__}")
EOF
STACK=$("$PY" -c 'import sys, torch, gsplat
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), gsplat {gsplat.__version__}")')

BUILD_NOTE="skipped (--no-build)"
if [ "$BUILD" = 1 ]; then
    echo "== 3. gsplat's CUDA extension"
    export MAX_JOBS=${MAX_JOBS:-$(nproc)}
    if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then  # the one GPU present (H100/H200: 9.0): one architecture to compile
        TORCH_CUDA_ARCH_LIST=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null)
        export TORCH_CUDA_ARCH_LIST
    fi
    t0=$SECONDS
    "$PY" -c 'from gsplat.cuda._backend import _C
assert _C is not None, "gsplat found no CUDA toolkit (nvcc): set CUDA_HOME"
print("gsplat CUDA extension loaded")' >"$WORK/gsplat_build.log" 2>&1
    rc=$?
    tail -3 "$WORK/gsplat_build.log"
    [ -n "${OUT:-}" ] && cp "$WORK/gsplat_build.log" "$OUT/"
    BUILD_NOTE="$((SECONDS - t0)) s (MAX_JOBS=$MAX_JOBS, TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-unset})"
    if [ $rc -ne 0 ]; then
        BUILD_NOTE="FAILED after $BUILD_NOTE: see gsplat_build.log"
        tail -40 "$WORK/gsplat_build.log"
        status=1
        TESTS=0
        RUN=0
    fi
fi

TESTS_RC=skipped
TESTS_SECONDS=0
if [ "$TESTS" = 1 ]; then
    echo "== 4. tests"
    t0=$SECONDS
    limit=$((BUDGET - (SECONDS - START) - 20))
    [ $limit -ge 60 ] || limit=60
    # bounded, so that the table and the logs still come back if a test hangs (exit 124 then)
    timeout -k 10 "$limit" "$PY" -m pytest -q -p no:cacheprovider tests/cuda tests/render/test_cuda_parity.py \
        --junitxml="$WORK/junit.xml" 2>&1 | tee "$WORK/pytest.log" ${OUT:+"$OUT/pytest.log"}
    TESTS_RC=${PIPESTATUS[0]}
    TESTS_SECONDS=$((SECONDS - t0))
    [ "$TESTS_RC" = 0 ] || status=1
    if tail -1 "$WORK/pytest.log" | grep -Eq '[0-9]+ skipped'; then
        echo "tests were skipped: on this machine they must all run"
        status=1
    fi
fi

RUN_DIR="$WORK/run"
RUN_NOTE="not run (--no-run)"
RUN_WALL=0
if [ "$RUN" = 1 ]; then
    left=$((BUDGET - (SECONDS - START) - 60))
    if [ $left -lt 60 ]; then
        RUN_NOTE="not run: ${left} s of the ${BUDGET} s budget left (rerun with --no-tests on the warm machine)"
    else
        echo "== 5. python -m s3dgs.train device=$DEVICE steps=$STEPS (at most $left s)"
        SMI_PID=
        if command -v nvidia-smi >/dev/null; then
            nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 >"$WORK/smi_memory.txt" \
                2>/dev/null &
            SMI_PID=$!
        fi
        t0=$SECONDS
        # the real CLI (its module run as __main__, its arguments), reporting the process's peak GPU memory at exit
        GPU_CHECK_PEAK="$WORK/peak_memory.json" timeout --preserve-status -s TERM -k 120 "$left" "$PY" -c '
import atexit, json, os, runpy, sys
import torch
def peak():
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        with open(os.environ["GPU_CHECK_PEAK"], "w") as f:
            json.dump({"allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
                       "reserved_mb": torch.cuda.max_memory_reserved() / 2**20}, f)
atexit.register(peak)
sys.argv = ["s3dgs.train", *sys.argv[1:]]
runpy.run_module("s3dgs.train", run_name="__main__", alter_sys=True)
' "device=$DEVICE" "steps=$STEPS" "hydra.run.dir=$RUN_DIR" >"$WORK/train_stdout.log" 2>&1
        rc=$?
        RUN_WALL=$((SECONDS - t0))
        [ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null
        tr '\r' '\n' <"$WORK/train_stdout.log" | tail -3
        if [ $rc -eq 0 ] && [ -f "$RUN_DIR/metrics.json" ]; then
            RUN_NOTE="finished"
        elif [ -f "$RUN_DIR/ckpt.pt" ] && [ $rc -eq 143 ]; then
            RUN_NOTE="stopped by the budget after $RUN_WALL s (SIGTERM, exit 143); metrics from python -m s3dgs.eval"
            "$PY" -m s3dgs.eval "$RUN_DIR" --no-video --device "$DEVICE" >>"$WORK/train_stdout.log" 2>&1 \
                || { RUN_NOTE="stopped by the budget, and its evaluation FAILED (train_stdout.log)"; status=1; }
        else
            RUN_NOTE="FAILED (exit $rc): see train.log / train_stdout.log"
            tr '\r' '\n' <"$WORK/train_stdout.log" | tail -40
            status=1
        fi
    fi
fi

echo "== 6. table"
GPU_NAME="$GPU_NAME" STACK="$STACK" BUILD_NOTE="$BUILD_NOTE" TESTS_RC="$TESTS_RC" TESTS_SECONDS="$TESTS_SECONDS" \
RUN_NOTE="$RUN_NOTE" RUN_WALL="$RUN_WALL" STEPS="$STEPS" DEVICE="$DEVICE" WORK="$WORK" RUN_DIR="$RUN_DIR" \
"$PY" - <<'EOF' >"$WORK/gpu_check.txt"
import json, os, subprocess, time
import xml.etree.ElementTree as ET
from pathlib import Path

e = os.environ
work, run = Path(e["WORK"]), Path(e["RUN_DIR"])
commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
print(f"# s3dgs GPU check: bash benchmarks/gpu_check.sh ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
      f"commit {commit or 'unknown'})\n")
print(f"- GPU: {e['GPU_NAME']}\n- {e['STACK']}\n- gsplat CUDA extension build/load: {e['BUILD_NOTE']}\n")

junit = work / "junit.xml"
print(f"## python -m pytest -q tests/cuda tests/render/test_cuda_parity.py: exit {e['TESTS_RC']}, "
      f"{e['TESTS_SECONDS']} s\n")
if junit.is_file():
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    print("| test | result | seconds |\n|---|---|---|")
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        result = "failed" if "failure" in kinds else "error" if "error" in kinds else \
            "skipped" if "skipped" in kinds else "passed"
        counts[result] += 1
        name = case.get("classname", "").replace(".", "/") + ".py::" + case.get("name", "")
        print(f"| {name} | {result} | {float(case.get('time', 0)):.1f} |")
    print("\n" + ", ".join(f"{n} {k}" for k, n in counts.items()))
    if counts["skipped"] and e["TESTS_RC"] == "0":
        print("**skipped tests: the GPU was not visible to them**")
else:
    print("(no test results)")

print(f"\n## python -m s3dgs.train device={e['DEVICE']} steps={e['STEPS']} (built-in example, defaults): "
      f"{e['RUN_NOTE']}\n")
metrics = run / "metrics.json"
if metrics.is_file():
    m = json.loads(metrics.read_text())
    t = m.get("test", {})
    peak = work / "peak_memory.json"
    p = json.loads(peak.read_text()) if peak.is_file() else None
    smi = work / "smi_memory.txt"
    used = [int(x) for x in smi.read_text().split() if x.isdigit()] if smi.is_file() else []
    steps = m.get("steps", 0)
    fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    print("| steps done | test PSNR | test SSIM | depth AbsRel | train_seconds | s/step | Gaussians | "
          "peak GPU memory, torch allocated / reserved (MiB) | peak device memory, nvidia-smi (MiB) | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {steps} | {fmt(t.get('psnr'), '.2f')} | {fmt(t.get('ssim'), '.4f')} | "
          f"{fmt(t.get('depth_abs_rel'), '.4f')} "
          f"| {m.get('train_seconds')} | {m['train_seconds'] / max(steps, 1):.4f} | {m.get('num_gaussians')} | "
          + (f"{p['allocated_mb']:.0f} / {p['reserved_mb']:.0f}" if p else "n/a") + " | "
          + (str(max(used)) if used else "n/a") + f" | {e['RUN_WALL']} |")
EOF
cat "$WORK/gpu_check.txt"

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    cp "$WORK/gpu_check.txt" "$OUT/"
    for f in "$WORK/pytest.log" "$WORK/gsplat_build.log" "$RUN_DIR/metrics.json" "$RUN_DIR/train.log"; do
        [ -f "$f" ] && cp "$f" "$OUT/"
    done
    echo "wrote $OUT/gpu_check.txt"
fi
echo "gpu_check: exit $status after $((SECONDS - START)) s"
exit $status
