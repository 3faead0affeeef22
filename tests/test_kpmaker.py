"""kpmaker.py end to end: landmarks equal dlib's, exact clip names, fallback vs --strict, resume."""
import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import kpmaker
from frame_io import clip_folders, list_frames, read_rgb
from modules.face_landmarks import FaceLandmarker
from modules.facial_prior import fallback_prior, prior_from_landmarks
from tests.data_helpers import (OUT_SIZE, ROOT_DIR, face_cache, no_face, photos, processed_root, real_frames,  # noqa: F401
                                save)


@pytest.fixture(scope="module")
def landmarker():
    return FaceLandmarker()


@pytest.fixture
def root(tmp_path, processed_root):
    """A private copy of the preprocessed dataset."""
    copy = tmp_path / "data" / "tiny"
    shutil.copytree(processed_root, copy)
    return copy


def run(capsys, *argv):
    code = kpmaker.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_one_file_per_clip_with_dlib_landmarks(root, capsys, landmarker):
    code, out, err = run(capsys, "--root", root)
    assert code == 0, out + err
    clips = sorted(p.name for split in ("train", "test") for p in clip_folders(root / split))
    assert sorted(p.stem for p in (root / "keypoints").glob("*.npz")) == clips
    for split in ("train", "test"):
        for folder in clip_folders(root / split):
            data = kpmaker.load_keypoints(root / "keypoints" / f"{folder.name}.npz")
            frames = list_frames(folder)
            assert data["frames"] == [p.name for p in frames]          # natural order, exact names
            t = len(frames)
            assert data["landmarks"].shape == (t, 68, 2) and data["landmarks"].dtype == np.float32
            assert data["prior"].shape == (t, 18, 2) and data["prior"].dtype == np.float32
            assert data["found"].shape == (t,) and data["found"].dtype == bool and data["found"].all()
            assert tuple(data["frame_size"]) == (OUT_SIZE, OUT_SIZE)
            for i, path in enumerate(frames):
                direct = landmarker.landmarks(read_rgb(path))
                np.testing.assert_array_equal(data["landmarks"][i], direct)
                np.testing.assert_allclose(data["prior"][i], prior_from_landmarks(torch.from_numpy(direct)).numpy())


def test_exact_clip_name_lookup(root, capsys):
    # 'sub02_EP01_01' is a prefix of 'sub02_EP01_01f': each gets its own file with its own frames.
    assert run(capsys, "--root", root)[0] == 0
    short = kpmaker.load_keypoints(kpmaker.keypoint_path(root / "keypoints", "sub02_EP01_01"))
    long = kpmaker.load_keypoints(kpmaker.keypoint_path(root / "keypoints", "sub02_EP01_01f"))
    assert len(short["frames"]) == 3 and len(long["frames"]) == 2
    assert not np.array_equal(short["landmarks"][:2], long["landmarks"])


def test_no_face_frame_uses_fallback_listed_in_report(root, capsys):
    clip = root / "train" / "sub01_EP02_01f"
    save(clip / "img13.png", no_face((OUT_SIZE, OUT_SIZE, 3)))
    code, out, err = run(capsys, "--root", root)
    assert code == 0
    assert "no face in 1 frame(s) of 1 clip(s)" in out and "fallback" in err
    data = kpmaker.load_keypoints(root / "keypoints" / "sub01_EP02_01f.npz")
    assert data["frames"][-1] == "img13.png"
    assert data["found"].tolist() == [True] * 5 + [False]
    assert np.isnan(data["landmarks"][-1]).all() and not np.isnan(data["landmarks"][:-1]).any()
    np.testing.assert_allclose(data["prior"][-1], fallback_prior((OUT_SIZE, OUT_SIZE)).numpy())
    with open(root / "keypoints" / kpmaker.REPORT_NAME) as handle:
        assert list(csv.DictReader(handle)) == [{"split": "train", "clip": "sub01_EP02_01f", "frame": "img13.png"}]
    # A later run over the test split only keeps the train split's fallbacks in the report.
    assert run(capsys, "--root", root, "--splits", "test")[0] == 0
    with open(root / "keypoints" / kpmaker.REPORT_NAME) as handle:
        assert list(csv.DictReader(handle)) == [{"split": "train", "clip": "sub01_EP02_01f", "frame": "img13.png"}]


def test_strict_fails_with_the_frame_named(root, capsys):
    assert run(capsys, "--root", root)[0] == 0
    before = {p.name: p.stat().st_mtime_ns for p in (root / "keypoints").glob("*.npz")}
    save(root / "test" / "Positive_EP01_01f" / "img11.png", no_face((OUT_SIZE, OUT_SIZE, 3), seed=3))
    code, out, err = run(capsys, "--root", root, "--strict")
    assert code == 1
    assert "--strict" in err and "test/Positive_EP01_01f: img11.png" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    # Nothing already written is lost: the other clips' files are untouched.
    after = {p.name: p.stat().st_mtime_ns for p in (root / "keypoints").glob("*.npz")}
    assert {k: v for k, v in after.items() if k != "Positive_EP01_01f.npz"} == \
        {k: v for k, v in before.items() if k != "Positive_EP01_01f.npz"}


def test_resume_does_no_work_and_redoes_changed_clips(root, capsys, monkeypatch):
    assert run(capsys, "--root", root)[0] == 0
    files = sorted((root / "keypoints").glob("*.npz"))
    stamps = [p.stat().st_mtime_ns for p in files]
    calls = []
    original = FaceLandmarker.landmarks
    monkeypatch.setattr(FaceLandmarker, "landmarks", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    code, out, _ = run(capsys, "--root", root)
    assert code == 0 and calls == [] and "clips computed: 0, unchanged (cached): 8" in out
    assert [p.stat().st_mtime_ns for p in files] == stamps
    # Rewriting one frame invalidates only its clip.
    frame = root / "train" / "sub02_EP01_01" / "img2.png"
    save(frame, np.ascontiguousarray(read_rgb(frame)[:, ::-1]))
    code, out, _ = run(capsys, "--root", root)
    assert code == 0 and "clips computed: 1, unchanged (cached): 7" in out and len(calls) == 3


def test_bad_clips_are_listed_and_the_rest_done(root, capsys):
    (root / "train" / "sub09_EP01_01").mkdir()
    bad = root / "train" / "sub02_EP01_01" / "img3.png"
    bad.write_bytes(bad.read_bytes()[:100])
    code, out, err = run(capsys, "--root", root)
    assert code == 1 and "Traceback" not in out + err
    assert "FAILED sub09_EP01_01" in out and "no image frames" in out
    assert f"FAILED sub02_EP01_01: {bad}: unreadable image" in out
    assert (root / "keypoints" / "sub01_EP02_01f.npz").is_file()
    assert not (root / "keypoints" / "sub02_EP01_01.npz").exists()


def test_same_clip_name_in_train_and_test_is_refused(root, capsys):
    shutil.copytree(root / "train" / "sub02_EP01_01f", root / "test" / "sub02_EP01_01f")
    code, _, err = run(capsys, "--root", root)
    assert code == 2 and "'sub02_EP01_01f' is in both" in err   # input errors exit 2 in every tool (issue 18)


def test_cli_help_explains():
    result = subprocess.run([sys.executable, "kpmaker.py", "--help"], cwd=ROOT_DIR, capture_output=True, text=True)
    assert result.returncode == 0 and "--strict" in result.stdout and "fallback template" in result.stdout


def test_missing_root_and_bad_args(tmp_path, capsys):
    code, _, err = run(capsys, "--root", tmp_path)
    assert code == 2 and "run preprocess.py first" in err       # input errors exit 2 in every tool (issue 18)
    code, _, err = run(capsys, "--root", tmp_path, "--predictor", tmp_path / "absent.dat")
    assert code == 2 and "absent.dat" in err


def test_workers_match_single_process(root, capsys, tmp_path):
    assert run(capsys, "--root", root, "--out", tmp_path / "one")[0] == 0
    assert run(capsys, "--root", root, "--out", tmp_path / "two", "--workers", "2")[0] == 0
    for path in (tmp_path / "one").glob("*.npz"):
        a, b = kpmaker.load_keypoints(path), kpmaker.load_keypoints(tmp_path / "two" / path.name)
        assert a["frames"] == b["frames"]
        np.testing.assert_array_equal(a["landmarks"], b["landmarks"])
        np.testing.assert_array_equal(a["prior"], b["prior"])
    assert os.listdir(tmp_path / "one") and sorted(os.listdir(tmp_path / "one")) == sorted(os.listdir(tmp_path / "two"))
