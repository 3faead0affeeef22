"""Keypoint detector: prior positions (Facial-Prior FOMM) or learned positions (vanilla FOMM), with
learned local jacobians in both modes."""
import torch
import torch.nn.functional as F
from torch import nn

from modules.blocks import AntiAliasInterpolation2d, Hourglass
from modules.facial_prior import NUM_PRIOR_KP, REGION_MASK_SIGMA, region_mask
from modules.geometry import make_coordinate_grid, pixels_to_normalized

KEYPOINT_MODES = ("prior", "learned")


def resolve_keypoint_mode(num_kp, keypoint_mode=None):
    """The keypoint mode a config asks for. Published configs carry no mode: 18 keypoints are the
    facial prior's, any other count is vanilla FOMM."""
    if keypoint_mode is None:
        return "prior" if num_kp == NUM_PRIOR_KP else "learned"
    if keypoint_mode not in KEYPOINT_MODES:
        raise ValueError(f"keypoint_mode must be one of {KEYPOINT_MODES}, got {keypoint_mode!r}")
    return keypoint_mode


class KPDetector(nn.Module):
    """Keypoints and their local jacobians.

    Prior mode, ``forward(frame, prior)``: frame (B, C, H, W) in [0, 1], prior (B, K, 2) pixels (x, y)
    of that frame. The network sees the downsampled frame plus the prior's region mask as one more
    channel; keypoint *values* are the prior normalised to [-1, 1], only the jacobians are learned.
    Learned mode, ``forward(frame)``: values are heatmap-weighted mean coordinates (FOMM).
    Returns {'value': (B, K, 2), 'jacobian': (B, K, 2, 2)} (no jacobian when estimate_jacobian is off).
    """

    def __init__(self, block_expansion, num_kp, num_channels, max_features, num_blocks, temperature,
                 estimate_jacobian=False, scale_factor=1, single_jacobian_map=False, pad=0,
                 keypoint_mode=None, mask_sigma=REGION_MASK_SIGMA, align_corners=False):
        # align_corners is accepted with the other common_params; the detector does no resampling it affects.
        super().__init__()
        self.mode = resolve_keypoint_mode(num_kp, keypoint_mode)
        self.num_kp = num_kp
        self.mask_sigma = mask_sigma
        in_features = num_channels + (1 if self.mode == "prior" else 0)
        self.predictor = Hourglass(block_expansion, in_features=in_features, max_features=max_features,
                                   num_blocks=num_blocks)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=(7, 7), padding=pad)
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * self.num_jacobian_maps,
                                      kernel_size=(7, 7), padding=pad)
            # Start from identity jacobians: zero weights, bias (1, 0, 0, 1) per map.
            self.jacobian.weight.data.zero_()
            self.jacobian.bias.data.copy_(torch.tensor([1, 0, 0, 1] * self.num_jacobian_maps, dtype=torch.float))
        else:
            self.jacobian = None
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def network_input(self, frame, prior=None):
        """What the hourglass sees: (B, C [+1 mask], h, w)."""
        x = self.down(frame) if self.scale_factor != 1 else frame
        if self.mode == "prior":
            mask = region_mask(prior, frame.shape[2:], x.shape[2:], self.mask_sigma).to(x.dtype)
            x = torch.cat([x, mask], dim=1)
        return x

    def forward(self, frame, prior=None):
        if self.mode == "prior" and prior is None:
            raise ValueError("this keypoint detector uses the facial prior: call kp_detector(frame, prior) "
                             f"with prior (B, {NUM_PRIOR_KP}, 2) in pixels")
        if self.mode == "prior" and prior.shape[1] != self.num_kp:
            raise ValueError(f"prior has {prior.shape[1]} points, the detector expects {self.num_kp}")
        feature_map = self.predictor(self.network_input(frame, prior))
        logits = self.kp(feature_map)
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.view(b, k, -1) / self.temperature, dim=2).view(b, k, h, w)
        if self.mode == "prior":
            value = pixels_to_normalized(prior.to(frame.dtype), frame.shape[2:])
        else:
            grid = make_coordinate_grid((h, w), dtype=heatmap.dtype, device=heatmap.device)
            value = (heatmap.unsqueeze(-1) * grid).sum(dim=(2, 3))
        out = {"value": value}
        if self.jacobian is not None:
            jacobian_map = self.jacobian(feature_map).reshape(b, self.num_jacobian_maps, 4, h, w)
            jacobian = (heatmap.unsqueeze(2) * jacobian_map).view(b, k, 4, -1).sum(dim=-1)
            out["jacobian"] = jacobian.view(b, k, 2, 2)
        return out
