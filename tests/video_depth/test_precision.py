"""Precision choice: bf16 autocast on CPUs with native bf16 matmul (opt-in), and the errors for precisions the
device cannot run."""

import numpy as np
import pytest

from preprocess.video_depth import build_model, infer_video_depth, stream_video_depth
from preprocess.video_depth import inference
from video_depth_testing import synthetic_clip

pytestmark = pytest.mark.usefixtures("single_thread")
needs_bf16 = pytest.mark.skipif(not inference.native_bf16(),
                                reason="this CPU has no native bf16 matmul (AVX512-BF16 or AMX)")
# bf16 keeps 8 mantissa bits (rounding 2^-9 = 2e-3 per operation); through the 12 encoder blocks and the head
# the tiny random vits ends 2.3e-2 from fp32 at worst and 4e-3 on average on this clip (both modes; 518 px
# clips measure alike, see docs/performance.md). About twice that bounds it; an error below 1e-4 would mean
# autocast never ran (fp32 reruns in one process agree exactly).
MAX_ERROR, MEAN_ERROR, MIN_ERROR = 5e-2, 1e-2, 1e-4


@pytest.fixture(scope="module")
def model(tiny_vda_checkpoint):
    return build_model("vits", tiny_vda_checkpoint)


def relative_error(depth: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    rel = np.abs(depth - reference) / np.abs(reference).max(axis=(1, 2), keepdims=True)
    return float(rel.max()), float(rel.mean())


@needs_bf16
@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_bf16_stays_near_fp32(model, mode):
    frames = synthetic_clip(6, 40, 60, seed=3)

    def run(precision):
        if mode == "batch":
            return infer_video_depth(model, frames, input_size=42, precision=precision)
        return np.stack(list(stream_video_depth(model, iter(frames), input_size=42, precision=precision)))

    reference, depth = run("fp32"), run("bf16")
    assert depth.dtype == np.float32 and depth.shape == reference.shape == (6, 40, 60)
    worst, mean = relative_error(depth, reference)
    assert MIN_ERROR < worst <= MAX_ERROR and mean <= MEAN_ERROR, (worst, mean)


def test_precision_the_device_cannot_run_is_an_error(model, monkeypatch):
    frames = synthetic_clip(1, 28, 28)
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        infer_video_depth(model, frames, input_size=28, precision="fp16")
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        next(stream_video_depth(model, iter(frames), input_size=28, precision="int8"))
    monkeypatch.setattr(inference, "native_bf16", lambda: False)
    with pytest.raises(ValueError, match="no native bf16 matmul"):
        infer_video_depth(model, frames, input_size=28, precision="bf16")
