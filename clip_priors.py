"""Facial prior keypoints for the inputs of animation: from kpmaker's files when present, else measured
with dlib on the spot, never silently replaced by the fallback template.

Published keypoint files (``keypoint_folder/<clip>.pt``) are never read directly and never ignored:
a clip without a kpmaker file while such files lie near the keypoint folder is an error that names
them and the import command (``kpmaker.py --import-published``). Imported files hold one prior per
clip and no landmarks: they serve ``prior_mode: first_frame`` and are refused for ``per_frame``.
"""
import os

import numpy as np
import torch

from video_io import read_image

from modules.facial_prior import fallback_prior, prior_from_landmarks
from errors import InputError


class PriorError(InputError, RuntimeError):
    """No face where strict mode needs one, or a keypoint file that does not fit its clip."""


class LazyLandmarker:
    """Builds dlib's models (about a second) on first use only; a run without dlib work pays nothing."""

    def __init__(self, landmarker=None):
        self._landmarker = landmarker

    def __call__(self):
        if self._landmarker is None:
            from modules.face_landmarks import FaceLandmarker

            self._landmarker = FaceLandmarker()
        return self._landmarker


def image_prior(landmarker, image, strict=False, what="image"):
    """The 18 prior keypoints of one image. (H, W, 3) uint8 → ((18, 2) float32 pixels, found).

    No face: the published template scaled to the image (found False), or PriorError when ``strict``.
    """
    landmarks = landmarker.landmarks(image)
    if landmarks is None:
        if strict:
            raise PriorError(f"{what}: dlib finds no face (strict prior); crop the face or turn strict_prior off")
        return fallback_prior(np.asarray(image).shape[:2]).numpy(), False
    return prior_from_landmarks(torch.from_numpy(landmarks)).numpy().astype(np.float32), True


def scale_prior(prior, from_size, to_size):
    """Pixel keypoints of a (H, W) frame → those of the frame resized to ``to_size``. (..., 2) → (..., 2)."""
    (fh, fw), (th, tw) = from_size, to_size
    if (fh, fw) == (th, tw):
        return np.asarray(prior, np.float32)
    return (np.asarray(prior, np.float64) * np.array([tw / fw, th / fh])).astype(np.float32)


class PriorTrack:
    """Prior keypoints of one clip's frames at the model's size: ``track(index, frame)`` → (18, 2), the
    frame as read (before resizing: dlib sees the full resolution).

    From a kpmaker file when there is one, else measured with dlib as frames arrive (first_frame mode:
    once, on the reference frame). Frames that fell back to the template are listed in ``fallbacks``.
    """

    def __init__(self, clip, files, frame_size, mode, strict, landmarker, stored=None, reference=0):
        self.clip, self.files, self.frame_size = clip, files, tuple(frame_size)
        self.key = (lambda index: reference) if mode == "first_frame" else (lambda index: index)
        self.strict, self.landmarker, self.stored = strict, landmarker, stored
        self.fallbacks = []
        self._cache = {}

    def __call__(self, index, frame):
        key = self.key(index)
        if self.stored is not None:
            return self.stored[key]
        if key not in self._cache:
            if key != index:  # the reference frame of a first_frame track, measured once
                frame = read_image(self.files[key])
            value, found = image_prior(self.landmarker(), frame, self.strict, what=f"{self.clip}/{self.files[key].name}")
            if not found:
                self.fallbacks.append(self.files[key].name)
            self._cache = {key: scale_prior(value, np.asarray(frame).shape[:2], self.frame_size)}  # per-frame keys never repeat; keep only the latest
        return self._cache[key]


class PriorSource:
    """Prior tracks of a dataset's clips: kpmaker's files (<keypoint_dir>/<clip>.npz) when present, else
    dlib now. ``mode``: 'first_frame' (the reference frame's prior for every frame, as published) or
    'per_frame'; ``strict``: no face is an error instead of the fallback template; ``prior_frame``:
    'first' (the clip's first file) or 'lexicographic_first' (the published kpmaker's frame), the
    reference frame of a first_frame track."""

    def __init__(self, keypoint_dir, frame_size, mode="first_frame", strict=False, landmarker=None,
                 prior_frame="first"):
        self.keypoint_dir = keypoint_dir
        self.frame_size = tuple(frame_size)
        self.mode = mode
        self.strict = strict
        self.prior_frame = prior_frame
        self.landmarker = landmarker or LazyLandmarker()

    @classmethod
    def from_config(cls, dataset_params, landmarker=None):
        """From a validated ``dataset_params`` (every key present: the config is the one source of defaults)."""
        keypoint_dir = dataset_params["keypoint_dir"] or os.path.join(dataset_params["root_dir"], "keypoints")
        return cls(keypoint_dir, dataset_params["frame_shape"][:2], dataset_params["prior_mode"],
                   dataset_params["strict_prior"], landmarker, dataset_params["prior_frame"])

    def track(self, clip, files, original_size, reference=None):
        """PriorTrack of a clip whose frames are ``files`` (in reading order) of (H, W) ``original_size``.

        ``reference``: index of the first_frame prior's frame; None → the source's ``prior_frame``.
        """
        from frame_io import prior_reference
        from frames_dataset import no_landmarks_message, read_clip_prior
        from kpmaker import KeypointError, keypoint_path, load_keypoints, published_files_hint

        files = list(files)
        if reference is None:
            reference = prior_reference([f.name for f in files], self.prior_frame)
        stored = found = None
        path = keypoint_path(self.keypoint_dir, clip) if self.keypoint_dir else None
        if path is not None and path.is_file():
            try:
                has_landmarks = load_keypoints(path)["has_landmarks"]
            except KeypointError as error:
                raise PriorError(str(error)) from None
            if self.mode == "per_frame" and not has_landmarks:
                raise PriorError(no_landmarks_message(path))
            # frames_dataset checks the file against the clip's frames; strict mode is applied below. A file
            # without landmarks holds one prior, the same for every frame.
            prior, found = read_clip_prior(self.keypoint_dir, clip, "per_frame" if has_landmarks else "first_frame",
                                           [f.name for f in files], False)
            stored = scale_prior(prior, original_size, self.frame_size)
        elif path is not None:
            hint = published_files_hint(self.keypoint_dir)
            if hint:
                raise PriorError(f"{clip}: no keypoint file {path}; {hint}")
        track = PriorTrack(clip, files, self.frame_size, self.mode, self.strict, self.landmarker, stored, reference)
        if stored is not None:
            used = [reference] if self.mode == "first_frame" else range(len(files))
            track.fallbacks = [files[i].name for i in used if not found[i]]
            if self.strict and track.fallbacks:
                raise PriorError(f"{clip}: no face in {', '.join(track.fallbacks[:3])} (strict_prior); fix the "
                                 "frames or turn strict_prior off (fallback template)")
        return track
