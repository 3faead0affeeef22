"""TPSMM dense motion network: K thin-plate-spline transforms plus an affine background transform,
combined per pixel by predicted contribution maps into one optical flow, and multi-resolution
occlusion masks.

Follows the original ``modules/dense_motion.py``: the source is downsampled by ``scale_factor``, the
K+1 warped copies (``grid_sample(align_corners=True)``) and the keypoint heatmap differences go through
an Hourglass; a 7×7 conv gives K+1 logits (softmax, or ``dropout_softmax`` while training). With
``multi_mask`` the two finest Hourglass levels and ``log2(1/scale_factor)`` extra UpBlocks give
4 occlusion masks, coarse to fine, the last one at the input resolution.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from modules.tpsmm.util import (TPS, AntiAliasInterpolation2d, Hourglass, UpBlock2d, from_homogeneous,
                                kp2gaussian, make_coordinate_grid, to_homogeneous)


def combine_transformations(transformations, contribution_maps):
    """Per-pixel weighted sum of K+1 sampling grids (Eq. 6).

    transformations (B, K+1, H, W, 2), contribution_maps (B, K+1, H, W) → deformation (B, H, W, 2).
    """
    weighted = transformations.permute(0, 1, 4, 2, 3) * contribution_maps.unsqueeze(2)
    return weighted.sum(dim=1).permute(0, 2, 3, 1)


class DenseMotionNetwork(nn.Module):
    """forward(source_image (B, C, H, W), kp_driving, kp_source, bg_param=None, dropout_flag=False,
    dropout_p=0) → dict:

    - 'deformed_source' (B, K+1, C, h, w): the downsampled source under each transform (0: background);
    - 'contribution_maps' (B, K+1, h, w); 'deformation' (B, h, w, 2): the combined sampling grid;
    - 'occlusion_map': list of (B, 1, ·, ·) masks in (0, 1) (4 with multi_mask, coarse to fine).

    kp_*: {'fg_kp': (B, K·5, 2)}; bg_param: (B, 3, 3) affine or None (identity background).
    h, w = H·scale_factor, W·scale_factor.
    """

    def __init__(self, block_expansion, num_blocks, max_features, num_tps, num_channels,
                 scale_factor=0.25, bg=False, multi_mask=True, kp_variance=0.01, num_kps=5):
        super().__init__()
        # num_kps: control points per TPS (5 in TPSMM; TPSMM-ME uses 8).
        self.num_kps = num_kps
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)
        self.scale_factor = scale_factor
        self.multi_mask = multi_mask

        self.hourglass = Hourglass(block_expansion=block_expansion,
                                   in_features=num_channels * (num_tps + 1) + num_tps * num_kps + 1,
                                   max_features=max_features, num_blocks=num_blocks)
        widths = self.hourglass.out_channels
        self.maps = nn.Conv2d(widths[-1], num_tps + 1, kernel_size=(7, 7), padding=(3, 3))

        if multi_mask:
            self.up_nums = int(math.log(1 / scale_factor, 2))
            self.occlusion_num = 4
            channel = [widths[-1] // (2 ** i) for i in range(self.up_nums)]
            self.up = nn.ModuleList(UpBlock2d(channel[i], channel[i] // 2, kernel_size=3, padding=1)
                                    for i in range(self.up_nums))
            # Masks from the finest Hourglass levels, then from each extra UpBlock.
            channel = [widths[-i - 1] for i in range(self.occlusion_num - self.up_nums)[::-1]]
            channel += [widths[-1] // (2 ** (i + 1)) for i in range(self.up_nums)]
            self.occlusion = nn.ModuleList(nn.Conv2d(channel[i], 1, kernel_size=(7, 7), padding=(3, 3))
                                           for i in range(self.occlusion_num))
        else:
            self.occlusion = nn.ModuleList([nn.Conv2d(widths[-1], 1, kernel_size=(7, 7), padding=(3, 3))])

        self.num_tps = num_tps
        self.bg = bg
        self.kp_variance = kp_variance

    def create_heatmap_representations(self, source_image, kp_driving, kp_source):
        """(B, 1 + K·5, h, w): a zero map (the background) then gaussian(driving) − gaussian(source)."""
        spatial_size = source_image.shape[2:]
        heatmap = (kp2gaussian(kp_driving["fg_kp"], spatial_size, self.kp_variance)
                   - kp2gaussian(kp_source["fg_kp"], spatial_size, self.kp_variance))
        zeros = heatmap.new_zeros(heatmap.shape[0], 1, spatial_size[0], spatial_size[1])
        return torch.cat([zeros, heatmap], dim=1)

    def create_transformations(self, source_image, kp_driving, kp_source, bg_param):
        """(B, K+1, h, w, 2) sampling grids: the background (identity, or ``bg_param`` applied to it),
        then the K TPS warps fitted driving → source on groups of ``num_kps`` (5) keypoints."""
        bs, _, h, w = source_image.shape
        kp_1 = kp_driving["fg_kp"].view(bs, -1, self.num_kps, 2)
        kp_2 = kp_source["fg_kp"].view(bs, -1, self.num_kps, 2)
        driving_to_source = TPS(mode="kp", bs=bs, kp_1=kp_1, kp_2=kp_2).transform_frame(source_image)

        identity_grid = make_coordinate_grid((h, w), kp_1.dtype, kp_1.device).view(1, 1, h, w, 2)
        identity_grid = identity_grid.repeat(bs, 1, 1, 1, 1)
        if bg_param is not None:
            identity_grid = to_homogeneous(identity_grid)
            identity_grid = torch.matmul(bg_param.view(bs, 1, 1, 1, 3, 3), identity_grid.unsqueeze(-1)).squeeze(-1)
            identity_grid = from_homogeneous(identity_grid)
        return torch.cat([identity_grid, driving_to_source], dim=1)

    def create_deformed_source_image(self, source_image, transformations):
        """source (B, C, h, w) sampled by each of the K+1 grids (B, K+1, h, w, 2) → (B, K+1, C, h, w)."""
        bs, _, h, w = source_image.shape
        source_repeat = source_image.unsqueeze(1).expand(bs, self.num_tps + 1, -1, h, w)
        source_repeat = source_repeat.reshape(bs * (self.num_tps + 1), -1, h, w)
        grids = transformations.reshape(bs * (self.num_tps + 1), h, w, -1)
        deformed = F.grid_sample(source_repeat, grids, align_corners=True)
        return deformed.view(bs, self.num_tps + 1, -1, h, w)

    def dropout_softmax(self, X, P, generator=None):
        """Softmax over dim 1 with whole maps 1..K dropped with probability P (Eq. 7-8). (B, K+1, h, w).

        The keep mask is ``torch.rand(B, K+1) < 1 − P`` from the global CPU generator (or
        ``generator``) as the original, then moved to X's device; map 0 (background) is always kept
        and the partition gets +1e-6 (all-dropped pixels give zeros, not NaN). The original's
        ``X[:, 1:] /= (1 − P)`` runs after the exponential and changes nothing, so it is not done here.
        """
        drop = (torch.rand(X.shape[0], X.shape[1], generator=generator) < (1 - P)).to(X)
        drop[..., 0] = 1
        X = X - X.max(1, keepdim=True).values
        X_exp = X.exp().masked_fill(drop[:, :, None, None] == 0, 0)
        partition = X_exp.sum(dim=1, keepdim=True) + 1e-6
        return X_exp / partition

    def downsample(self, source_image):
        """The source at the motion resolution (B, C, h, w): what :meth:`motion` takes."""
        return self.down(source_image) if self.scale_factor != 1 else source_image

    def forward(self, source_image, kp_driving, kp_source, bg_param=None, dropout_flag=False, dropout_p=0):
        return self.motion(self.downsample(source_image), kp_driving, kp_source, bg_param, dropout_flag, dropout_p)

    def motion(self, source_image, kp_driving, kp_source, bg_param=None, dropout_flag=False, dropout_p=0):
        """:meth:`forward` after the downsampling (animation downsamples a target face once).
        A batch-1 source is broadcast to the driving batch."""
        bs = kp_driving["fg_kp"].shape[0]
        if source_image.shape[0] != bs:
            source_image = source_image.expand(bs, *source_image.shape[1:])
            kp_source = {"fg_kp": kp_source["fg_kp"].expand(bs, *kp_source["fg_kp"].shape[1:])}
        _, _, h, w = source_image.shape

        out_dict = {}
        # The TPS fit and warps stay in float32 under autocast: bf16 matrix products there move the
        # warps by whole pixels (the fit amplifies rounding).
        with torch.autocast(source_image.device.type, enabled=False):
            source_image = source_image.float()
            kp_driving = {"fg_kp": kp_driving["fg_kp"].float()}
            kp_source = {"fg_kp": kp_source["fg_kp"].float()}
            bg_param = None if bg_param is None else bg_param.float()
            heatmap_representation = self.create_heatmap_representations(source_image, kp_driving, kp_source)
            transformations = self.create_transformations(source_image, kp_driving, kp_source, bg_param)
            deformed_source = self.create_deformed_source_image(source_image, transformations)
        out_dict["deformed_source"] = deformed_source
        inp = torch.cat([heatmap_representation, deformed_source.view(bs, -1, h, w)], dim=1)

        prediction = self.hourglass(inp, mode=1)

        contribution_maps = self.maps(prediction[-1])
        if dropout_flag:
            contribution_maps = self.dropout_softmax(contribution_maps, dropout_p)
        else:
            contribution_maps = F.softmax(contribution_maps, dim=1)
        out_dict["contribution_maps"] = contribution_maps
        out_dict["deformation"] = combine_transformations(transformations, contribution_maps)

        occlusion_map = []
        if self.multi_mask:
            hourglass_masks = self.occlusion_num - self.up_nums
            for i in range(hourglass_masks):
                occlusion_map.append(torch.sigmoid(self.occlusion[i](prediction[i - hourglass_masks])))
            features = prediction[-1]
            for i in range(self.up_nums):
                features = self.up[i](features)
                occlusion_map.append(torch.sigmoid(self.occlusion[i + hourglass_masks](features)))
        else:
            occlusion_map.append(torch.sigmoid(self.occlusion[0](prediction[-1])))
        out_dict["occlusion_map"] = occlusion_map
        return out_dict
