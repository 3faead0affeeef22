"""Occlusion-aware generator: encode the source, warp its features by the dense motion, decode."""
import torch
import torch.nn.functional as F
from torch import nn

from modules.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, hourglass_width
from modules.dense_motion import DenseMotionNetwork


class OcclusionAwareGenerator(nn.Module):
    """``forward(source_image (B, C, H, W), kp_driving, kp_source)`` → dict with
    'prediction' (B, C, H, W) and, from the dense motion network, 'mask', 'sparse_deformed',
    'occlusion_map', 'deformation', plus 'deformed' (the source image warped by the deformation).

    The source half (``encode_source``) depends only on the source frame, so animation can encode a
    target face once and decode many driving frames with ``decode``.
    """

    def __init__(self, num_channels, num_kp, block_expansion, max_features, num_down_blocks,
                 num_bottleneck_blocks, estimate_occlusion_map=False, dense_motion_params=None,
                 estimate_jacobian=False, keypoint_mode=None, align_corners=False):
        super().__init__()
        if dense_motion_params is not None:
            self.dense_motion_network = DenseMotionNetwork(
                num_kp=num_kp, num_channels=num_channels, estimate_occlusion_map=estimate_occlusion_map,
                align_corners=align_corners, **dense_motion_params)
        else:
            self.dense_motion_network = None
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))
        self.down_blocks = nn.ModuleList(
            DownBlock2d(hourglass_width(block_expansion, max_features, i), hourglass_width(block_expansion, max_features, i + 1))
            for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(hourglass_width(block_expansion, max_features, num_down_blocks - i),
                      hourglass_width(block_expansion, max_features, num_down_blocks - i - 1))
            for i in range(num_down_blocks))
        self.bottleneck = nn.Sequential()
        bottleneck_width = hourglass_width(block_expansion, max_features, num_down_blocks)
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(bottleneck_width, kernel_size=(3, 3), padding=(1, 1)))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.estimate_occlusion_map = estimate_occlusion_map
        self.num_channels = num_channels
        self.align_corners = align_corners

    def deform_input(self, inp, deformation):
        """Sample ``inp`` (B, C, H, W) at ``deformation`` (B, h, w, 2), resized bilinearly to H×W if needed."""
        _, h_old, w_old, _ = deformation.shape
        _, _, h, w = inp.shape
        if (h_old, w_old) != (h, w):
            deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                        align_corners=self.align_corners).permute(0, 2, 3, 1)
        return F.grid_sample(inp, deformation, align_corners=self.align_corners)

    def encode_source(self, source_image):
        """Source features before warping. (B, C, H, W) → (B, C', H/2^n, W/2^n)."""
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        return out

    def decode(self, source_image, source_features, kp_driving, kp_source):
        """Everything after the source encoder. Batch sizes of the source tensors may be 1 and
        broadcast to the keypoints' batch (many driving frames, one target face)."""
        batch = kp_driving["value"].shape[0]
        if source_image.shape[0] != batch:
            source_image = source_image.expand(batch, -1, -1, -1)
            source_features = source_features.expand(batch, -1, -1, -1)
            kp_source = {k: v.expand(batch, *v.shape[1:]) for k, v in kp_source.items()}
        out = source_features
        output = {}
        if self.dense_motion_network is not None:
            motion = self.dense_motion_network(source_image=source_image, kp_driving=kp_driving,
                                               kp_source=kp_source)
            output["mask"] = motion["mask"]
            output["sparse_deformed"] = motion["sparse_deformed"]
            output["deformation"] = motion["deformation"]
            out = self.deform_input(out, motion["deformation"])
            occlusion_map = motion.get("occlusion_map")
            if occlusion_map is not None:
                output["occlusion_map"] = occlusion_map
                if out.shape[2:] != occlusion_map.shape[2:]:
                    occlusion_map = F.interpolate(occlusion_map, size=out.shape[2:], mode="bilinear",
                                                  align_corners=self.align_corners)
                out = out * occlusion_map
            output["deformed"] = self.deform_input(source_image, motion["deformation"])
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        output["prediction"] = torch.sigmoid(self.final(out))
        return output

    def forward(self, source_image, kp_driving, kp_source):
        return self.decode(source_image, self.encode_source(source_image), kp_driving, kp_source)
