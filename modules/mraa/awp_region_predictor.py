"""FPB-FOMM's MRAA_with_AWP region predictor (sysu19351158/FPB-FOMM, folder ``MRAA_with_AWP``): regions
from the facial prior.

What the original's ``RegionPredictor.forward`` computes, for the 18 prior points p (pixels) of a frame:

* the 18 per-point prior maps (:func:`modules.fpb_fomm.prior_maps.prior_maps`, σ 0.75) at the
  downsampled frame's size are the regions' heatmaps (``num_regions`` must be 18);
* shift = the prior points normalised to [-1, 1] (2·p/size − 1);
* covariance (``pca_based``) = Σ_z (z − shift)(z − shift)ᵀ · map(z) over the heatmap grid (the maps
  are not normalised to sum 1, as in the original), affine = its PCA square root U·diag(√S);
* the learned part, the adaptive weighted prior: ``region2(region1(maps))`` (18 → 9 → 1, 3×3, no
  activation) as a fourth input channel of the hourglass, whose features feed only the FOMM-style
  ``jacobian`` head (``estimate_affine`` without ``pca_based``). The ``regions`` head is built (so the
  checkpoints load) but, as in the original, unused.

With ``pca_based`` (the published config) no learned parameter of this module reaches an output; the
hourglass is then skipped (the original computed its features and dropped them), which changes no
number. Differences from the original, none changing the recorded arithmetic: the prior points come
from the caller (kpmaker's landmarks; the original ran dlib in the forward and only at 256×256),
maps and normalisation follow the frame size, the batch is processed at once.
"""
import torch
from torch import nn

from modules.fpb_fomm.prior_maps import PRIOR_MAP_SIGMA, prior_maps
from modules.geometry import pixels_to_normalized
from modules.mraa.region_predictor import covar_sqrt
from modules.mraa.util import AntiAliasInterpolation2d, Hourglass, make_coordinate_grid

NUM_PRIOR_REGIONS = 18


class RegionPredictor(nn.Module):
    """forward(x (B, C, H, W), prior (B, 18, 2) pixels) → {'shift' (B, 18, 2), 'covar', 'affine' (B, 18, 2, 2),
    'heatmap' (B, 18, h, w)[, 'u', 'd' (B·18, 2, 2) when pca_based]}. Constructor as MRAA's."""

    uses_prior = True

    def __init__(self, block_expansion, num_regions, num_channels, max_features, num_blocks, temperature,
                 estimate_affine=False, scale_factor=1, pca_based=False, fast_svd=False, pad=3,
                 mask_sigma=PRIOR_MAP_SIGMA):
        super().__init__()
        if num_regions != NUM_PRIOR_REGIONS:
            raise ValueError(f"MRAA_with_AWP's regions are the {NUM_PRIOR_REGIONS} prior points, got num_regions="
                             f"{num_regions}")
        self.predictor = Hourglass(block_expansion, in_features=num_channels + 1, max_features=max_features,
                                   num_blocks=num_blocks)
        self.regions = nn.Conv2d(self.predictor.out_filters, num_regions, kernel_size=(7, 7), padding=pad)
        self.region1 = nn.Conv2d(num_regions, num_regions // 2, kernel_size=(3, 3), padding=(1, 1))
        self.region2 = nn.Conv2d(num_regions // 2, 1, kernel_size=(3, 3), padding=(1, 1))
        if estimate_affine and not pca_based:
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4, kernel_size=(7, 7), padding=pad)
            with torch.no_grad():
                self.jacobian.weight.zero_()
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]))
        else:
            self.jacobian = None
        self.num_regions = num_regions
        self.temperature = temperature  # unused: the heatmaps are the prior maps (kept for the config)
        self.scale_factor = scale_factor
        self.pca_based = pca_based
        self.fast_svd = fast_svd
        self.mask_sigma = mask_sigma
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def awp(self, maps):
        """The adaptive weighted prior: (B, 18, h, w) maps → (B, 1, h, w)."""
        return self.region2(self.region1(maps))

    def forward(self, x, prior=None):
        if prior is None or prior.dim() != 3 or prior.shape[1:] != (self.num_regions, 2):
            raise ValueError(f"the AWP region predictor needs prior (B, {self.num_regions}, 2) pixels of each frame")
        down = self.down(x) if self.scale_factor != 1 else x
        b, _, h, w = down.shape
        maps = prior_maps(prior, x.shape[2:], (h, w), self.mask_sigma).to(device=down.device, dtype=torch.float32)
        shift = pixels_to_normalized(prior.detach().to(device=down.device, dtype=torch.float32), x.shape[2:])
        params = {"shift": shift, "heatmap": maps}
        if self.pca_based:
            region = maps.unsqueeze(-1)
            grid = make_coordinate_grid((h, w), region)[None, None]
            centred = grid - shift[:, :, None, None, :]
            outer = torch.matmul(centred.unsqueeze(-1), centred.unsqueeze(-2))
            params["covar"] = (outer * region.unsqueeze(-1)).sum(dim=(2, 3))
        if self.jacobian is not None:
            feature_map = self.predictor(torch.cat([down, self.awp(maps.to(down.dtype))], dim=1))
            jacobian_map = self.jacobian(feature_map).reshape(b, 1, 4, h, w).float()
            jacobian = (maps.unsqueeze(2) * jacobian_map).view(b, self.num_regions, 4, -1).sum(dim=-1)
            params["affine"] = jacobian.view(b, self.num_regions, 2, 2)
            params["covar"] = torch.matmul(params["affine"], params["affine"].transpose(-1, -2))
        elif self.pca_based:
            affine, u, d = covar_sqrt(params["covar"], self.fast_svd)
            params.update(affine=affine, u=u, d=d)
        return params
