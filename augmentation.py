"""Training augmentation: horizontal flip, time flip, FOMM's rotation, resize and crop, and
colour jitter, applied identically to every frame of a sample and, where geometry changes, to its
prior keypoints.

Frames are a float tensor (T, C, H, W) in [0, 1]; priors (T, K, 2) pixels (x, y) of those frames
(pixel centres at integers), or None for the learned-keypoint baseline. Random draws come from
torch's default generator, so DataLoader worker seeding and a checkpointed RNG state make a run
reproducible.

FOMM's geometric keys (augmentation.py of first-order-model, e.g. mgif-256.yaml), in its order
flip → rotation → resize → crop → jitter:

- ``rotation_param: {degrees: d | [lo, hi]}``: one angle uniform in [−d, d] (or [lo, hi]) degrees
  for the sample, counter-clockwise about the frame centre, bilinear, black outside (skimage's
  ``rotate``).
- ``resize_param: {ratio: [lo, hi], interpolation: nearest | bilinear}``: one factor uniform in
  [lo, hi]; new size ``int(W·s) × int(H·s)`` (FOMM truncates); FOMM's default interpolation is nearest.
- ``crop_param: {size: [h, w]}``: edge-padded (centred) up to (h, w) when smaller, then a random
  (h, w) window at one place for every frame. FOMM tests ``h == H`` for the x offset and ``w == W``
  for the y offset (swapped); here each offset is random exactly when its own side is larger (the
  same for square frames).

A resize changes the frame size, so ``resize_param`` needs ``crop_param`` (as FOMM's configs pair
them) to give every sample one size.
"""
import math

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from errors import InputError
from modules.facial_prior import flip_prior_horizontally


class AugmentationError(InputError, ValueError):
    """augmentation_params that cannot be used (bad ranges, resize without crop); names the key."""


def flip_horizontal(frames, priors=None):
    """Mirror the frames left↔right and the prior to match (x → W−1−x, left/right points swapped)."""
    flipped = torch.flip(frames, dims=(-1,))
    if priors is None:
        return flipped, None
    return flipped, flip_prior_horizontally(priors, frames.shape[-1])


def flip_time(frames, priors=None):
    """Play the sample backwards: frame order and per-frame priors reversed together."""
    return torch.flip(frames, dims=(0,)), None if priors is None else torch.flip(priors, dims=(0,))


def rotate(frames, priors, angle):
    """Rotate frames (T, C, H, W) by ``angle`` degrees counter-clockwise about the frame centre, black
    outside; priors (T, K, 2) or None moved with them (same pixel-centre convention)."""
    rotated = TF.rotate(frames, angle, interpolation=InterpolationMode.BILINEAR, fill=0.0)
    if priors is None:
        return rotated, None
    h, w = frames.shape[-2:]
    centre = priors.new_tensor([(w - 1) / 2, (h - 1) / 2])
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # y points down: a counter-clockwise turn on screen is x' = c·x + s·y, y' = −s·x + c·y about the centre.
    rotation = priors.new_tensor([[c, -s], [s, c]])
    return rotated, (priors - centre) @ rotation + centre


def resize(frames, priors, scale, interpolation="nearest"):
    """Scale frames (T, C, H, W) by ``scale`` to int(H·s) × int(W·s) (FOMM's truncation); priors follow
    (pixel centres: x' = (x + ½)·W'/W − ½)."""
    h, w = frames.shape[-2:]
    size = (max(1, int(h * scale)), max(1, int(w * scale)))
    if interpolation == "nearest":
        out = F.interpolate(frames, size=size, mode="nearest-exact")
    else:
        out = F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True)
    if priors is None:
        return out, None
    factor = priors.new_tensor([size[1] / w, size[0] / h])
    return out, (priors + 0.5) * factor - 0.5


def pad_to(frames, priors, size):
    """Edge-pad frames (T, C, H, W) up to at least (h, w), centred as FOMM (extra pixel at the end)."""
    h, w = frames.shape[-2:]
    top, left = max(0, size[0] - h) // 2, max(0, size[1] - w) // 2
    bottom, right = max(0, size[0] - h) - top, max(0, size[1] - w) - left
    if not (top or bottom or left or right):
        return frames, priors
    padded = F.pad(frames, (left, right, top, bottom), mode="replicate")
    return padded, None if priors is None else priors + priors.new_tensor([left, top])


def crop(frames, priors, top, left, size):
    """The (h, w) window at (top, left) of every frame; priors shifted to the window's pixels."""
    out = frames[..., top:top + size[0], left:left + size[1]]
    return out, None if priors is None else priors - priors.new_tensor([left, top])


def random_crop(frames, priors, size):
    """FOMM's RandomCrop: pad to ``size`` if needed, then one random window of ``size`` for every frame."""
    frames, priors = pad_to(frames, priors, size)
    h, w = frames.shape[-2:]
    top = torch.randint(h - size[0] + 1, ()).item()
    left = torch.randint(w - size[1] + 1, ()).item()
    return crop(frames, priors, top, left, size)


def _range(value, key, symmetric):
    """(lo, hi) from a number (symmetric: [−v, v]) or a two-entry list; AugmentationError otherwise."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and symmetric:
        if value < 0:
            raise AugmentationError(f"augmentation_params.{key}: a single number must be at least 0, got {value}")
        return -float(value), float(value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        if value[0] > value[1]:
            raise AugmentationError(f"augmentation_params.{key}: [low, high] needs low ≤ high, got {list(value)}")
        return float(value[0]), float(value[1])
    form = "a number or [low, high]" if symmetric else "[low, high]"
    raise AugmentationError(f"augmentation_params.{key} must be {form}, got {value!r}")


def _uniform(low, high):
    return low + (high - low) * torch.rand(()).item()


def jitter_factors(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
    """Random jitter: [(op, factor)] in random order. Factors in [1−b, 1+b] (≥ 0), hue shift in [−h, h]."""
    ops = []
    for op, amount in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        if amount > 0:
            low = max(0.0, 1.0 - amount)
            ops.append((op, low + (1.0 + amount - low) * torch.rand(()).item()))
    if hue > 0:
        if hue > 0.5:
            raise ValueError(f"hue jitter must be at most 0.5, got {hue}")
        ops.append(("hue", (2 * torch.rand(()).item() - 1) * hue))
    order = torch.randperm(len(ops)).tolist()
    return [ops[i] for i in order]


def apply_jitter(frames, factors):
    """Apply [(op, factor)] to (T, C, H, W) in [0, 1]; the same factors for every frame.

    Saturation and hue need colour: they are skipped for 1-channel frames.
    """
    for op, factor in factors:
        if frames.shape[-3] != 3 and op in ("saturation", "hue"):
            continue
        if op == "brightness":
            frames = TF.adjust_brightness(frames, factor)
        elif op == "contrast":
            frames = TF.adjust_contrast(frames, factor)
        elif op == "saturation":
            frames = TF.adjust_saturation(frames, factor)
        else:
            frames = TF.adjust_hue(frames, factor)
    return frames.clamp(0, 1)


class Augmentation:
    """The config's ``augmentation_params``: flip_param {horizontal_flip, time_flip} (each with
    probability 1/2 when on), rotation_param {degrees}, resize_param {ratio, interpolation},
    crop_param {size} (FOMM's; see the module docstring) and jitter_param {brightness, contrast,
    saturation, hue}. A section that is None or absent is off.

    ``__call__(frames (T, C, H, W), priors (T, K, 2) or None) -> (frames, priors)``.
    """

    def __init__(self, flip_param=None, jitter_param=None, rotation_param=None, resize_param=None, crop_param=None):
        flip_param = flip_param or {}
        self.horizontal_flip = bool(flip_param.get("horizontal_flip", False))
        self.time_flip = bool(flip_param.get("time_flip", False))
        self.jitter = {k: float(v) for k, v in (jitter_param or {}).items() if v}
        self.degrees = _range(rotation_param["degrees"], "rotation_param.degrees", True) if rotation_param else None
        self.ratio = self.interpolation = None
        if resize_param:
            self.ratio = _range(resize_param["ratio"], "resize_param.ratio", False)
            if self.ratio[0] <= 0:
                raise AugmentationError(f"augmentation_params.resize_param.ratio must be above 0, got {list(self.ratio)}")
            self.interpolation = resize_param.get("interpolation", "nearest")  # FOMM's RandomResize default
            if self.interpolation not in ("nearest", "bilinear"):
                raise AugmentationError("augmentation_params.resize_param.interpolation must be nearest or bilinear, "
                                        f"got {self.interpolation!r}")
        self.crop_size = None
        if crop_param:
            size = crop_param["size"]
            size = [size, size] if isinstance(size, int) and not isinstance(size, bool) else size
            if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
                raise AugmentationError(f"augmentation_params.crop_param.size must be [h, w] of positive integers, "
                                        f"got {crop_param['size']!r}")
            self.crop_size = (int(size[0]), int(size[1]))
        if self.ratio is not None and self.crop_size is None:
            raise AugmentationError("augmentation_params.resize_param needs crop_param (e.g. size: [256, 256]) so that "
                                    "every sample keeps one frame size, as FOMM's configs pair them")

    def __call__(self, frames, priors=None):
        if self.time_flip and torch.rand(()).item() < 0.5:
            frames, priors = flip_time(frames, priors)
        if self.horizontal_flip and torch.rand(()).item() < 0.5:
            frames, priors = flip_horizontal(frames, priors)
        if self.degrees is not None:
            frames, priors = rotate(frames, priors, _uniform(*self.degrees))
        if self.ratio is not None:
            frames, priors = resize(frames, priors, _uniform(*self.ratio), self.interpolation)
        if self.crop_size is not None:
            frames, priors = random_crop(frames, priors, self.crop_size)
        if self.jitter:
            frames = apply_jitter(frames, jitter_factors(**self.jitter))
        return frames.contiguous(), priors

    @property
    def active(self):
        return (self.horizontal_flip or self.time_flip or bool(self.jitter) or self.degrees is not None
                or self.ratio is not None or self.crop_size is not None)
