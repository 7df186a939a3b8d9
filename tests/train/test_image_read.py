import numpy as np
import pytest
from PIL import Image

from s3dgs.data.frames import DataError
from s3dgs.data.scene import _read_rgb


def test_16bit_and_rgba_training_images(tmp_path):
    g16 = np.array([[0, 65535], [32768, 1000]], np.uint16)
    Image.fromarray(g16).save(tmp_path / "g.png")
    rgb, alpha = _read_rgb(tmp_path / "g.png", np.zeros(3, np.float32))
    assert alpha is None and rgb.shape == (2, 2, 3)
    np.testing.assert_allclose(rgb[..., 0], np.rint(g16 / 65535 * 255) / 255, atol=1e-6)  # scaled, not clipped
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]
    rgba[0, 1] = [0, 255, 0, 0]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb, alpha = _read_rgb(tmp_path / "a.png", np.ones(3, np.float32))
    np.testing.assert_allclose(rgb[0], [[1, 0, 0], [1, 1, 1]])  # transparent pixel takes the background
    assert alpha.dtype == np.float32 and alpha.tolist() == [[1.0, 0.0]]


def test_corrupt_training_image_is_one_line(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"bad\.jpg: cannot read image") as e:
        _read_rgb(tmp_path / "bad.jpg", np.zeros(3, np.float32))
    assert "\n" not in str(e.value) and str(e.value).endswith("remove it from the folder")


def test_exr_is_refused_with_the_fix(tmp_path):
    import OpenEXR

    rgb = np.full((2, 3, 3), 0.5, np.float32)
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                      {"RGB": rgb}) as f:
        f.write(str(tmp_path / "hdr.exr"))
    with pytest.raises(DataError) as e:
        _read_rgb(tmp_path / "hdr.exr", np.zeros(3, np.float32))
    assert str(e.value) == (f"{tmp_path / 'hdr.exr'}: .exr is not a supported training image type "
                            "(.bmp, .jpeg, .jpg, .png, .tif, .tiff, .webp); convert it to PNG")
