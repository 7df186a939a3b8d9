"""COLMAP models: what our writer writes, pycolmap reads back (binary and text) as the trainer needs it, a
hand-written text model reads, and a truncated binary one is refused."""

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
        np.testing.assert_array_equal(got.point3d_ids, im.point3d_ids[im.point3d_ids >= 0])  # observed, in order
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


@pytest.mark.parametrize("ext", [".bin", ".txt"])
def test_a_larger_model_reads_as_the_trainer_needs_it(tmp_path, ext):
    """Every camera model the trainer undistorts, keypoints with and without a 3D point, points written out of id
    order: cameras, poses, points (sorted by id), each image's observations and each point's track come back."""
    rng = np.random.default_rng(3)
    params = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 4, "RADIAL": 5, "OPENCV": 8, "FULL_OPENCV": 12,
              "OPENCV_FISHEYE": 8, "SIMPLE_RADIAL_FISHEYE": 4, "RADIAL_FISHEYE": 5}
    cams = {i + 1: colmap.Camera(i + 1, name, 640, 480, rng.uniform(0.1, 500, n))
            for i, (name, n) in enumerate(params.items())}
    n_points, n_images = 300, 12
    point_ids = rng.permutation(np.arange(5, 5 + 3 * n_points, 3))  # sparse ids, not in id order
    seen = rng.random((n_images, n_points)) < 0.3
    images, tracks = {}, {int(p): [] for p in point_ids}
    for i in range(n_images):
        observed = point_ids[seen[i]]
        ids = np.concatenate([observed, np.full(7, -1)])[rng.permutation(len(observed) + 7)]
        for pid in ids[ids >= 0]:
            tracks[int(pid)].append((i + 1, int(np.flatnonzero(ids == pid)[0])))  # index among all keypoints
        q = rng.normal(size=4)
        images[i + 1] = colmap.Image(i + 1, q / np.linalg.norm(q) * np.sign(q[0]), rng.normal(size=3),
                                     1 + i % len(cams), f"frame {i:03d}.jpg" if ext == ".txt" else f"f/{i:03d}.jpg",
                                     rng.uniform(0, 480, (len(ids), 2)), ids)
    points = colmap.Points3D(point_ids, rng.normal(size=(n_points, 3)), rng.integers(0, 256, (n_points, 3), np.uint8),
                             rng.uniform(0, 2, n_points), [np.array(tracks[int(p)], np.int64).reshape(-1, 2)
                                                           for p in point_ids])
    colmap.write_model(colmap.Model(cams, images, points), tmp_path, ext)
    r = colmap.read_model(tmp_path)
    assert [(c.model, c.width, c.height) for c in r.cameras.values()] == [(c.model, 640, 480) for c in cams.values()]
    for cid, c in cams.items():
        np.testing.assert_array_equal(r.cameras[cid].params, c.params)
    order = np.argsort(point_ids)
    np.testing.assert_array_equal(r.points.ids, point_ids[order])
    np.testing.assert_array_equal(r.points.xyz, points.xyz[order])
    np.testing.assert_array_equal(r.points.rgb, points.rgb[order])
    np.testing.assert_array_equal(r.points.error, points.error[order])
    for iid, im in images.items():
        got = r.images[iid]
        assert got.name == im.name and got.camera_id == im.camera_id
        np.testing.assert_allclose(got.world_to_camera(), im.world_to_camera(), rtol=0, atol=1e-15)
        np.testing.assert_array_equal(got.point3d_ids, im.point3d_ids[im.point3d_ids >= 0])
        assert len(got.xys) == 0  # keypoint coordinates are not read
    for pid, track in zip(r.points.ids, r.points.tracks):
        assert sorted(map(tuple, track.tolist())) == sorted(tracks[int(pid)])
    with pytest.raises(ValueError, match="write a model read by read_model with pycolmap"):
        colmap.write_model(r, tmp_path / "again", ext)


def test_a_model_without_points_reads_with_none(tmp_path):
    colmap.write_model(_model(), tmp_path, ".bin")
    (tmp_path / "points3D.bin").unlink()
    m = colmap.read_model(tmp_path)
    assert len(m.points.ids) == 0 and len(m.images) == 3 and sorted(p.name for p in tmp_path.iterdir()) == [
        "cameras.bin", "images.bin"]
