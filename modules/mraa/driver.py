"""MRAA's animation driver (the protocol of inference.py: ``start`` then ``generate`` per batch).

Per pair, once: the target's region parameters and its generator encoding (encoder features and
the flow predictor's downsampled source), and the region parameters of the driving clip's first
frame. Per batch of driving frames: the region predictor, ``get_animation_region_params`` in the
config's ``animate_params.mode`` and ``generator.decode`` against the batch-1 encoding. That is the
original ``animate.py`` loop, which ran the whole generator per frame at batch 1 and no background
motion; fp32 equals it to float rounding (tests/test_mraa_method.py).

Reconstruction (the target is the clip's own first frame) drives as the original ``reconstruction.py``:
'standard' mode (the driving frame's own regions) with the background motion of (first, driving).

On the CPU the networks run channels_last and the convolutions with few outputs row by row
(modules/narrow_conv.py), the same sums; ``precision='bf16'`` runs the convolutions under autocast
while the region geometry (covariances, SVD, inverses) stays float32.
"""
from dataclasses import dataclass

import numpy as np
import torch

from inference import PRECISIONS, AnimationError, TorchDriver, tensor_to_frames
from modules.mraa.animation import get_animation_region_params
from modules.narrow_conv import split_narrow_convolutions

REGION_KEYS = ("shift", "affine", "covar")


@dataclass
class MraaPair:
    """One target face encoded and the reference regions of its driving clip (batch 1 each)."""
    source: torch.Tensor            # (1, C, H, W)
    encoded: dict                   # generator.encode(source)
    source_params: dict             # region_predictor(source)
    initial_params: dict            # region_predictor(first driving frame)
    mode: str                       # 'standard' | 'relative' | 'avd'
    background: bool                # drive with bg_predictor(source, driving) (reconstruction)


def float_params(params):
    """Region parameters in float32 (autocast leaves some in bf16; inverses and SVDs need float32)."""
    return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in params.items()}


def avd_never_trained(avd_network):
    """True when the AVD network's BatchNorm never saw a batch: no AVD stage has run on it (our first-stage
    checkpoints carry a freshly initialised one)."""
    counters = [m.num_batches_tracked for m in avd_network.modules()
                if isinstance(m, torch.nn.BatchNorm1d) and m.num_batches_tracked is not None]
    return bool(counters) and all(int(c) == 0 for c in counters)


class MraaDriver(TorchDriver):
    """Networks {'region_predictor', 'bg_predictor', 'generator', 'avd_network'} (eval mode, on ``device``).

    With FPB-FOMM's AWP region predictor (``fpb-mraa``) every frame needs its prior points (``uses_prior``).
    """

    def __init__(self, networks, config, device, precision="fp32", compile=False, batch_frames=8):
        if precision not in PRECISIONS:
            raise AnimationError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if batch_frames < 1:
            raise AnimationError(f"batch_frames must be at least 1, got {batch_frames}")
        params = config["animate_params"]
        self.mode = params["mode"]
        self.relative_covar = params["relative_covar"]
        self.adapt_movement_scale = bool(params["normalization_params"]["adapt_movement_scale"])
        self.device = torch.device(device)
        self.precision = precision
        self.batch_frames = int(batch_frames)
        self.region_predictor = networks["region_predictor"]
        self.bg_predictor = networks["bg_predictor"]
        self.generator = networks["generator"]
        self.avd_network = networks.get("avd_network")
        self.num_channels = self.generator.num_channels
        self.uses_prior = bool(getattr(self.region_predictor, "uses_prior", False))
        if self.mode == "avd" and (self.avd_network is None or avd_never_trained(self.avd_network)):
            raise AnimationError("animate_params.mode is 'avd' but this checkpoint's AVD network was never trained: "
                                 "run `run.py --mode train_avd --checkpoint <this checkpoint>` first, or set "
                                 "animate_params.mode to relative or standard")
        self.channels_last = self.device.type == "cpu"
        if self.channels_last:
            for module in (self.region_predictor, self.bg_predictor, self.generator):
                module.to(memory_format=torch.channels_last)
                split_narrow_convolutions(module)
        self._regions, self._decode = self._region_params, self.generator.decode
        if compile:
            self._decode = torch.compile(self.generator.decode, dynamic=False)

    def _priors(self, priors, batch):
        """Prior points (B, 18, 2) pixels as a float32 tensor on the device (None when not used)."""
        if not self.uses_prior:
            return None
        if priors is None:
            raise AnimationError("this checkpoint's regions come from the facial prior: every frame needs its "
                                 "prior keypoints (kpmaker files or dlib)")
        priors = torch.as_tensor(np.asarray(priors, np.float32), device=self.device)
        return priors.expand(batch, -1, -1) if priors.dim() == 3 and priors.shape[0] == 1 else priors

    def _region_params(self, x, priors=None):
        """region_predictor(x) with its float32 outputs. In bf16 the hourglass runs under autocast and the
        geometry of the heatmaps (softmax, covariance, SVD) in float32, as the region predictor's own
        forward does after the convolutions. The prior-based predictor runs in float32 (its regions are
        the prior's geometry; with pca_based it runs no convolution at all)."""
        if self.uses_prior:
            return self.region_predictor(x, self._priors(priors, x.shape[0]))
        if self.precision == "fp32":
            return self.region_predictor(x)
        rp = self.region_predictor
        with self._autocast():
            down = rp.down(x) if rp.scale_factor != 1 else x
            feature_map = rp.predictor(down)
            logits = rp.regions(feature_map)
            jacobian_map = rp.jacobian(feature_map) if rp.jacobian is not None else None
        return rp.params_from_logits(logits.float(), None if jacobian_map is None else jacobian_map.float())

    def start(self, target, first, target_prior=None, first_prior=None, normalization=None, gray=False,
              clip=None, target_name=None, num_frames=None):
        """Encode ``target`` (H, W, 3) uint8 once; regions of the driving clip's first frame ``first``."""
        source = self.to_device(np.asarray(target)[None], gray)
        one = (lambda p: None if p is None else np.asarray(p, np.float32)[None])
        with torch.inference_mode():
            source_params = self._regions(source, one(target_prior))
            initial_params = self._regions(self.to_device(np.asarray(first)[None], gray), one(first_prior))
            with self._autocast():
                encoded = self.generator.encode(source)
        reconstruction = target_name is not None and target_name == clip
        return MraaPair(source, encoded, source_params, initial_params,
                        "standard" if reconstruction else self.mode, background=reconstruction)

    def drive(self, pair, frames, priors=None):
        """Generated frames for driving frames (B, C, H, W) on the device (``priors`` (B, 18, 2) pixels
        for the prior-based regions) → (B, C, H, W) float32."""
        n = frames.shape[0]
        with torch.inference_mode():
            driving_params = self._regions(frames, priors)
            new_params = get_animation_region_params(pair.source_params, driving_params, pair.initial_params,
                                                     mode=pair.mode, avd_network=self.avd_network,
                                                     adapt_movement_scale=self.adapt_movement_scale,
                                                     relative_covar=self.relative_covar)
            bg_params = None
            with self._autocast():
                if pair.background:
                    bg_params = self.bg_predictor(pair.source.expand(n, -1, -1, -1), frames).float()
                out = self._decode(pair.source, pair.encoded, new_params, pair.source_params, bg_params=bg_params)
        return out["prediction"].float()

    def generate(self, pair, frames, priors=None, gray=False):
        """(B, H, W, 3) uint8 driving frames → (B, H, W, 3) uint8 generated frames."""
        return tensor_to_frames(self.drive(pair, self.to_device(frames, gray), priors), gray)
