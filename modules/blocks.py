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


def scale_key(scale):
    """Module-dict key of a pyramid scale: '.' is not allowed in module names (0.5 → '0-5')."""
    return str(scale).replace(".", "-")


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


def band_matrix(profile, size, stride, pad):
    """1-D blur-and-subsample as a matrix. profile (k,) → (ceil(size/stride), size).

    Row i holds the kernel at input positions i·stride − pad … i·stride − pad + k − 1, i.e. output i of
    ``conv1d(zero_pad(x, pad), profile)[::stride]``; taps that fall on the zero padding are dropped.
    """
    k = profile.shape[0]
    rows = torch.arange((size + 2 * pad - k) // stride + 1, device=profile.device)[:, None]
    cols = rows * stride - pad + torch.arange(k, device=profile.device)[None, :]
    valid = (cols >= 0) & (cols < size)
    matrix = profile.new_zeros(rows.shape[0], size)
    matrix[rows.expand_as(cols)[valid], cols[valid]] = profile.expand(rows.shape[0], k)[valid]
    return matrix


def separable_profile(kernel, rtol=1e-5, atol=1e-8):
    """The 1-D profile ``a`` of a separable, symmetric 2-D kernel ``a aᵀ`` with Σa = 1 (the anti-alias
    Gaussian), or None when (k, k) ``kernel`` is not of that form."""
    profile = kernel.sum(dim=1)  # row sums of a aᵀ are a·Σa = a
    if torch.allclose(profile[:, None] * profile[None, :], kernel, rtol=rtol, atol=atol):
        return profile
    return None


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then subsampling by 1/scale. (B, C, H, W) → (B, C, ⌈H·scale⌉, ⌈W·scale⌉).

    The published module convolves the whole frame with the 2-D kernel and then keeps every
    (1/scale)-th pixel. Two faster ways to get the same numbers:

    - default: a strided depthwise convolution that computes only the kept pixels (the same sums in
      the same order, so the outputs equal the published ones);
    - ``separable=True``: the Gaussian is separable, so ``out = B_h · x · B_wᵀ`` with the band
      matrices of :func:`band_matrix` — two small matrix products, far faster than a depthwise
      convolution on the CPU, above all in the backward pass. Equal to the published computation up to
      float rounding (closer to the exact float64 result than the convolution); the training losses'
      image pyramid uses it. A loaded kernel that is not separable falls back to the convolution.

    The 2-D kernel stays the registered buffer ``weight`` (checkpoint format).
    """

    def __init__(self, channels, scale, separable=False):
        super().__init__()
        self.scale = scale
        self.groups = channels
        self.separable = separable
        if scale == 1:
            # The published module still registers a kernel here; keep the buffer for checkpoint parity.
            kernel = torch.ones(1, 1)
        else:
            kernel = gaussian_blur_kernel(scale)
        self.pad = kernel.shape[0] // 2
        self.stride = max(1, int(round(1 / scale)))
        self.register_buffer("weight", kernel[None, None].repeat(channels, 1, 1, 1))
        self.register_buffer("profile", torch.zeros(0), persistent=False)
        self._update_profile()
        self.register_load_state_dict_post_hook(lambda module, _: module._update_profile())

    def _update_profile(self):
        """The 1-D profile of the current kernel for the separable path (empty: not separable)."""
        kernel = self.weight.detach()
        same = bool((kernel == kernel[:1]).all())
        profile = separable_profile(kernel[0, 0].double()) if same else None
        self.profile = (profile.to(kernel.dtype) if profile is not None
                        else torch.zeros(0, dtype=kernel.dtype, device=kernel.device))

    def forward(self, x):
        if self.scale == 1.0:
            return x
        if self.separable and self.profile.numel() > 0:
            profile = self.profile.to(x.dtype)
            rows = band_matrix(profile, x.shape[2], self.stride, self.pad)
            cols = band_matrix(profile, x.shape[3], self.stride, self.pad)
            return torch.matmul(rows, torch.matmul(x, cols.t()))
        out = F.pad(x, (self.pad, self.pad, self.pad, self.pad))
        return F.conv2d(out, weight=self.weight.to(x.dtype), groups=self.groups, stride=self.stride)

    def extra_repr(self):
        return (f"channels={self.groups}, scale={self.scale}, kernel={self.weight.shape[-1]}"
                + (", separable" if self.separable else ""))
