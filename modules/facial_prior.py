"""The facial prior: 18 keypoints derived from dlib's 68 landmarks, and the region mask built from them.

Pure functions on tensors; dlib itself lives in :mod:`modules.face_landmarks`.
"""
import torch

NUM_PRIOR_KP = 18

# 0–11: brows (19, 24), nose bridge (27), eyelids (38, 41, 43, 46), mouth (48, 54, 55, 57, 59).
DIRECT_LANDMARKS = (19, 24, 27, 38, 41, 43, 46, 48, 54, 55, 57, 59)
# 12–17: cheek / nasolabial / under-eye / outside-mouth-corner points, each a landmark shifted by half
# the inner-eye distance e = x[42] - x[39] along one axis: (landmark, axis 0=x 1=y, sign).
SHIFTED_LANDMARKS = ((31, 0, -1), (35, 0, +1), (41, 1, +1), (46, 1, +1), (48, 0, -1), (54, 0, +1))

# What the published code substitutes when dlib finds no face, in pixels of a 256×256 frame.
FALLBACK_PRIOR_256 = (
    (71, 36), (181, 42), (129, 65), (90, 63), (78, 72), (165, 65), (177, 73), (93, 168), (175, 165),
    (162, 169), (137, 173), (111, 172), (84, 134), (183, 133), (78, 98), (177, 99), (67, 168), (201, 165),
)

REGION_MASK_SIGMA = 0.75


def prior_from_landmarks(landmarks):
    """68 dlib landmarks → the 18 prior keypoints. (..., 68, 2) pixels (x, y) → (..., 18, 2)."""
    landmarks = torch.as_tensor(landmarks)
    if landmarks.shape[-2:] != (68, 2):
        raise ValueError(f"expected landmarks of shape (..., 68, 2), got {tuple(landmarks.shape)}")
    direct = landmarks[..., list(DIRECT_LANDMARKS), :]
    half_eye = (landmarks[..., 42, 0] - landmarks[..., 39, 0]) / 2
    shifted = []
    for index, axis, sign in SHIFTED_LANDMARKS:
        point = landmarks[..., index, :].clone()
        point[..., axis] = point[..., axis] + sign * half_eye
        shifted.append(point)
    return torch.cat([direct, torch.stack(shifted, dim=-2)], dim=-2)


def fallback_prior(frame_size=(256, 256), dtype=torch.float32):
    """The published no-face template, scaled to a frame of (H, W) pixels. (18, 2)."""
    h, w = frame_size
    template = torch.tensor(FALLBACK_PRIOR_256, dtype=torch.float64)
    return (template * torch.tensor([w / 256, h / 256], dtype=torch.float64)).to(dtype)


def region_mask(prior, frame_size, grid_size, sigma=REGION_MASK_SIGMA):
    """Region mask of the prior keypoints at the keypoint network's working resolution.

    prior: (B, K, 2) pixels (x, y) in a frame of ``frame_size`` (H, W); grid_size: (h, w).
    Returns (B, 1, h, w) in [0, 1]. Per point, g = exp(-sqrt(L1 distance) / (2σ²)) on 1-based grid
    coordinates, normalised to its maximum and zeroed below its own mean; the sum over points is
    normalised to its maximum. Matches the published numpy loop (which was fixed to 64×64 / 256).
    """
    if prior.dim() != 3 or prior.shape[-1] != 2:
        raise ValueError(f"expected prior of shape (B, K, 2), got {tuple(prior.shape)}")
    (fh, fw), (h, w) = frame_size, grid_size
    # Computed in float64: thresholding at the mean is discontinuous, so rounding could flip cells.
    pts = prior.detach().to(torch.float64)
    x = pts[..., 0] * (w / fw)
    y = pts[..., 1] * (h / fh)
    rows = torch.arange(1, h + 1, dtype=torch.float64, device=prior.device)
    cols = torch.arange(1, w + 1, dtype=torch.float64, device=prior.device)
    dist = (rows.view(1, 1, h, 1) - y[..., None, None]).abs() + (cols.view(1, 1, 1, w) - x[..., None, None]).abs()
    g = torch.exp(-dist.sqrt() / (2 * sigma**2))
    g = g / g.amax(dim=(-2, -1), keepdim=True)
    g = torch.where(g < g.mean(dim=(-2, -1), keepdim=True), torch.zeros_like(g), g)
    total = g.sum(dim=1, keepdim=True)
    total = total / total.amax(dim=(-2, -1), keepdim=True)
    return total.to(prior.dtype if prior.is_floating_point() else torch.float32)


def flip_prior_horizontally(prior, width):
    """Mirror prior keypoints (..., 18, 2) for a horizontally flipped frame of ``width`` pixels.

    Mirroring moves the left brow to where the right brow was, so besides x → width − 1 − x the
    points are re-indexed so that index k keeps its meaning (e.g. 0 is still landmark 19, the
    subject's right brow as dlib defines it). Pixel centres: column c becomes width − 1 − c.
    """
    flipped = prior.clone()
    flipped[..., 0] = (width - 1) - flipped[..., 0]
    return flipped[..., list(MIRROR_PERMUTATION), :]


# Index of the point that a horizontal mirror turns each prior point into.
# 0↔1 brows, 2 nose bridge, 3↔5 / 4↔6 upper/lower eyelids (38↔43, 41↔46), 7↔8 mouth corners,
# 9↔11 (55↔59), 10 (57, lower lip centre), 12↔13 nose wings, 14↔15 under the eyes, 16↔17 outside the mouth.
MIRROR_PERMUTATION = (1, 0, 2, 5, 6, 3, 4, 8, 7, 11, 10, 9, 13, 12, 15, 14, 17, 16)
