"""MRAA's region predictor: an hourglass whose softmax heatmaps define each region's shift and affine.

With ``pca_based`` the affine is the square root of the heatmap's covariance, U·diag(√S) from the SVD
(the paper's PCA). With ``estimate_affine`` and not ``pca_based`` it is regressed as in FOMM (a
4-channel conv pooled by the heatmap) and the covariance is A·Aᵀ. The SVD sign of U is arbitrary; the
consumers undo axis swaps with ``revert_axis_swap``.
"""
import torch
import torch.nn.functional as F
from torch import nn

from modules.mraa.util import AntiAliasInterpolation2d, Hourglass, make_coordinate_grid


def svd(covar, fast=False):
    """SVD of (N, 2, 2) matrices → u (N, 2, 2), s (N, 2), v (N, 2, 2) on ``covar``'s device.

    The original always runs ``torch.svd`` on the CPU (LAPACK), whose sign convention for U the
    recorded checkpoints' axis-swap handling was trained with, and copies back. ``fast=True`` stands
    for the original's optional ``torch_batch_svd`` (a CUDA batch SVD, not a dependency here): it
    runs ``torch.svd`` on the tensor's own device, which avoids the host round trip but may choose
    other signs, as the original's comment warns for its fast path.
    """
    if fast:
        return torch.svd(covar)
    u, s, v = torch.svd(covar.cpu())
    return u.to(covar.device), s.to(covar.device), v.to(covar.device)


def heatmap_to_region_params(region, pca_based):
    """Shift (and covariance) of normalised heatmaps. region (B, R, H, W) → {'shift' (B, R, 2)[, 'covar' (B, R, 2, 2)]}."""
    region = region.unsqueeze(-1)
    grid = make_coordinate_grid(region.shape[2:4], region)[None, None]  # (1, 1, H, W, 2)
    mean = (region * grid).sum(dim=(2, 3))
    params = {"shift": mean}
    if pca_based:
        centred = grid - mean[:, :, None, None, :]
        outer = torch.matmul(centred.unsqueeze(-1), centred.unsqueeze(-2))
        params["covar"] = (outer * region.unsqueeze(-1)).sum(dim=(2, 3))
    return params


def covar_sqrt(covar, fast_svd=False):
    """PCA square root of covariances. covar (B, R, 2, 2) → affine (B, R, 2, 2), u (B·R, 2, 2), d (B·R, 2, 2).

    affine = U·diag(√S), so affine·affineᵀ = covar.
    """
    flat = covar.reshape(-1, 2, 2)
    u, s, _ = svd(flat, fast_svd)
    d = torch.diag_embed(s ** 0.5)
    return torch.matmul(u, d).view(covar.shape), u, d


class RegionPredictor(nn.Module):
    """forward(x (B, C, H, W)) → {'shift' (B, R, 2), 'covar' (B, R, 2, 2), 'heatmap' (B, R, h, w),
    'affine' (B, R, 2, 2)[, 'u', 'd' (B·R, 2, 2) when pca_based]} with h = H·scale_factor.
    """

    def __init__(self, block_expansion, num_regions, num_channels, max_features, num_blocks, temperature,
                 estimate_affine=False, scale_factor=1, pca_based=False, fast_svd=False, pad=3):
        super().__init__()
        self.predictor = Hourglass(block_expansion, in_features=num_channels, max_features=max_features,
                                   num_blocks=num_blocks)
        self.regions = nn.Conv2d(self.predictor.out_filters, num_regions, kernel_size=(7, 7), padding=pad)
        if estimate_affine and not pca_based:
            # FOMM-style regression, initialised to the identity.
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4, kernel_size=(7, 7), padding=pad)
            with torch.no_grad():
                self.jacobian.weight.zero_()
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]))
        else:
            self.jacobian = None
        self.num_regions = num_regions
        self.temperature = temperature
        self.scale_factor = scale_factor
        self.pca_based = pca_based
        self.fast_svd = fast_svd
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def region2affine(self, region):
        """(B, R, H, W) normalised heatmaps → {'shift'[, 'covar']} (see :func:`heatmap_to_region_params`)."""
        return heatmap_to_region_params(region, self.pca_based)

    def forward(self, x):
        if self.scale_factor != 1:
            x = self.down(x)
        feature_map = self.predictor(x)
        jacobian_map = self.jacobian(feature_map) if self.jacobian is not None else None
        return self.params_from_logits(self.regions(feature_map), jacobian_map)

    def params_from_logits(self, logits, jacobian_map=None):
        """The region parameters from the heads' outputs: logits (B, R, h, w), jacobian_map (B, 4, h, w)
        or None (the ``jacobian`` head's output when it exists). The geometry after the convolutions,
        split out so that a driver can run the convolutions in bf16 and this in float32."""
        b, r, h, w = logits.shape
        region = F.softmax(logits.view(b, r, -1) / self.temperature, dim=2).view(b, r, h, w)

        params = self.region2affine(region)
        params["heatmap"] = region
        if self.jacobian is not None:
            jacobian_map = jacobian_map.reshape(b, 1, 4, h, w)
            jacobian = (region.unsqueeze(2) * jacobian_map).view(b, r, 4, -1).sum(dim=-1).view(b, r, 2, 2)
            params["affine"] = jacobian
            params["covar"] = torch.matmul(jacobian, jacobian.permute(0, 1, 3, 2))
        elif self.pca_based:
            affine, u, d = covar_sqrt(params["covar"], self.fast_svd)
            params.update(affine=affine, u=u, d=d)
        return params
