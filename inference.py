"""Running a trained method on a target face and a stream of driving frames.

Shared by animate.py, reconstruction.py and demo.py. Every method's animation *driver* (built by its
registry spec, methods.py) has the same two calls:

    pair = driver.start(target, first, target_prior=..., first_prior=..., normalization=..., gray=...)
    frames = driver.generate(pair, driving_frames, priors, gray)   # (B, H, W, 3) uint8 → uint8

``start`` encodes the target face once and takes what it needs of the driving clip's reference
frame (``clip``, ``target_name``: the folder names, for drivers that read per-clip data such as AU
tables; ``num_frames``: the clip's length); ``generate`` turns the next batch of driving frames, in
order, into generated frames. Attributes:
``num_channels``, ``batch_frames`` and ``uses_prior`` (the driver needs facial-prior keypoints of the
target and of every driving frame). :func:`stream` runs a whole clip through a driver in batches.

:class:`Animator` is the FOMM family's driver: keypoints and the generator's source features of the
target once, driving frames in batches under ``torch.inference_mode``, optionally in bf16 autocast
(CPU and CUDA) and/or compiled. fp32 without compilation reproduces the published forward pass.
"""
import argparse
import contextlib
import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

import methods
from checkpoint import load_networks, read_checkpoint
from modules.motion_transfer import normalize_kp
from modules.narrow_conv import split_narrow_convolutions
from cli_args import positive_float, positive_int
from errors import InputError

PRECISIONS = ("fp32", "bf16")
# ITU-R BT.601 luma, as PIL's convert("L") weighs the channels.
LUMA = (0.299, 0.587, 0.114)


class AnimationError(InputError, RuntimeError):
    """Animation cannot go on; the message says what is wrong and what to do."""


def _normalization_default(name):
    # The config schema is the one source of these defaults (animate_params.normalization_params).
    from configuration import SCHEMA

    return field(default=SCHEMA["animate_params"]["normalization_params"][name].default)


@dataclass(frozen=True)
class Normalization:
    """How driving keypoints move the target's: relative or absolute motion, optionally scaled by the
    ratio of the faces' convex-hull areas (``normalize_kp`` semantics, FOMM's demo). The defaults are
    the config's."""
    adapt_movement_scale: bool = _normalization_default("adapt_movement_scale")
    use_relative_movement: bool = _normalization_default("use_relative_movement")
    use_relative_jacobian: bool = _normalization_default("use_relative_jacobian")

    @classmethod
    def from_config(cls, config):
        params = config["animate_params"]["normalization_params"]
        return cls(**{k: bool(params[k]) for k in ("adapt_movement_scale", "use_relative_movement",
                                                   "use_relative_jacobian")})

    def as_kwargs(self):
        return {"adapt_movement_scale": self.adapt_movement_scale,
                "use_relative_movement": self.use_relative_movement,
                "use_relative_jacobian": self.use_relative_jacobian}


ABSOLUTE = Normalization(False, False, False)


@dataclass
class Source:
    """The encoded target face: image (1, C, H, W), generator features, keypoints (batch 1)."""
    image: torch.Tensor
    features: torch.Tensor
    kp: dict


@dataclass
class FommPair:
    """A FOMM-family pair in progress: the encoded target, the driving clip's reference keypoints
    (batch 1; None for absolute transfer) and how driving keypoints move the target's."""
    source: Source
    kp_initial: dict
    normalization: Normalization


def load_method_networks(config, checkpoint_path, device):
    """({name: network} needed to animate, checkpoint dict) of the config's method, weights from the
    checkpoint, in eval mode on ``device``. Raises CheckpointError when the file is unreadable or does
    not fit the config's networks."""
    method = methods.get(config["model_params"]["method"])
    networks = {name: module for name, module in methods.build_networks(config["model_params"]).items()
                if name in method.animation_networks}
    checkpoint = read_checkpoint(checkpoint_path)
    load_networks(checkpoint, networks, checkpoint_path, required=method.animation_networks)
    for module in networks.values():
        module.eval().requires_grad_(False).to(device)
    return networks, checkpoint


def load_animation_networks(config, checkpoint_path, device):
    """(kp_detector, generator, checkpoint dict) of a FOMM-family config (FOMM's demo.py's
    ``load_checkpoints``), in eval mode on ``device``."""
    networks, checkpoint = load_method_networks(config, checkpoint_path, device)
    return networks["kp_detector"], networks["generator"], checkpoint


def open_driver(config, checkpoint_path, device="cpu", precision="fp32", compile=False, batch_frames=None):
    """(the config's method's animation driver with the checkpoint's weights, checkpoint dict)."""
    if precision not in PRECISIONS:
        raise AnimationError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    networks, checkpoint = load_method_networks(config, checkpoint_path, device)
    batch_frames = batch_frames or config["animate_params"]["batch_frames"]
    method = methods.get(config["model_params"]["method"])
    return method.driver(networks, config, device, precision, compile, batch_frames), checkpoint


def frames_to_tensor(frames, num_channels=3, gray=False, device=None):
    """(B, H, W, 3) uint8 → (B, C, H, W) float32 in [0, 1] on ``device`` (default CPU). One-channel
    models and ``gray`` get luma (repeated to C channels). On CUDA the uint8 frames travel (a quarter
    of the bytes of float32) from pinned memory without blocking, and are converted on the device."""
    x = torch.from_numpy(np.require(frames, requirements=("C", "W")))
    if device is not None and torch.device(device).type == "cuda":
        x = x.pin_memory().to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255)
    if num_channels == 1 or gray:
        x = (x * torch.tensor(LUMA, device=x.device).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        x = x.expand(-1, num_channels, -1, -1).contiguous()
    return x if device is None else x.to(device)


def tensor_to_frames(x, gray=False):
    """(B, C, H, W) float in [0, 1] → (B, H, W, 3) uint8 (rounded). One channel, or ``gray``, gives
    equal R, G and B."""
    x = x.detach().float().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif gray:
        x = (x * torch.tensor(LUMA, device=x.device).view(1, 3, 1, 1)).sum(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def is_gray(frame, tolerance=2):
    """True when an (H, W, 3) uint8 frame has (nearly) equal channels."""
    frame = np.asarray(frame, np.int16)
    return bool(np.abs(frame[..., 0] - frame[..., 1]).max() <= tolerance
                and np.abs(frame[..., 1] - frame[..., 2]).max() <= tolerance)


def _float_kp(kp):
    # Autocast leaves keypoints in bf16; the inverse of the jacobians in normalize_kp needs float32.
    return {k: v.float() for k, v in kp.items()}


class TorchDriver:
    """What every driver of torch networks shares; subclasses set ``device``, ``precision``,
    ``num_channels`` and ``channels_last``."""

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, frames, gray=False):
        """(B, H, W, 3) uint8 frames → network input (B, C, H, W) float32 in [0, 1] on the device."""
        x = frames_to_tensor(frames, self.num_channels, gray, self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class Animator(TorchDriver):
    """The networks plus how to run them. Methods take and return tensors on ``device``.

    ``precision``: 'fp32' or 'bf16' (autocast). On the CPU the networks are prepared in place for
    oneDNN, in both precisions, with the state dicts unchanged: channels_last memory for networks and
    frames (convolutions run without reordering every activation; fp32 ~13 % faster at 256×256), and
    convolutions with fewer than 16 outputs (the generator's final 7×7, the occlusion head) computed
    row by row (modules/narrow_conv.py: the same sum, ~3× faster for the final convolution). fp32
    outputs equal the published forward to 1e-5 (tests/test_fast_paths.py). ``compile``:
    torch.compile the keypoint detector and the decoder; batches are then padded to ``batch_frames``
    so that one compiled graph serves every batch.
    """

    def __init__(self, kp_detector, generator, device, precision="fp32", compile=False, batch_frames=8):
        if precision not in PRECISIONS:
            raise AnimationError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if batch_frames < 1:
            raise AnimationError(f"batch_frames must be at least 1, got {batch_frames}")
        self.device = torch.device(device)
        self.precision = precision
        self.batch_frames = int(batch_frames)
        self.num_channels = generator.num_channels
        self.uses_prior = getattr(kp_detector, "mode", "prior") == "prior"
        # channels_last: measured faster with oneDNN on the CPU (13 % fp32 at 256); on CUDA cuDNN's
        # tensor-core kernels want NHWC for bf16, so it is used there in bf16 (benchmarks/bench_gpu.py).
        self.channels_last = self.device.type == "cpu" or precision == "bf16"
        if self.channels_last:
            kp_detector.to(memory_format=torch.channels_last)
            generator.to(memory_format=torch.channels_last)
        if self.device.type == "cpu":  # the row split helps oneDNN's vectorisation only
            split_narrow_convolutions(kp_detector)
            split_narrow_convolutions(generator)
        self.kp_detector, self.generator = kp_detector, generator
        self._detect, self._encode, self._decode = kp_detector, generator.encode_source, generator.decode
        self.compiled = bool(compile)
        if self.compiled:
            self._detect = torch.compile(kp_detector, dynamic=False)
            self._decode = torch.compile(generator.decode, dynamic=False)

    def _priors(self, priors, batch):
        if not self.uses_prior:
            return None
        if priors is None:
            raise AnimationError("this checkpoint uses the facial prior: every frame needs its prior keypoints")
        priors = torch.as_tensor(np.asarray(priors, np.float32), device=self.device)
        return priors.expand(batch, -1, -1) if priors.dim() == 3 and priors.shape[0] == 1 else priors

    def keypoints(self, frames, priors=None):
        """Keypoints of (B, C, H, W) frames; ``priors`` (B, 18, 2) pixels in prior mode.
        → {'value': (B, K, 2), 'jacobian': (B, K, 2, 2)} float32."""
        with torch.inference_mode(), self._autocast():
            if self.uses_prior:
                kp = self._detect(frames, self._priors(priors, frames.shape[0]))
            else:
                kp = self._detect(frames)
        return _float_kp(kp)

    def encode_source(self, image, prior=None, gray=False):
        """Encode the target face once. image (H, W, 3) uint8, prior (18, 2) pixels → Source."""
        x = self.to_device(np.asarray(image)[None], gray)
        kp = self.keypoints(x, None if prior is None else np.asarray(prior)[None])
        with torch.inference_mode(), self._autocast():
            features = self._encode(x)
        return Source(x, features, kp)

    def start(self, target, first, target_prior=None, first_prior=None, normalization=ABSOLUTE, gray=False,
              clip=None, target_name=None, num_frames=None):
        """The driver call: encode ``target`` (H, W, 3) uint8 once, keypoints of the driving clip's
        reference frame ``first`` for relative transfer. → FommPair."""
        source = self.encode_source(target, target_prior, gray)
        kp_initial = reference_keypoints(self, first, first_prior, gray)
        return FommPair(source, kp_initial, normalization)

    def generate(self, pair, frames, priors=None, gray=False):
        """The driver call: (B, H, W, 3) uint8 driving frames (priors (B, 18, 2) px in prior mode) →
        (B, H, W, 3) uint8 generated frames."""
        generated = self.drive(pair.source, self.to_device(frames, gray), priors, pair.kp_initial, pair.normalization)
        return tensor_to_frames(generated, gray)

    def drive(self, source, frames, priors=None, kp_initial=None, normalization=ABSOLUTE):
        """Generated frames for a batch of driving frames (B, C, H, W) (already on the device).

        ``kp_initial``: keypoints of the driving clip's reference frame (batch 1), needed for relative
        transfer. → (B, C, H, W) float32.
        """
        batch = frames.shape[0]
        if self.compiled and batch < self.batch_frames:
            # Repeat the last frame up to the compiled batch size; the extra outputs are dropped.
            pad = self.batch_frames - batch
            frames = torch.cat([frames, frames[-1:].expand(pad, *frames.shape[1:])])
            if priors is not None and self.uses_prior:
                priors = np.asarray(priors, np.float32)
                priors = np.concatenate([priors, np.repeat(priors[-1:], pad, axis=0)])
        kp_driving = self.keypoints(frames, priors)
        if normalization.use_relative_movement and kp_initial is None:
            raise AnimationError("relative motion transfer needs the keypoints of the driving clip's first frame")
        kp_norm = normalize_kp(kp_source=source.kp, kp_driving=kp_driving, kp_driving_initial=kp_initial,
                               **normalization.as_kwargs())
        with torch.inference_mode(), self._autocast():
            out = self._decode(source.image, source.features, kp_norm, source.kp)["prediction"]
        return out[:batch].float()


def batched(iterable, size):
    """Consecutive lists of up to ``size`` items, lazily."""
    iterator = iter(iterable)
    while True:
        chunk = list(itertools.islice(iterator, size))
        if not chunk:
            return
        yield chunk


def stream(driver, pair, driving, gray=False):
    """Stream a driving clip through any method's driver.

    pair: what ``driver.start`` returned. driving: iterable of (name, frame (H, W, 3) uint8 at the
    model's size, prior (18, 2) px or None). Yields (name, driving frame, generated frame (H, W, 3)
    uint8) in order, ``driver.batch_frames`` frames per forward pass; nothing holds more than one batch.
    """
    for chunk in batched(driving, driver.batch_frames):
        names, frames, priors = zip(*chunk)
        prior_batch = np.stack(priors) if driver.uses_prior else None
        yield from zip(names, frames, driver.generate(pair, np.stack(frames), prior_batch, gray))


def animate_frames(animator, source, driving, kp_initial=None, normalization=ABSOLUTE, gray=False):
    """:func:`stream` for a FOMM-family Animator and an encoded ``source`` (the call FOMM users know)."""
    return stream(animator, FommPair(source, kp_initial, normalization), driving, gray)


def reference_keypoints(animator, frame, prior=None, gray=False):
    """Keypoints (batch 1) of the driving clip's reference frame, for relative transfer."""
    return animator.keypoints(animator.to_device(np.asarray(frame)[None], gray),
                              None if prior is None else np.asarray(prior, np.float32)[None])


def warn_fallback(what, frames):
    """One warning naming where the facial prior fell back to the template."""
    if frames:
        shown = ", ".join(map(str, frames[:5])) + (f", … ({len(frames)} in all)" if len(frames) > 5 else "")
        warnings.warn(f"{what}: no face found by dlib in {shown}; the published fallback template was used "
                      "for the facial prior", stacklevel=2)


def add_argument_once(parser, *flags, **kwargs):
    """parser.add_argument, skipped when the flag exists already (animate and reconstruction add the
    same flags to run.py's one parser)."""
    try:
        parser.add_argument(*flags, **kwargs)
    except argparse.ArgumentError:
        pass


def add_run_arguments(parser):
    """Flags shared by animate and reconstruction (run.py owns --config, --checkpoint, --device, …)."""
    add_argument_once(parser, "--out", default=None,
                      help="output folder (default: <checkpoint folder>/animation or /reconstruction)")
    add_argument_once(parser, "--overwrite", action="store_true", help="redo pairs / clips finished earlier (without it they are kept and skipped, so a "
                           "stopped run continues)")
    add_argument_once(parser, "--batch_frames", type=positive_int, default=None,
                      help="driving frames per forward pass (default: animate_params.batch_frames)")
    add_argument_once(parser, "--fps", type=positive_float, default=None,
                      help="playback rate of the written videos (default: the config's, 25)")
    add_argument_once(parser, "--precision", choices=PRECISIONS, default="fp32",
                      help="fp32 (default, matches the published outputs) or bf16 autocast (CPU and CUDA, faster)")
    add_argument_once(parser, "--compile", action="store_true",
                      help="torch.compile the networks first (pays off for long runs; needs a C++ compiler on CPU)")
