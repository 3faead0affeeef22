"""TPSMM background motion: a ResNet-18 on the source and driving frames stacked (6 channels)
regressing one affine transform. The fc starts at the identity ([1, 0, 0, 0, 1, 0]), as the original."""
import torch
from torch import nn
from torchvision import models


class BGMotionPredictor(nn.Module):
    """forward(source (B, 3, H, W), driving (B, 3, H, W)) → (B, 3, 3) affine, last row [0, 0, 1].

    The matrix maps driving-frame coordinates (x, y, 1) to source-frame ones (a sampling grid).
    """

    def __init__(self):
        super().__init__()
        self.bg_encoder = models.resnet18(weights=None)
        self.bg_encoder.conv1 = nn.Conv2d(6, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
        self.bg_encoder.fc = nn.Linear(self.bg_encoder.fc.in_features, 6)
        with torch.no_grad():
            self.bg_encoder.fc.weight.zero_()
            self.bg_encoder.fc.bias.copy_(torch.tensor([1, 0, 0, 0, 1, 0], dtype=torch.float))

    def forward(self, source_image, driving_image):
        bs = source_image.shape[0]
        prediction = self.bg_encoder(torch.cat([source_image, driving_image], dim=1)).view(bs, 2, 3)
        last_row = torch.tensor([0, 0, 1], dtype=prediction.dtype, device=prediction.device)
        return torch.cat([prediction, last_row.expand(bs, 1, 3)], dim=1)
