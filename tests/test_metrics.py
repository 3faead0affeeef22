"""metrics.py on inputs with known answers (no dlib here; see test_evaluate.py for measured faces)."""
import numpy as np
import pytest

import metrics


def _landmarks(seed=0):
    rng = np.random.default_rng(seed)
    marks = rng.uniform(40, 90, size=(68, 2))
    marks[36:42] = [[50, 60]] * 6   # right eye centre (50, 60)
    marks[42:48] = [[80, 60]] * 6   # left eye centre (80, 60): inter-ocular distance 30
    return marks


def test_identical_images_score_perfectly():
    image = np.random.default_rng(0).uniform(size=(32, 32, 3))
    assert metrics.l1(image, image) == 0
    assert metrics.psnr(image, image) == pytest.approx(100.0)
    assert metrics.ssim(image, image) == pytest.approx(1.0)


def test_l1_and_psnr_of_a_constant_offset():
    image = np.full((16, 16, 3), 0.5)
    assert metrics.l1(image + 0.1, image) == pytest.approx(0.1)
    assert metrics.psnr(image + 0.1, image) == pytest.approx(20.0)  # MSE 0.01 → 20 dB


def test_ssim_drops_for_noise():
    rng = np.random.default_rng(1)
    image = rng.uniform(size=(64, 64, 3))
    noisy = np.clip(image + rng.normal(0, 0.2, image.shape), 0, 1)
    assert metrics.ssim(noisy, image) < 0.9


def test_keypoint_distance_equals_a_shift():
    marks = _landmarks()
    shifted = marks + [3.0, 4.0]
    assert metrics.keypoint_distance(shifted, marks) == pytest.approx(5.0)
    stacked = metrics.keypoint_distance(np.stack([marks, shifted]), np.stack([marks, marks]))
    assert stacked.shape == (2,) and stacked[0] == 0


def test_missing_keypoint_rate_counts_faces_lost_in_generation():
    found_real = np.array([True, True, True, False, True])
    found_generated = np.array([True, False, True, True, False])
    assert metrics.missing_keypoint_rate(found_generated, found_real) == (2, 4)


def test_descriptor_distance():
    a, b = np.zeros(128), np.zeros(128)
    b[0] = 0.6
    assert metrics.descriptor_distance(a, b) == pytest.approx(0.6)
    assert np.isnan(metrics.descriptor_distance(a, np.full(128, np.nan)))


def test_inter_ocular_distance_and_trajectories():
    marks = _landmarks()
    assert metrics.inter_ocular_distance(marks) == pytest.approx(30.0)
    clip = np.stack([marks, marks + [3.0, 0.0]])
    d = metrics.displacement_trajectories(clip)
    assert np.allclose(d[0], 0) and np.allclose(d[1], [0.1, 0.0])


def _moving_clip(marks, amplitude, frames=8, seed=3):
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(68, 2))
    weights = np.sin(np.linspace(0, np.pi, frames))[:, None, None]
    return marks[None] + amplitude * weights * direction[None]


def test_motion_transfer_same_motion_and_scaled_motion():
    driving = _moving_clip(_landmarks(0), 1.0)
    same = metrics.motion_transfer(driving, driving)
    assert same["correlation"] == pytest.approx(1.0) and same["magnitude_ratio"] == pytest.approx(1.0)
    # Another face (other geometry, twice the inter-ocular distance) making the same motion twice as
    # large in pixels: normalised, it is the same motion.
    other = _landmarks(1) * 2
    generated = other[None] + 2 * (driving - driving[:1])
    moved = metrics.motion_transfer(generated, driving)
    assert moved["correlation"] == pytest.approx(1.0) and moved["magnitude_ratio"] == pytest.approx(1.0)
    half = other[None] + 1 * (driving - driving[:1])
    assert metrics.motion_transfer(half, driving)["magnitude_ratio"] == pytest.approx(0.5)


def test_motion_transfer_of_unrelated_motion_and_missing_faces():
    driving = _moving_clip(_landmarks(0), 1.0, seed=3)
    unrelated = _moving_clip(_landmarks(0), 1.0, seed=4)
    assert abs(metrics.motion_transfer(unrelated, driving)["correlation"]) < 0.3
    still = np.repeat(_landmarks(0)[None], 8, axis=0)
    assert metrics.motion_transfer(still, driving)["magnitude_ratio"] == 0
    lost = driving.copy()
    lost[0] = np.nan
    assert np.isnan(metrics.motion_transfer(lost, driving)["correlation"])
    gaps = driving.copy()
    gaps[2] = np.nan
    assert metrics.motion_transfer(gaps, driving)["frames"] == 6


def test_face_region_and_frame_change():
    marks = np.array([[20.0, 30.0], [40.0, 50.0]] + [[30.0, 40.0]] * 66)
    mask = metrics.face_region_mask(marks, (64, 64), margin=0.1, forehead=0.4)
    # Box y 30…50 (height 20): top = 30 − (0.1 + 0.4)·20 = 20; x 20…40 widened by 2 → 18…42.
    assert mask[40, 30] and mask[20, 30] and not mask[19, 30] and mask[40, 42] and not mask[40, 43]
    a = np.zeros((64, 64, 3))
    b = a.copy()
    b[mask] = 1.0           # change only inside the face
    assert metrics.frame_change(a, b, ~mask) == 0
    assert metrics.frame_change(a, b) == pytest.approx(mask.mean())
    assert np.isnan(metrics.frame_change(a, b, np.zeros((64, 64), bool)))
