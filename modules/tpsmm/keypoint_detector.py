"""TPSMM keypoint detector: a torchvision ResNet-18 regressing K·5 keypoints (5 per TPS transform).

As the original, the ResNet-18 is randomly initialised (``pretrained=False``; built here with
``weights=None``, which downloads nothing and raises no deprecation warning) and keeps BatchNorm.
``resnet_width`` other than 64 narrows it (a project addition, modules/tpsmm/resnet.py).
"""
import torch
from torch import nn

from modules.tpsmm.resnet import PUBLISHED_WIDTH, resnet18


class KPDetector(nn.Module):
    """forward(image (B, 3, H, W)) → {'fg_kp': (B, num_tps·5, 2)} in (-1, 1): sigmoid(fc)·2 − 1.

    Extra keywords (the config's other ``common_params``) are accepted and ignored, as the original.
    """

    def __init__(self, num_tps, num_kps=5, resnet_width=PUBLISHED_WIDTH, **kwargs):
        super().__init__()
        self.num_tps = num_tps
        self.num_kps = num_kps  # points per TPS: 5 (TPSMM), 8 (TPSMM-ME)
        self.fg_encoder = resnet18(num_tps * num_kps * 2, width=resnet_width)

    def forward(self, image):
        fg_kp = torch.sigmoid(self.fg_encoder(image)) * 2 - 1
        return {"fg_kp": fg_kp.view(fg_kp.shape[0], self.num_tps * self.num_kps, -1)}


class LandmarkKeypoints(nn.Module):
    """FMEG-TPSRAU's keypoint "detector": no weights, the TPS keypoints are given landmarks.

    forward(points (B, num_tps·5, 2) pixels (x, y), frame_size (H, W)) → {'fg_kp': (B, num_tps·5, 2)}.
    mode 'normalized': x → 2·x/(W − 1) − 1 (pixel centres, as make_coordinate_grid);
    'published': the original's sigmoid(points)·2 − 1 applied to the pixel values themselves (every
    landmark lands at ≈ (1, 1), so its TPS warps are degenerate; kept to reproduce it).
    """

    def __init__(self, num_tps, mode="normalized"):
        super().__init__()
        if mode not in ("normalized", "published"):
            raise ValueError(f"landmark keypoint mode must be 'normalized' or 'published', got {mode!r}")
        self.num_tps = num_tps
        self.mode = mode

    def forward(self, points, frame_size):
        points = points.float()
        if self.mode == "published":
            kp = torch.sigmoid(points) * 2 - 1
        else:
            h, w = frame_size
            kp = points / points.new_tensor([w - 1, h - 1]) * 2 - 1
        return {"fg_kp": kp.reshape(kp.shape[0], self.num_tps * 5, 2)}
