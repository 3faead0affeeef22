"""MRAA's ``modules/util.py``: blocks, hourglass, anti-aliased downsampling and region geometry.

The original builds every block with the vendored ``sync_batchnorm.SynchronizedBatchNorm2d``. On one
device that module is plain ``F.batch_norm`` (same running-statistics update, momentum 0.1, eps 1e-5)
and has the same state-dict keys as ``nn.BatchNorm2d``, including ``num_batches_tracked``, which it
never increments (a checkpoint always stores 0). The project's blocks in :mod:`modules.blocks` are the
FOMM blocks with ``nn.BatchNorm2d`` and the same attribute names, layer order and arithmetic as MRAA's,
so they are re-exported here rather than duplicated. ``nn.BatchNorm2d`` does count batches in train
mode; with a set momentum the counter changes no number.

``AntiAliasInterpolation2d``: MRAA blurs the whole frame and keeps every (1/scale)-th pixel by
slicing (``[::4]``); :class:`modules.blocks.AntiAliasInterpolation2d` computes only the kept pixels
with a strided convolution, which is the same sums (the fixture's ``source_down`` checks it). MRAA
stores the kernel for scale 1 as NaN (σ = 0); no MRAA checkpoint holds one, and scale 1 returns the
input unchanged in both.
"""
import torch

from modules.blocks import (AntiAliasInterpolation2d, Decoder, DownBlock2d, Encoder, Hourglass,  # noqa: F401
                            ResBlock2d, SameBlock2d, UpBlock2d)
from modules.geometry import make_coordinate_grid as _make_grid

__all__ = ["AntiAliasInterpolation2d", "Decoder", "DownBlock2d", "Encoder", "Hourglass", "ResBlock2d",
           "SameBlock2d", "UpBlock2d", "make_coordinate_grid", "region2gaussian", "to_homogeneous",
           "from_homogeneous"]


def make_coordinate_grid(spatial_size, like):
    """(x, y) grid over [-1, 1]² including both endpoints. (H, W, 2) in ``like``'s dtype and device.

    ``like`` is a tensor (the original passed a type string; the dtype/device come from a tensor here).
    """
    return _make_grid(spatial_size, dtype=like.dtype, device=like.device)


def region2gaussian(center, covar, spatial_size):
    """Gaussian-like heatmap of each region. center (..., 2), covar float or (..., 2, 2) → (..., H, W).

    exp(-½ (z − μ)ᵀ Σ⁻¹ (z − μ)) on the coordinate grid; a float ``covar`` is an isotropic variance.
    """
    grid = make_coordinate_grid(spatial_size, center)
    diff = grid - center[..., None, None, :]  # (..., H, W, 2)
    if isinstance(covar, float):
        return torch.exp(-0.5 * (diff ** 2).sum(-1) / covar)
    inverse = torch.inverse(covar)[..., None, None, :, :]  # (..., 1, 1, 2, 2)
    # The original's order: (rowᵀ Σ⁻¹) then · column.
    under_exp = torch.matmul(torch.matmul(diff.unsqueeze(-2), inverse), diff.unsqueeze(-1))
    return torch.exp(-0.5 * under_exp.sum(dim=(-1, -2)))


def to_homogeneous(coordinates):
    """(..., 2) → (..., 3) with a trailing 1."""
    return torch.cat([coordinates, torch.ones_like(coordinates[..., :1])], dim=-1)


def from_homogeneous(coordinates):
    """(..., 3) → (..., 2): divide by the last coordinate."""
    return coordinates[..., :2] / coordinates[..., 2:3]
