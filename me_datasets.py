"""The raw micro-expression datasets: where each one keeps its clips, and its annotation sheet.

    clips = find_clips("casme2", "CASME2_RAW")           # [RawClip]: folder, subject, clip id, frames
    labels = read_annotations("CASME2-coding.xlsx", "casme2")   # {(subject key, clip): Label}

One home for everything dataset-specific: folder layouts of CASME II, SAMM, SMIC-HS, the MEGC
generation packages and plain folders; the sheets' columns; the mapping from each dataset's emotion
to the MEGC objective classes. Adding a dataset (CAS(ME)³, 4DME) touches only this file.
preprocess.py does the cropping and writing.
"""
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errors import InputError
from frame_io import is_image, list_frames, natural_key

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
    # Onset / offset cells that hold something other than a frame number ({'onset': 'x'}): --trim refuses them.
    unreadable: dict = field(default_factory=dict)


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
        label.unreadable = {key: _text(row.get(key)) for key in ("onset", "offset")
                            if _text(row.get(key)) and getattr(label, key) is None}
        # A class column may hold other schemes (CASME II's objective classes I–VII): only P/N/S count.
        given = _text(row.get("megc_class"))
        given = given.capitalize() if given.capitalize() in MEGC_CLASSES else ""
        label.megc_class = given or _emotion_class(dataset, label.emotion)
        labels.setdefault((subject_key(label.subject), clip), label)
    if not labels:
        raise PreprocessError(f"--annotations {path}: no rows with a clip name under the header")
    return labels


def check_trim_frames(labels, path):
    """--trim cuts at the sheet's onset and offset: refuse a sheet where they are not frame numbers
    (a non-numeric cell used to keep the whole clip without a word)."""
    bad = [(label.clip, key, text) for label in labels.values() for key, text in label.unreadable.items()]
    if bad:
        clip, key, text = bad[0]
        more = f" (and {len(bad) - 1} more cell(s))" if len(bad) > 1 else ""
        raise PreprocessError(f"--annotations {path}: {key} of {clip} is {text!r}, not a frame number (a whole "
                              f"number ≥ 0){more}; --trim needs them: fix the sheet or run without --trim")


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


