import json

import numpy as np
import pytest

from preprocess.atomic_io import TEMP_PREFIX, atomic_path
from preprocess.depth_png import (DepthFileError, DepthMeta, dequantize, quantize, read_depth_png,
                                  write_depth_png)


def test_quantize_roundtrip_uses_full_range():
    rng = np.random.default_rng(0)
    x = rng.uniform(3.0, 250.0, (17, 23)).astype(np.float32)
    png, lo, hi = quantize(x)
    assert png.dtype == np.uint16 and png.min() == 0 and png.max() == 65535
    assert (lo, hi) == (pytest.approx(x.min()), pytest.approx(x.max()))
    back = dequantize(png, lo, hi)
    assert np.abs(back - x).max() <= (hi - lo) / 65535 / 2 + 1e-5


def test_quantize_constant_and_nonfinite():
    png, lo, hi = quantize(np.full((4, 5), 7.0))
    assert lo == hi == 7.0 and not png.any()
    x = np.array([[1.0, np.nan], [np.inf, 3.0]])
    png, lo, hi = quantize(x)
    assert (lo, hi) == (1.0, 3.0) and png.tolist() == [[0, 0], [0, 65535]]


def test_png_write_read_and_meta(tmp_path):
    png = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    write_depth_png(tmp_path / "a.png", png)
    np.testing.assert_array_equal(read_depth_png(tmp_path / "a.png"), png)
    assert not list(tmp_path.glob(TEMP_PREFIX + "*"))
    meta = DepthMeta(backend="transformers", model="m", images={"a": {"min": 1.0, "max": 2.0}})
    meta.save(tmp_path)
    loaded = DepthMeta.load(tmp_path)
    assert loaded == meta
    np.testing.assert_allclose(loaded.to_float("a", png)[0, :2], [1.0, 1.0 + 5000 / 65535], rtol=1e-6)


def test_read_rejects_8bit_and_garbage(tmp_path):
    import cv2
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((3, 3), np.uint8))
    with pytest.raises(DepthFileError, match="16-bit"):
        read_depth_png(tmp_path / "b.png")
    (tmp_path / "c.png").write_bytes(b"not a png")
    with pytest.raises(DepthFileError, match="c.png"):
        read_depth_png(tmp_path / "c.png")
    (tmp_path / "depth_meta.json").write_text(json.dumps({"backend": "x", "model": "y", "kind": "disparity"}))
    with pytest.raises(DepthFileError, match="kind"):
        DepthMeta.load(tmp_path)


def test_atomic_path_removes_temp_on_interrupt(tmp_path):
    target = tmp_path / "x.bin"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_files_get_umask_permissions(tmp_path):
    import os
    from preprocess.atomic_io import FILE_MODE, atomic_write_bytes
    atomic_write_bytes(tmp_path / "y.bin", b"data")
    assert (tmp_path / "y.bin").read_bytes() == b"data"
    assert os.stat(tmp_path / "y.bin").st_mode & 0o777 == FILE_MODE


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "null", '"0.5"'])
def test_meta_with_a_range_that_cannot_decode_is_one_line_naming_the_file(tmp_path, bad):
    # Python's json writes and reads NaN/Infinity although JSON has neither: the loader must not trust them
    (tmp_path / "depth_meta.json").write_text(
        '{"backend": "vda", "model": "m", "images": {"a": {"min": 0.0, "max": 1.0}, "b": {"min": %s, "max": 2.0}}}'
        % bad)
    with pytest.raises(DepthFileError) as e:
        DepthMeta.load(tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'depth_meta.json'}: image 'b' has min ") and "\n" not in msg
    assert msg.endswith("rerun preprocess.generate_depth")
    with pytest.raises(ValueError, match="not written"):  # and it is never written
        DepthMeta(backend="vda", model="m", images={"b": {"min": float(bad) if bad[0] in "NI" else None,
                                                          "max": 2.0}}).save(tmp_path / "out")
