"""MRAA's background motion: one 3×3 transform per frame pair from an encoder on [source, driving].

``bg_type`` 'zero' is the identity (no parameters), 'shift' a translation, 'affine' a 2×3 affine and
'perspective' a homography with the last entry fixed to 1. The fc layer starts at the identity.
"""
import torch
from torch import nn

from modules.mraa.util import Encoder

BG_TYPES = ("zero", "shift", "affine", "perspective")
# Width of the fc output and its identity initialisation for each type.
_FC_INIT = {"shift": (0.0, 0.0), "affine": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
            "perspective": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)}


def bg_matrix(prediction, bg_type, batch_size, like):
    """fc output (B, n) → (B, 3, 3) transform; ``prediction`` None gives the identity."""
    out = torch.eye(3, dtype=like.dtype, device=like.device).unsqueeze(0).repeat(batch_size, 1, 1)
    if prediction is None:
        return out
    if bg_type == "shift":
        out[:, :2, 2] = prediction
    elif bg_type == "affine":
        out[:, :2, :] = prediction.view(batch_size, 2, 3)
    elif bg_type == "perspective":
        out[:, :2, :] = prediction[:, :6].view(batch_size, 2, 3)
        out[:, 2, :2] = prediction[:, 6:].view(batch_size, 2)
    return out


class BGMotionPredictor(nn.Module):
    """forward(source_image, driving_image (B, C, H, W)) → (B, 3, 3) background transform (homogeneous,
    applied to driving-frame coordinates to get source-frame coordinates)."""

    def __init__(self, block_expansion, num_channels, max_features, num_blocks, bg_type="zero"):
        super().__init__()
        if bg_type not in BG_TYPES:
            raise ValueError(f"bg_type must be one of {BG_TYPES}, got {bg_type!r}")
        self.bg_type = bg_type
        if bg_type != "zero":
            self.encoder = Encoder(block_expansion, in_features=num_channels * 2, max_features=max_features,
                                   num_blocks=num_blocks)
            in_features = min(max_features, block_expansion * (2 ** num_blocks))
            init = _FC_INIT[bg_type]
            self.fc = nn.Linear(in_features, len(init))
            with torch.no_grad():
                self.fc.weight.zero_()
                self.fc.bias.copy_(torch.tensor(init))

    def forward(self, source_image, driving_image):
        prediction = None
        if self.bg_type != "zero":
            features = self.encoder(torch.cat([source_image, driving_image], dim=1))[-1]
            prediction = self.fc(features.mean(dim=(2, 3)))
        return bg_matrix(prediction, self.bg_type, source_image.shape[0], source_image)
