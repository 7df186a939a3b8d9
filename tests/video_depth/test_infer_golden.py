"""Our batch and streaming inference against the official code's outputs on the same random weights.

tests/video_depth/data/vda_golden.npz holds the official outputs (tools/make_vda_golden.py, run with a
checkout of DepthAnything/Video-Depth-Anything) for the seeded vits weights of ``tiny_vda_checkpoint``
and the synthetic clips whose parameters are stored with each case.
"""

from pathlib import Path

import numpy as np
import pytest

from preprocess.video_depth import build_model, infer_video_depth, stream_video_depth
from preprocess.video_depth.inference import network_size
from video_depth_testing import synthetic_clip

pytestmark = pytest.mark.usefixtures("single_thread")

GOLDEN = np.load(Path(__file__).parent / "data" / "vda_golden.npz")
CASES = sorted(k.split("/")[0] for k in GOLDEN.files if k.endswith("/case"))
RTOL = 1e-4  # of the largest output value


@pytest.fixture(scope="module")
def model(tiny_vda_checkpoint):
    return build_model("vits", tiny_vda_checkpoint)


def case(name: str) -> tuple[bool, np.ndarray, int, bool, np.ndarray]:
    stream, n, height, width, size, metric, seed = (int(v) for v in GOLDEN[f"{name}/case"])
    return bool(stream), synthetic_clip(n, height, width, seed=seed), size, bool(metric), GOLDEN[f"{name}/depth"]


def test_fixture_covers_the_window_logic():
    assert int(GOLDEN["weights_seed"]) == 0 and str(GOLDEN["official_commit"]).startswith("4f5ae23")
    assert set(CASES) == {"one_window", "windows", "wide", "odd", "half_even", "metric", "stream"}
    assert GOLDEN["windows/depth"].shape[0] > 2 * 22 + 3  # a third window changes the output
    _, frames, size, _, _ = case("wide")
    assert max(frames.shape[1:3]) / min(frames.shape[1:3]) > 1.78 and network_size(*frames.shape[1:3], size) == (42, 98)
    _, frames, size, _, _ = case("half_even")
    assert network_size(*frames.shape[1:3], size) == (28, 28)  # 2.5 * 14 rounds down to even
    _, frames, _, _, _ = case("odd")
    assert frames.shape[1] % 2 and frames.shape[2] % 2


@pytest.mark.parametrize("name", [c for c in CASES if c != "stream"])
def test_batch_matches_official(model, name):
    _, frames, size, metric, expected = case(name)
    depth = infer_video_depth(model, frames, input_size=size, metric=metric)
    assert depth.dtype == np.float32 and depth.shape == expected.shape == frames.shape[:3]
    assert np.abs(depth - expected).max() <= RTOL * np.abs(expected).max()


def test_metric_default_comes_from_the_model(tiny_vda_checkpoint):
    _, frames, size, metric, expected = case("metric")
    assert metric
    model = build_model("vits", tiny_vda_checkpoint, metric=True)
    depth = infer_video_depth(model, frames, input_size=size)
    assert np.abs(depth - expected).max() <= RTOL * np.abs(expected).max()
    relative = infer_video_depth(build_model("vits", tiny_vda_checkpoint), frames, input_size=size)
    assert np.abs(relative - expected).max() > 100 * RTOL * np.abs(expected).max()  # alignment changes windows 2+


def test_streaming_matches_official(model):
    _, frames, size, _, expected = case("stream")
    depth = np.stack(list(stream_video_depth(model, iter(frames), input_size=size)))
    assert depth.dtype == np.float32 and depth.shape == expected.shape
    assert np.abs(depth - expected).max() <= RTOL * np.abs(expected).max()
