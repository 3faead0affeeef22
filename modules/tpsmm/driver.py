"""The TPS family's animation driver (inference.py's start/generate protocol).

Per pair, once: the target's keypoints, its inpainting-encoder features and its downsampled copy for
the dense motion network; the driving clip's first-frame keypoints (relative mode). Per batch of
driving frames: keypoints, the keypoints that drive the target (``animate_params.mode``: standard,
relative or avd, as demo.py's make_animation), dense motion without background motion and without
dropout, and the decoder. fp32 equals the original per-frame forward (tests/test_tpsmm_method.py).

On the CPU the networks run channels_last with the narrow convolutions split (modules/narrow_conv.py,
the same sums), in fp32 or bf16 autocast. Reconstruction (absolute normalisation) always drives
with the keypoints as they are ('standard'), as TPSMM's reconstruction.py.

TPSRAU: the keypoints are the target face's 50 landmarks for source and driving (as in training),
so the motion comes from the AU branch: per driving frame (AU(frame) − AU(first frame)) / 5 of the
clip's AU table (aumaker.py, ``<root>/aus/<clip>.csv`` or ``dataset_params.au_dir``).
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inference import PRECISIONS, AnimationError, TorchDriver, tensor_to_frames
from modules.narrow_conv import split_narrow_convolutions
from modules.tpsmm.animation import animation_kp


@dataclass
class TpsPair:
    """A pair in progress: the encoded target, the driving reference keypoints, the mode."""
    source: torch.Tensor           # (1, C, H, W)
    source_small: torch.Tensor     # (1, C, h, w): the dense motion network's input
    encoder_maps: list
    kp_source: dict
    kp_initial: dict
    mode: str
    aus: np.ndarray = None         # TPSRAU: (T, 17) AU condition per driving frame
    position: int = 0              # driving frames done


class TpsDriver(TorchDriver):
    uses_prior = False

    def __init__(self, networks, config, device, precision="fp32", compile=False, batch_frames=8, variant="tpsmm"):
        if precision not in PRECISIONS:
            raise AnimationError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.device = torch.device(device)
        self.precision = precision
        self.batch_frames = int(batch_frames)
        self.variant = variant
        self.config = config
        self.mode = config["animate_params"]["mode"]
        if variant == "tpsrau" and self.mode == "avd":
            raise AnimationError("animate_params.mode 'avd' is not for tpsrau (its keypoints are landmarks, it has "
                                 "no AVD stage); use standard or relative")
        self.kp_detector = networks["kp_detector"]
        self.dense_motion = networks["dense_motion_network"]
        self.inpainting = networks["inpainting_network"]
        self.avd = networks.get("avd_network")
        self.num_channels = self.inpainting.num_channels
        self.channels_last = self.device.type == "cpu"
        if self.channels_last:
            for module in (self.kp_detector, self.dense_motion, self.inpainting):
                module.to(memory_format=torch.channels_last)
                split_narrow_convolutions(module)
        self._landmarker = None
        self._decode = self.inpainting.decode
        if compile:
            self._decode = torch.compile(self.inpainting.decode, dynamic=False)

    def keypoints(self, frames):
        """{'fg_kp': (B, K·N, 2)} float32 of (B, C, H, W) frames. Always in fp32: the TPS fit amplifies
        keypoint rounding (bf16 keypoints move the output by several grey levels)."""
        with torch.inference_mode():
            kp = self.kp_detector(frames)
        return {"fg_kp": kp["fg_kp"].float()}

    def start(self, target, first, target_prior=None, first_prior=None, normalization=None, gray=False, clip=None,
              target_name=None, num_frames=None):
        source = self.to_device(np.asarray(target)[None], gray)
        relative = normalization is None or normalization.use_relative_movement
        mode = self.mode if relative else "standard"
        aus = None
        if self.variant == "tpsrau":
            kp_source = self.kp_detector(torch.from_numpy(self._target_landmarks(target, target_name))[None].to(
                self.device), source.shape[2:])
            kp_initial = kp_source
            if self.inpainting.num_cond_channels:
                aus = self._clip_aus(clip, num_frames)
        else:
            kp_source = self.keypoints(source)
            kp_initial = self.keypoints(self.to_device(np.asarray(first)[None], gray)) if mode == "relative" else None
        if mode == "avd" and self.avd is None:
            raise AnimationError("animate_params.mode 'avd' needs the AVD network: train it with --mode train_avd")
        with torch.inference_mode(), self._autocast():
            maps = self.inpainting.encode(source)
            small = self.dense_motion.downsample(source)
        return TpsPair(source, small, maps, kp_source, kp_initial, mode, aus)

    def generate(self, pair, frames, priors=None, gray=False):
        out = self.drive(pair, self.to_device(frames, gray))
        return tensor_to_frames(out, gray)

    def drive(self, pair, frames):
        """(B, C, H, W) driving frames on the device → (B, C, H, W) float32 predictions."""
        batch = frames.shape[0]
        if self.variant == "tpsrau":
            kp_driving = {"fg_kp": pair.kp_source["fg_kp"].expand(batch, -1, -1)}
        else:
            kp_driving = self.keypoints(frames)
        return self.render(pair, kp_driving)

    def render(self, pair, kp_driving):
        """Predictions (B, C, H, W) float32 for the driving keypoints {'fg_kp': (B, K·N, 2)}."""
        batch = kp_driving["fg_kp"].shape[0]
        condition = None
        if pair.aus is not None:
            rows = pair.aus[pair.position:pair.position + batch]
            if len(rows) != batch:
                raise AnimationError(f"the AU table has {len(pair.aus)} rows, fewer than the clip's frames")
            condition = torch.from_numpy(rows).to(self.device)
        pair.position += batch
        with torch.inference_mode():
            if pair.mode == "avd":
                # One frame at a time, as the original: the MLP is cheap, and batched matrix products
                # round differently, which the TPS fit amplifies.
                kp_norm = {"fg_kp": torch.cat([animation_kp(pair.kp_source, {"fg_kp": kp[None]}, None, "avd",
                                                            self.avd)["fg_kp"] for kp in kp_driving["fg_kp"]])}
            else:
                kp_norm = animation_kp(pair.kp_source, kp_driving, pair.kp_initial, pair.mode)
            with self._autocast():
                motion = self.dense_motion.motion(pair.source_small, kp_norm, pair.kp_source, bg_param=None,
                                                  dropout_flag=False)
                out = self._decode(pair.source, pair.encoder_maps, motion, condition)["prediction"]
        return out.float()

    # -- TPSRAU's inputs --------------------------------------------------------------------------

    def _target_landmarks(self, target, target_name):
        """The target's 50 TPSRAU landmarks (50, 2) pixels of the model-size target: its kpmaker file's
        first frame when there is one, else dlib on the image."""
        from kpmaker import keypoint_path, load_keypoints
        from modules.tpsmm.dataset import _rescale
        from modules.tpsmm.method import TPSRAU_LANDMARKS

        dataset = self.config["dataset_params"]
        folder = dataset["keypoint_dir"] or str(Path(dataset["root_dir"]) / "keypoints")
        path = keypoint_path(folder, target_name) if target_name else None
        marks = None
        if path is not None and path.is_file():
            data = load_keypoints(path)
            if data["has_landmarks"] and np.isfinite(data["landmarks"][0]).all():
                size = tuple(int(v) for v in data["frame_size"])
                marks = _rescale(np.asarray(data["landmarks"][0], np.float32), size, np.asarray(target).shape[:2])
        if marks is None:
            if self._landmarker is None:
                from modules.face_landmarks import FaceLandmarker

                self._landmarker = FaceLandmarker()
            marks = self._landmarker.landmarks(np.asarray(target))
            if marks is None:
                raise AnimationError(f"{target_name}: dlib finds no face in the target; TPSRAU's keypoints are its "
                                     "landmarks: crop the face or run kpmaker.py on it")
        return np.asarray(marks, np.float32)[list(TPSRAU_LANDMARKS)]

    def _clip_aus(self, clip, num_frames):
        """(T, 17) float32: (AU(t) − AU(first)) / 5 of the driving clip (NaN → 0)."""
        import au_format

        dataset = self.config["dataset_params"]
        folder = dataset.get("au_dir") or str(Path(dataset["root_dir"]) / "aus")
        path = au_format.au_path(folder, clip)
        if not path.is_file():
            raise AnimationError(f"{path}: no AU table for driving clip {clip}; run aumaker.py (TPSRAU's AU branch "
                                 "needs it)")
        table = au_format.read_aus(path)
        if num_frames is not None and len(table.frames) != num_frames:
            raise AnimationError(f"{path}: {len(table.frames)} rows but {clip} has {num_frames} frames; re-run "
                                 "aumaker.py for it")
        intensity = np.nan_to_num(table.intensity, nan=0.0) / 5.0
        return (intensity - intensity[:1]).astype(np.float32)
