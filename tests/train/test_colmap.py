"""Our COLMAP reader/writer: binary and text models round-trip, and a hand-written text model reads."""

import numpy as np
import pytest

from s3dgs.data import colmap


def _model() -> colmap.Model:
    rng = np.random.default_rng(1)
    cams = {1: colmap.Camera(1, "PINHOLE", 64, 48, np.array([50.0, 51.0, 32.0, 24.0])),
            2: colmap.Camera(2, "SIMPLE_RADIAL", 64, 48, np.array([50.0, 32.0, 24.0, -0.05]))}
    images = {}
    for i in (1, 2, 3):
        q = rng.normal(size=4)
        q = q / np.linalg.norm(q) * np.sign(q[0])
        images[i] = colmap.Image(i, q, rng.normal(size=3), 1 + i % 2, f"img_{i}.png",
                                 rng.uniform(0, 48, (2, 2)), np.array([1, -1]))
    points = colmap.Points3D(np.array([1, 7]), rng.normal(size=(2, 3)), np.array([[255, 0, 3], [1, 2, 3]], np.uint8),
                             np.array([0.5, 1.25]), [np.array([[1, 0], [2, 0], [3, 0]]), np.zeros((0, 2), np.int64)])
    return colmap.Model(cams, images, points)


@pytest.mark.parametrize("ext", [".bin", ".txt"])
def test_model_round_trip(tmp_path, ext):
    m = _model()
    colmap.write_model(m, tmp_path, ext)
    r = colmap.read_model(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{s}{ext}" for s in ("cameras", "images", "points3D"))
    for cid, c in m.cameras.items():
        assert (r.cameras[cid].model, r.cameras[cid].width, r.cameras[cid].height) == (c.model, c.width, c.height)
        np.testing.assert_array_equal(r.cameras[cid].params, c.params)
    for iid, im in m.images.items():
        got = r.images[iid]
        assert (got.name, got.camera_id) == (im.name, im.camera_id)
        np.testing.assert_array_equal(got.qvec, im.qvec)
        np.testing.assert_array_equal(got.xys, im.xys)
        np.testing.assert_array_equal(got.point3d_ids, im.point3d_ids)
    np.testing.assert_array_equal(r.points.ids, m.points.ids)
    np.testing.assert_array_equal(r.points.xyz, m.points.xyz)
    np.testing.assert_array_equal(r.points.rgb, m.points.rgb)
    np.testing.assert_array_equal(r.points.tracks[0], m.points.tracks[0])
    assert len(r.points.tracks[1]) == 0


def test_reads_colmap_text_written_by_hand(tmp_path):
    """The text format as COLMAP writes it (comments, an image without keypoints), independent of our writer."""
    (tmp_path / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n# Number of cameras: 1\n1 SIMPLE_PINHOLE 100 80 90 50 40\n")
    (tmp_path / "images.txt").write_text(
        "# Image list with two lines of data per image:\n# Number of images: 2, mean observations per image: 0.5\n"
        "1 1 0 0 0 0 0 2 1 a.jpg\n10.5 20.5 3\n2 0.7071067811865476 0 0.7071067811865476 0 1 2 3 1 b c.jpg\n\n")
    (tmp_path / "points3D.txt").write_text("# 3D point list\n3 1.5 -2 4 10 20 30 0.7 1 0\n")
    m = colmap.read_model(tmp_path)
    assert m.cameras[1].model == "SIMPLE_PINHOLE" and list(m.cameras[1].params) == [90, 50, 40]
    assert m.images[2].name == "b c.jpg" and len(m.images[2].xys) == 0
    np.testing.assert_allclose(m.images[1].world_to_camera()[:3, 3], [0, 0, 2])
    # 90 degrees about y: camera x axis = world -z
    np.testing.assert_allclose(m.images[2].world_to_camera()[:3, :3] @ [0, 0, 1.0], [1, 0, 0], atol=1e-12)
    assert m.points.xyz.tolist() == [[1.5, -2, 4]] and m.points.rgb.tolist() == [[10, 20, 30]]


def test_quaternion_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.normal(size=4)
        q = q / np.linalg.norm(q) * np.sign(q[0])
        np.testing.assert_allclose(colmap.rotmat_to_qvec(colmap.qvec_to_rotmat(q)), q, atol=1e-12)


def test_truncated_binary_is_a_clear_error(tmp_path):
    colmap.write_model(_model(), tmp_path, ".bin")
    data = (tmp_path / "images.bin").read_bytes()
    (tmp_path / "images.bin").write_bytes(data[:-10])
    with pytest.raises(colmap.ColmapError, match="images.bin: not a valid COLMAP images file"):
        colmap.read_model(tmp_path)
