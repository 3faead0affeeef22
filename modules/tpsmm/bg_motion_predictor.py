"""TPSMM background motion: a ResNet-18 on the source and driving frames stacked (6 channels)
regressing one affine transform. The fc starts at the identity ([1, 0, 0, 0, 1, 0]), as the original."""
import torch
from torch import nn

from modules.tpsmm.resnet import PUBLISHED_WIDTH, resnet18


class BGMotionPredictor(nn.Module):
    """forward(source (B, 3, H, W), driving (B, 3, H, W)) → (B, 3, 3) affine, last row [0, 0, 1].

    The matrix maps driving-frame coordinates (x, y, 1) to source-frame ones (a sampling grid).
    ``resnet_width`` other than 64 narrows the ResNet-18 (a project addition, modules/tpsmm/resnet.py).
    """

    def __init__(self, resnet_width=PUBLISHED_WIDTH):
        super().__init__()
        self.bg_encoder = resnet18(6, in_channels=6, width=resnet_width)
        with torch.no_grad():
            self.bg_encoder.fc.weight.zero_()
            self.bg_encoder.fc.bias.copy_(torch.tensor([1, 0, 0, 0, 1, 0], dtype=torch.float))

    def forward(self, source_image, driving_image):
        bs = source_image.shape[0]
        prediction = self.bg_encoder(torch.cat([source_image, driving_image], dim=1)).view(bs, 2, 3)
        last_row = torch.tensor([0, 0, 1], dtype=prediction.dtype, device=prediction.device)
        return torch.cat([prediction, last_row.expand(bs, 1, 3)], dim=1)
