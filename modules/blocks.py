"""Convolutional building blocks shared by the keypoint detector, dense motion network and generator.

Module and attribute names (``conv``, ``norm``, ``down_blocks``, ``up_blocks``, ...) are part of the
checkpoint format of the published implementation and must not change.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


class SameBlock2d(nn.Module):
    """conv → BatchNorm → ReLU, spatial size kept. (B, C_in, H, W) → (B, C_out, H, W)."""

    def __init__(self, in_features, out_features, kernel_size=3, padding=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x):
        return F.relu(self.norm(self.conv(x)))


class DownBlock2d(nn.Module):
    """conv → BatchNorm → ReLU → 2×2 average pool. (B, C_in, H, W) → (B, C_out, H/2, W/2)."""

    def __init__(self, in_features, out_features, kernel_size=3, padding=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups)
        self.norm = nn.BatchNorm2d(out_features, affine=True)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x):
        return self.pool(F.relu(self.norm(self.conv(x))))


class UpBlock2d(nn.Module):
    """nearest ×2 upsampling → conv → BatchNorm → ReLU. (B, C_in, H, W) → (B, C_out, 2H, 2W)."""

    def __init__(self, in_features, out_features, kernel_size=3, padding=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2)
        return F.relu(self.norm(self.conv(x)))


class ResBlock2d(nn.Module):
    """Pre-activation residual block BN → ReLU → conv → BN → ReLU → conv, plus the input. Shape kept."""

    def __init__(self, in_features, kernel_size=3, padding=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(in_features, affine=True)
        self.norm2 = nn.BatchNorm2d(in_features, affine=True)

    def forward(self, x):
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


def hourglass_width(block_expansion, max_features, level):
    """Channels of hourglass level ``level`` (level 0 is the first DownBlock's input width)."""
    return min(max_features, block_expansion * (2 ** level))


class Encoder(nn.Module):
    """Hourglass encoder: returns the input and every DownBlock's output, finest first."""

    def __init__(self, block_expansion, in_features, num_blocks=3, max_features=256):
        super().__init__()
        blocks = []
        for i in range(num_blocks):
            cin = in_features if i == 0 else hourglass_width(block_expansion, max_features, i)
            blocks.append(DownBlock2d(cin, hourglass_width(block_expansion, max_features, i + 1)))
        self.down_blocks = nn.ModuleList(blocks)

    def forward(self, x):
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder: UpBlocks, each output concatenated with the encoder skip of the same size."""

    def __init__(self, block_expansion, in_features, num_blocks=3, max_features=256):
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            # Every level but the coarsest receives [upsampled, skip], hence twice the width.
            multiplier = 1 if i == num_blocks - 1 else 2
            cin = multiplier * hourglass_width(block_expansion, max_features, i + 1)
            blocks.append(UpBlock2d(cin, hourglass_width(block_expansion, max_features, i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, skips):
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class Hourglass(nn.Module):
    """U-Net-like hourglass. (B, in_features, H, W) → (B, block_expansion + in_features, H, W).

    H and W must be divisible by 2**num_blocks.
    """

    def __init__(self, block_expansion, in_features, num_blocks=3, max_features=256):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x):
        return self.decoder(self.encoder(x))


def gaussian_blur_kernel(scale):
    """Normalised 2-D anti-alias kernel for downsampling by ``scale`` (e.g. 0.25). (k, k) float32.

    σ = (1/scale − 1)/2 and size 2·round(4σ)+1, as published (checkpoints also store it as a buffer).
    """
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    profile = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = profile[:, None] * profile[None, :]
    return kernel / kernel.sum()


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then subsampling by 1/scale. (B, C, H, W) → (B, C, H·scale, W·scale)."""

    def __init__(self, channels, scale):
        super().__init__()
        self.scale = scale
        self.groups = channels
        if scale == 1:
            # The published module still registers a kernel here; keep the buffer for checkpoint parity.
            kernel = torch.ones(1, 1)
        else:
            kernel = gaussian_blur_kernel(scale)
        self.pad = kernel.shape[0] // 2
        self.stride = max(1, int(round(1 / scale)))
        self.register_buffer("weight", kernel[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x):
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.pad, self.pad, self.pad, self.pad))
        out = F.conv2d(out, weight=self.weight, groups=self.groups)
        return out[:, :, :: self.stride, :: self.stride]

    def extra_repr(self):
        return f"channels={self.groups}, scale={self.scale}, kernel={self.weight.shape[-1]}"
