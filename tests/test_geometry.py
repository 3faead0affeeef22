"""Coordinate conventions, the equivariance warp and the corrected prior under the warp."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modules.face_landmarks import FaceLandmarker
from modules.facial_prior import prior_from_landmarks
from modules.geometry import (Transform, kp2gaussian, make_coordinate_grid, normalized_to_pixels,
                              pixels_to_normalized)
from modules.model import warped_prior


def test_coordinate_grid_corners_and_layout():
    grid = make_coordinate_grid((3, 5))
    assert grid.shape == (3, 5, 2)
    assert torch.equal(grid[0, 0], torch.tensor([-1.0, -1.0]))
    assert torch.equal(grid[-1, -1], torch.tensor([1.0, 1.0]))
    assert torch.equal(grid[0, 2], torch.tensor([0.0, -1.0]))  # x varies along columns


def test_kp2gaussian_peaks_at_keypoint():
    value = torch.tensor([[[0.0, 0.0], [1.0, -1.0]]])
    heat = kp2gaussian(value, (5, 5), 0.01)
    assert heat.shape == (1, 2, 5, 5)
    assert heat[0, 0, 2, 2] == 1 and heat[0, 1, 0, 4] == 1
    assert heat[0, 0, 2, 3] == pytest.approx(np.exp(-0.5 * 0.25 / 0.01))


def test_pixel_normalisation_round_trip():
    points = torch.tensor([[0.0, 0.0], [128.0, 64.0], [255.0, 127.0]])
    normalized = pixels_to_normalized(points, (128, 256))
    assert torch.allclose(normalized[1], torch.tensor([0.0, 0.0]))
    assert torch.allclose(normalized_to_pixels(normalized, (128, 256)), points)


def random_transform(bs=2, seed=0, sigma_affine=0.05, sigma_tps=0.005):
    return Transform(bs, sigma_affine=sigma_affine, sigma_tps=sigma_tps, points_tps=5,
                     generator=torch.Generator().manual_seed(seed))


def test_identity_transform_leaves_frame_unchanged_with_corner_alignment():
    frame = torch.rand(1, 3, 16, 16)
    transform = Transform(1, theta=torch.eye(2, 3)[None], align_corners=True)
    assert torch.allclose(transform.transform_frame(frame), frame, atol=1e-6)
    # Under today's default the published grid convention zooms by (W-1)/W: not the identity.
    assert not torch.allclose(Transform(1, theta=torch.eye(2, 3)[None]).transform_frame(frame), frame, atol=1e-3)


def test_warp_jacobian_matches_finite_differences():
    transform = random_transform(seed=3, sigma_tps=0.05)
    z = torch.rand(2, 7, 2, dtype=torch.float64) * 1.6 - 0.8
    analytic = transform.jacobian(z).detach()
    eps = 1e-6
    for axis in range(2):
        step = torch.zeros(2)
        step[axis] = eps
        numeric = (transform.warp_coordinates(z + step) - transform.warp_coordinates(z - step)) / (2 * eps)
        assert torch.allclose(analytic[..., :, axis], numeric, atol=1e-6)


def test_analytic_jacobian_equals_autograd():
    transform = random_transform(seed=4, sigma_tps=0.05)
    z = torch.rand(2, 9, 2, dtype=torch.float64) * 1.8 - 0.9
    assert torch.allclose(transform.analytic_jacobian(z), transform.jacobian(z).detach(), atol=1e-10)


def test_inverse_warp_is_inverse():
    transform = random_transform(seed=5, sigma_affine=0.1, sigma_tps=0.01)
    points = torch.rand(2, 18, 2) * 1.6 - 0.8
    back = transform.warp_coordinates(transform.inverse_warp_coordinates(points))
    assert (back - points).abs().max() < 1e-6


def test_inverse_warp_is_least_squares_where_the_warp_folds():
    """The published TPS (L1 distances) can fold a region over itself: some points then have no
    preimage. The inversion must not diverge there (plain Newton did, by whole frame widths), but
    settle on the closest point the warp reaches."""
    xs = torch.linspace(-1.5, 1.5, 301, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(1, -1, 2)
    worst = 0.0
    for seed in range(60):
        transform = random_transform(bs=1, seed=seed, sigma_tps=0.02)
        points = torch.rand(1, 18, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 1.6 - 0.8
        q = transform.inverse_warp_coordinates(points)
        residual = (transform.warp_coordinates(q) - points).norm(dim=-1)
        reached = torch.cdist(points[0], transform.warp_coordinates(grid)[0]).min(dim=1).values  # best on a grid
        worst = max(worst, (residual[0] - reached).max().item())
    assert worst < 0.02  # never worse than a 0.01-spaced grid search (plus its own spacing)


def test_corrected_prior_maps_back_onto_original_prior(reference):
    prior = reference["prior_kp_driving"].expand(2, 18, 2)
    transform = random_transform(seed=11, sigma_affine=0.08)
    moved = warped_prior(transform, prior, (256, 256))
    assert (moved - prior).norm(dim=-1).mean() > 3  # the warp really moves the face
    back = normalized_to_pixels(transform.warp_coordinates(pixels_to_normalized(moved, (256, 256))), (256, 256))
    assert (back - prior).abs().max() < 1e-3


def test_corrected_prior_follows_the_face_in_the_warped_frame(reference):
    """dlib on the warped frame finds the face where the corrected prior says, not where the
    untransformed prior (the published behaviour) is."""
    frame = reference["driving_image"].permute(2, 0, 1)[None]
    prior = reference["prior_kp_driving"][None]
    transform = Transform(1, theta=torch.tensor([[[0.9, 0.05, 0.12], [-0.04, 0.92, -0.1]]]))
    warped_frame = transform.transform_frame(frame)[0].permute(1, 2, 0).numpy()
    landmarks = FaceLandmarker().landmarks(warped_frame)
    assert landmarks is not None
    detected = prior_from_landmarks(torch.from_numpy(landmarks))
    corrected = warped_prior(transform, prior, (256, 256))[0]
    error_corrected = (corrected - detected).norm(dim=-1).mean()
    error_reference = (prior[0] - detected).norm(dim=-1).mean()
    assert error_corrected < 4, error_corrected
    assert error_reference > 3 * error_corrected
