"""Dense motion network: from sparse keypoint motions to a dense deformation and an occlusion map."""
import torch
import torch.nn.functional as F
from torch import nn

from modules.blocks import AntiAliasInterpolation2d, Hourglass
from modules.geometry import kp2gaussian, make_coordinate_grid


def sparse_motions(spatial_size, kp_driving, kp_source):
    """Per-keypoint backward motion z ↦ J_s J_d⁻¹ (z − p_d) + p_s, plus the identity for background.

    Returns (B, K+1, H, W, 2) sampling grids in normalised coordinates (index 0 = identity).
    """
    h, w = spatial_size
    value_d, value_s = kp_driving["value"], kp_source["value"]
    b, k, _ = value_d.shape
    identity = make_coordinate_grid((h, w), dtype=value_s.dtype, device=value_s.device).view(1, 1, h, w, 2)
    grid = identity - value_d.view(b, k, 1, 1, 2)
    if "jacobian" in kp_driving:
        jacobian = kp_source["jacobian"] @ torch.inverse(kp_driving["jacobian"])  # (B, K, 2, 2)
        grid = torch.einsum("bkij,bkhwj->bkhwi", jacobian, grid)
    driving_to_source = grid + value_s.view(b, k, 1, 1, 2)
    return torch.cat([identity.expand(b, 1, h, w, 2), driving_to_source], dim=1)


class DenseMotionNetwork(nn.Module):
    """Predicts, at ``scale_factor`` of the frame, soft assignment masks over the K+1 motions, the
    dense deformation they blend into, and (optionally) an occlusion map.

    forward(source_image (B, C, H, W), kp_driving, kp_source) →
    {'sparse_deformed': (B, K+1, C, h, w), 'mask': (B, K+1, h, w), 'deformation': (B, h, w, 2),
     'occlusion_map': (B, 1, h, w)}.
    """

    def __init__(self, block_expansion, num_blocks, max_features, num_kp, num_channels,
                 estimate_occlusion_map=False, scale_factor=1, kp_variance=0.01, align_corners=False):
        super().__init__()
        self.hourglass = Hourglass(block_expansion=block_expansion, in_features=(num_kp + 1) * (num_channels + 1),
                                   max_features=max_features, num_blocks=num_blocks)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=(7, 7), padding=(3, 3))
        if estimate_occlusion_map:
            self.occlusion = nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=(7, 7), padding=(3, 3))
        else:
            self.occlusion = None
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        self.align_corners = align_corners
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def heatmap_representation(self, spatial_size, kp_driving, kp_source):
        """Driving minus source Gaussians, with a zero map for the background. (B, K+1, 1, h, w)."""
        heatmap = (kp2gaussian(kp_driving["value"], spatial_size, self.kp_variance)
                   - kp2gaussian(kp_source["value"], spatial_size, self.kp_variance))
        zeros = heatmap.new_zeros(heatmap.shape[0], 1, *spatial_size)
        return torch.cat([zeros, heatmap], dim=1).unsqueeze(2)

    def deform_source(self, source_image, motions):
        """The source warped by each sparse motion. (B, C, h, w), (B, K+1, h, w, 2) → (B, K+1, C, h, w)."""
        b, c, h, w = source_image.shape
        n = motions.shape[1]
        repeated = source_image.unsqueeze(1).expand(b, n, c, h, w).reshape(b * n, c, h, w)
        deformed = F.grid_sample(repeated, motions.reshape(b * n, h, w, 2), align_corners=self.align_corners)
        return deformed.view(b, n, c, h, w)

    def forward(self, source_image, kp_driving, kp_source):
        if self.scale_factor != 1:
            source_image = self.down(source_image)
        b, _, h, w = source_image.shape
        heatmap = self.heatmap_representation((h, w), kp_driving, kp_source)
        motions = sparse_motions((h, w), kp_driving, kp_source)
        deformed = self.deform_source(source_image, motions)
        features = self.hourglass(torch.cat([heatmap, deformed], dim=2).view(b, -1, h, w))
        mask = F.softmax(self.mask(features), dim=1)
        deformation = (motions * mask.unsqueeze(-1)).sum(dim=1)
        out = {"sparse_deformed": deformed, "mask": mask, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(features))
        return out
