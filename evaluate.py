"""Scoring generated clips with dlib as the independent measuring instrument.

    python evaluate.py reconstruction --generated DIR --real DIR [--out DIR]
    python evaluate.py animation --generated DIR --driving DIR --targets DIR [--pairs CSV] [--out DIR]

A generated clip is a folder of frames or a video file (mp4, gif, …) in --generated; reconstruction
matches it to the real clip of the same name, animation to its driving clip and target face through
its name ``<driving>-<target>`` (or the pairs CSV). Other methods' outputs are scored the same way.
Per-clip rows go to ``<kind>_metrics.csv`` and the summary to ``<kind>_metrics.json`` in --out
(default: --generated). Metric definitions: README, "Metrics"; the maths is in metrics.py.
"""
import argparse
import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import metrics
from frame_io import list_frames, natural_key
from video_io import VIDEO_EXTENSIONS, MediaError, iter_clip, read_image
from errors import InputError

RECONSTRUCTION_COLUMNS = ("clip", "frames", "l1", "ssim", "psnr", "akd", "akd_frames", "mkr", "mkr_missed",
                          "mkr_counted", "aed", "aed_frames")
ANIMATION_COLUMNS = ("pair", "driving", "target", "frames", "identity_aed", "identity_frames", "face_found",
                     "motion_correlation", "motion_magnitude_ratio", "motion_frames", "background_change")
# Output folders of animate.py that are not clips.
NOT_CLIPS = {"png", "side_by_side"}


class EvaluationError(InputError, ValueError):
    """Inputs that cannot be scored; the message says which and why."""


class FaceMeasurer:
    """dlib's 68 landmarks and 128-D descriptor of the largest face in a frame.

    Frames whose shorter side is below ``min_size`` are enlarged (bicubic) before dlib sees them, so
    that faces in 64–128-pixel frames are found; landmarks are returned in the frame's own pixels.
    """

    def __init__(self, landmarker=None, min_size=256):
        if landmarker is None:
            from modules.face_landmarks import FaceLandmarker

            landmarker = FaceLandmarker()
        self.landmarker = landmarker
        self.min_size = min_size

    def measure(self, frame, descriptor=True):
        """(H, W, 3) uint8 → (landmarks (68, 2) float64 or None, descriptor (128,) or None)."""
        from modules.face_landmarks import largest, to_uint8_rgb

        image = to_uint8_rgb(frame)
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


def _nan(shape):
    return np.full(shape, np.nan)


def _as_float(frame):
    return np.asarray(frame, np.float64) / 255.0


def _resize_to(frame, shape):
    if frame.shape[:2] == shape[:2]:
        return frame
    return np.asarray(Image.fromarray(frame).resize((shape[1], shape[0]), Image.Resampling.LANCZOS))


def _paired_frames(generated, reference):
    """Frames of two clips side by side; the reference is resized to the generated frame size."""
    gen_iter, ref_iter = iter_clip(str(generated)), iter_clip(str(reference))
    count = 0
    for gen, ref in zip(gen_iter, ref_iter):
        count += 1
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


def evaluate_reconstruction_clip(generated, real, measurer):
    """Metrics of one reconstructed clip against the real one. → a row of RECONSTRUCTION_COLUMNS."""
    l1, ssim, psnr = [], [], []
    gen_marks, real_marks, gen_desc, real_desc = [], [], [], []
    for gen, real_frame in _paired_frames(generated, real):
        g, r = _as_float(gen), _as_float(real_frame)
        l1.append(metrics.l1(g, r))
        ssim.append(metrics.ssim(g, r))
        psnr.append(metrics.psnr(g, r))
        for frame, marks, descs in ((gen, gen_marks, gen_desc), (real_frame, real_marks, real_desc)):
            landmarks, descriptor = measurer.measure(frame)
            marks.append(landmarks if landmarks is not None else _nan((68, 2)))
            descs.append(descriptor if descriptor is not None else _nan(128))
    gen_marks, real_marks = np.array(gen_marks), np.array(real_marks)
    found_gen = ~np.isnan(gen_marks).any(axis=(1, 2))
    found_real = ~np.isnan(real_marks).any(axis=(1, 2))
    akd = metrics.keypoint_distance(gen_marks, real_marks)
    aed = metrics.descriptor_distance(np.array(gen_desc), np.array(real_desc))
    missed, counted = metrics.missing_keypoint_rate(found_gen, found_real)
    return {"clip": Path(generated).stem if Path(generated).is_file() else Path(generated).name,
            "frames": len(l1), "l1": float(np.mean(l1)), "ssim": float(np.mean(ssim)),
            "psnr": float(np.mean(psnr)),
            "akd": float(np.nanmean(akd)) if (~np.isnan(akd)).any() else float("nan"),
            "akd_frames": int((~np.isnan(akd)).sum()),
            "mkr": missed / counted if counted else float("nan"), "mkr_missed": missed, "mkr_counted": counted,
            "aed": float(np.nanmean(aed)) if (~np.isnan(aed)).any() else float("nan"),
            "aed_frames": int((~np.isnan(aed)).sum())}


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


def evaluate_animation_clip(generated, driving, target, measurer):
    """Metrics of one animated clip: identity kept (to the target), motion transferred (from the
    driving clip), background stability. ``target``: (H, W, 3) uint8. → a row of ANIMATION_COLUMNS."""
    target_marks = target_desc = None
    gen_marks, drv_marks, identity = [], [], []
    changes = []
    previous = outside = None
    for gen, drv in _paired_frames(generated, driving):
        if target_desc is None and target_marks is None:
            target_frame = _resize_to(np.asarray(target, np.uint8), gen.shape)
            target_marks, target_desc = measurer.measure(target_frame)
            outside = (~metrics.face_region_mask(target_marks, gen.shape[:2]) if target_marks is not None
                       else np.ones(gen.shape[:2], bool))
        landmarks, descriptor = measurer.measure(gen, descriptor=target_desc is not None)
        gen_marks.append(landmarks if landmarks is not None else _nan((68, 2)))
        if descriptor is not None:
            identity.append(float(metrics.descriptor_distance(descriptor, target_desc)))
        landmarks, _ = measurer.measure(drv, descriptor=False)
        drv_marks.append(landmarks if landmarks is not None else _nan((68, 2)))
        current = _as_float(gen)
        if previous is not None:
            changes.append(metrics.frame_change(previous, current, outside))
        previous = current
    frames = len(gen_marks)
    motion = metrics.motion_transfer(np.array(gen_marks), np.array(drv_marks)) if frames else {
        "correlation": float("nan"), "magnitude_ratio": float("nan"), "frames": 0}
    found = int((~np.isnan(np.array(gen_marks)).any(axis=(1, 2))).sum()) if frames else 0
    return {"frames": frames,
            "identity_aed": float(np.mean(identity)) if identity else float("nan"),
            "identity_frames": len(identity),
            "face_found": found / frames if frames else float("nan"),
            "motion_correlation": motion["correlation"], "motion_magnitude_ratio": motion["magnitude_ratio"],
            "motion_frames": motion["frames"],
            "background_change": float(np.nanmean(changes)) if changes else float("nan")}


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
    """<out_dir>/<kind>_metrics.csv (one row per clip) and <kind>_metrics.json (summary + rows). → paths."""
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, f"{kind}_metrics.csv")
    json_path = os.path.join(out_dir, f"{kind}_metrics.json")
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if _clean(row.get(k)) is None else row.get(k)) for k in columns})
    with open(json_path, "w") as handle:
        json.dump({"kind": kind, "summary": {k: _clean(v) for k, v in summary.items()},
                   "clips": [{k: _clean(row.get(k)) for k in columns} for row in rows]}, handle, indent=2)
    return csv_path, json_path


def evaluate_reconstruction(generated_root, real_root, out_dir=None, measurer=None, log=print, names=None):
    """Score every generated clip (or those in ``names``) that has a real clip of the same name.
    → (rows, summary)."""
    clips = generated_clips(generated_root)
    if names is not None:
        clips = {name: path for name, path in clips.items() if name in set(names)}
    matched = {name: path for name, path in clips.items() if _find_clip(real_root, name) is not None}
    if not matched:
        raise EvaluationError(f"{generated_root}: no generated clip matches a clip in {real_root}")
    measurer = measurer or FaceMeasurer()
    rows = []
    for name, path in matched.items():
        rows.append(evaluate_reconstruction_clip(path, _find_clip(real_root, name), measurer))
        rows[-1]["clip"] = name
        log(f"{name}: L1 {rows[-1]['l1']:.4f}  AKD {rows[-1]['akd']:.2f}  MKR {rows[-1]['mkr']:.3f}  AED {rows[-1]['aed']:.3f}")
    summary = summarize_reconstruction(rows)
    write_results(rows, summary, RECONSTRUCTION_COLUMNS, out_dir or generated_root, "reconstruction")
    return rows, summary


def read_pairs_map(path):
    """{'<driving>-<target>': (driving, target)} from a pairs CSV (columns source, driving)."""
    from animate import read_pairs

    return {pair.name: (pair.driving, pair.target) for pair in read_pairs(path)}


def evaluate_animation(generated_root, driving_root, target_root, pairs_csv=None, out_dir=None, measurer=None,
                       log=print):
    """Score every generated clip ``<driving>-<target>`` against its driving clip and target face.
    → (rows, summary)."""
    pairs = read_pairs_map(pairs_csv) if pairs_csv else None
    clips = generated_clips(generated_root)
    jobs = []
    for name, path in clips.items():
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
    measurer = measurer or FaceMeasurer()
    rows = []
    for name, path, (driving_name, target_name), driving, target in jobs:
        row = {"pair": name, "driving": driving_name, "target": target_name}
        row.update(evaluate_animation_clip(path, driving, read_image(target), measurer))
        rows.append(row)
        log(f"{name}: identity AED {row['identity_aed']:.3f}  motion r {row['motion_correlation']:.3f}  "
            f"ratio {row['motion_magnitude_ratio']:.3f}  background {row['background_change']:.4f}")
    summary = summarize_animation(rows)
    write_results(rows, summary, ANIMATION_COLUMNS, out_dir or generated_root, "animation")
    return rows, summary


def build_parser():
    parser = argparse.ArgumentParser(description="Score generated clips with dlib landmarks and face descriptors.")
    sub = parser.add_subparsers(dest="kind", required=True)
    rec = sub.add_parser("reconstruction", help="generated clips against the real clips they reconstruct")
    rec.add_argument("--generated", required=True, help="folder of generated clips (frame folders or videos)")
    rec.add_argument("--real", required=True, help="folder of the real clips (same names)")
    rec.add_argument("--out", default=None, help="where the CSV and JSON go (default: --generated)")
    ani = sub.add_parser("animation", help="animated clips <driving>-<target> against drivers and targets")
    ani.add_argument("--generated", required=True, help="folder of generated clips named <driving>-<target>")
    ani.add_argument("--driving", required=True, help="folder of the driving clips")
    ani.add_argument("--targets", default=None, help="folder of the target faces (default: --driving)")
    ani.add_argument("--pairs", default=None, help="pairs CSV (columns source, driving) to resolve the names")
    ani.add_argument("--out", default=None, help="where the CSV and JSON go (default: --generated)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from inference import AnimationError
    from modules.face_landmarks import FaceModelError

    try:
        if args.kind == "reconstruction":
            _, summary = evaluate_reconstruction(args.generated, args.real, args.out)
        else:
            _, summary = evaluate_animation(args.generated, args.driving, args.targets or args.driving, args.pairs,
                                            args.out)
    except (EvaluationError, MediaError, AnimationError, FaceModelError, OSError) as error:
        print(f"evaluate.py: {error}", file=sys.stderr)
        return 1
    print(json.dumps({k: _clean(v) for k, v in summary.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
