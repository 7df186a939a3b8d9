"""Video Depth Anything on the GPU with fp16 autocast (the CLI's default on CUDA): a tiny random-weight model in the
official layout gives finite depth close to fp32, in batch and streaming mode, and fp32 on the GPU agrees with the
CPU."""

import numpy as np
import pytest
import torch

from preprocess.video_depth import build_model, infer_video_depth, stream_video_depth
from video_depth_testing import save_random_checkpoint, synthetic_clip

from .conftest import GPU

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: fp16 autocast is CUDA-only")

FRAMES, HEIGHT, WIDTH, INPUT_SIZE = 10, 48, 64, 56
# fp16 keeps 11 significant bits (rounding 2^-12 = 2.4e-4 per operation); bf16's 8 bits put the same tiny model 2.3e-2
# from fp32 at worst and 4e-3 on average (tests/video_depth/test_precision.py). fp16 should land well inside those;
# an error below 1e-5 would mean autocast never ran. fp32 on the GPU runs convolutions in TF32 (cuDNN's default),
# which rounds like fp16, hence the same bounds against the CPU.
MAX_ERROR, MEAN_ERROR, MIN_ERROR = 2.5e-2, 5e-3, 1e-5


def relative_error(depth: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    rel = np.abs(depth - reference) / np.abs(reference).max(axis=(1, 2), keepdims=True)
    return float(rel.max()), float(rel.mean())


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_model("vits", save_random_checkpoint(tmp_path_factory.mktemp("vda"), "vits", seed=0))


@pytest.mark.parametrize("mode", ["batch", "stream"])
def test_fp16_on_the_gpu_stays_near_fp32(model, mode):
    frames = synthetic_clip(FRAMES, HEIGHT, WIDTH, seed=3)

    def run(precision: str, device: str) -> np.ndarray:
        if mode == "batch":
            return infer_video_depth(model, frames, input_size=INPUT_SIZE, precision=precision, device=device)
        return np.stack(list(stream_video_depth(model, iter(frames), input_size=INPUT_SIZE, precision=precision,
                                                device=device)))

    on_cpu = run("fp32", "cpu")
    fp32, fp16 = run("fp32", GPU), run("fp16", GPU)
    assert next(model.parameters()).device.type == GPU
    for depth in (fp32, fp16):
        assert depth.dtype == np.float32 and depth.shape == on_cpu.shape == (FRAMES, HEIGHT, WIDTH)
        assert np.isfinite(depth).all() and np.abs(depth).max() > 0
    worst, mean = relative_error(fp16, fp32)
    assert MIN_ERROR < worst <= MAX_ERROR and mean <= MEAN_ERROR, (worst, mean)
    worst, mean = relative_error(fp32, on_cpu)
    assert worst <= MAX_ERROR and mean <= MEAN_ERROR, (worst, mean)
