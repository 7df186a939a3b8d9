#!/usr/bin/env bash
# Build the wheel, install it into a fresh venv outside the checkout and train the built-in example from there:
# proves the wheel carries its configs (s3dgs.configs) and console scripts. Usage: tools/check_wheel.sh [WORK_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
python=${PYTHON:-python3}
rm -rf "$work/whl" "$work/wv" "$work/run"
"$python" -m pip wheel "$repo" -w "$work/whl" --no-deps -q
"$python" -m venv "$work/wv"
"$work/wv/bin/pip" install -q torch==2.13.0       # the CPU build the README installs, before the wheel's deps
"$work/wv/bin/pip" install -q "$work"/whl/s3dgs-*.whl
cd "$work"                                         # nothing of the checkout is importable from here
for cmd in s3dgs-eval s3dgs-view s3dgs-export s3dgs-depth s3dgs-video-depth s3dgs-video-to-scene; do
    "$work/wv/bin/$cmd" --help > /dev/null
done
"$work/wv/bin/s3dgs-train" steps=20 "hydra.run.dir=$work/run"
test -f "$work/run/metrics.json" && test -f "$work/run/point_cloud.ply"
echo "ok: the wheel trains the example from $work"
