"""The 18-point prior, its mirror, the fallback template and the region mask at any size."""
import math

import numpy as np
import pytest
import torch

from modules.face_landmarks import FaceLandmarker
from modules.facial_prior import (FALLBACK_PRIOR_256, MIRROR_PERMUTATION, fallback_prior,
                                  flip_prior_horizontally, prior_from_landmarks, region_mask)


def direct_region_mask(points, frame_size, grid_size, sigma=0.75):
    """The region mask written out cell by cell, one point at a time (slow, obviously right)."""
    (fh, fw), (h, w) = frame_size, grid_size
    total = np.zeros((h, w))
    for x, y in np.asarray(points, dtype=np.float64):
        xs, ys = x * w / fw, y * h / fh
        g = np.zeros((h, w))
        for i in range(1, h + 1):
            for j in range(1, w + 1):
                g[i - 1, j - 1] = math.exp(-math.sqrt(abs(i - ys) + abs(j - xs)) / (2 * sigma**2))
        g /= g.max()
        g[g < g.mean()] = 0
        total += g
    return total / total.max()


@pytest.mark.parametrize("frame_size,grid_size", [((256, 256), (64, 64)), ((128, 96), (32, 24)), ((64, 64), (16, 16)),
                                                  ((200, 300), (50, 75))])
def test_region_mask_matches_direct_computation(frame_size, grid_size):
    generator = torch.Generator().manual_seed(sum(frame_size))
    h, w = frame_size
    prior = torch.rand(3, 18, 2, generator=generator, dtype=torch.float64) * torch.tensor([w, h]) * 0.8 + 0.1 * w
    mask = region_mask(prior, frame_size, grid_size)
    assert mask.shape == (3, 1, *grid_size)
    for b in range(3):
        np.testing.assert_allclose(mask[b, 0].numpy(), direct_region_mask(prior[b].numpy(), frame_size, grid_size),
                                   atol=1e-12)


def test_region_mask_is_batched_independently():
    prior = torch.tensor(FALLBACK_PRIOR_256, dtype=torch.float32)
    other = prior.flip(0) * 0.9 + 10
    both = region_mask(torch.stack([prior, other]), (256, 256), (64, 64))
    assert torch.equal(both[0], region_mask(prior[None], (256, 256), (64, 64))[0])
    assert torch.equal(both[1], region_mask(other[None], (256, 256), (64, 64))[0])
    assert both.max() == 1 and both.min() == 0


def synthetic_landmarks():
    landmarks = torch.zeros(68, 2)
    landmarks[:, 0] = torch.arange(68) * 2.0
    landmarks[:, 1] = 300 - torch.arange(68) * 3.0
    landmarks[39, 0], landmarks[42, 0] = 100.0, 130.0  # inner eye corners: e = 30
    return landmarks


def test_prior_from_landmarks_points_and_shifts():
    landmarks = synthetic_landmarks()
    prior = prior_from_landmarks(landmarks)
    assert prior.shape == (18, 2)
    for k, index in enumerate((19, 24, 27, 38, 41, 43, 46, 48, 54, 55, 57, 59)):
        assert torch.equal(prior[k], landmarks[index])
    half = 15.0
    expected = {12: (31, (-half, 0)), 13: (35, (half, 0)), 14: (41, (0, half)), 15: (46, (0, half)),
                16: (48, (-half, 0)), 17: (54, (half, 0))}
    for k, (index, shift) in expected.items():
        assert torch.equal(prior[k], landmarks[index] + torch.tensor(shift))
    batched = prior_from_landmarks(torch.stack([landmarks, landmarks + 1]))
    assert torch.equal(batched[1], prior_from_landmarks(landmarks + 1))


def test_prior_from_landmarks_rejects_wrong_shape():
    with pytest.raises(ValueError, match="68, 2"):
        prior_from_landmarks(torch.zeros(5, 2))


def test_fallback_template_scales_with_frame():
    assert torch.equal(fallback_prior((256, 256)), torch.tensor(FALLBACK_PRIOR_256, dtype=torch.float32))
    half = fallback_prior((128, 64))
    assert torch.allclose(half, torch.tensor(FALLBACK_PRIOR_256, dtype=torch.float32) * torch.tensor([0.25, 0.5]))


def test_mirror_permutation_is_an_involution():
    perm = torch.tensor(MIRROR_PERMUTATION)
    assert torch.equal(perm[perm], torch.arange(18))
    prior = fallback_prior()
    assert torch.equal(flip_prior_horizontally(flip_prior_horizontally(prior, 256), 256), prior)


def test_flipped_prior_matches_dlib_on_the_mirrored_face(reference):
    """Mirroring the frame and mirroring the prior agree, point by point with the same meaning."""
    image = reference["source_image"].numpy()
    landmarker = FaceLandmarker()
    prior = prior_from_landmarks(torch.from_numpy(landmarker.landmarks(image)))
    mirrored = prior_from_landmarks(torch.from_numpy(landmarker.landmarks(np.ascontiguousarray(image[:, ::-1]))))
    flipped = flip_prior_horizontally(prior, image.shape[1])
    error = (flipped - mirrored).norm(dim=-1)
    assert error.max() < 6, error  # dlib is not exactly mirror-symmetric; a wrong permutation is off by 30+ px
    assert error.mean() < 3
