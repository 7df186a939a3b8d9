#!/usr/bin/env bash
# benchmarks/gpu_wheels.sh [DEST]
#
# Fetch into DEST (default .whl/, git-ignored) the wheels of the packages s3dgs imports that the lent GPU machines'
# image lacks: it has torch (CUDA), numpy, numba, opencv, scipy, tensorboard, pytest, rich, jaxtyping and ninja, but
# not hydra-core, omegaconf, gsplat, plyfile, pycolmap, viser, nerfview and their small dependencies. Built for that
# image's Python 3.12 on x86-64, at the versions installed where this runs (those the CPU tests pass with). About
# 54 MB (pycolmap alone 38 MB): with the checkout, under the 64 MiB a device call carries.
#
# Run it where pip reaches a package index (the device machine reaches none), then carry DEST with the working tree;
# benchmarks/gpu_check.sh installs whatever DEST holds before anything else (docs/performance.md, "CUDA check").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEST=${1:-.whl}
PY=${PYTHON:-python}

version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
pins=()
for dist in hydra-core omegaconf gsplat plyfile pycolmap viser nerfview splines msgspec websockets zstandard; do
    pins+=("$dist==$(version "$dist")")
done
mkdir -p "$DEST"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 \
         manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d "$DEST" "${pins[@]}"
# PyPI has only an sdist of antlr4-python3-runtime (hydra's parser): a pure-Python wheel built here
"$PY" -m pip wheel -q --no-deps -w "$DEST" "antlr4-python3-runtime==$(version antlr4-python3-runtime)"
ls -1 "$DEST"
du -sh "$DEST"
