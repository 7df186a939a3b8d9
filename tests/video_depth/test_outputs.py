"""Output formats of the video depth tool, written from known depth arrays and read back independently."""

import base64
import io
import json
import struct
import sys
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from preprocess.video_depth import ndjson, rawfiles
from preprocess.video_depth.pointcloud import back_project, write_point_csv
from preprocess.video_depth.regions import RegionLabeler, RegionLabels, annotation_dir
from preprocess.video_depth.vis import Mp4Writer, colorize, preview_payload, to_uint8

# Annolid's documented example record (6x4 map, linspace 0.8..3.2), made by Annolid's writer.
ANNOLID_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAYAAAAEEAAAAADY/83cAAAAMUlEQVR4nC3IMREAIAwEQZhJd5j4SAHzsfJRQQHl7hwDkQiRsQ"
               "utxJiOUzQvPowpdAEjAQ42bExisAAAAABJRU5ErkJggg==")


def _record(depth, frame_index=0):
    return ndjson.depth_record(depth, frame_index=frame_index, video_name="mice.mp4", kind="inverse_depth",
                               units=None, model="video_depth_anything_vits", timestamp_sec=frame_index / 30)


def test_record_keys_and_16bit_png_match_annolid():
    depth = np.random.default_rng(0).uniform(0.3, 3.7, (5, 7)).astype(np.float32)
    rec = _record(depth, frame_index=12)
    assert list(rec)[:9] == ["version", "flags", "shapes", "imagePath", "imageHeight", "imageWidth", "otherData",
                             "frame_index", "video_name"]
    assert (rec["version"], rec["flags"], rec["shapes"], rec["imagePath"]) == ("Depth-Anything", {}, [], "")
    assert (rec["imageHeight"], rec["imageWidth"], rec["frame_index"], rec["video_name"]) == (5, 7, 12, "mice.mp4")
    assert rec["timestamp_sec"] == pytest.approx(0.4)
    dm = rec["otherData"]["depth_map"]
    assert dm["dtype"] == "uint16" and dm["kind"] == "inverse_depth" and dm["model"] == "video_depth_anything_vits"
    assert dm["scale"] == {"min": float(depth.min()), "max": float(depth.max())}
    png = base64.b64decode(dm["image_data"], validate=True)
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", png[16:26])
    assert (width, height, bit_depth, colour_type) == (7, 5, 16, 0)  # 16-bit greyscale, as Annolid writes
    # Annolid's decode formula: q / 65535 * (max - min) + min
    q = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED).astype(np.float64)
    annolid = q / 65535 * (dm["scale"]["max"] - dm["scale"]["min"]) + dm["scale"]["min"]
    step = (depth.max() - depth.min()) / 65535
    assert np.abs(annolid - depth).max() <= step / 2 + 1e-7
    assert np.abs(ndjson.decode_depth(rec) - depth).max() <= step / 2 + 1e-6
    with Image.open(io.BytesIO(png)) as im:  # how Annolid's lifting code opens it
        assert im.mode == "I;16"
        np.testing.assert_array_equal(np.array(im), q)
    json.dumps(rec)  # plain JSON types only


def test_decodes_annolid_written_record():
    rec = {"frame_index": 0, "otherData": {"depth_map": {"image_data": ANNOLID_PNG, "dtype": "uint16",
                                                         "scale": {"min": 0.8, "max": 3.2}}}}
    expected = np.linspace(0.8, 3.2, 24).reshape(4, 6)
    assert np.abs(ndjson.decode_depth(rec) - expected).max() <= 2.4 / 65535


def test_appender_index_repair_and_compact(tmp_path):
    path = tmp_path / "depth.ndjson"
    base = np.arange(6, dtype=np.float32).reshape(2, 3)
    with ndjson.RecordAppender(path) as app:
        for frame, depth in [(4, base), (0, base), (2, base), (0, base * 2)]:  # frame 0 redone: last one wins
            app.append(_record(depth, frame_index=frame))
    with open(path, "ab") as f:
        f.write(b'{"version": "Depth-Anything", "frame_ind')  # torn line of a killed run
    assert ndjson.repair_tail(path) is True and ndjson.repair_tail(path) is False
    index = ndjson.index_records(path)
    assert sorted(index) == [0, 2, 4]
    assert ndjson.compact(path) == 3
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["frame_index"] for line in lines] == [0, 2, 4]
    newest = ndjson.decode_depth(json.loads(lines[0]))
    assert np.allclose(newest, base * 2, atol=1e-3)
    before = path.read_bytes()
    assert ndjson.compact(path) == 3 and path.read_bytes() == before


@pytest.mark.parametrize("content, expected", [(b"a\nbb\nccc", b"a\nbb\n"), (b"torn", b""), (b"a\n", b"a\n"),
                                               (b"xxxxxxx\nyyyyyyyyy", b"xxxxxxx\n")])
def test_repair_tail_reads_backwards_in_chunks(tmp_path, content, expected):
    path = tmp_path / "depth.ndjson"
    path.write_bytes(content)
    assert ndjson.repair_tail(path, chunk=3) is (content != expected)
    assert path.read_bytes() == expected


def test_point_csv_columns_and_geometry(tmp_path):
    z = np.array([[1.0, 2.0, 0.0], [4.0, 0.5, 1.5]], np.float32)
    rgb = np.arange(18, dtype=np.uint8).reshape(2, 3, 3) * 10
    labels = RegionLabels(np.array([[1, 0, 2], [0, 0, 1]], np.int32), (None, "a", 'b"q'))
    path = tmp_path / "point_0000.csv"
    write_point_csv(path, z, rgb, fx=2.0, fy=4.0, labels=labels)
    lines = path.read_text().splitlines()
    assert lines[0] == "x,y,z,intensity,region,red,green,blue"
    assert len(lines) == 1 + 6
    rows = [line.split(",") for line in lines[1:]]
    for k, row in enumerate(rows):
        v, u = divmod(k, 3)
        zz = float(z[v, u])
        assert float(row[0]) == pytest.approx((u - 1.5) / 2.0 * zz, abs=1e-6)
        assert float(row[1]) == pytest.approx((v - 1.0) / 4.0 * zz, abs=1e-6)
        assert float(row[2]) == float(row[3]) == pytest.approx(zz)
        assert [int(c) for c in row[5:]] == rgb[v, u].tolist()
    assert rows[0][2] == "1.000000"
    assert [r[4] for r in rows] == ['"a"', "", '"b""q"', "", "", '"a"']

    write_point_csv(path, z, None, fx=2.0, fy=4.0, as_depth=True)
    lines = path.read_text().splitlines()
    assert lines[0] == "x,y,z,intensity"
    assert len(lines) == 1 + 5  # the zero-valued pixel (infinitely far) is left out
    assert [float(r.split(",")[2]) for r in lines[1:]] == pytest.approx([1.0, 0.5, 0.25, 2.0, 1 / 1.5], abs=1e-6)


def test_point_csv_bytes_of_a_tiny_frame(tmp_path):
    # x = (u - 1) / 2 * z, y = (v - 1) / 4 * z; -0.0 keeps its sign; 2**-7 * 1e6 = 7812.5 is a tie (to even)
    z = np.array([[1.0, 2.0 ** -7], [0.0, -1e-7]], np.float32)
    rgb = np.array([[[0, 9, 10], [99, 100, 255]], [[5, 0, 0], [1, 2, 3]]], np.uint8)
    labels = RegionLabels(np.array([[1, 0], [2, 3]], np.int32), (None, "a", 'say "hi"', "ü"))
    path = tmp_path / "point_0000.csv"
    write_point_csv(path, z, rgb, fx=2.0, fy=4.0, labels=labels)
    assert path.read_bytes() == (
        "x,y,z,intensity,region,red,green,blue\n"
        '-0.500000,-0.250000,1.000000,1.000000,"a",0,9,10\n'
        "0.000000,-0.001953,0.007812,0.007812,,99,100,255\n"
        '-0.000000,0.000000,0.000000,0.000000,"say ""hi""",5,0,0\n'
        '-0.000000,-0.000000,-0.000000,-0.000000,"ü",1,2,3\n').encode()


def test_point_csv_is_pythons_formatting(tmp_path):
    """Random magnitudes 1e-9..1e12, exact ties, signed zeros and non-finite values, written as
    ``"%.6f"`` would write them (the vectorised writer leaves only doubtful values to Python)."""
    rng = np.random.default_rng(7)
    z = (rng.standard_normal((40, 50)) * 10.0 ** rng.integers(-9, 13, (40, 50))).astype(np.float32)
    special = [0.0, -0.0, 2.0 ** -7, -(2.0 ** -7), 1.5e-6, 0.5e-6, 999999.9999995, 1e9, -1e9, 3e12, np.inf,
               -np.inf, np.nan]
    z.flat[:len(special)] = special
    z[1] = rng.integers(-10 ** 6, 10 ** 6, 50) / 128  # exact half-way points at the 6th decimal
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for as_depth in (False, True):
        path = tmp_path / f"point_{as_depth:d}.csv"
        write_point_csv(path, z, rgb, fx=3.7, fy=0.9, as_depth=as_depth)
        value = z.astype(np.float64)
        keep = value > 0 if as_depth else np.ones(z.shape, bool)
        value = np.divide(1.0, value, out=np.zeros_like(value), where=keep) if as_depth else value
        x, y = back_project(value, 3.7, 0.9)
        rows = zip(x[keep].tolist(), y[keep].tolist(), value[keep].tolist(), rgb[keep].tolist())
        expected = "x,y,z,intensity,red,green,blue\n" + "".join(
            "%.6f,%.6f,%.6f,%.6f,%d,%d,%d\n" % (a, b, c, c, *colour) for a, b, c, colour in rows)
        assert path.read_bytes() == expected.encode()


def test_exr_channel_z_roundtrip(tmp_path):
    import OpenEXR

    depth = np.random.default_rng(1).uniform(0, 50, (9, 13)).astype(np.float32)
    path = tmp_path / "frame_00000.exr"
    rawfiles.write_exr(path, depth)
    with OpenEXR.File(str(path)) as f:
        channels = f.channels()
        assert list(channels) == ["Z"]
        assert channels["Z"].pixels.dtype == np.float32
        np.testing.assert_array_equal(channels["Z"].pixels, depth)


def test_npz_streamed_from_parts_and_unpacked(tmp_path):
    depths = np.random.default_rng(2).random((4, 5, 3)).astype(np.float32)
    npz = tmp_path / "clip_depths.npz"
    for i, d in enumerate(depths):
        rawfiles.write_part(npz, i, d)
    rawfiles.assemble_npz(npz, [0, 1, 2, 3], (3, 5))
    assert not rawfiles.parts_dir(npz).exists()
    with np.load(npz) as data:
        assert data.files == ["depths"]
        np.testing.assert_array_equal(data["depths"], depths)
    assert zipfile.ZipFile(npz).infolist()[0].compress_type == zipfile.ZIP_DEFLATED
    assert rawfiles.npz_frame_count(npz) == 4
    assert rawfiles.unpack_npz(npz) == 4
    np.testing.assert_array_equal(np.load(rawfiles.part_path(npz, 2)), depths[2])


@pytest.mark.parametrize("size, libx264", [((33, 25), True), ((32, 24), True), ((33, 25), False)])
def test_mp4_writer_pads_odd_sizes_and_plays(tmp_path, monkeypatch, size, libx264):
    if not libx264:  # imageio-ffmpeg missing: the OpenCV mp4v fallback
        monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    path = tmp_path / "clip_vis.mp4"
    w, h = size
    with Mp4Writer(path, size, fps=10) as writer:
        for i in range(7):
            writer.write(np.full((h, w, 3), 30 * i, np.uint8))
    assert writer.codec == ("h264" if libx264 else "mp4v")
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 7
    assert frames[0].shape == (h + h % 2, w + w % 2, 3)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10)
    assert [int(round(f.mean())) for f in frames] == pytest.approx([30 * i for i in range(7)], abs=3)


def test_colours_and_preview():
    depth = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    gray = to_uint8(depth, 0.0, 1.0)
    assert gray.min() == 0 and gray.max() == 255
    rgb = colorize(gray)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == pytest.approx([0, 0, 4], abs=2)        # inferno: black end
    assert rgb[-1, -1].tolist() == pytest.approx([252, 255, 164], abs=2)  # inferno: pale yellow end
    assert colorize(gray, grayscale=True) is gray
    assert not to_uint8(np.ones((2, 2)), 1.0, 1.0).any()
    p = preview_payload(depth, 17)
    assert p["frame_index"] == 17 and p["overlay"].shape == (16, 16, 3) and p["overlay"].flags.c_contiguous
    s = p["depth_stats"]
    assert (s["min"], s["max"]) == (0.0, 1.0) and s["mean"] == pytest.approx(0.5)
    assert s["display_min"] == pytest.approx(0.01) and s["display_max"] == pytest.approx(0.99)


def test_region_labels_from_frame_json_and_store(tmp_path):
    video = tmp_path / "mice.mp4"
    video.write_bytes(b"")
    assert annotation_dir(video) is None
    folder = tmp_path / "mice"
    folder.mkdir()
    assert annotation_dir(video) == folder
    # frame 3: per-frame LabelMe JSON at 2x the depth size; a 4-corner rectangle and an overlapping polygon
    (folder / "mice_000000003.json").write_text(json.dumps({
        "imageWidth": 20, "imageHeight": 16, "shapes": [
            {"label": "box", "shape_type": "rectangle", "points": [[0, 0], [8, 0], [8, 8], [0, 8]]},
            {"label": "tri", "shape_type": "polygon", "points": [[0, 0], [19, 0], [19, 15]]},
            {"label": "", "shape_type": "polygon", "points": [[0, 0], [19, 0], [0, 15]]},
            {"label": "pt", "shape_type": "point", "points": [[5, 5]]}]}))
    # frame 5: a store stub (no shapes) beside a store record -> the store is used
    (folder / "mice_000000005.json").write_text(json.dumps({"annotation_store": "mice_annotations.ndjson"}))
    (folder / "mice_annotations.ndjson").write_text(
        json.dumps({"frame": 5, "imageWidth": 10, "imageHeight": 8,
                    "shapes": [{"label": "old", "shape_type": "polygon", "points": [[0, 0], [9, 0], [9, 7]]}]}) + "\n"
        + json.dumps({"frame": 5, "imageWidth": 10, "imageHeight": 8,
                      "shapes": [{"label": "nest", "shape_type": "rectangle", "points": [[6, 4], [9, 7]]}]}) + "\n")
    labeler = RegionLabeler(folder)
    lab = labeler.labels(3, 10, 8)
    assert lab.shape == (8, 10)
    assert lab[1, 1] == "box" and lab[3, 3] == "box"          # earlier shape wins over the triangle
    assert lab[1, 8] == "tri" and lab[7, 0] is None
    lab5 = labeler.labels(5, 10, 8)
    assert lab5[5, 7] == "nest" and lab5[0, 0] is None       # last store record for the frame
    assert labeler.labels(4, 10, 8) is None


def test_sampling_rule():
    from pathlib import Path

    from preprocess.video_depth.frames import VideoInfo, plan_sampling, processed_size

    info = VideoInfo(Path("v.mp4"), 1000, 750, fps=30.0, frame_count=100)
    s = plan_sampling(info, target_fps=12, max_len=-1, max_res=900)
    assert (s.stride, s.size, s.fps) == (2, (900, 675), 15.0)        # round(2.5) = 2; floor size may be odd
    assert list(s.positions(info.frame_count))[:3] == [0, 2, 4] and len(s.positions(100)) == 50
    s = plan_sampling(info, target_fps=7, max_len=5)
    assert (s.stride, list(s.positions(100))) == (4, [0, 4, 8, 12, 16])
    assert s.expected_count(100) == 5 and s.expected_count(-1) is None
    assert plan_sampling(info).stride == 1 and plan_sampling(info).size == (1000, 750)
    unknown = VideoInfo(Path("v.mp4"), 640, 480, fps=0.0, frame_count=-1)
    assert plan_sampling(unknown).src_fps == 30.0 and plan_sampling(unknown, target_fps=5).stride == 1
    assert processed_size(3000, 2, 1280) == (1280, 1)
