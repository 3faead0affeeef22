"""TPSMM's own geometry and building blocks (the original's ``modules/util.py``).

They are not ``modules/blocks.py``: TPSMM normalises with ``InstanceNorm2d(affine=True)`` instead of
BatchNorm, its Hourglass decoder returns every level (``mode=1``) and reports an ``out_channels`` list,
and its anti-alias downsampling is a full-resolution blur followed by nearest ``F.interpolate``.
Module and attribute names are the original's, so its checkpoints load with ``strict=True``.

Coordinates are normalised to [-1, 1] (x right, y down) with both endpoints on pixel centres, which is
why every TPSMM ``grid_sample`` passes ``align_corners=True``.
"""
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TPS", "make_coordinate_grid", "kp2gaussian", "to_homogeneous", "from_homogeneous",
           "ResBlock2d", "UpBlock2d", "DownBlock2d", "SameBlock2d", "Encoder", "Decoder", "Hourglass",
           "AntiAliasInterpolation2d"]


def _resolve_dtype(type):
    """The original passes tensor type strings ('torch.FloatTensor'); accept those, dtypes or None."""
    if type is None:
        return torch.get_default_dtype()
    if isinstance(type, torch.dtype):
        return type
    return torch.empty(0).type(type.replace("cuda.", "")).dtype


def make_coordinate_grid(spatial_size, type=None, device=None):
    """(H, W, 2) grid of (x, y) in [-1, 1], endpoints included: x = 2·i/(W−1) − 1.

    ``type``: a dtype (or the original's tensor type string); ``device``: where to build it.
    """
    h, w = spatial_size
    dtype = _resolve_dtype(type)
    x = torch.arange(w, device=device).to(dtype)
    y = torch.arange(h, device=device).to(dtype)
    x = 2 * (x / (w - 1)) - 1
    y = 2 * (y / (h - 1)) - 1
    xx = x.view(1, -1).expand(h, w)
    yy = y.view(-1, 1).expand(h, w)
    return torch.stack([xx, yy], dim=2)


def kp2gaussian(kp, spatial_size, kp_variance):
    """Unnormalised gaussian around each keypoint. kp (..., N, 2) → (..., N, H, W),
    exp(−½·|z − p|² / kp_variance)."""
    grid = make_coordinate_grid(spatial_size, kp.dtype, kp.device)
    mean_sub = grid - kp[..., None, None, :]
    return torch.exp(-0.5 * (mean_sub ** 2).sum(-1) / kp_variance)


def to_homogeneous(coordinates):
    """(..., 2) → (..., 3) with a trailing 1."""
    return torch.cat([coordinates, coordinates.new_ones(coordinates.shape[:-1] + (1,))], dim=-1)


def from_homogeneous(coordinates):
    """(..., 3) → (..., 2), dividing by the last component."""
    return coordinates[..., :2] / coordinates[..., 2:3]


def tps_kernel(squared_distance):
    """TPS radial basis on squared distances r²: U = r²·log(r² + 1e-9) (the original's kernel)."""
    return squared_distance * torch.log(squared_distance + 1e-9)


def solve_tps(kp_1, kp_2, ridge=0.01):
    """Affine + TPS weights mapping ``kp_1`` onto ``kp_2`` for each of the K transforms.

    kp_1, kp_2: (B, K, N, 2) → theta (B, K, 2, 3), control_params (B, K, N, 2).
    Solves ``inverse(L + ridge·I) @ [kp_2; 0]`` with L = [[U(|p_i − p_j|²), P], [Pᵀ, 0]], P = [p, 1].
    The original adds the ridge to the whole (N+3)² matrix, affine block included, and inverts
    explicitly (kept: a ``solve`` rounds differently and these grids amplify rounding).
    """
    bs, gs, n, _ = kp_1.shape
    # The original squares a 2-norm rather than summing squares; the rounding differs, keep its order.
    k = torch.norm(kp_1[:, :, :, None] - kp_1[:, :, None, :], dim=4, p=2) ** 2
    k = tps_kernel(k)
    kp_1p = torch.cat([kp_1, kp_1.new_ones(bs, gs, n, 1)], 3)
    p = torch.cat([kp_1p, kp_1.new_zeros(bs, gs, 3, 3)], 2)
    lhs = torch.cat([torch.cat([k, kp_1p.permute(0, 1, 3, 2)], 2), p], 3)
    rhs = torch.cat([kp_2, kp_2.new_zeros(bs, gs, 3, 2)], 2)
    lhs = lhs + torch.eye(n + 3, dtype=lhs.dtype, device=lhs.device) * ridge
    param = torch.matmul(torch.inverse(lhs), rhs)
    return param[:, :, n:, :].permute(0, 1, 3, 2), param[:, :, :n, :]


class TPS:
    """Thin-plate-spline warps (not a Module: parameters are plain tensors, as in the original).

    mode 'kp' (Eq. 2 of the paper): ``TPS('kp', bs, kp_1=(B, K, 5, 2), kp_2=(B, K, 5, 2))`` fits K
    warps that send driving keypoints ``kp_1`` to source keypoints ``kp_2``; attributes ``theta``
    (B, K, 2, 3), ``control_points`` = kp_1, ``control_params`` (B, K, 5, 2), ``gs`` = K.

    mode 'random' (equivariance loss): ``TPS('random', bs, sigma_affine=, sigma_tps=, points_tps=)``
    draws ``theta`` (B, 2, 3) ~ I + N(0, σ_affine²) and ``control_params`` (B, 1, P²) ~ N(0, σ_tps²)
    on a P×P control grid ``control_points`` (1, P, P, 2), from the global generator (or
    ``generator``) on CPU as the original, then moved to ``device``. Replace ``theta`` /
    ``control_params`` afterwards for fixed warps.
    """

    def __init__(self, mode, bs, generator=None, device=None, **kwargs):
        self.bs = bs
        self.mode = mode
        if mode == "random":
            noise = torch.normal(mean=0, std=kwargs["sigma_affine"] * torch.ones([bs, 2, 3]), generator=generator)
            self.theta = (noise + torch.eye(2, 3).view(1, 2, 3)).to(device)
            points = kwargs["points_tps"]
            self.control_points = make_coordinate_grid((points, points), noise.dtype, device).unsqueeze(0)
            self.control_params = torch.normal(
                mean=0, std=kwargs["sigma_tps"] * torch.ones([bs, 1, points ** 2]), generator=generator).to(device)
        elif mode == "kp":
            kp_1, kp_2 = kwargs["kp_1"], kwargs["kp_2"]
            self.gs = kp_1.shape[1]
            self.theta, self.control_params = solve_tps(kp_1, kp_2)
            self.control_points = kp_1
        else:
            raise ValueError(f"TPS mode must be 'kp' or 'random', got {mode!r}")

    def transform_frame(self, frame):
        """Sampling grid of the warp for ``frame`` (B, C, H, W): (B, K, H, W, 2) in 'kp' mode,
        (B, H, W, 2) in 'random' mode."""
        h, w = frame.shape[2:]
        grid = make_coordinate_grid((h, w), frame.dtype, frame.device).reshape(1, h * w, 2)
        shape = [self.bs, h, w, 2]
        if self.mode == "kp":
            shape.insert(1, self.gs)
        return self.warp_coordinates(grid).view(*shape)

    def warp_coordinates(self, coordinates):
        """Warp points. 'kp': (B or 1, N, 2) → (B, K, N, 2); 'random': (B or 1, N, 2) → (B, N, 2)."""
        theta = self.theta.to(coordinates)
        control_points = self.control_points.to(coordinates)
        control_params = self.control_params.to(coordinates)
        if self.mode == "kp":
            transformed = torch.matmul(theta[:, :, :, :2], coordinates.permute(0, 2, 1)) + theta[:, :, :, 2:]
            distances = (coordinates.view(coordinates.shape[0], 1, 1, -1, 2)
                         - control_points.view(self.bs, control_points.shape[1], -1, 1, 2))
            result = tps_kernel((distances ** 2).sum(-1))
            result = torch.matmul(result.permute(0, 1, 3, 2), control_params)
            return transformed.permute(0, 1, 3, 2) + result
        if self.mode == "random":
            theta = theta.unsqueeze(1)
            transformed = (torch.matmul(theta[:, :, :, :2], coordinates.unsqueeze(-1)) + theta[:, :, :, 2:]).squeeze(-1)
            distances = coordinates.view(coordinates.shape[0], -1, 1, 2) - control_points.view(1, 1, -1, 2)
            result = tps_kernel((distances ** 2).sum(-1)) * control_params
            result = result.sum(dim=2).view(self.bs, coordinates.shape[1], 1)
            return transformed + result
        raise ValueError(f"TPS mode must be 'kp' or 'random', got {self.mode!r}")


class ResBlock2d(nn.Module):
    """Pre-activation residual block: IN → ReLU → conv → IN → ReLU → conv, + input. Shape kept."""

    def __init__(self, in_features, kernel_size, padding):
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.norm1 = nn.InstanceNorm2d(in_features, affine=True)
        self.norm2 = nn.InstanceNorm2d(in_features, affine=True)

    def forward(self, x):
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class UpBlock2d(nn.Module):
    """nearest ×2 → conv → IN → ReLU. (B, C_in, H, W) → (B, C_out, 2H, 2W)."""

    def __init__(self, in_features, out_features, kernel_size=3, padding=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups)
        self.norm = nn.InstanceNorm2d(out_features, affine=True)

    def forward(self, x):
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=2))))


class DownBlock2d(nn.Module):
    """conv → IN → ReLU → 2×2 average pool. (B, C_in, H, W) → (B, C_out, H/2, W/2)."""

    def __init__(self, in_features, out_features, kernel_size=3, padding=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups)
        self.norm = nn.InstanceNorm2d(out_features, affine=True)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x):
        return self.pool(F.relu(self.norm(self.conv(x))))


class SameBlock2d(nn.Module):
    """conv → IN → ReLU, spatial size kept. (B, C_in, H, W) → (B, C_out, H, W)."""

    def __init__(self, in_features, out_features, groups=1, kernel_size=3, padding=1):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups)
        self.norm = nn.InstanceNorm2d(out_features, affine=True)

    def forward(self, x):
        return F.relu(self.norm(self.conv(x)))


class Encoder(nn.Module):
    """Hourglass encoder. forward(x) → [x, down_1(x), ..., down_n(...)] (n+1 maps)."""

    def __init__(self, block_expansion, in_features, num_blocks=3, max_features=256):
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(in_features if i == 0 else min(max_features, block_expansion * (2 ** i)),
                        min(max_features, block_expansion * (2 ** (i + 1))), kernel_size=3, padding=1)
            for i in range(num_blocks))

    def forward(self, x):
        outs = [x]
        for down_block in self.down_blocks:
            outs.append(down_block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder. forward(encoder maps, mode) → the last level (mode 0) or every level, coarse
    to fine, each the upsampled features concatenated with the skip (mode 1).

    ``out_channels``: the bottom width, then the channel count of each returned level (the original's
    list, which DenseMotionNetwork indexes from the end).
    """

    def __init__(self, block_expansion, in_features, num_blocks=3, max_features=256):
        super().__init__()
        up_blocks = []
        self.out_channels = []
        for i in range(num_blocks)[::-1]:
            in_filters = (1 if i == num_blocks - 1 else 2) * min(max_features, block_expansion * (2 ** (i + 1)))
            self.out_channels.append(in_filters)
            out_filters = min(max_features, block_expansion * (2 ** i))
            up_blocks.append(UpBlock2d(in_filters, out_filters, kernel_size=3, padding=1))
        self.up_blocks = nn.ModuleList(up_blocks)
        self.out_channels.append(block_expansion + in_features)

    def forward(self, x, mode=0):
        skips = list(x)  # the original pops from the caller's list; do not consume it
        out = skips.pop()
        outs = []
        for up_block in self.up_blocks:
            out = torch.cat([up_block(out), skips.pop()], dim=1)
            outs.append(out)
        return out if mode == 0 else outs


class Hourglass(nn.Module):
    """U-Net: Encoder then Decoder. forward(x, mode) as :class:`Decoder`."""

    def __init__(self, block_expansion, in_features, num_blocks=3, max_features=256):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_channels = self.decoder.out_channels

    def forward(self, x, mode=0):
        return self.decoder(self.encoder(x), mode)


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then nearest downsampling by ``scale``. (B, C, H, W) → (B, C, ⌊H·s⌋, ⌊W·s⌋).

    As the original: σ = (1/s − 1)/2, size 2·round(4σ)+1, zero padding, a depthwise convolution over
    the whole frame, then ``F.interpolate(scale_factor=s)`` (nearest: every (1/s)-th pixel). The
    kernel is the buffer ``weight`` (checkpoint key ``down.weight``). At scale 1 the original's kernel
    is 0/0 = NaN but never used; a 1×1 identity kernel is registered instead.
    """

    def __init__(self, channels, scale):
        super().__init__()
        if scale == 1:
            kernel = torch.ones(1, 1)
        else:
            sigma = (1 / scale - 1) / 2
            size = 2 * round(sigma * 4) + 1
            coords = torch.arange(size, dtype=torch.float32)
            mean = (size - 1) / 2
            # The original multiplies two 1-D factors on a meshgrid; the product is the same.
            profile = torch.exp(-(coords - mean) ** 2 / (2 * sigma ** 2))
            kernel = profile[:, None] * profile[None, :]
            kernel = kernel / torch.sum(kernel)
        size = kernel.shape[0]
        self.ka = size // 2
        self.kb = self.ka - 1 if size % 2 == 0 else self.ka
        self.register_buffer("weight", kernel.view(1, 1, size, size).repeat(channels, 1, 1, 1))
        self.groups = channels
        self.scale = scale

    def forward(self, input):
        if self.scale == 1.0:
            return input
        out = F.pad(input, (self.ka, self.kb, self.ka, self.kb))
        out = F.conv2d(out, weight=self.weight.to(input.dtype), groups=self.groups)
        return F.interpolate(out, scale_factor=(self.scale, self.scale))
