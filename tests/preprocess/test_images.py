import numpy as np
import pytest
from PIL import Image

from depth_test_images import write_rgb
from preprocess.images import (IMAGE_EXTENSIONS, ImageReadError, InputError, image_size, list_images, load_rgb,
                               parse_shard, select_shard)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_ignored_pixels_stay_as_stored(tmp_path, orientation):
    # the pixel order SfM poses refer to (COLMAP ignores the tag), so priors match the trainer's images
    write_rgb(tmp_path / "r.jpg", h=20, w=30, exif_orientation=orientation)
    assert Image.open(tmp_path / "r.jpg").getexif()[0x0112] == orientation  # a real tagged JPEG
    out = load_rgb(tmp_path / "r.jpg")
    assert out.shape == (20, 30, 3) and image_size(tmp_path / "r.jpg") == (30, 20)
    with Image.open(tmp_path / "r.jpg") as im:  # the decoder's own pixels, untransposed
        np.testing.assert_array_equal(out, np.asarray(im.convert("RGB")))


def test_grayscale_rgba_palette_16bit(tmp_path):
    g = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "g.png"), np.repeat(g[..., None], 3, 2))

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = [[255, 0], [128, 255]]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "a.png")[..., 0], [[200, 0], [100, 200]])

    Image.fromarray(g, "L").convert("P").save(tmp_path / "p.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "p.png")[..., 1], g)

    g16 = np.array([[0, 257 * 100], [65535, 257 * 7]], np.uint16)
    Image.fromarray(g16).save(tmp_path / "d.tif")
    np.testing.assert_array_equal(load_rgb(tmp_path / "d.tif")[..., 2], [[0, 100], [255, 7]])


def test_corrupt_image_is_an_image_read_error(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageReadError, match="bad.jpg"):
        load_rgb(tmp_path / "bad.jpg")


def test_list_images_extensions_and_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        list_images(tmp_path / "nope")
    with pytest.raises(InputError, match="empty"):
        list_images(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"no images found; accepted extensions.*\.tiff"):
        list_images(tmp_path)
    for name in ("b.JPG", "a.png", "c.Tif", "d.webp", "e.BMP", "f.jpeg"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "c.Tif", "d.webp", "e.BMP", "f.jpeg"]
    assert set(IMAGE_EXTENSIONS) == {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
    for name in ("train/r_0.png", "test/r_0.png", ".cache/x.png", "sub/.x.png"):  # hidden ones are skipped
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)][-2:] == ["test/r_0.png",
                                                                                       "train/r_0.png"]
    assert len(list_images(tmp_path)) == 8


def test_shards_partition_the_sorted_list():
    items = [f"{i:03d}" for i in range(10)]
    parts = [select_shard(items, parse_shard(f"{k}/3")) for k in (1, 2, 3)]
    assert sorted(sum(parts, [])) == items and [len(p) for p in parts] == [4, 3, 3]
    assert parse_shard(None) == (1, 1) and parse_shard(" 2 / 4 ") == (2, 4)
    for bad in ("0/4", "5/4", "x", "1/0", "1-4", ""):
        with pytest.raises(InputError, match="K/N"):
            parse_shard(bad)
