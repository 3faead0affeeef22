"""FPB-FOMM's per-point prior maps: one map per prior keypoint at the keypoint detector's working resolution.

The original (``FOMM_with_AWP/modules/mask_generator.make_masks(kp, (256, 256), (64, 64), 0.75)``) builds,
in float64 numpy, for each of the 18 points p (pixels, x, y):

* the point scaled by 64/256 (literals: the original only works for 256×256 frames at scale 0.25) and
  swapped to (row, col);
* the Euclidean distance d from every cell of a 1-based grid (rows and columns 1…64) to that point;
* m = exp(-√d / (2σ²)) — note the square root *of the distance*, so the falloff is exp(-d^½/…), not a
  Gaussian in d²;
* m / max(m), then every value below the map's own mean set to 0.

Here the same formula runs batched in torch for any frame size: x is scaled by w/W and y by h/H, which
at 256×256 → 64×64 is exactly the original's 64/256. The √ and the 1-based grid are kept because the
published checkpoints were trained with them (the recorded maps need both); ``sqrt_distance=False``
gives the plain exp(-d / (2σ²)) for new models.
"""
import torch

PRIOR_MAP_SIGMA = 0.75


def scale_to_grid(prior, frame_size, grid_size):
    """Prior points (B, K, 2) pixels (x, y) of a (H, W) frame → (B, K, 2) (row, col) on the (h, w) grid, float64.

    The scale is grid/frame per axis (the original: 64/256 on both axes).
    """
    (fh, fw), (h, w) = frame_size, grid_size
    points = prior.detach().to(torch.float64)
    return torch.stack([points[..., 1] * (h / fh), points[..., 0] * (w / fw)], dim=-1)


def prior_maps(prior, frame_size, grid_size, sigma=PRIOR_MAP_SIGMA, sqrt_distance=True):
    """One map per prior point, as the original's ``make_masks``, batched.

    prior: (B, K, 2) pixels (x, y) of a frame of ``frame_size`` (H, W); grid_size: (h, w) of the maps.
    Returns (B, K, h, w) float64 in [0, 1]: each map has maximum 1 and is 0 below its own mean.

    Float64 throughout (as the original's numpy): the below-mean zeroing is a threshold, so float32
    rounding could flip cells that sit on the mean. No gradient flows to ``prior`` (the original's points
    come from dlib).
    """
    if prior.dim() != 3 or prior.shape[-1] != 2:
        raise ValueError(f"expected prior of shape (B, K, 2), got {tuple(prior.shape)}")
    h, w = grid_size
    points = scale_to_grid(prior, frame_size, grid_size)
    # 1-based cell coordinates, as the original's itertools.product(range(1, h + 1), range(1, w + 1)).
    rows = torch.arange(1, h + 1, dtype=torch.float64, device=prior.device).view(1, 1, h, 1)
    cols = torch.arange(1, w + 1, dtype=torch.float64, device=prior.device).view(1, 1, 1, w)
    dist = ((rows - points[..., 0, None, None]) ** 2 + (cols - points[..., 1, None, None]) ** 2).sqrt()
    maps = torch.exp(-(dist.sqrt() if sqrt_distance else dist) / (2 * sigma**2))
    maps = maps / maps.amax(dim=(-2, -1), keepdim=True)
    return torch.where(maps >= maps.mean(dim=(-2, -1), keepdim=True), maps, torch.zeros_like(maps))
