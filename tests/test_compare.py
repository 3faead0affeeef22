"""`evaluate.py compare` on two fake methods made from real face frames (single_face.mp4's smile):
"copy" = the driving clip itself, "still" = its first frame held. The real AU estimator and dlib
measure them; the answers are known (copy: perfect AU fidelity; still: no activation). The page is
opened in headless Chromium with test_demo_page.py's WebDriver helpers."""
import csv
import json
import shutil
import time

import numpy as np
import pytest

import compare_page
import evaluate
from animation_helpers import CLIP, build_test_split, frame_names, landmarker
from au_format import read_aus
from test_demo_page import MEDIA_STATE, METRIC_ROWS, WebDriver, ensure_chromium

PAIR = f"{CLIP}-self"


@pytest.fixture(scope="module")
def instruments():
    au = evaluate.AUMeasurer()
    yield evaluate.FaceMeasurer(landmarker()), au
    au.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Driving clips (split/test), targets/self.png (the clip's first frame) and the two methods."""
    base = tmp_path_factory.mktemp("compare")
    test = build_test_split(tmp_path_factory.getbasetemp() / "animation_split") / "test"
    names = frame_names(test / CLIP)
    (base / "targets").mkdir()
    shutil.copy(test / CLIP / names[0], base / "targets" / "self.png")
    shutil.copytree(test / CLIP, base / "copy" / PAIR)
    (base / "still" / PAIR).mkdir(parents=True)
    for name in names:
        shutil.copy(test / CLIP / names[0], base / "still" / PAIR / name)
    return base, test


@pytest.fixture(scope="module")
def compared(setup, instruments):
    base, test = setup
    methods = {"copy": base / "copy", "still": base / "still"}
    logs = []
    compare_page.compare(methods, test, base / "out", base / "targets", measurer=instruments[0],
                         au_measurer=instruments[1], log=logs.append)
    return base, test, methods, logs


def _rows(path):
    with open(path, newline="") as handle:
        return {row["method"]: row for row in csv.DictReader(handle)}


def test_table_values_are_the_known_answers(compared):
    base, _, _, logs = compared
    assert sum("scoring" in line for line in logs) == 2
    rows = _rows(base / "out" / "compare.csv")
    assert list(rows) == ["copy", "still"]
    copy, still = rows["copy"], rows["still"]
    print({k: (copy[k], still[k]) for k in ("au_correlation", "au_f1", "au_timing_error", "au_intensity_ratio")})
    for key, value in (("au_correlation", 1), ("au_f1", 1), ("au_timing_error", 0), ("au_intensity_ratio", 1),
                       ("motion_correlation", 1)):
        assert float(copy[key]) == pytest.approx(value), key
    assert float(still["au_f1"]) == 0 and float(still["au_intensity_ratio"]) == 0
    assert float(still["au_correlation"]) == 0 and still["au_timing_error"] == ""
    # The smile: AU12 (mouthSmile) is among the driving clip's active AUs.
    pairs = list(csv.DictReader(open(base / "out" / "compare_pairs.csv")))
    assert [p["method"] for p in pairs] == ["copy", "still"]
    assert "AU12" in pairs[0]["au_active_list"].split()
    md = (base / "out" / "compare.md").read_text().splitlines()
    assert md[0].startswith("| method | pairs |") and md[2].startswith("| copy | 1 |") and len(md) == 4
    # Per-frame AUs in aumaker's format, beside each method's metrics.
    generated = read_aus(base / "copy" / evaluate.AUS_GENERATED / f"{PAIR}.csv")
    reference = read_aus(base / "copy" / evaluate.AUS_REFERENCE / f"{CLIP}.csv")
    assert generated.frames == reference.frames and np.array_equal(generated.intensity, reference.intensity)


def test_second_run_reuses_the_stored_metrics(compared, instruments):
    base, test, methods, _ = compared
    logs = []
    compare_page.compare(methods, test, base / "out", base / "targets", measurer=instruments[0],
                         au_measurer=instruments[1], log=logs.append)
    assert not any("scoring" in line for line in logs)


def test_page_in_headless_chromium(compared, tmp_path):
    base = compared[0]
    page = base / "out" / "index.html"
    reason = ensure_chromium()
    if reason:
        pytest.skip(f"headless Chromium unavailable: {reason}")
    driver = WebDriver(tmp_path / "profile")
    try:
        driver.open(page.resolve().as_uri())
        for _ in range(100):
            if driver.run("return document.readyState") == "complete":
                break
            time.sleep(0.1)
        media = driver.run(MEDIA_STATE)
        tables = driver.run(METRIC_ROWS)
        cells = driver.run("return Array.from(document.querySelectorAll('table.pairs tr')).map("
                           "r => r.children.length)")
    finally:
        driver.close()
    # The driving clip, then per method its clip and its AU plot: all loaded from files beside the page.
    assert len(media) == 1 + 2 * 2 and [m["src"] for m in media if not m["loaded"]] == []
    assert sum("/plots/" in m["src"] for m in media) == 2
    assert tables == [["copy", "still"]]
    assert cells == [4, 4]   # pair | driving | copy | still


def test_animation_without_aus_keeps_the_old_columns(setup, instruments, tmp_path):
    base, test = setup
    evaluate.evaluate_animation(base / "copy", test, base / "targets", out_dir=tmp_path, measurer=instruments[0],
                                log=lambda _: None, aus=False)
    header = (tmp_path / "animation_metrics.csv").read_text().splitlines()[0]
    assert tuple(header.split(",")) == evaluate.ANIMATION_COLUMNS
    assert "au_f1" not in json.loads((tmp_path / "animation_metrics.json").read_text())["summary"]
    assert not (tmp_path / evaluate.AUS_GENERATED).exists()


class CountingEstimator:
    """Stands in for the estimator: counts frames and gives each a fixed AU vector."""

    def __init__(self):
        self.calls = 0

    def estimate(self, image):
        self.calls += 1
        return np.zeros(17, np.float32), np.zeros(17, np.float32)


def test_aus_folder_replaces_measuring_the_driving_clip(compared, instruments, tmp_path):
    base, test = compared[:2]
    aus = tmp_path / "aus"
    aus.mkdir()
    shutil.copy(base / "copy" / evaluate.AUS_REFERENCE / f"{CLIP}.csv", aus / f"{CLIP}.csv")
    counting = CountingEstimator()
    rows, _ = evaluate.evaluate_animation(base / "copy", test, base / "targets", out_dir=tmp_path / "scores",
                                          measurer=instruments[0], log=lambda _: None,
                                          au_measurer=evaluate.AUMeasurer(counting), aus_dir=aus)
    assert counting.calls == 12            # the generated frames only
    # All-zero generated AUs against the measured smile: nothing shown.
    assert rows[0]["au_f1"] == 0 and rows[0]["au_intensity_ratio"] == 0 and rows[0]["au_active"] > 0


def test_stale_aus_file_is_one_line_naming_it(compared, tmp_path, capsys):
    base, test = compared[:2]
    aus = tmp_path / "aus"
    aus.mkdir()
    lines = (base / "copy" / evaluate.AUS_REFERENCE / f"{CLIP}.csv").read_text().splitlines()
    (aus / f"{CLIP}.csv").write_text("\n".join(lines[:-2]) + "\n")     # one frame short
    code = evaluate.main(["compare", "--method", f"copy={base / 'copy'}", "--driving", str(test),
                          "--targets", str(base / "targets"), "--out", str(tmp_path / "out"), "--aus", str(aus),
                          "--recompute"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("evaluate.py: error: ")
    assert f"{CLIP}.csv" in err and "re-run aumaker.py" in err


@pytest.mark.parametrize("method", ["nothing=/no/such/folder", "no-equals-sign"])
def test_command_line_bad_method_is_one_line(tmp_path, capsys, method):
    code = evaluate.main(["compare", "--method", method, "--driving", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("evaluate.py: error: ") and method in err
    assert not (tmp_path / "o").exists()


def test_reconstruction_of_a_clip_by_itself_has_perfect_au_fidelity(setup, instruments, tmp_path):
    test = setup[1]
    rows, summary = evaluate.evaluate_reconstruction(test, test, tmp_path, instruments[0], log=lambda _: None,
                                                     names=[CLIP], au_measurer=instruments[1])
    assert rows[0]["au_active"] > 0 and "_aus" not in rows[0]
    for key, value in (("au_correlation", 1), ("au_f1", 1), ("au_timing_error", 0), ("au_intensity_ratio", 1)):
        assert summary[key] == pytest.approx(value), key
    header = (tmp_path / "reconstruction_metrics.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == evaluate.RECONSTRUCTION_COLUMNS + evaluate.AU_COLUMNS
    assert (tmp_path / evaluate.AUS_REFERENCE / f"{CLIP}.csv").is_file()
