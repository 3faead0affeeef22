"""preprocess.py end to end on small raw trees of real faces in the CASME II, SAMM, SMIC-HS and MEGC layouts."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import preprocess
from frame_io import list_frames, read_rgb
from modules.face_landmarks import FaceLandmarker
from tests.data_helpers import (CASME2_SHEET, ROOT_DIR, casme2_tree, face_cache, megc_package, no_face, photos,  # noqa: F401
                                real_frames, samm_tree, save, smic_tree)

SIZE = 64


@pytest.fixture(scope="module")
def landmarker():
    return FaceLandmarker()


def run(capsys, *argv):
    code = preprocess.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def names(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_casme2_natural_order_and_onset_box(tmp_path, capsys, real_frames, landmarker):
    raw = casme2_tree(tmp_path / "raw", real_frames)
    out = tmp_path / "data" / "casme2" / "train"
    code, stdout, _ = run(capsys, "--dataset", "casme2", "--input", raw, "--output", out, "--size", SIZE)
    assert code == 0, stdout
    assert names(out) == ["sub01_EP02_01f", "sub02_EP01_01", "sub02_EP01_01f"]
    clip = out / "sub01_EP02_01f"
    assert [p.name for p in list_frames(clip)] == ["img8.png", "img9.png", "img10.png", "img11.png", "img12.png"]
    # The box comes from the onset frame of the natural order (img8), and is reused for the moved frames.
    raw_frames = list_frames(raw / "sub01" / "EP02_01f")
    square = preprocess.square_box(landmarker.detect(read_rgb(raw_frames[0])), 0.0)
    for src in raw_frames:
        written = read_rgb(clip / f"{src.stem}.png")
        assert written.shape == (SIZE, SIZE, 3)
        np.testing.assert_array_equal(written, preprocess.crop_resize(read_rgb(src), square, SIZE))
    # img10 is what a plain (non-natural) sort puts first; its own box would crop differently.
    moved = read_rgb(raw / "sub01" / "EP02_01f" / "img10.jpg")
    other = preprocess.square_box(landmarker.detect(moved), 0.0)
    assert other != square
    assert not np.array_equal(preprocess.crop_resize(moved, other, SIZE), read_rgb(clip / "img10.png"))
    assert "clips written: 3 (10 frames)" in stdout


def test_gray_option_writes_three_equal_channels(tmp_path, capsys, real_frames):
    raw = samm_tree(tmp_path / "raw", real_frames)
    color, gray = tmp_path / "color", tmp_path / "gray"
    assert run(capsys, "--dataset", "samm", "--input", raw, "--output", color, "--size", SIZE)[0] == 0
    assert run(capsys, "--dataset", "samm", "--input", raw, "--output", gray, "--size", SIZE, "--gray")[0] == 0
    assert names(gray) == ["006_1_2", "007_7_1"]
    for path in list_frames(gray / "006_1_2"):
        with Image.open(path) as image:
            assert image.mode == "RGB"
        g = read_rgb(path)
        np.testing.assert_array_equal(g[..., 0], g[..., 1])
        np.testing.assert_array_equal(g[..., 0], g[..., 2])
        luma = np.asarray(Image.fromarray(read_rgb(color / "006_1_2" / path.name)).convert("L"))
        np.testing.assert_array_equal(g[..., 0], luma)


def test_smic_layout_takes_class_from_folders_and_ignores_non_micro(tmp_path, capsys, real_frames):
    raw = smic_tree(tmp_path / "raw", real_frames)
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "--dataset", "smic", "--input", raw, "--output", out, "--size", SIZE)
    assert code == 0, stdout
    assert names(out) == ["Negative_s1_ne_01", "Positive_s3_po_05"]
    assert [p.name for p in list_frames(out / "Negative_s1_ne_01")] == \
        ["image0000098.png", "image0000099.png", "image0000100.png"]


def test_annotations_name_classes_trim_and_write_labels(tmp_path, capsys, real_frames):
    raw = casme2_tree(tmp_path / "raw", real_frames)
    sheet = tmp_path / "CASME2-coding.csv"
    sheet.write_text(CASME2_SHEET)
    out = tmp_path / "data" / "casme2" / "train"
    code, stdout, _ = run(capsys, "--dataset", "casme2", "--input", raw, "--output", out, "--size", SIZE,
                          "--annotations", sheet, "--trim")
    assert code == 0, stdout
    # 'others' is outside the MEGC classes (composite benchmark mapping): skipped and reported.
    assert names(out) == ["Negative_sub02_EP01_01", "Positive_sub01_EP02_01f"]
    assert "skipped 1: emotion 'others' has no MEGC class" in stdout
    assert [p.name for p in list_frames(out / "Positive_sub01_EP02_01f")] == ["img9.png", "img10.png", "img11.png"]
    with open(out.parent / "train_labels.csv") as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"Negative_sub02_EP01_01", "Positive_sub01_EP02_01f"}
    row = rows["Positive_sub01_EP02_01f"]
    assert (row["subject"], row["clip"], row["onset"], row["apex"], row["offset"], row["aus"], row["emotion"],
            row["class"], row["frames"]) == ("sub01", "EP02_01f", "9", "10", "11", "12", "happiness", "Positive", "3")
    # --all-clips keeps the unclassified clip too, under its bare name.
    code, stdout, _ = run(capsys, "--dataset", "casme2", "--input", raw, "--output", out, "--size", SIZE,
                          "--annotations", sheet, "--trim", "--all-clips")
    assert code == 0 and "clips written: 1" in stdout
    assert names(out) == ["Negative_sub02_EP01_01", "Positive_sub01_EP02_01f", "sub02_EP01_01f"]


def test_samm_xlsx_sheet_with_title_rows(tmp_path, capsys, real_frames):
    import pandas as pd

    raw = samm_tree(tmp_path / "raw", real_frames)
    title = [["SAMM micro-movement FACS codes", None, None, None, None, None, None], [None] * 7]
    header = [["Subject", "Filename", "Onset Frame", "Apex Frame", "Offset Frame", "Action Units", "Estimated Emotion"]]
    body = [[6, "006_1_2", 5562, 5563, 5564, "4+7", "Anger"], [7, "007_7_1", 99, 100, 100, "1+2", "Surprise"]]
    sheet = tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx"
    pd.DataFrame(title + header + body).to_excel(sheet, header=False, index=False)
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "--dataset", "samm", "--input", raw, "--output", out, "--size", SIZE,
                          "--annotations", sheet)
    assert code == 0, stdout
    assert names(out) == ["Negative_006_1_2", "Surprise_007_7_1"]


def test_megc_package_lays_out_test_split_and_pairs(tmp_path, capsys, real_frames, photos):
    faces = {"normalized_westernMale": photos["obama.jpg"], "normalized_asianFemale": photos["0-f15-hao-ph.jpg"]}
    package = megc_package(tmp_path / "package", real_frames, faces)
    out = tmp_path / "data" / "megc" / "test"
    code, stdout, err = run(capsys, "--dataset", "megc", "--input", package, "--output", out, "--size", SIZE)
    assert code == 0, stdout + err
    clips = ["Positive_022_3_3", "Positive_EP01_01f", "Surprise_s20_sur_01"]
    assert names(out) == clips + ["normalized_asianFemale", "normalized_westernMale"]
    assert [p.name for p in list_frames(out / "normalized_westernMale")] == ["normalized_westernMale.png"]
    assert read_rgb(out / "normalized_westernMale" / "normalized_westernMale.png").shape == (SIZE, SIZE, 3)
    with open(tmp_path / "data" / "megc_test.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["distance", "source", "driving", "frame"]
    assert {(r["source"], r["driving"]) for r in rows} == {(f, c) for f in faces for c in clips}
    # Again, as a resume: the same list is written again. A list of other pairs under the default name
    # (data/your_dataset_test.csv ships the MEGC2021 one) is kept: one line, before any work.
    assert run(capsys, "--dataset", "megc", "--input", package, "--output", out, "--size", SIZE)[0] == 0
    kept = "distance,source,driving,frame\n3,normalized_westernMale,Positive_022_3_3,7\n"
    (tmp_path / "data" / "megc_test.csv").write_text(kept)
    code, stdout, err = run(capsys, "--dataset", "megc", "--input", package, "--output", out, "--size", SIZE)
    assert code == 2 and err.strip().count("\n") == 0 and "--pairs" in err and "megc_test.csv" in err
    assert (tmp_path / "data" / "megc_test.csv").read_text() == kept
    pairs = tmp_path / "found.csv"
    assert run(capsys, "--dataset", "megc", "--input", package, "--output", out, "--size", SIZE, "--pairs", pairs)[0] == 0
    assert len(pairs.read_text().splitlines()) == 1 + len(faces) * len(clips)


def test_resume_skips_finished_clips_and_redoes_interrupted_ones(tmp_path, capsys, real_frames):
    raw = samm_tree(tmp_path / "raw", real_frames)
    out = tmp_path / "out"
    args = ("--dataset", "samm", "--input", raw, "--output", out, "--size", SIZE)
    assert run(capsys, *args)[0] == 0
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    code, stdout, _ = run(capsys, *args)
    assert code == 0 and "clips written: 0 (0 frames), already done: 2" in stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamps
    # An interrupted run leaves a hidden partial folder and no clip folder: the clip is redone.
    (out / "007_7_1").rename(out / ".partial-007_7_1")
    code, stdout, _ = run(capsys, *args)
    assert code == 0 and "clips written: 1" in stdout
    assert names(out) == ["006_1_2", "007_7_1"] and not (out / ".partial-007_7_1").exists()
    # Other settings into the same folder would mix clip sizes: refused with one line.
    code, _, err = run(capsys, "--dataset", "samm", "--input", raw, "--output", out, "--size", 32)
    assert code == 2 and "size: 64 → 32" in err and "Traceback" not in err


def test_bad_clips_fail_alone_with_clear_reasons(tmp_path, capsys, real_frames):
    raw = casme2_tree(tmp_path / "raw", real_frames)
    corrupt = raw / "sub02" / "EP01_01" / "img2.jpg"
    corrupt.write_bytes(corrupt.read_bytes()[:500])
    for i in (1, 2):
        save(raw / "sub03" / "EP05_01" / f"img{i}.jpg", no_face(real_frames[0].shape, seed=i))
    (raw / "sub03" / "EP06_01").mkdir()
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "--dataset", "casme2", "--input", raw, "--output", out, "--size", SIZE)
    assert code == 1
    assert "Traceback" not in stdout + err
    assert names(out) == ["sub01_EP02_01f", "sub02_EP01_01f"]   # the good clips are written
    failed = {line.split(":")[0].split()[-1]: line for line in stdout.splitlines() if "FAILED" in line}
    assert set(failed) == {"sub02_EP01_01", "sub03_EP05_01", "sub03_EP06_01"}
    assert str(corrupt) in failed["sub02_EP01_01"] and "re-extract or delete" in failed["sub02_EP01_01"]
    assert "no face in the first 2 frame(s)" in failed["sub03_EP05_01"]
    assert "no image frames" in failed["sub03_EP06_01"]
    assert not any(p.name.startswith(".partial") for p in out.iterdir())


def test_onset_without_face_takes_the_box_from_the_next_frame(tmp_path, capsys, real_frames):
    write = [no_face(real_frames[0].shape), real_frames[1], real_frames[2]]
    for i, image in enumerate(write):
        save(tmp_path / "raw" / "006" / "006_2_1" / f"006_{i + 10:05d}.jpg", image)
    code, stdout, _ = run(capsys, "--dataset", "samm", "--input", tmp_path / "raw", "--output", tmp_path / "out",
                          "--size", SIZE)
    assert code == 0
    assert "note 006_2_1: no face on the onset frame; box from 006_00011.jpg" in stdout
    assert len(list_frames(tmp_path / "out" / "006_2_1")) == 3


def test_rgba_and_grayscale_raw_frames(tmp_path, capsys, real_frames):
    rgb = real_frames[0]
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    save(tmp_path / "raw" / "clipA" / "f1.png", np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]))
    save(tmp_path / "raw" / "clipA" / "f2.png", gray)
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "--dataset", "folder", "--input", tmp_path / "raw", "--output", out, "--size", SIZE)
    assert code == 0, stdout
    frames = [read_rgb(p) for p in list_frames(out / "clipA")]
    assert [f.shape for f in frames] == [(SIZE, SIZE, 3)] * 2
    np.testing.assert_array_equal(frames[1][..., 0], frames[1][..., 2])


def test_argument_and_layout_errors_are_one_line(tmp_path, capsys, real_frames):
    raw = samm_tree(tmp_path / "raw", real_frames)
    code, _, err = run(capsys, "--dataset", "casme2", "--input", raw, "--output", tmp_path / "out")
    assert code == 2 and "no clips found" in err and "RAW/sub01/EP02_01f/img46.jpg" in err
    code, _, err = run(capsys, "--dataset", "samm", "--input", raw, "--output", tmp_path / "o", "--trim")
    assert code == 2 and "--trim needs --annotations" in err
    code, _, err = run(capsys, "--dataset", "samm", "--input", tmp_path / "absent", "--output", tmp_path / "o")
    assert code == 2 and "is not a folder" in err
    for text in (err,):
        assert "Traceback" not in text and len(text.strip().splitlines()) == 1


def test_cli_help_and_exit_code(tmp_path):
    result = subprocess.run([sys.executable, "preprocess.py", "--help"], cwd=ROOT_DIR, capture_output=True, text=True)
    assert result.returncode == 0 and "--annotations" in result.stdout and "megc" in result.stdout
    result = subprocess.run([sys.executable, "preprocess.py", "--dataset", "samm", "--input", str(tmp_path / "x"),
                             "--output", str(tmp_path / "y")], cwd=ROOT_DIR, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT_DIR)})
    assert result.returncode == 2 and result.stderr.startswith("preprocess: error:") and "Traceback" not in result.stderr


def test_workers_give_the_same_frames(tmp_path, capsys, real_frames):
    raw = casme2_tree(tmp_path / "raw", real_frames)
    one, two = tmp_path / "one", tmp_path / "two"
    assert run(capsys, "--dataset", "casme2", "--input", raw, "--output", one, "--size", SIZE)[0] == 0
    assert run(capsys, "--dataset", "casme2", "--input", raw, "--output", two, "--size", SIZE, "--workers", 2)[0] == 0
    for path in one.rglob("*.png"):
        np.testing.assert_array_equal(read_rgb(path), read_rgb(two / path.relative_to(one)))
