"""MRAA's pixelwise flow predictor: from region motions to a dense flow and an occlusion map.

Each region k gives a sparse motion z ↦ A_k (z − μ_k^D) + μ_k^S with A_k = A_k^S (A_k^D)⁻¹ (with
``revert_axis_swap``, A_k times the sign of its (0, 0) entry, which undoes an SVD axis flip between
source and driving); the background gives the ``bg_params`` homography (or the identity). An
hourglass on [heatmap difference, source warped by each motion] predicts softmax weights over the
R + 1 motions and an occlusion map.

Sampling as in the original: ``F.grid_sample`` with its default ``align_corners=False`` on grids from
``make_coordinate_grid`` (which includes the endpoints ±1), so even the identity resamples slightly.
"""
import torch
import torch.nn.functional as F
from torch import nn

from modules.mraa.util import (AntiAliasInterpolation2d, Hourglass, from_homogeneous, make_coordinate_grid,
                               region2gaussian, to_homogeneous)


def region_affine_ratio(source_affine, driving_affine, revert_axis_swap):
    """A^S (A^D)⁻¹ per region, sign-fixed when ``revert_axis_swap``. (B, R, 2, 2) → (B, R, 2, 2)."""
    affine = torch.matmul(source_affine, torch.inverse(driving_affine))
    if revert_axis_swap:
        affine = affine * torch.sign(affine[:, :, 0:1, 0:1])
    return affine


def background_grid(identity_grid, bg_params):
    """Identity grid (1, 1, h, w, 2) through the (B, 3, 3) homography (None: identity). → (B, 1, h, w, 2)."""
    if bg_params is None:
        return identity_grid
    bs = bg_params.shape[0]
    grid = to_homogeneous(identity_grid.repeat(bs, 1, 1, 1, 1))
    grid = torch.matmul(bg_params.view(bs, 1, 1, 1, 3, 3), grid.unsqueeze(-1)).squeeze(-1)
    return from_homogeneous(grid)


class PixelwiseFlowPredictor(nn.Module):
    """forward(source_image (B, C, H, W), driving_region_params, source_region_params, bg_params=None)
    → {'optical_flow': (B, h, w, 2) sampling grid, 'occlusion_map': (B, 1, h, w) if estimated},
    h = H·scale_factor. Region params: 'shift' (B, R, 2), 'affine' (B, R, 2, 2) (optional), 'covar'
    (B, R, 2, 2) with ``use_covar_heatmap``.
    """

    def __init__(self, block_expansion, num_blocks, max_features, num_regions, num_channels,
                 estimate_occlusion_map=False, scale_factor=1, region_var=0.01, use_covar_heatmap=False,
                 use_deformed_source=True, revert_axis_swap=False):
        super().__init__()
        in_features = (num_regions + 1) * (num_channels * use_deformed_source + 1)
        self.hourglass = Hourglass(block_expansion=block_expansion, in_features=in_features,
                                   max_features=max_features, num_blocks=num_blocks)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_regions + 1, kernel_size=(7, 7), padding=(3, 3))
        if estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=(7, 7), padding=(3, 3))
        else:
            self.occlusion = None
        self.num_regions = num_regions
        self.scale_factor = scale_factor
        self.region_var = region_var
        self.use_covar_heatmap = use_covar_heatmap
        self.use_deformed_source = use_deformed_source
        self.revert_axis_swap = revert_axis_swap
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def create_heatmap_representations(self, source_image, driving_region_params, source_region_params):
        """Eq. 6 of the paper: gaussian(driving) − gaussian(source), a zero map first for the
        background. source_image (B, C, h, w) gives the size → (B, R + 1, 1, h, w)."""
        spatial_size = source_image.shape[2:]
        covar = driving_region_params["covar"] if self.use_covar_heatmap else self.region_var
        gaussian_driving = region2gaussian(driving_region_params["shift"], covar=covar, spatial_size=spatial_size)
        covar = source_region_params["covar"] if self.use_covar_heatmap else self.region_var
        gaussian_source = region2gaussian(source_region_params["shift"], covar=covar, spatial_size=spatial_size)
        heatmap = gaussian_driving - gaussian_source
        zeros = heatmap.new_zeros(heatmap.shape[0], 1, *spatial_size)
        return torch.cat([zeros, heatmap], dim=1).unsqueeze(2)

    def create_sparse_motions(self, source_image, driving_region_params, source_region_params, bg_params=None):
        """Background grid then one grid per region, each mapping driving to source coordinates.
        → (B, R + 1, h, w, 2)."""
        bs, _, h, w = source_image.shape
        identity_grid = make_coordinate_grid((h, w), source_region_params["shift"]).view(1, 1, h, w, 2)
        grid = identity_grid - driving_region_params["shift"].view(bs, self.num_regions, 1, 1, 2)
        if "affine" in driving_region_params:
            affine = region_affine_ratio(source_region_params["affine"], driving_region_params["affine"],
                                         self.revert_axis_swap)
            grid = torch.matmul(affine[:, :, None, None], grid.unsqueeze(-1)).squeeze(-1)
        driving_to_source = grid + source_region_params["shift"].view(bs, self.num_regions, 1, 1, 2)
        bg_grid = background_grid(identity_grid, bg_params).expand(bs, 1, h, w, 2)
        return torch.cat([bg_grid, driving_to_source], dim=1)

    def create_deformed_source_image(self, source_image, sparse_motions):
        """The source warped by each sparse motion. (B, C, h, w), (B, R + 1, h, w, 2) → (B, R + 1, C, h, w)."""
        bs, c, h, w = source_image.shape
        n = self.num_regions + 1
        repeated = source_image.unsqueeze(1).expand(bs, n, c, h, w).reshape(bs * n, c, h, w)
        deformed = F.grid_sample(repeated, sparse_motions.reshape(bs * n, h, w, 2), align_corners=False)
        return deformed.view(bs, n, c, h, w)

    def downsample(self, source_image):
        """The image the flow is predicted at (``down`` of the original forward). (B, C, h, w)."""
        return self.down(source_image) if self.scale_factor != 1 else source_image

    def predict(self, source_down, driving_region_params, source_region_params, bg_params=None):
        """forward on an already downsampled source (so animation can downsample the target once)."""
        bs, _, h, w = source_down.shape
        heatmap = self.create_heatmap_representations(source_down, driving_region_params, source_region_params)
        sparse_motion = self.create_sparse_motions(source_down, driving_region_params, source_region_params,
                                                   bg_params=bg_params)
        if self.use_deformed_source:
            deformed = self.create_deformed_source_image(source_down, sparse_motion)
            predictor_input = torch.cat([heatmap, deformed], dim=2)
        else:
            predictor_input = heatmap
        prediction = self.hourglass(predictor_input.view(bs, -1, h, w))

        mask = F.softmax(self.mask(prediction), dim=1).unsqueeze(2)  # (B, R + 1, 1, h, w)
        deformation = (sparse_motion.permute(0, 1, 4, 2, 3) * mask).sum(dim=1).permute(0, 2, 3, 1)
        out = {"optical_flow": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction))
        return out

    def forward(self, source_image, driving_region_params, source_region_params, bg_params=None):
        return self.predict(self.downsample(source_image), driving_region_params, source_region_params,
                            bg_params=bg_params)
