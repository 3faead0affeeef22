"""TPSMM keypoint detector: a torchvision ResNet-18 regressing K·5 keypoints (5 per TPS transform).

As the original, the ResNet-18 is randomly initialised (``pretrained=False``; built here with
``weights=None``, which downloads nothing and raises no deprecation warning) and keeps BatchNorm.
"""
import torch
from torch import nn
from torchvision import models


class KPDetector(nn.Module):
    """forward(image (B, 3, H, W)) → {'fg_kp': (B, num_tps·5, 2)} in (-1, 1): sigmoid(fc)·2 − 1.

    Extra keywords (the config's other ``common_params``) are accepted and ignored, as the original.
    """

    def __init__(self, num_tps, **kwargs):
        super().__init__()
        self.num_tps = num_tps
        self.fg_encoder = models.resnet18(weights=None)
        self.fg_encoder.fc = nn.Linear(self.fg_encoder.fc.in_features, num_tps * 5 * 2)

    def forward(self, image):
        fg_kp = torch.sigmoid(self.fg_encoder(image)) * 2 - 1
        return {"fg_kp": fg_kp.view(fg_kp.shape[0], self.num_tps * 5, -1)}
