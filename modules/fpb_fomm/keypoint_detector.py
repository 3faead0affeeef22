"""FPB-FOMM's keypoint detector: the facial prior fed through the adaptive weighted prior (AWP).

The original (``FOMM_with_AWP/modules/keypoint_detector.py``) differs from the Facial-Prior FOMM's only
in how the prior reaches the hourglass: instead of one hand-made region mask, the 18 per-point prior
maps (:mod:`modules.fpb_fomm.prior_maps`) go through two learned 3×3 convolutions, ``learn`` (18 → 9)
and ``learn1`` (9 → 1), with no activation between or after them; that single AWP map is the hourglass's
fourth input channel. Keypoint values are the prior points normalised to [-1, 1] (not learned; the
heatmap head ``kp`` only pools the jacobians).

Differences from the original, none of which changes the recorded numbers:

* dlib does not run inside ``forward``: the caller passes the prior points (the project's kpmaker
  landmarks, or :func:`detect_prior` for frames made on the fly such as the equivariance warp). The
  original ran dlib on each frame, kept the *last* detection, and on the CPU scaled the caller's image
  tensor by 255 in place (a numpy alias); none of that is reproduced.
* Any frame size: maps at the downsampled frame's size with per-axis scale, values normalised by the
  frame's width and height (the original hard-coded 256 and 64).
* Batched (the original looped over the batch); BatchNorm sees the same batch either way.
"""
import torch
from torch import nn

from modules.facial_prior import NUM_PRIOR_KP, fallback_prior, prior_from_landmarks
from modules.keypoint_detector import KPDetector as PriorKPDetector
from modules.fpb_fomm.prior_maps import PRIOR_MAP_SIGMA, prior_maps


class KPDetector(PriorKPDetector):
    """Prior keypoints and learned local jacobians, the prior entering through the AWP map.

    ``forward(frame, prior)``: frame (B, C, H, W) in [0, 1], prior (B, num_kp, 2) pixels (x, y) of that
    frame. Returns {'value': (B, num_kp, 2) in [-1, 1], 'jacobian': (B, num_kp, 2, 2)} (no jacobian when
    estimate_jacobian is off). Parameter names are the original's: ``predictor.*`` (Hourglass with
    C + 1 inputs), ``kp``, ``learn``, ``learn1``, ``jacobian``, buffer ``down.weight``.

    ``mask_sigma`` is the prior maps' σ (the original's literal 0.75); ``sqrt_distance`` the maps'
    √-distance falloff (True as published, see :func:`modules.fpb_fomm.prior_maps.prior_maps`).
    """

    def __init__(self, block_expansion, num_kp, num_channels, max_features, num_blocks, temperature,
                 estimate_jacobian=False, scale_factor=1, single_jacobian_map=False, pad=0,
                 keypoint_mode=None, mask_sigma=PRIOR_MAP_SIGMA, align_corners=False, sqrt_distance=True):
        if keypoint_mode not in (None, "prior"):
            raise ValueError(f"FPB-FOMM's keypoints are the facial prior's; keypoint_mode {keypoint_mode!r} "
                             "is not supported")
        if num_kp != NUM_PRIOR_KP:
            raise ValueError(f"FPB-FOMM uses the {NUM_PRIOR_KP} prior keypoints, got num_kp={num_kp}")
        # The Facial-Prior FOMM's detector in prior mode: the same hourglass (C + 1 inputs), heads and
        # blur; only the extra channel differs (network_input below).
        super().__init__(block_expansion, num_kp, num_channels, max_features, num_blocks, temperature,
                         estimate_jacobian, scale_factor, single_jacobian_map, pad, "prior", mask_sigma,
                         align_corners)
        self.sqrt_distance = sqrt_distance
        self.learn = nn.Conv2d(num_kp, num_kp // 2, kernel_size=(3, 3), padding=1)
        self.learn1 = nn.Conv2d(num_kp // 2, 1, kernel_size=(3, 3), padding=1)

    def _check_prior(self, prior):
        if prior is None:
            raise ValueError("FPB-FOMM's keypoint detector uses the facial prior: call kp_detector(frame, prior) "
                             f"with prior (B, {self.num_kp}, 2) in pixels")
        if prior.dim() != 3 or prior.shape[1:] != (self.num_kp, 2):
            raise ValueError(f"prior must be (B, {self.num_kp}, 2) pixels, got {tuple(prior.shape)}")

    def downsample(self, frame):
        """The frame at the working resolution. (B, C, H, W) → (B, C, h, w)."""
        return self.down(frame) if self.scale_factor != 1 else frame

    def prior_maps(self, prior, frame_size, grid_size):
        """The 18 per-point maps (B, K, h, w) float64 for prior (B, K, 2) pixels of a (H, W) frame."""
        return prior_maps(prior, frame_size, grid_size, self.mask_sigma, self.sqrt_distance)

    def awp(self, maps):
        """Adaptive weighted prior: per-point maps (B, K, h, w) → (B, 1, h, w), two linear 3×3 convs."""
        return self.learn1(self.learn(maps))

    def network_input(self, frame, prior):
        """What the hourglass sees: cat([downsampled frame, AWP map]), (B, C + 1, h, w).

        The last channel is the AWP map (learned, not confined to [0, 1]); the trainer's sample sheet
        shows it where the Facial-Prior FOMM shows its region mask.
        """
        self._check_prior(prior)
        x = self.downsample(frame)
        maps = self.prior_maps(prior, frame.shape[2:], x.shape[2:]).to(device=x.device, dtype=x.dtype)
        return torch.cat([x, self.awp(maps)], dim=1)

    def forward(self, frame, prior=None):
        self._check_prior(prior)
        # The original's values come from dlib and carry no gradient.
        return super().forward(frame, prior.detach())


def detect_prior(frames, landmarker, keep="largest"):
    """dlib prior points for frames made on the fly, as the original's forward computed them.

    frames: (B, C, H, W) in [0, 1] (any device); landmarker: a :class:`modules.face_landmarks.FaceLandmarker`.
    Frames are truncated to uint8 (x·255 cast, as the original) and handed to dlib as contiguous HWC
    arrays. ``keep``: 'largest' face (the project's choice) or 'last' detection (the original's).
    Where dlib finds no face the point set is the published fallback template (the original's ``kp.pt``)
    scaled to the frame. Returns (prior (B, 18, 2) float32 pixels on the frames' device, found (B,) bool).
    """
    from modules.face_landmarks import largest, to_uint8_rgb

    if keep not in ("largest", "last"):
        raise ValueError(f"keep must be 'largest' or 'last', got {keep!r}")
    images = frames.detach().permute(0, 2, 3, 1).to("cpu", torch.float32).numpy()
    priors, found = [], []
    for image in images:
        image = to_uint8_rgb(image)
        rects = landmarker.detector(image, landmarker.upsample)
        if len(rects) == 0:
            priors.append(fallback_prior(image.shape[:2]))
            found.append(False)
            continue
        rect = largest(rects) if keep == "largest" else rects[len(rects) - 1]
        shape = landmarker.predictor(image, rect)
        landmarks = torch.tensor([(p.x, p.y) for p in shape.parts()], dtype=torch.float32)
        priors.append(prior_from_landmarks(landmarks))
        found.append(True)
    return (torch.stack(priors).to(frames.device),
            torch.tensor(found, dtype=torch.bool, device=frames.device))
