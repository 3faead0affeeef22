"""evaluate.py with dlib on real faces: answers known in advance (self, shifted copy, face removed,
other identity) and the standalone command line."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import evaluate
from animation_helpers import CLIP, build_test_split, frame_names, landmarker, real_face


@pytest.fixture(scope="module")
def measurer():
    return evaluate.FaceMeasurer(landmarker())


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return build_test_split(tmp_path_factory.getbasetemp() / "animation_split")


def _copy_clip(src, dst, transform=None, frames=6):
    dst.mkdir(parents=True)
    for name in frame_names(src)[:frames]:
        image = np.asarray(Image.open(src / name).convert("RGB"))
        Image.fromarray(transform(name, image) if transform else image).save(dst / name)
    return dst


def _shift(dx, dy):
    def shifted(_, image):
        # Content moves right by dx and down by dy; the uncovered border repeats the edge.
        padded = np.pad(image, ((dy, 0), (dx, 0), (0, 0)), mode="edge")
        return padded[:image.shape[0], :image.shape[1]]
    return shifted


def test_clip_against_itself_scores_zero(split, tmp_path, measurer):
    real = tmp_path / "real"
    _copy_clip(split / "test" / CLIP, real / CLIP)
    rows, summary = evaluate.evaluate_reconstruction(real, real, tmp_path / "out", measurer, log=lambda _: None)
    assert rows[0]["frames"] == 6 and rows[0]["akd_frames"] == 6
    for key, value in (("l1", 0), ("akd", 0), ("aed", 0), ("mkr", 0), ("ssim", 1), ("psnr", 100)):
        assert summary[key] == pytest.approx(value, abs=1e-9), key
    stored = json.loads((tmp_path / "out" / "reconstruction_metrics.json").read_text())
    assert stored["summary"]["akd"] == 0 and stored["clips"][0]["clip"] == CLIP
    assert (tmp_path / "out" / "reconstruction_metrics.csv").read_text().startswith("clip,frames,l1,ssim,psnr,akd")


def test_shifted_copy_has_akd_equal_to_the_shift(split, tmp_path, measurer):
    real = _copy_clip(split / "test" / CLIP, tmp_path / "real" / CLIP)
    _copy_clip(real, tmp_path / "generated" / CLIP, _shift(3, 4))
    rows, summary = evaluate.evaluate_reconstruction(tmp_path / "generated", tmp_path / "real", tmp_path,
                                                     measurer, log=lambda _: None)
    assert summary["akd"] == pytest.approx(5.0, abs=1.0)  # dlib re-fits the shape: ±1 pixel
    assert summary["mkr"] == 0 and summary["l1"] > 0


def test_removed_face_counts_in_mkr(split, tmp_path, measurer):
    real = _copy_clip(split / "test" / CLIP, tmp_path / "real" / CLIP)

    def remove_face(name, image):
        if name in frame_names(real)[1:3]:
            return np.full_like(image, 128)   # two of six frames lose the face
        return image
    _copy_clip(real, tmp_path / "generated" / CLIP, remove_face)
    rows, summary = evaluate.evaluate_reconstruction(tmp_path / "generated", tmp_path / "real", tmp_path,
                                                     measurer, log=lambda _: None)
    assert (rows[0]["mkr_missed"], rows[0]["mkr_counted"]) == (2, 6)
    assert summary["mkr"] == pytest.approx(2 / 6)
    assert rows[0]["akd_frames"] == 4 and summary["akd"] == pytest.approx(0, abs=1e-9)


def test_other_identity_is_farther_than_the_same_person(measurer):
    marks = measurer.landmarker
    descriptors = {name: measurer.measure(real_face(f"{name}.jpg", 256, marks))[1]
                   for name in ("obama", "obama2", "biden")}
    from metrics import descriptor_distance

    same = descriptor_distance(descriptors["obama"], descriptors["obama2"])
    other = descriptor_distance(descriptors["obama"], descriptors["biden"])
    assert same < 0.6 < other


def test_small_frames_are_measured_in_their_own_pixels(split, measurer):
    frame = np.asarray(Image.open(split / "test" / "obama" / "obama.png").convert("RGB"))
    small = np.asarray(Image.fromarray(frame).resize((64, 64), Image.Resampling.LANCZOS))
    big_marks, _ = measurer.measure(frame, descriptor=False)
    small_marks, _ = measurer.measure(small, descriptor=False)
    assert small_marks is not None
    assert np.abs(small_marks * 2 - big_marks).mean() < 2.5   # 128 → 64: half the coordinates


def test_animation_scores_of_a_copied_driver(split, tmp_path, measurer):
    """A 'generated' clip that is the driving clip itself, with the clip's first frame as the target:
    same identity, same motion, so correlation 1 and magnitude ratio 1."""
    test = split / "test"
    targets = tmp_path / "targets"
    targets.mkdir()
    shutil.copy(test / CLIP / frame_names(test / CLIP)[0], targets / "self.png")
    _copy_clip(test / CLIP, tmp_path / "generated" / f"{CLIP}-self", frames=12)
    rows, summary = evaluate.evaluate_animation(tmp_path / "generated", test, targets, measurer=measurer,
                                                log=lambda _: None)
    row = rows[0]
    assert (row["driving"], row["target"], row["frames"]) == (CLIP, "self", 12)
    assert row["motion_correlation"] == pytest.approx(1.0) and row["motion_magnitude_ratio"] == pytest.approx(1.0)
    assert row["identity_aed"] < 0.4 and row["face_found"] == 1.0
    assert 0 <= row["background_change"] < 0.05
    assert (tmp_path / "generated" / "animation_metrics.json").is_file()


def test_pair_names_resolve_with_dashes(tmp_path):
    (tmp_path / "drv" / "a-b").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "drv" / "a-b" / "0.png")
    (tmp_path / "faces" / "c-d").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "faces" / "c-d" / "c-d.png")
    assert evaluate.resolve_pair("a-b-c-d", tmp_path / "drv", tmp_path / "faces") == ("a-b", "c-d")
    assert evaluate.resolve_pair("x-y", tmp_path / "drv", tmp_path / "faces") is None


def test_command_line_bad_input_is_one_line(tmp_path, capsys):
    assert evaluate.main(["reconstruction", "--generated", str(tmp_path / "nothing"), "--real", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "nothing" in err


def test_command_line_mismatched_lengths(split, tmp_path, capsys):
    _copy_clip(split / "test" / CLIP, tmp_path / "real" / CLIP, frames=3)
    _copy_clip(split / "test" / CLIP, tmp_path / "gen" / CLIP, frames=2)
    assert evaluate.main(["reconstruction", "--generated", str(tmp_path / "gen"), "--real", str(tmp_path / "real")]) == 2
    assert "different frame counts" in capsys.readouterr().err


class CountingDetector:
    """dlib's face detector, counting its calls."""

    def __init__(self, detector):
        self.detector, self.calls = detector, 0

    def __call__(self, image, upsample):
        self.calls += 1
        return self.detector(image, upsample)


def test_a_frame_seen_before_is_answered_from_memory(split, measurer):
    """Same pixels, same answer, dlib run once: a driving clip scored for several targets and a still
    baseline are measured once per distinct frame; a descriptor asked later is still computed."""
    from types import SimpleNamespace

    marks = measurer.landmarker
    counting = CountingDetector(marks.detector)
    memo = evaluate.FaceMeasurer(SimpleNamespace(detector=counting, predictor=marks.predictor,
                                                 descriptor=marks.descriptor, upsample=marks.upsample))
    frame = np.asarray(Image.open(split / "test" / "obama" / "obama.png").convert("RGB"))
    first, none = memo.measure(frame, descriptor=False)
    again, _ = memo.measure(frame.copy(), descriptor=False)
    assert counting.calls == 1 and none is None and np.array_equal(first, again)
    with_descriptor = memo.measure(frame)
    assert counting.calls == 2 and with_descriptor[1].shape == (128,)
    assert memo.measure(frame, descriptor=False)[1] is None and counting.calls == 2
    expected = evaluate.FaceMeasurer(marks).measure(frame)   # no memory: the same numbers
    assert np.array_equal(with_descriptor[0], expected[0]) and np.array_equal(with_descriptor[1], expected[1])
    memo.measure(np.ascontiguousarray(frame[:, ::-1]), descriptor=False)   # other pixels: measured
    assert counting.calls == 3


def test_au_measurer_answers_a_frame_seen_before_from_memory():
    class Estimator:
        calls = 0

        def estimate(self, image):
            self.calls += 1
            return np.full(len(evaluate.AU_NAMES), float(image.mean()), np.float32), None

    estimator = Estimator()
    au = evaluate.AUMeasurer(estimator)
    frame = np.full((8, 8, 3), 7, np.uint8)
    first = au.measure(frame)
    first[:] = -1                      # the caller's copy: the memory keeps its own
    assert np.all(au.measure(frame.copy()) == 7) and estimator.calls == 1
    assert np.all(au.measure(frame + 1) == 8) and estimator.calls == 2


def test_reference_cache_measures_the_real_frames_once_across_runs(split, tmp_path, measurer):
    """Two methods scored against the same real clip with --cache: the second run measures only its
    own (generated) frames and gets the numbers it would get without the cache; generated frames are
    never cached; an unreadable cache file is ignored."""
    from types import SimpleNamespace

    real = _copy_clip(split / "test" / CLIP, tmp_path / "real" / CLIP)
    first = _copy_clip(real, tmp_path / "first" / CLIP, _shift(3, 4))
    second = _copy_clip(real, tmp_path / "second" / CLIP, _shift(1, 2))
    cache = tmp_path / "cache"

    def counting_measurer():
        marks = measurer.landmarker
        counting = CountingDetector(marks.detector)
        fake = SimpleNamespace(detector=counting, predictor=marks.predictor, descriptor=marks.descriptor,
                               upsample=marks.upsample, predictor_path=marks.predictor_path)
        return evaluate.FaceMeasurer(fake, cache_dir=cache), counting

    scorer, counting = counting_measurer()
    evaluate.evaluate_reconstruction(first.parent, real.parent, tmp_path / "s1", scorer, log=lambda _: None)
    assert counting.calls == 12 and len(list(cache.glob("*.npz"))) == 1   # 6 generated + 6 real frames
    (cache / f"{scorer.instrument()}-0-0.npz").write_bytes(b"not a zip")   # e.g. a disk that filled up
    scorer, counting = counting_measurer()
    rows, summary = evaluate.evaluate_reconstruction(second.parent, real.parent, tmp_path / "s2", scorer,
                                                     log=lambda _: None)
    assert counting.calls == 6                                           # the generated frames only
    plain, plain_summary = evaluate.evaluate_reconstruction(second.parent, real.parent, tmp_path / "s3",
                                                            evaluate.FaceMeasurer(measurer.landmarker),
                                                            log=lambda _: None)
    assert summary == plain_summary and rows[0]["akd"] == plain[0]["akd"] and rows[0]["aed"] == plain[0]["aed"]
    assert len(list(cache.glob("*.npz"))) == 2                           # nothing new: no file added


def test_cache_that_is_a_file_is_one_line(split, tmp_path, capsys):
    real = _copy_clip(split / "test" / CLIP, tmp_path / "real" / CLIP)
    (tmp_path / "cache").write_text("")
    assert evaluate.main(["reconstruction", "--generated", str(real.parent), "--real", str(real.parent),
                          "--no_aus", "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--cache" in err and "is a file" in err
