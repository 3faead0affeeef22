"""MRAA's generator: a Johnson-style encoder / bottleneck / decoder whose features are warped by the
pixelwise flow and blended by the occlusion map.

With ``skips`` every decoder level first takes the warped encoder feature of its size, blended with
the decoder's own feature by the occlusion map (occluded parts keep the decoder's), and the final
sigmoid image is blended likewise with the warped source image. Flows and occlusion maps are resized
bilinearly and sampled with ``align_corners=False`` (the original's defaults).

``forward`` is ``decode(source_image, encode(source_image), ...)``: animation encodes the target
face once and decodes batches of driving frames against it (a batch-1 encoding is expanded to the
driving batch). The split is exact in eval mode; in train mode the encoder's BatchNorm sees the
encoded batch, as in ``forward``.
"""
import torch
import torch.nn.functional as F
from torch import nn

from modules.mraa.pixelwise_flow_predictor import PixelwiseFlowPredictor
from modules.mraa.util import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d

_REGION_KEYS = ("shift", "affine", "covar")


def _expand_batch(tensor, n):
    return tensor.expand(n, *tensor.shape[1:]) if tensor is not None and tensor.shape[0] == 1 and n > 1 else tensor


def deform_input(inp, optical_flow):
    """Sample ``inp`` (B, C, H, W) at the flow (B, h, w, 2), resized bilinearly to (H, W) first. (B, C, H, W)."""
    _, h_old, w_old, _ = optical_flow.shape
    _, _, h, w = inp.shape
    if (h_old, w_old) != (h, w):
        optical_flow = F.interpolate(optical_flow.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                     align_corners=False).permute(0, 2, 3, 1)
    return F.grid_sample(inp, optical_flow, align_corners=False)


class Generator(nn.Module):
    """forward(source_image (B, C, H, W), driving_region_params, source_region_params, bg_params=None)
    → {'prediction' (B, C, H, W)[, 'deformed' (B, C, H, W), 'occlusion_map' (B, 1, h, w)]}."""

    def __init__(self, num_channels, num_regions, block_expansion, max_features, num_down_blocks,
                 num_bottleneck_blocks, pixelwise_flow_predictor_params=None, skips=False, revert_axis_swap=True):
        super().__init__()
        if pixelwise_flow_predictor_params is not None:
            self.pixelwise_flow_predictor = PixelwiseFlowPredictor(
                num_regions=num_regions, num_channels=num_channels, revert_axis_swap=revert_axis_swap,
                **pixelwise_flow_predictor_params)
        else:
            self.pixelwise_flow_predictor = None

        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))
        width = [min(max_features, block_expansion * (2 ** i)) for i in range(num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(
            DownBlock2d(width[i], width[i + 1], kernel_size=(3, 3), padding=(1, 1)) for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(width[num_down_blocks - i], width[num_down_blocks - i - 1], kernel_size=(3, 3), padding=(1, 1))
            for i in range(num_down_blocks))
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module("r" + str(i), ResBlock2d(width[-1], kernel_size=(3, 3), padding=(1, 1)))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.num_channels = num_channels
        self.skips = skips

    deform_input = staticmethod(deform_input)

    def apply_optical(self, input_previous=None, input_skip=None, motion_params=None):
        """Warp ``input_skip`` by the flow; blend with ``input_previous`` by the occlusion map
        (occluded → previous; without a previous, occluded → 0). No motion: previous, else skip."""
        if motion_params is None:
            return input_previous if input_previous is not None else input_skip
        input_skip = deform_input(input_skip, motion_params["optical_flow"])
        occlusion_map = motion_params.get("occlusion_map")
        if occlusion_map is None:
            return input_skip
        if occlusion_map.shape[2:] != input_skip.shape[2:]:
            occlusion_map = F.interpolate(occlusion_map, size=input_skip.shape[2:], mode="bilinear",
                                          align_corners=False)
        if input_previous is not None:
            return input_skip * occlusion_map + input_previous * (1 - occlusion_map)
        return input_skip * occlusion_map

    def encode(self, source_image):
        """Everything that depends on the source only: {'skips': [first (B, E, H, W), then each down
        block's output], 'flow_source': the flow predictor's downsampled source (B, C, h, w) if any}."""
        out = self.first(source_image)
        skips = [out]
        for block in self.down_blocks:
            out = block(out)
            skips.append(out)
        encoded = {"skips": skips}
        if self.pixelwise_flow_predictor is not None:
            encoded["flow_source"] = self.pixelwise_flow_predictor.downsample(source_image)
        return encoded

    def decode(self, source_image, encoded, driving_region_params, source_region_params, bg_params=None):
        """Render driving frames from an :meth:`encode` of ``source_image``. Source image, encoding and
        source params may have batch 1 while the driving params have batch N: they are expanded."""
        n = driving_region_params["shift"].shape[0]
        source_image = _expand_batch(source_image, n)
        skips = [_expand_batch(s, n) for s in encoded["skips"]]
        source_region_params = {k: _expand_batch(v, n) if k in _REGION_KEYS else v
                                for k, v in source_region_params.items()}
        bg_params = _expand_batch(bg_params, n)

        output = {}
        motion_params = None
        if self.pixelwise_flow_predictor is not None:
            motion_params = self.pixelwise_flow_predictor.predict(
                _expand_batch(encoded["flow_source"], n), driving_region_params, source_region_params,
                bg_params=bg_params)
            output["deformed"] = deform_input(source_image, motion_params["optical_flow"])
            if "occlusion_map" in motion_params:
                output["occlusion_map"] = motion_params["occlusion_map"]

        out = self.apply_optical(input_previous=None, input_skip=skips[-1], motion_params=motion_params)
        out = self.bottleneck(out)
        for i, block in enumerate(self.up_blocks):
            if self.skips:
                out = self.apply_optical(input_skip=skips[-(i + 1)], input_previous=out, motion_params=motion_params)
            out = block(out)
        if self.skips:
            out = self.apply_optical(input_skip=skips[0], input_previous=out, motion_params=motion_params)
        out = torch.sigmoid(self.final(out))
        if self.skips:
            out = self.apply_optical(input_skip=source_image, input_previous=out, motion_params=motion_params)
        output["prediction"] = out
        return output

    def forward(self, source_image, driving_region_params, source_region_params, bg_params=None):
        return self.decode(source_image, self.encode(source_image), driving_region_params, source_region_params,
                           bg_params=bg_params)
