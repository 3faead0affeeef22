"""Scoring generated clips with dlib and the AU estimator as the independent measuring instruments.

    python evaluate.py reconstruction --generated DIR --real DIR [--out DIR] [--no_aus] [--aus DIR] [--cache DIR]
    python evaluate.py animation --generated DIR --driving DIR --targets DIR [--pairs CSV] [--out DIR] [--no_aus]
                                 [--aus DIR] [--cache DIR]
    python evaluate.py compare --method NAME=DIR [--method NAME=DIR ...] --driving DIR --out DIR [--targets DIR]

A generated clip is a folder of frames or a video file (mp4, gif, …) in --generated; reconstruction
matches it to the real clip of the same name, animation to its driving clip and target face through
its name ``<driving>-<target>`` (or the pairs CSV). Other methods' outputs are scored the same way.
Per-clip rows go to ``<kind>_metrics.csv`` and the summary to ``<kind>_metrics.json`` in --out
(default: --generated). Metric definitions: README, "Metrics"; the maths is in metrics.py and
au_metrics.py (AU fidelity, docs/metrics_aus.md).

AU fidelity (skip it with --no_aus: the estimator costs ~13 ms a frame): one MediaPipe blendshape AU
estimator (au_estimator.py) measures every generated and reference frame of the run; the per-frame
AUs go to <out>/aus_generated/<clip>.csv and <out>/aus_reference/<reference clip>.csv (aumaker's
format). ``--aus DIR`` takes a reference clip's AUs from DIR/<clip>.csv (aumaker.py) where it exists.

``--cache DIR`` keeps the reference frames' dlib measurements (real and driving clips, target faces)
in DIR: scoring several methods against the same clips measures them once (the same numbers).

``compare`` scores several methods' animation folders for the same pairs (each folder's
animation_metrics.json, computed when missing) and writes compare.csv, compare.md and index.html.
"""
import argparse
import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

import au_metrics
import metrics
from au_format import AU_NAMES, AUFormatError, make_table, read_aus, write_aus
from frame_io import list_frames, natural_key
from video_io import VIDEO_EXTENSIONS, MediaError, clip_frame_names, iter_clip, read_image
from errors import InputError, report
from fileio import atomic_write_bytes, atomic_write_text, check_output_dir, disk_full_error, is_disk_full

RECONSTRUCTION_COLUMNS = ("clip", "frames", "l1", "ssim", "psnr", "akd", "akd_frames", "mkr", "mkr_missed",
                          "mkr_counted", "aed", "aed_frames")
ANIMATION_COLUMNS = ("pair", "driving", "target", "frames", "identity_aed", "identity_frames", "face_found",
                     "motion_correlation", "motion_magnitude_ratio", "motion_frames", "background_change")
# AU fidelity per clip (au_metrics.au_fidelity); "driving" is the real clip in a reconstruction.
AU_COLUMNS = ("au_frames", "au_active", "au_active_list", "au_correlation", "au_per_au", "au_apex_driving",
              "au_apex_generated", "au_timing_error", "au_f1", "au_tp", "au_fp", "au_fn", "au_intensity_ratio",
              "au_driving_peak")
AUS_GENERATED, AUS_REFERENCE = "aus_generated", "aus_reference"
# Output folders of animate.py (and of this tool) that are not clips.
NOT_CLIPS = {"png", "side_by_side", AUS_GENERATED, AUS_REFERENCE}


class EvaluationError(InputError, ValueError):
    """Inputs that cannot be scored; the message says which and why."""


class FrameMemo:
    """The last ``size`` measurements of a deterministic instrument, keyed by a frame's pixels.

    ~2 KB an entry (68 landmarks and a 128-D descriptor in float64): the default holds a few demo
    runs' frames in well under 10 MB. Least recently used entries go first.
    """

    def __init__(self, size=4096):
        self.size = size
        self._entries = OrderedDict()

    @staticmethod
    def key(image):
        """(H, W, C) uint8 → a digest of its shape and pixels."""
        image = np.ascontiguousarray(image)
        digest = hashlib.blake2b(image.data, digest_size=16)
        digest.update(repr(image.shape).encode())
        return digest.digest()

    def get(self, key):
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key, value):
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


class ReferenceCache:
    """dlib's measurements of reference frames (real and driving clips, target faces) kept on disk, so
    that scoring another method's outputs against the same references does not measure them again.

    ``folder``/<instrument>-<run>.npz: one file per run that measured something new, written whole
    (temporary file, then rename), read by every later run of the same instrument (the landmark and
    descriptor models, the upsampling, the minimum size). A file that cannot be read is ignored: the
    frames are measured again. Safe to delete at any time.
    """

    def __init__(self, folder, instrument):
        self.folder, self.instrument = Path(folder), instrument
        self._entries, self._new = {}, {}
        for path in sorted(self.folder.glob(f"{instrument}-*.npz")):
            try:
                with np.load(path) as data:
                    for key, face, with_desc, marks, desc in zip(data["keys"], data["face"], data["with_descriptor"],
                                                                 data["landmarks"], data["descriptors"]):
                        self._entries[(key.tobytes(), bool(with_desc))] = (marks if face else None,
                                                                        desc if face and with_desc else None)
            except (OSError, ValueError, KeyError, EOFError):
                continue

    def get(self, key):
        """key: (frame digest, with descriptor) → (landmarks or None, descriptor or None), or None."""
        return self._entries.get(key)

    def put(self, key, value):
        self._entries[key] = self._new[key] = value

    def save(self):
        """Write this run's new measurements (nothing when there are none)."""
        if not self._new:
            return
        keys = list(self._new)
        values = [self._new[k] for k in keys]
        # Digests as (N, 16) uint8: numpy's bytes dtype would drop a digest's trailing zero bytes.
        arrays = {"keys": np.array([np.frombuffer(k, np.uint8) for k, _ in keys]).reshape(len(keys), -1),
                  "with_descriptor": np.array([d for _, d in keys], bool),
                  "face": np.array([m is not None for m, _ in values], bool),
                  "landmarks": np.array([_nan((68, 2)) if m is None else m for m, _ in values]),
                  "descriptors": np.array([_nan(128) if d is None else d for _, d in values])}
        self.folder.mkdir(parents=True, exist_ok=True)
        data = io.BytesIO()
        np.savez(data, **arrays)
        atomic_write_bytes(self.folder / f"{self.instrument}-{os.getpid()}-{time.time_ns()}.npz", data.getvalue())
        self._new = {}


class FaceMeasurer:
    """dlib's 68 landmarks and 128-D descriptor of the largest face in a frame.

    Frames whose shorter side is below ``min_size`` are enlarged (bicubic) before dlib sees them, so
    that faces in 64–128-pixel frames are found; landmarks are returned in the frame's own pixels.
    """

    def __init__(self, landmarker=None, min_size=256, cache_dir=None):
        if landmarker is None:
            from modules.face_landmarks import FaceLandmarker

            landmarker = FaceLandmarker()
        self.landmarker = landmarker
        self.min_size = min_size
        self._memo = FrameMemo()
        self._cache = ReferenceCache(cache_dir, self.instrument()) if cache_dir is not None else None

    def instrument(self):
        """A digest naming this measuring set-up: models, upsampling, minimum size."""
        names = [os.path.basename(str(getattr(self.landmarker, attr, None) or "default"))
                 for attr in ("predictor_path", "_descriptor_path")]
        text = repr((names, getattr(self.landmarker, "upsample", None), self.min_size))
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()

    def measure(self, frame, descriptor=True, reference=False):
        """(H, W, 3) uint8 → (landmarks (68, 2) float64 or None, descriptor (128,) or None).
        A frame measured before (same pixels) is answered from memory: dlib is deterministic, and a
        driving clip is scored once per target, a still baseline repeats one frame. ``reference``:
        a real frame (not generated), also looked up in and added to the on-disk cache if any."""
        from modules.face_landmarks import to_uint8_rgb

        image = to_uint8_rgb(frame)
        key = self._memo.key(image)
        stores = [self._memo] + ([self._cache] if reference and self._cache is not None else [])
        for store in stores:
            known = store.get((key, True)) or (None if descriptor else store.get((key, False)))
            if known is not None:
                self._memo.put((key, descriptor), known)
                return known if descriptor else (known[0], None)
        result = self._measure(image, descriptor)
        for store in stores:
            store.put((key, descriptor), result)
        return result

    def save(self):
        """Write the reference measurements of this run to the cache (a no-op without one)."""
        if self._cache is not None:
            self._cache.save()

    def _measure(self, image, descriptor):
        from modules.face_landmarks import largest

        scale = max(1.0, self.min_size / min(image.shape[:2]))
        if scale > 1:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
        rects = self.landmarker.detector(image, self.landmarker.upsample)
        if len(rects) == 0:
            return None, None
        shape = self.landmarker.predictor(image, largest(rects))
        # Pixel centres: x in the enlarged frame ↔ (x + 0.5) / scale − 0.5 in the original.
        landmarks = (np.array([(p.x, p.y) for p in shape.parts()], np.float64) + 0.5) / scale - 0.5
        desc = None
        if descriptor:
            desc = np.array(self.landmarker.descriptor.compute_face_descriptor(image, shape), np.float64)
        return landmarks, desc


class AUMeasurer:
    """Per-frame AU intensities with one built-in estimator for a whole run (the same instrument for
    every method). The MediaPipe landmarker starts on the first frame and holds native resources:
    call ``close()`` (or use ``with``). ``estimator``: anything with ``estimate(image)`` like
    au_estimator.BlendshapeAUEstimator (tests); it is then not closed here.
    """

    def __init__(self, estimator=None):
        self._estimator = estimator
        self._owned = estimator is None
        self._memo = FrameMemo()

    def measure(self, frame):
        """(H, W, 3) uint8 → (A,) float64 intensities 0–5, NaN when no face is found. The estimator
        runs in IMAGE mode (no tracking state), so a frame seen before is answered from memory."""
        frame = np.ascontiguousarray(frame, np.uint8)
        key = self._memo.key(frame)
        known = self._memo.get(key)
        if known is None:
            known = self._measure(frame)
            self._memo.put(key, known)
        return known.copy()

    def _measure(self, frame):
        if self._estimator is None:
            from au_estimator import AUEstimatorError, BlendshapeAUEstimator, default_model

            try:
                self._estimator = BlendshapeAUEstimator(default_model()[0])
            except AUEstimatorError as error:
                raise EvaluationError(f"AU estimator: {error}; or skip the AU metrics with --no_aus") from None
        measured = self._estimator.estimate(np.asarray(frame, np.uint8))
        return np.full(len(AU_NAMES), np.nan) if measured is None else np.asarray(measured[0], np.float64)

    def close(self):
        if self._owned and self._estimator is not None:
            self._estimator.close()
        self._estimator = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _nan(shape):
    return np.full(shape, np.nan)


def _as_float(frame):
    return np.asarray(frame, np.float64) / 255.0


def _resize_to(frame, shape):
    if frame.shape[:2] == shape[:2]:
        return frame
    return np.asarray(Image.fromarray(frame).resize((shape[1], shape[0]), Image.Resampling.LANCZOS))


def _paired_frames(generated, reference, names=None):
    """Frames of two clips side by side; the reference is resized to the generated frame size.
    ``names``: a list that receives (generated name, reference name) of each frame yielded."""
    gen_iter, ref_iter = iter_clip(str(generated)), iter_clip(str(reference))
    count = 0
    for gen, ref in zip(gen_iter, ref_iter):
        count += 1
        if names is not None:
            names.append((gen[0], ref[0]))
        yield gen[1], _resize_to(ref[1], gen[1].shape)
    leftover_gen, leftover_ref = next(gen_iter, None), next(ref_iter, None)
    if leftover_gen is not None or leftover_ref is not None:
        longer = generated if leftover_gen is not None else reference
        raise EvaluationError(f"{generated} and {reference} have different frame counts "
                              f"({longer} has more than {count})")


def _weighted(values, weights):
    values, weights = np.asarray(values, np.float64), np.asarray(weights, np.float64)
    keep = ~np.isnan(values) & (weights > 0)
    return float(np.sum(values[keep] * weights[keep]) / np.sum(weights[keep])) if keep.any() else float("nan")


class _AUTrack:
    """The AUs of one generated clip and its reference, gathered frame by frame.

    ``reference_aus``: the reference's (T, A) AUs when already known (--aus file, or the same
    driving clip measured at the same size for an earlier pair); its frames are then not measured.
    """

    def __init__(self, au_measurer, reference, reference_aus=None):
        self.measurer, self.reference = au_measurer, reference
        self.known = reference_aus
        self.names, self.generated, self.measured = [], [], []

    def add(self, gen, ref):
        if self.measurer is None:
            return
        self.generated.append(self.measurer.measure(gen))
        if self.known is None:
            self.measured.append(self.measurer.measure(ref))

    def finish(self, row):
        """Add the AU columns to ``row`` and the trajectories under the private key '_aus'."""
        if self.measurer is None:
            return row
        count = len(self.generated)
        empty = np.zeros((0, len(AU_NAMES)))
        generated = np.array(self.generated).reshape(-1, len(AU_NAMES)) if count else empty
        reference = self.known if self.known is not None else (np.array(self.measured).reshape(-1, len(AU_NAMES))
                                                               if count else empty)
        if len(reference) != count:
            raise EvaluationError(f"AUs of {self.reference}: {len(reference)} frames, the clips have {count}; "
                                  "re-run aumaker.py or drop --aus")
        row.update(au_metrics.au_fidelity(generated, reference))
        row["_aus"] = {"generated": generated, "reference": reference,
                       "generated_frames": [g for g, _ in self.names], "reference_frames": [r for _, r in self.names]}
        return row


def evaluate_reconstruction_clip(generated, real, measurer, au_measurer=None, reference_aus=None):
    """Metrics of one reconstructed clip against the real one. → a row of RECONSTRUCTION_COLUMNS
    (+ AU_COLUMNS and '_aus' with ``au_measurer``; ``reference_aus``: the real clip's (T, A) AUs)."""
    l1, ssim, psnr = [], [], []
    gen_marks, real_marks, gen_desc, real_desc = [], [], [], []
    track = _AUTrack(au_measurer, real, reference_aus)
    for gen, real_frame in _paired_frames(generated, real, track.names):
        track.add(gen, real_frame)
        g, r = _as_float(gen), _as_float(real_frame)
        l1.append(metrics.l1(g, r))
        ssim.append(metrics.ssim(g, r))
        psnr.append(metrics.psnr(g, r))
        for frame, marks, descs, real in ((gen, gen_marks, gen_desc, False), (real_frame, real_marks, real_desc, True)):
            landmarks, descriptor = measurer.measure(frame, reference=real)
            marks.append(landmarks if landmarks is not None else _nan((68, 2)))
            descs.append(descriptor if descriptor is not None else _nan(128))
    gen_marks, real_marks = np.array(gen_marks), np.array(real_marks)
    found_gen = ~np.isnan(gen_marks).any(axis=(1, 2))
    found_real = ~np.isnan(real_marks).any(axis=(1, 2))
    akd = metrics.keypoint_distance(gen_marks, real_marks)
    aed = metrics.descriptor_distance(np.array(gen_desc), np.array(real_desc))
    missed, counted = metrics.missing_keypoint_rate(found_gen, found_real)
    return track.finish({"clip": Path(generated).stem if Path(generated).is_file() else Path(generated).name,
            "frames": len(l1), "l1": float(np.mean(l1)), "ssim": float(np.mean(ssim)),
            "psnr": float(np.mean(psnr)),
            "akd": float(np.nanmean(akd)) if (~np.isnan(akd)).any() else float("nan"),
            "akd_frames": int((~np.isnan(akd)).sum()),
            "mkr": missed / counted if counted else float("nan"), "mkr_missed": missed, "mkr_counted": counted,
            "aed": float(np.nanmean(aed)) if (~np.isnan(aed)).any() else float("nan"),
            "aed_frames": int((~np.isnan(aed)).sum())})


def summarize_reconstruction(rows):
    """Overall values pooled over all frames (each clip weighted by the frames that entered its value)."""
    frames = [r["frames"] for r in rows]
    missed = sum(r["mkr_missed"] for r in rows)
    counted = sum(r["mkr_counted"] for r in rows)
    return {"clips": len(rows), "frames": int(sum(frames)),
            "l1": _weighted([r["l1"] for r in rows], frames),
            "ssim": _weighted([r["ssim"] for r in rows], frames),
            "psnr": _weighted([r["psnr"] for r in rows], frames),
            "akd": _weighted([r["akd"] for r in rows], [r["akd_frames"] for r in rows]),
            "mkr": missed / counted if counted else float("nan"),
            "aed": _weighted([r["aed"] for r in rows], [r["aed_frames"] for r in rows])}


def evaluate_animation_clip(generated, driving, target, measurer, au_measurer=None, reference_aus=None):
    """Metrics of one animated clip: identity kept (to the target), motion transferred (from the
    driving clip), background stability. ``target``: (H, W, 3) uint8. → a row of ANIMATION_COLUMNS
    (+ AU_COLUMNS and '_aus' with ``au_measurer``; ``reference_aus``: the driving clip's (T, A) AUs)."""
    target_marks = target_desc = None
    gen_marks, drv_marks, identity = [], [], []
    changes = []
    previous = outside = None
    track = _AUTrack(au_measurer, driving, reference_aus)
    for gen, drv in _paired_frames(generated, driving, track.names):
        track.add(gen, drv)
        if target_desc is None and target_marks is None:
            target_frame = _resize_to(np.asarray(target, np.uint8), gen.shape)
            target_marks, target_desc = measurer.measure(target_frame, reference=True)
            outside = (~metrics.face_region_mask(target_marks, gen.shape[:2]) if target_marks is not None
                       else np.ones(gen.shape[:2], bool))
        landmarks, descriptor = measurer.measure(gen, descriptor=target_desc is not None)
        gen_marks.append(landmarks if landmarks is not None else _nan((68, 2)))
        if descriptor is not None:
            identity.append(float(metrics.descriptor_distance(descriptor, target_desc)))
        landmarks, _ = measurer.measure(drv, descriptor=False, reference=True)
        drv_marks.append(landmarks if landmarks is not None else _nan((68, 2)))
        current = _as_float(gen)
        if previous is not None:
            changes.append(metrics.frame_change(previous, current, outside))
        previous = current
    frames = len(gen_marks)
    motion = metrics.motion_transfer(np.array(gen_marks), np.array(drv_marks)) if frames else {
        "correlation": float("nan"), "magnitude_ratio": float("nan"), "frames": 0}
    found = int((~np.isnan(np.array(gen_marks)).any(axis=(1, 2))).sum()) if frames else 0
    return track.finish({"frames": frames,
            "identity_aed": float(np.mean(identity)) if identity else float("nan"),
            "identity_frames": len(identity),
            "face_found": found / frames if frames else float("nan"),
            "motion_correlation": motion["correlation"], "motion_magnitude_ratio": motion["magnitude_ratio"],
            "motion_frames": motion["frames"],
            "background_change": float(np.nanmean(changes)) if changes else float("nan")})


def summarize_animation(rows):
    frames = [r["frames"] for r in rows]
    return {"pairs": len(rows), "frames": int(sum(frames)),
            "identity_aed": _weighted([r["identity_aed"] for r in rows], [r["identity_frames"] for r in rows]),
            "face_found": _weighted([r["face_found"] for r in rows], frames),
            "motion_correlation": _weighted([r["motion_correlation"] for r in rows], [r["motion_frames"] for r in rows]),
            "motion_magnitude_ratio": _weighted([r["motion_magnitude_ratio"] for r in rows],
                                                [r["motion_frames"] for r in rows]),
            "background_change": _weighted([r["background_change"] for r in rows], [max(f - 1, 0) for f in frames])}


def generated_clips(folder):
    """{name: path} of the generated clips in a folder: subfolders of frames and video files; a frames
    folder wins over a video of the same name (PNG is lossless)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: no such folder of generated clips")
    clips = {}
    for entry in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name.startswith(".") or entry.name in NOT_CLIPS:
            continue
        if entry.is_dir() and list_frames(entry):
            clips[entry.name] = entry
        elif entry.is_file() and entry.suffix.lower() in VIDEO_EXTENSIONS:
            clips.setdefault(entry.stem, entry)
    return clips


def _find_clip(folder, name):
    """A clip folder or video file named ``name`` under ``folder``, or None."""
    folder = Path(folder)
    if (folder / name).is_dir():
        return folder / name
    for ext in VIDEO_EXTENSIONS:
        if (folder / f"{name}{ext}").is_file():
            return folder / f"{name}{ext}"
    return None


def _find_target(folder, name):
    """A target face: <folder>/<name>/ (its first image) or <folder>/<name>.<image ext>; None if absent."""
    folder = Path(folder)
    if (folder / name).is_dir():
        files = list_frames(folder / name)
        return files[0] if files else None
    for candidate in sorted(folder.glob(f"{name}.*")):
        if candidate.is_file() and candidate.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
            return candidate
    return None


def resolve_pair(name, driving_root, target_root, pairs=None):
    """(driving, target) names of a generated clip ``<driving>-<target>``: from the pairs {name: (d, t)}
    when given, else the split at a '-' where both parts exist. None when nothing fits."""
    if pairs is not None:
        return pairs.get(name)
    for index in [i for i, ch in enumerate(name) if ch == "-"]:
        driving, target = name[:index], name[index + 1:]
        if _find_clip(driving_root, driving) is not None and _find_target(target_root, target) is not None:
            return driving, target
    return None


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return _clean(value.item())
    return value


def write_results(rows, summary, columns, out_dir, kind):
    """<out_dir>/<kind>_metrics.csv (one row per clip) and <kind>_metrics.json (summary + rows). → paths.
    Each file is written through a temporary sibling and renamed: a crash leaves the old one or none."""
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, f"{kind}_metrics.csv")
    json_path = os.path.join(out_dir, f"{kind}_metrics.json")
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if _clean(row.get(k)) is None else row.get(k)) for k in columns})
    atomic_write_text(csv_path, text.getvalue())
    atomic_write_text(json_path, json.dumps({"kind": kind, "summary": {k: _clean(v) for k, v in summary.items()},
                                             "clips": [{k: _clean(row.get(k)) for k in columns} for row in rows]},
                                            indent=2))
    return csv_path, json_path


def reference_aus(aus_dir, clip_name, reference):
    """The reference clip's (T, A) AUs from aumaker's <aus_dir>/<clip_name>.csv, or None without one.
    Raises EvaluationError when the file does not list exactly the clip's frames."""
    if aus_dir is None:
        return None
    path = Path(aus_dir) / f"{clip_name}.csv"
    if not path.is_file():
        return None
    try:
        table = read_aus(path)
    except AUFormatError as error:
        raise EvaluationError(str(error)) from None
    frames = clip_frame_names(str(reference))
    if table.frames != frames:
        raise EvaluationError(f"{path}: lists {len(table.frames)} frames ({', '.join(table.frames[:2])}, …), not the "
                              f"{len(frames)} frames of {reference}; re-run aumaker.py or drop --aus")
    return table.intensity.astype(np.float64)


def save_aus(out_dir, name, reference_name, row):
    """The AUs a row was scored with (its '_aus', removed from it) → <out>/aus_generated/<name>.csv and
    <out>/aus_reference/<reference_name>.csv, in aumaker's format (au_format.py)."""
    from au_estimator import presence_from_intensity

    aus = row.pop("_aus", None)
    if aus is None:
        return
    for folder, clip, key in ((AUS_GENERATED, name, "generated"), (AUS_REFERENCE, reference_name, "reference")):
        intensity = aus[key]
        found = ~np.isnan(intensity).any(axis=1)
        table = make_table(aus[f"{key}_frames"], np.nan_to_num(intensity), presence_from_intensity(np.nan_to_num(intensity)),
                           found)
        write_aus(Path(out_dir) / folder / f"{clip}.csv", table)


def _with_aus(run, aus, au_measurer):
    """Run ``run(au_measurer)`` with the AU measurer to use: None without AUs, the caller's, or one
    made here for the run and closed after it."""
    if not aus:
        return run(None)
    if au_measurer is not None:
        return run(au_measurer)
    with AUMeasurer() as own:
        return run(own)


def evaluate_reconstruction(generated_root, real_root, out_dir=None, measurer=None, log=print, names=None,
                            aus=True, au_measurer=None, aus_dir=None, cache_dir=None):
    """Score every generated clip (or those in ``names``) that has a real clip of the same name.
    ``aus``: add the AU fidelity (AU_COLUMNS) with ``au_measurer`` (default: one made for this call);
    ``aus_dir``: aumaker CSVs of the real clips to use instead of measuring them; ``cache_dir``: the
    real frames' dlib measurements kept there (ReferenceCache; with the default measurer).
    → (rows, summary)."""
    clips = generated_clips(generated_root)
    if names is not None:
        clips = {name: path for name, path in clips.items() if name in set(names)}
    if not Path(real_root).is_dir():   # say so, rather than "no generated clip matches"
        raise EvaluationError(f"--real {real_root}: no such folder (the real clips, e.g. data/NAME/test)")
    matched = {name: path for name, path in clips.items() if _find_clip(real_root, name) is not None}
    if not matched:
        raise EvaluationError(f"{generated_root}: no generated clip matches a clip in {real_root}")
    out_dir = out_dir or generated_root
    check_output_dir(out_dir, "--out")   # before scoring, not after
    measurer = measurer or FaceMeasurer(cache_dir=cache_dir)

    def run(au):
        rows = []
        for name, path in _progress(matched.items(), generated_root, len(matched)):
            real = _find_clip(real_root, name)
            known = reference_aus(aus_dir, name, real) if au is not None else None
            rows.append(evaluate_reconstruction_clip(path, real, measurer, au, known))
            rows[-1]["clip"] = name
            save_aus(out_dir, name, name, rows[-1])
            log(f"{name}: L1 {rows[-1]['l1']:.4f}  AKD {rows[-1]['akd']:.2f}  MKR {rows[-1]['mkr']:.3f}  "
                f"AED {rows[-1]['aed']:.3f}" + _au_log(rows[-1]))
        return rows

    rows = _with_aus(run, aus, au_measurer)
    measurer.save()
    summary = summarize_reconstruction(rows)
    if aus:
        summary.update(au_metrics.pool(rows))
    write_results(rows, summary, RECONSTRUCTION_COLUMNS + (AU_COLUMNS if aus else ()), out_dir, "reconstruction")
    return rows, summary


def _au_log(row):
    if "au_f1" not in row:
        return ""
    return (f"  AU r {row['au_correlation']:.3f}  F1 {row['au_f1']:.3f}  apex ±{row['au_timing_error']:.0f}  "
            f"ratio {row['au_intensity_ratio']:.3f}")


def read_pairs_map(path):
    """{'<driving>-<target>': (driving, target)} from a pairs CSV (columns source, driving)."""
    from animate import read_pairs

    return {pair.name: (pair.driving, pair.target) for pair in read_pairs(path)}


def animation_jobs(generated_root, driving_root, target_root, pairs_csv=None):
    """[(name, clip path, (driving name, target name), driving path, target path)] of a folder of
    animations; raises EvaluationError when nothing (or a named driving clip / target) is found."""
    pairs = read_pairs_map(pairs_csv) if pairs_csv else None
    jobs = []
    for name, path in generated_clips(generated_root).items():
        resolved = resolve_pair(name, driving_root, target_root, pairs)
        if resolved is None:
            continue
        driving, target = _find_clip(driving_root, resolved[0]), _find_target(target_root, resolved[1])
        if driving is None or target is None:
            raise EvaluationError(f"{name}: driving clip {resolved[0]} or target {resolved[1]} not found "
                                  f"in {driving_root} / {target_root}")
        jobs.append((name, path, resolved, driving, target))
    if not jobs:
        raise EvaluationError(f"{generated_root}: no generated clip named <driving>-<target> matches a clip in "
                              f"{driving_root} and a face in {target_root}")
    return jobs


def evaluate_animation(generated_root, driving_root, target_root, pairs_csv=None, out_dir=None, measurer=None,
                       log=print, aus=True, au_measurer=None, aus_dir=None, cache_dir=None):
    """Score every generated clip ``<driving>-<target>`` against its driving clip and target face.
    ``aus``, ``au_measurer``, ``aus_dir``, ``cache_dir``: as evaluate_reconstruction (``aus_dir``
    holds the driving clips' AUs, ``cache_dir`` their and the targets' dlib measurements). → (rows, summary)."""
    jobs = animation_jobs(generated_root, driving_root, target_root, pairs_csv)
    out_dir = out_dir or generated_root
    check_output_dir(out_dir, "--out")   # before scoring, not after
    measurer = measurer or FaceMeasurer(cache_dir=cache_dir)

    def run(au):
        rows = []
        measured = {}   # a driving clip drives several targets: measure it once per frame size
        for name, path, (driving_name, target_name), driving, target in _progress(jobs, generated_root, len(jobs)):
            known = reference_aus(aus_dir, driving_name, driving) if au is not None else None
            key = (str(driving), _first_frame_shape(path)) if au is not None and known is None else None
            row = {"pair": name, "driving": driving_name, "target": target_name}
            row.update(evaluate_animation_clip(path, driving, read_image(target), measurer, au,
                                               known if key is None else measured.get(key)))
            if key is not None:
                measured[key] = row["_aus"]["reference"]
            save_aus(out_dir, name, driving_name, row)
            rows.append(row)
            log(f"{name}: identity AED {row['identity_aed']:.3f}  motion r {row['motion_correlation']:.3f}  "
                f"ratio {row['motion_magnitude_ratio']:.3f}  background {row['background_change']:.4f}"
                + _au_log(row))
        return rows

    rows = _with_aus(run, aus, au_measurer)
    measurer.save()
    summary = summarize_animation(rows)
    if aus:
        summary.update(au_metrics.pool(rows))
    write_results(rows, summary, ANIMATION_COLUMNS + (AU_COLUMNS if aus else ()), out_dir, "animation")
    return rows, summary


def _progress(items, generated_root, total):
    """A progress bar on stderr (terminals only) labelled with the method's folder, e.g.
    'fp-fomm/animation', so that several evaluations side by side can be told apart."""
    from tqdm import tqdm

    folder = Path(generated_root).resolve()
    return tqdm(items, total=total, desc=f"{folder.parent.name}/{folder.name}", unit="clip", file=sys.stderr,
                disable=None)


def _first_frame_shape(clip):
    """(H, W) of a clip's first frame (the size its driving clip is measured at)."""
    return next(iter_clip(str(clip)))[1].shape[:2]


def _add_cache_option(parser):
    parser.add_argument("--cache", default=None, metavar="DIR",
                        help="keep the reference frames' dlib measurements (real / driving clips, targets) in DIR, "
                             "so that scoring other methods against the same clips reads them instead of measuring "
                             "again (same numbers; safe to delete)")


def _add_au_options(parser, reference):
    parser.add_argument("--no_aus", action="store_true",
                        help="skip the AU fidelity metrics (the AU estimator costs ~13 ms per frame)")
    parser.add_argument("--aus", default=None, metavar="DIR",
                        help=f"aumaker.py CSVs of the {reference} clips (DIR/<clip>.csv), used where they exist "
                             "instead of measuring those clips")


def build_parser():
    parser = argparse.ArgumentParser(description="Score generated clips with dlib landmarks, face descriptors and "
                                                 "action units (MediaPipe blendshape proxies).")
    sub = parser.add_subparsers(dest="kind", required=True)
    rec = sub.add_parser("reconstruction", help="generated clips against the real clips they reconstruct")
    rec.add_argument("--generated", required=True, help="folder of generated clips (frame folders or videos)")
    rec.add_argument("--real", required=True, help="folder of the real clips (same names)")
    rec.add_argument("--out", default=None, help="where the CSV and JSON go (default: --generated)")
    _add_au_options(rec, "real")
    _add_cache_option(rec)
    ani = sub.add_parser("animation", help="animated clips <driving>-<target> against drivers and targets")
    ani.add_argument("--generated", required=True, help="folder of generated clips named <driving>-<target>")
    ani.add_argument("--driving", required=True, help="folder of the driving clips")
    ani.add_argument("--targets", default=None, help="folder of the target faces (default: --driving)")
    ani.add_argument("--pairs", default=None, help="pairs CSV (columns source, driving) to resolve the names")
    ani.add_argument("--out", default=None, help="where the CSV and JSON go (default: --generated)")
    _add_au_options(ani, "driving")
    _add_cache_option(ani)
    com = sub.add_parser("compare", help="several methods' animations of the same pairs: one table and one page")
    com.add_argument("--method", action="append", required=True, metavar="NAME=DIR",
                     help="a method's animation output folder (its animation_metrics.json is computed when "
                          "missing); repeat for every method, in the order of the table's rows")
    com.add_argument("--driving", required=True, help="folder of the driving clips")
    com.add_argument("--targets", default=None, help="folder of the target faces (default: --driving)")
    com.add_argument("--pairs", default=None, help="pairs CSV (columns source, driving) to resolve the names")
    com.add_argument("--out", required=True, help="where compare.csv, compare.md, index.html and the plots go")
    com.add_argument("--recompute", action="store_true", help="score every method again even if its metrics exist")
    com.add_argument("--fps", type=float, default=10.0, help="frame rate of the page's GIFs (default 10)")
    _add_au_options(com, "driving")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from inference import AnimationError
    from modules.face_landmarks import FaceModelError

    if args.kind == "compare":
        try:
            import compare_page

            compare_page.compare(parse_methods(args.method), args.driving, args.out, args.targets or args.driving,
                                 args.pairs, aus=not args.no_aus, aus_dir=args.aus, recompute=args.recompute,
                                 fps=args.fps)
        except (InputError, MediaError, AnimationError, FaceModelError) as error:
            return report("evaluate.py", error if isinstance(error, InputError) else EvaluationError(str(error)))
        return 0
    try:
        if args.cache is not None:
            check_output_dir(args.cache, "--cache")
        if args.kind == "reconstruction":
            _, summary = evaluate_reconstruction(args.generated, args.real, args.out, aus=not args.no_aus,
                                                 aus_dir=args.aus, cache_dir=args.cache)
        else:
            _, summary = evaluate_animation(args.generated, args.driving, args.targets or args.driving, args.pairs,
                                            args.out, aus=not args.no_aus, aus_dir=args.aus, cache_dir=args.cache)
    except (InputError, MediaError, AnimationError, FaceModelError, OSError) as error:
        if isinstance(error, OSError) and is_disk_full(error):
            return report("evaluate.py", disk_full_error(args.out or args.generated, "no partial CSV or JSON is "
                                                         "left; earlier results are kept"))
        # Every tool's convention (errors.py): one line 'evaluate.py: error: …', exit 2.
        return report("evaluate.py", error if isinstance(error, InputError) else EvaluationError(str(error)))
    print(json.dumps({k: _clean(v) for k, v in summary.items()}, indent=2))
    return 0


def parse_methods(values):
    """['NAME=DIR', …] → {NAME: Path(DIR)} in order; raises EvaluationError for a bad or repeated one."""
    methods = {}
    for value in values:
        name, sep, folder = value.partition("=")
        name = name.strip()
        if not sep or not name or not folder:
            raise EvaluationError(f"--method {value}: expected NAME=DIR (e.g. fp-fomm=results/fp-fomm/animation)")
        if name in methods:
            raise EvaluationError(f"--method {value}: the name {name} is given twice")
        methods[name] = Path(folder)
    return methods


if __name__ == "__main__":
    sys.exit(main())
