"""Training augmentation (SPEC §4): horizontal flip, time flip and colour jitter, applied identically to
every frame of a sample and, where geometry changes, to its prior keypoints.

Frames are a float tensor (T, C, H, W) in [0, 1]; priors (T, K, 2) pixels (x, y) of those frames, or
None for the learned-keypoint baseline. Random draws come from torch's default generator, so
DataLoader worker seeding and a checkpointed RNG state make a run reproducible.
"""
import torch
import torchvision.transforms.v2.functional as TF

from modules.facial_prior import flip_prior_horizontally


def flip_horizontal(frames, priors=None):
    """Mirror the frames left↔right and the prior to match (x → W−1−x, left/right points swapped)."""
    flipped = torch.flip(frames, dims=(-1,))
    if priors is None:
        return flipped, None
    return flipped, flip_prior_horizontally(priors, frames.shape[-1])


def flip_time(frames, priors=None):
    """Play the sample backwards: frame order and per-frame priors reversed together."""
    return torch.flip(frames, dims=(0,)), None if priors is None else torch.flip(priors, dims=(0,))


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
    probability 1/2 when on) and jitter_param {brightness, contrast, saturation, hue}.

    ``__call__(frames (T, C, H, W), priors (T, K, 2) or None) -> (frames, priors)``.
    """

    def __init__(self, flip_param=None, jitter_param=None):
        flip_param = flip_param or {}
        self.horizontal_flip = bool(flip_param.get("horizontal_flip", False))
        self.time_flip = bool(flip_param.get("time_flip", False))
        self.jitter = {k: float(v) for k, v in (jitter_param or {}).items() if v}

    def __call__(self, frames, priors=None):
        if self.time_flip and torch.rand(()).item() < 0.5:
            frames, priors = flip_time(frames, priors)
        if self.horizontal_flip and torch.rand(()).item() < 0.5:
            frames, priors = flip_horizontal(frames, priors)
        if self.jitter:
            frames = apply_jitter(frames, jitter_factors(**self.jitter))
        return frames, priors

    @property
    def active(self):
        return self.horizontal_flip or self.time_flip or bool(self.jitter)
