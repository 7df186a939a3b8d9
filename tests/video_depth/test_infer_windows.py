"""Window planning, resize rule, input checks and the streaming cache bound."""

import numpy as np
import pytest

from preprocess.video_depth import VideoDepthStream, build_model, infer_video_depth
from preprocess.video_depth.inference import fit_scale_shift, network_size, window_frames
from preprocess.video_depth.streaming import CACHE_LIMIT
from video_depth_testing import synthetic_clip

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def model(tiny_vda_checkpoint):
    return build_model("vits", tiny_vda_checkpoint)


@pytest.mark.parametrize("height,width,size,expected", [
    (1080, 1920, 518, (518, 924)),  # 16:9 keeps 518
    (1920, 1080, 518, (924, 518)),
    (804, 1920, 518, (392, 938)),  # 2.39:1: input size int(518 * 1.777 / 2.388) = 385 -> 392
    (518, 518, 518, (518, 518)),
    (20, 25, 28, (28, 28)),  # 35 / 14 = 2.5 rounds half to even: 28, not 42
    (40, 45, 56, (56, 56)),  # 63 / 14 = 4.5 -> 56, not 70
    (15, 21, 42, (42, 56)),
])
def test_network_size(height, width, size, expected):
    assert network_size(height, width, size) == expected


def test_windows_repeat_keyframes_and_pad_with_the_last_frame():
    assert window_frames(5) == [[0, 1, 2, 3, 4] + [4] * 27]
    first, second, third = window_frames(50)
    assert first == list(range(32))
    assert second == [0, 12] + list(range(24, 50)) + [49] * 4
    assert third == [0, 34] + list(range(46, 50)) + [49] * 26
    assert len(window_frames(44)) == 2 and len(window_frames(45)) == 3


def test_fit_scale_shift_recovers_an_affine_map():
    pred = np.linspace(0.5, 3.0, 200, dtype=np.float32).reshape(10, 20)
    scale, shift = fit_scale_shift(pred, 2.5 * pred - 0.75)
    assert scale == pytest.approx(2.5, rel=1e-5) and shift == pytest.approx(-0.75, abs=1e-4)
    assert fit_scale_shift(np.ones((4, 4), np.float32), np.zeros((4, 4), np.float32)) == (1, 0)


def test_bad_frames_are_rejected(model):
    with pytest.raises(ValueError, match=r"uint8 RGB \[N, H, W, 3\]"):
        infer_video_depth(model, np.zeros((2, 20, 30, 3), np.float32), input_size=28)
    with pytest.raises(ValueError, match=r"uint8 RGB \[N, H, W, 3\]"):
        infer_video_depth(model, np.zeros((0, 20, 30, 3), np.uint8), input_size=28)
    stream = VideoDepthStream(model, input_size=28)
    stream.step(np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(ValueError, match="frame 1 is 31x20, but the stream started at 30x20"):
        stream.step(np.zeros((20, 31, 3), np.uint8))


def test_streaming_cache_is_bounded(model):
    """The cache stops growing at 42 frames; its memory is allocated by the first frame (43 ring slots:
    the 42 cached frames and the one being added) and never changes, however long the video."""
    stream = VideoDepthStream(model, input_size=28)
    lengths, sizes, slots = [], [], []
    for frame in synthetic_clip(52, 12, 16, seed=3):
        depth = stream.step(frame)
        lengths.append(len(stream.cache))
        sizes.append(stream.cached_bytes)
        slots.append(stream.cache[-1])
    assert depth.shape == (12, 16) and depth.dtype == np.float32
    assert lengths[:12] == [32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 42]
    assert set(lengths[11:]) == {CACHE_LIMIT}
    assert len(set(stream.cache)) == CACHE_LIMIT and set(slots) == set(range(CACHE_LIMIT + 1))
    # network input 28x42: 2x3 patches; temporal levels 2x3 (192 ch), 1x2 (384), 2x3 (64), 4x6 (64);
    # per frame and level two sub-blocks x (keys + values) x float32
    per_frame = 2 * 2 * 4 * (6 * 192 + 2 * 384 + 6 * 64 + 24 * 64)
    assert sizes == [(CACHE_LIMIT + 1) * per_frame] * 52
