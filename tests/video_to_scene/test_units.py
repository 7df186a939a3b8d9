"""Pure parts of preprocess.video_to_scene: frame buckets, pair lists, stage markers, missing pycolmap."""

import json
import sys

import cv2
import numpy as np
import pytest

from preprocess.video_to_scene import SceneError, poses
from preprocess.video_to_scene.frames import bucket_length, sample_frames, sharpest_per_bucket, sharpness
from preprocess.video_to_scene.manifest import Manifest
from preprocess.video_to_scene.stages import Stages
from video_to_scene_testing import umeyama


def test_bucket_length_follows_fps_and_widens_to_max_frames():
    assert bucket_length(300, 30.0, 2.0, 300) == 15.0              # 2 of 30 frames per second
    assert bucket_length(3000, 30.0, 2.0, 100) == 30.0             # 200 buckets > 100: widened to span the clip
    assert bucket_length(-1, 30.0, 2.0, 100) == 15.0               # frame count unknown: the cap stops reading
    assert bucket_length(10, 1.0, None, 300) == 1.0                # a folder: every image
    assert bucket_length(10, 50.0, 100.0, 0) == 1.0                # never below one frame


def test_sharpest_per_bucket_keeps_the_sharpest_and_stops_at_max_frames():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    assert sharpness(sharp) > 10 * sharpness(blurred)
    order = [blurred, blurred, sharp, blurred, sharp, blurred, blurred, blurred, blurred, sharp]
    kept = list(sharpest_per_bucket(enumerate(order), 2.5, 0))  # buckets {0,1,2}, {3,4}, {5,6,7}, {8,9}
    assert [k[0] for k in kept] == [2, 4, 5, 9]  # ties keep the first frame of the bucket
    assert [k[0] for k in sharpest_per_bucket(enumerate(order), 2.5, 2)] == [2, 4]


def test_pairs_are_neighbours_plus_keyframe_loops_or_all_for_short_clips():
    pairs = poses.video_pairs(30, 3, 10)
    assert (0, 3) in pairs and (0, 4) not in pairs and (26, 29) in pairs
    assert {(0, 10), (0, 20), (10, 20)} <= set(pairs) and (1, 21) not in pairs
    assert len(pairs) == (3 * 30 - 6) + 3  # neighbours, plus the loop pairs (0, 10), (0, 20), (10, 20)
    assert pairs == sorted(set(pairs)) and all(i < j for i, j in pairs)
    n = poses.EXHAUSTIVE_MAX_FRAMES
    assert len(poses.choose_pairs(n, "auto", 3, 10)) == n * (n - 1) // 2
    assert poses.choose_pairs(n + 1, "auto", 3, 10) == poses.video_pairs(n + 1, 3, 10)
    assert len(poses.choose_pairs(n + 1, "exhaustive", 3, 10)) == n * (n + 1) // 2


def test_stage_markers_skip_finished_stages_and_a_killed_one_redoes_the_rest(tmp_path):
    calls = []

    def run_all(settings_b="x", kill=None):
        stages = Stages(Manifest.open(tmp_path), ["a", "b", "c"], summary=tmp_path / "summary.json",
                        outputs={"b": [tmp_path / "b_out"], "c": [tmp_path / "c_out"]})
        for name in ("a", "b", "c"):
            def fn(fresh, name=name):
                if name == kill:
                    raise KeyboardInterrupt
                calls.append((name, fresh))
                return {"by": name}
            assert stages.run(name, {"s": settings_b if name == "b" else 1}, fn) == {"by": name}
        return stages.report

    run_all()
    assert calls == [("a", False), ("b", True), ("c", True)]  # b and c follow a redone stage: never resumed
    Manifest.open(tmp_path).claim(tmp_path / "summary.json")
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "b_out").mkdir()
    (tmp_path / "c_out").mkdir()
    report = run_all()
    assert calls[3:] == [] and all(r["skipped"] and r["seconds"] == 0 for r in report.values())
    with pytest.raises(KeyboardInterrupt):
        run_all(settings_b="y", kill="b")  # b's settings changed, killed while running
    assert not (tmp_path / ".video_to_scene" / "b.json").exists()
    assert not (tmp_path / ".video_to_scene" / "c.json").exists()  # c belonged to the old b
    assert not (tmp_path / "summary.json").exists()  # it described the run before
    assert (tmp_path / "b_out").is_dir() and not (tmp_path / "c_out").exists()  # b may resume; c was b's old output
    run_all(settings_b="y")
    assert calls[3:] == [("b", False), ("c", True)]  # b has no marker left: resumable; c follows a redone b
    assert json.loads((tmp_path / ".video_to_scene" / "b.json").read_text())["settings"] == {"s": "y"}


def test_missing_pycolmap_is_one_line_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycolmap", None)  # import pycolmap raises ImportError
    with pytest.raises(SceneError, match=r"pycolmap is not installed .*pip install 'pycolmap>=4.2'"):
        poses.import_pycolmap()


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.standard_normal((20, 3))
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    rot = q * np.sign(np.linalg.det(q))
    s, r, t = umeyama(src, 2.5 * src @ rot.T + np.array([1.0, -2.0, 0.5]))
    assert abs(s - 2.5) < 1e-9 and np.allclose(r, rot, atol=1e-9) and np.allclose(t, [1.0, -2.0, 0.5], atol=1e-9)


def test_folder_frames_are_upright_shrunk_and_keep_their_order(tmp_path):
    from PIL import Image

    src = tmp_path / "shots"
    src.mkdir()
    rng = np.random.default_rng(2)
    for i in range(4):
        exif = Image.Exif()
        exif[0x0112] = 6 if i == 1 else 1  # shot 1 is stored sideways: shown rotated 90 degrees
        Image.fromarray(rng.integers(0, 255, (40, 80, 3), dtype=np.uint8)).save(src / f"b{i}.jpg", exif=exif)
    record = sample_frames(src, tmp_path / "frames", None, 0, 40, "png")
    assert [f["source_index"] for f in record["frames"]] == [0, 1, 2, 3] and record["kind"] == "folder"
    shapes = [cv2.imread(str(tmp_path / "frames" / f["name"])).shape for f in record["frames"]]
    assert shapes == [(20, 40, 3), (40, 20, 3), (20, 40, 3), (20, 40, 3)]  # long side 40, shot 1 upright
    with pytest.raises(SceneError, match="image folder"):
        sample_frames(src, tmp_path / "again", 2.0, 0, 40, "png")


@pytest.mark.parametrize("options, message", [
    (dict(depth="none", depth_model="vitb"), "--depth none makes no priors"),
    (dict(depth="transformers", input_size=280), "only the vda backend reads them"),
    (dict(matcher="exhaustive", overlap=3), "exhaustive matching pairs every frame"),
    (dict(camera_model="FOV"), "the trainer reads"),
    (dict(max_frames=2), "--max-frames must be >= 3"),
])
def test_settings_that_would_do_nothing_or_cannot_work_are_errors(tmp_path, options, message):
    from preprocess.video_to_scene.pipeline import Options, check_options

    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    with pytest.raises(SceneError, match=message):
        check_options(video, tmp_path / "out", Options(**options))


def test_stages_never_delete_or_claim_an_entry_they_did_not_write(tmp_path):
    def run_all(settings_b):
        stages = Stages(Manifest.open(tmp_path), ["a", "b", "c"],
                        outputs={"b": [tmp_path / "b_out"], "c": [tmp_path / "c_out"]})
        for name in ("a", "b", "c"):
            stages.run(name, {"s": settings_b if name == "b" else 1}, lambda fresh, name=name: name)

    Stages(Manifest.open(tmp_path), ["a", "b", "c"]).run("a", {"s": 1}, lambda fresh: "a")
    (tmp_path / "c_out").mkdir()  # someone else's folder where stage c would write: c has not run yet
    (tmp_path / "c_out" / "theirs.txt").write_bytes(b"keep me")
    with pytest.raises(SceneError, match=r"c_out: exists and video_to_scene did not write it; move it out"):
        run_all("x")  # b runs (and would clean c's outputs up), then c refuses to claim c_out
    assert (tmp_path / "c_out" / "theirs.txt").read_bytes() == b"keep me"
    assert json.loads((tmp_path / ".video_to_scene" / "manifest.json").read_text()) == {"written": ["b_out"]}


def test_out_dir_of_another_dataset_is_refused_and_an_input_inside_is_read_in_place(tmp_path):
    out = tmp_path / "scene"
    (out / "images").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SceneError, match=r"scene: OUT_DIR holds files video_to_scene did not write "
                                         r"\(images, notes\.txt\); choose a new or empty OUT_DIR"):
        Manifest.open(out)
    (out / "notes.txt").unlink()
    manifest = Manifest.open(out, out / "images" / "a.jpg")  # the input's folder is the only entry: allowed
    assert manifest.written == set() and not manifest.owns(out / "images")
    assert sorted(p.name for p in out.iterdir()) == [".video_to_scene", "images"]
