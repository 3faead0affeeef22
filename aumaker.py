"""Per-frame action-unit (AU) intensities for every clip: the AU sibling of kpmaker.py.

    python aumaker.py --root data/NAME [--out DIR] [--openface DIR] [--workers N] [--splits train test]

For each clip folder under <root>/train and <root>/test, one CSV <out>/<clip>.csv (default
<root>/aus), a row per frame: frame, AU01_r … AU45_r (0–5), AU01_c … AU45_c (0/1), found
(format: au_format.py). The AUs come from

- the built-in estimator (default): MediaPipe FaceLandmarker's blendshapes mapped to the 17 AUs
  (au_estimator.py; proxies, not FACS-coded intensities), or
- OpenFace (``--openface DIR``): DIR/<clip>.csv from FeatureExtraction or DIR/<clip>/<frame stem>.csv
  from FaceLandmarkImg, imported unchanged (openface.py).

Frames without a measured face get found=0 and empty AU cells (never invented values); they are
listed in <out>/not_found_report.csv. A re-run skips clips whose frames, AU source and CSV are
unchanged (<out>/.aumaker/<clip>.json records what made each CSV). Exit codes: 0 done; 1 some
clips failed (unreadable frames), listed one line each; 2 unusable input (flags, OpenFace files).
"""
import csv
import io
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from au_format import au_path, empty_rows, make_table, write_aus
from cli_args import OneLineParser
from errors import EXIT_FAILED, EXIT_OK, InputError, RunError, report
from fileio import atomic_write_text, check_output_dir, disk_full_error, is_disk_full
from frame_io import FrameError, frames_fingerprint, list_frames, read_rgb, split_clips
import openface
from openface import DEFAULT_MIN_CONFIDENCE

SPLITS = ("train", "test")
META_DIR = ".aumaker"
META_VERSION = 1
REPORT_NAME = "not_found_report.csv"
BUILTIN, OPENFACE = "builtin", "openface"


class AUMakerError(InputError, RuntimeError):
    """Bad arguments or AU sources; the message says what to do."""


def default_au_dir(root):
    return Path(root) / "aus"


def meta_path(out, clip):
    """<out>/.aumaker/<clip>.json: what made <out>/<clip>.csv."""
    return Path(out) / META_DIR / f"{clip}.json"


def _file_stamp(path):
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]


def read_meta(out, clip):
    """The record of a clip's CSV, or None when there is none or it is damaged."""
    try:
        with open(meta_path(out, clip)) as handle:
            meta = json.load(handle)
        return meta if isinstance(meta, dict) and meta.get("version") == META_VERSION else None
    except (OSError, ValueError):
        return None


def is_current(out, clip, fingerprint, estimator):
    """True when <out>/<clip>.csv was made from the same frames by the same estimator and is untouched."""
    meta, csv_path = read_meta(out, clip), au_path(out, clip)
    if meta is None or not csv_path.is_file():
        return False
    return (meta.get("fingerprint") == fingerprint and meta.get("estimator") == estimator
            and meta.get("csv") == _file_stamp(csv_path))


def openface_estimator_id(sources, min_confidence):
    """Identifies an OpenFace import: the threshold and the source files' names, sizes and times."""
    existing = [path for path in sources if Path(path).is_file()]
    return f"openface:min_confidence={min_confidence:g}:{len(existing)}:{frames_fingerprint(existing)}"


def measure_frames(frame_paths, estimator):
    """The built-in estimator on every frame → (AUTable, {frame: reason} for frames without a face).

    Raises FrameError for an unreadable frame.
    """
    names = [Path(p).name for p in frame_paths]
    intensity, presence = empty_rows(len(names)), empty_rows(len(names))
    found = np.zeros(len(names), dtype=bool)
    for i, path in enumerate(frame_paths):
        measured = estimator.estimate(read_rgb(path))
        if measured is not None:
            intensity[i], presence[i] = measured
            found[i] = True
    reasons = {name: "no face found by MediaPipe" for name, f in zip(names, found) if not f}
    return make_table(names, intensity, presence, found), reasons


# --------------------------------------------------------------------------- per clip work

@dataclass
class ClipJob:
    split: str
    name: str
    folder: str
    out: str
    openface: str = None          # OpenFace output folder, or None for the built-in estimator
    min_confidence: float = DEFAULT_MIN_CONFIDENCE


@dataclass
class ClipResult:
    split: str
    name: str
    status: str                                    # 'computed', 'cached', 'failed', 'bad_input'
    frames: int = 0
    missing: dict = field(default_factory=dict)    # frame name → why it has no face (found=0)
    reason: str = ""
    table: object = None                           # the AUTable to write (computed clips)
    fingerprint: str = ""
    estimator: str = ""


def do_clip(job, estimator, builtin_id):
    """One clip's AUs unless its CSV is current. Returns a ClipResult; problems become its status."""
    frames = list_frames(job.folder)
    if not frames:
        return ClipResult(job.split, job.name, "failed",
                          reason=f"{job.folder}: no image frames; remove the folder or re-run preprocess.py")
    names = [p.name for p in frames]
    fingerprint = frames_fingerprint(frames)
    try:
        if job.openface is not None:
            _, sources = openface.clip_sources(job.openface, job.name, names)
            estimator_id = openface_estimator_id(sources, job.min_confidence)
        else:
            estimator_id = builtin_id
        if is_current(job.out, job.name, fingerprint, estimator_id):
            meta = read_meta(job.out, job.name)
            return ClipResult(job.split, job.name, "cached", len(frames), dict(meta.get("not_found", {})))
        if job.openface is not None:
            table, missing = openface.import_clip(job.openface, job.name, names, job.min_confidence)
        else:
            table, missing = measure_frames(frames, estimator)
    except FrameError as error:
        return ClipResult(job.split, job.name, "failed", reason=str(error))
    except InputError as error:   # OpenFace files that cannot be used: the run's input is wrong
        return ClipResult(job.split, job.name, "bad_input", reason=str(error))
    return ClipResult(job.split, job.name, "computed", len(frames), missing, table=table,
                      fingerprint=fingerprint, estimator=estimator_id)


def save_result(result, out):
    """Write a computed clip's CSV, then its record (a crash between the two only redoes the clip).
    A full disk raises DiskFullError (no temporary file is left)."""
    try:
        return _save_result(result, out)
    except OSError as error:
        if is_disk_full(error):
            raise disk_full_error(au_path(out, result.name), "AU files written earlier are kept (a re-run "
                                  "continues)") from None
        raise


def _save_result(result, out):
    if result.table is not None:
        csv_path = au_path(out, result.name)
        write_aus(csv_path, result.table)
        meta = {"version": META_VERSION, "fingerprint": result.fingerprint, "estimator": result.estimator,
                "csv": _file_stamp(csv_path), "not_found": result.missing}
        meta_path(out, result.name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(meta_path(out, result.name), json.dumps(meta, indent=1) + "\n")
        result.table = None
    return result


# One estimator per worker process: MediaPipe's landmarker cannot be pickled.
_WORKER = {}


def _init_worker(mode, model_path, builtin_id):
    if _WORKER.get("key") == (mode, model_path):
        return
    _close_worker()
    estimator = None
    if mode == BUILTIN:
        from au_estimator import BlendshapeAUEstimator

        estimator = BlendshapeAUEstimator(model_path)
    _WORKER.update(key=(mode, model_path), estimator=estimator, builtin_id=builtin_id)


def _close_worker():
    if _WORKER.get("estimator") is not None:
        _WORKER["estimator"].close()
    _WORKER.clear()


def _work(job):
    return do_clip(job, _WORKER["estimator"], _WORKER["builtin_id"])


def find_jobs(root, out, splits=SPLITS, openface_dir=None, min_confidence=DEFAULT_MIN_CONFIDENCE):
    """A ClipJob per clip folder under <root>/<split>; clip names must be unique across splits."""
    root = Path(root)
    if not root.is_dir():
        raise AUMakerError(f"--root {root}: no such folder (expected the dataset root written by preprocess.py)")
    return [ClipJob(split, folder.name, str(folder), str(out), openface_dir, min_confidence)
            for split, folder in split_clips(root, splits, AUMakerError, "AU files")]


# --------------------------------------------------------------------------- reporting

def write_report(path, results, splits=SPLITS):
    """CSV of every frame with found=0: split, clip, frame, reason (other splits' rows are kept)."""
    kept = []
    if Path(path).is_file():
        with open(path, newline="") as handle:
            kept = [row for row in csv.reader(handle) if len(row) == 4 and row[0] not in splits and row[0] != "split"]
    rows = kept + [[r.split, r.name, frame, why] for r in results for frame, why in r.missing.items()]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["split", "clip", "frame", "reason"])
    writer.writerows(sorted(rows, key=lambda row: (row[0], row[1])))
    atomic_write_text(path, text.getvalue())


def summary(results, report_path):
    counts = Counter(r.status for r in results)
    lines = [f"clips computed: {counts['computed']}, unchanged (cached): {counts['cached']}, "
             f"failed: {counts['failed'] + counts['bad_input']}; frames: {sum(r.frames for r in results)}"]
    without = [r for r in results if r.missing]
    if without:
        lines.append(f"no face measured in {sum(len(r.missing) for r in without)} frame(s) of {len(without)} "
                     f"clip(s): found=0, AU cells empty, listed in {report_path}")
    lines += [f"  FAILED {r.name}: {r.reason}" for r in results if r.status in ("failed", "bad_input")]
    return lines


# --------------------------------------------------------------------------- command line

def build_parser():
    parser = OneLineParser(
        prog="aumaker.py",
        description="Per-frame action-unit intensities (OpenFace's 17 AUs, 0-5, and presence 0/1) for every clip "
                    "under ROOT/train and ROOT/test; one CSV <out>/<clip>.csv per clip. Built-in estimator: "
                    "MediaPipe face blendshapes (proxies, see docs/aumaker.md); or import OpenFace's CSVs. "
                    "Re-running only redoes clips whose frames or AU source changed.")
    parser.add_argument("--root", required=True, help="dataset root written by preprocess.py (holds train/ and test/)")
    parser.add_argument("--out", default=None, help="AU folder (default ROOT/aus)")
    parser.add_argument("--openface", default=None, metavar="DIR",
                        help="import OpenFace output instead of estimating: DIR/<clip>.csv (FeatureExtraction over "
                             "the clip's frames in natural order) or DIR/<clip>/<frame stem>.csv (FaceLandmarkImg)")
    parser.add_argument("--min-confidence", type=float, default=None,
                        help="OpenFace rows below this confidence count as no face (default 0.8)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS, help="splits to do (default both)")
    return parser


def run(args):
    """Everything main() does; raises InputError. Returns the ClipResults."""
    if args.workers < 1:
        raise AUMakerError(f"--workers {args.workers}: must be at least 1")
    min_confidence = DEFAULT_MIN_CONFIDENCE if args.min_confidence is None else args.min_confidence
    if not 0 <= min_confidence <= 1:
        raise AUMakerError(f"--min-confidence {min_confidence:g}: OpenFace's confidence is in 0–1")
    if args.openface is not None and not Path(args.openface).is_dir():
        raise AUMakerError(f"--openface {args.openface}: no such folder (it should hold OpenFace's CSVs)")
    out = Path(args.out) if args.out else default_au_dir(args.root)
    check_output_dir(out, "--out")   # before the model loads and any frame is measured
    jobs = find_jobs(args.root, out, args.splits, args.openface, min_confidence)
    if args.openface is None:
        from au_estimator import default_model, estimator_id

        model_path, model_sha = default_model()
        init = (BUILTIN, str(model_path), estimator_id(model_sha))
    else:
        init = (OPENFACE, None, "")
    out.mkdir(parents=True, exist_ok=True)
    from worker_pool import run_in_workers

    try:
        results = [save_result(r, out) for r in run_in_workers(jobs, _work, _init_worker, init, args.workers,
                                                                "aumaker")]
    finally:
        _close_worker()
    report_path = out / REPORT_NAME
    write_report(report_path, results, args.splits)
    for line in summary(results, report_path):
        print(line)
    bad = [r for r in results if r.status == "bad_input"]
    if bad:
        more = f" (and {len(bad) - 1} more clip(s), listed above)" if len(bad) > 1 else ""
        raise AUMakerError(bad[0].reason + more)
    return results


def main(argv=None):
    args = build_parser().parse_args(argv)
    from au_estimator import AUEstimatorError

    try:
        results = run(args)
    except AUEstimatorError as error:
        return report("aumaker", AUMakerError(str(error)))
    except (InputError, RunError) as error:
        return report("aumaker", error)
    except KeyboardInterrupt:
        print("aumaker: interrupted; finished clips are kept, run again to continue", file=sys.stderr)
        return 130
    return EXIT_FAILED if any(r.status == "failed" for r in results) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
