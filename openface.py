"""Importing OpenFace 2's AU output as aumaker AU tables.

OpenFace writes CSVs whose header cells follow ", " (``face, confidence, AU01_r, …``). Two forms per clip:

- ``DIR/<clip>.csv`` from ``FeatureExtraction`` over the clip's frames: a row per frame, ``frame``
  1-based in the clip's natural frame order (img9 before img10), plus ``confidence`` and ``success``.
- ``DIR/<clip>/<frame stem>.csv`` from ``FaceLandmarkImg``, one per image: a row per face found
  (``face``, ``confidence``, no ``success``); a header-only file means OpenFace found no face.

Every frame must have its row (or its file): a missing one is an error, never a guess. Rows with
``success`` 0 or ``confidence`` below the threshold are kept as frames without a face (found=0, AU
cells empty) and reported. Where several rows describe one frame (several faces), the most
confident is used. OpenFace's ``AU28_c`` (presence only) is dropped; intensities and presences are
copied unchanged (float32).
"""
import csv
from pathlib import Path

import numpy as np

from au_format import AU_NAMES, INTENSITY_COLUMNS, INTENSITY_MAX, PRESENCE_COLUMNS, make_table
from errors import InputError

DEFAULT_MIN_CONFIDENCE = 0.8   # the cut most OpenFace users apply next to success == 1


class OpenFaceError(InputError, ValueError):
    """OpenFace output that cannot be imported; the message names the file and what to do."""


def read_openface_csv(path):
    """An OpenFace CSV as (header [str], rows [[float]]), cells stripped of OpenFace's spaces.

    Raises OpenFaceError for a missing, unreadable or non-numeric file, or one without the 17 AUs.
    """
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            lines = [row for row in csv.reader(handle, skipinitialspace=True) if row]
    except FileNotFoundError:
        raise OpenFaceError(f"{path}: OpenFace CSV not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise OpenFaceError(f"{path}: unreadable OpenFace CSV ({error}); re-run OpenFace on this clip") from None
    if not lines:
        raise OpenFaceError(f"{path}: empty file, not OpenFace output (no header); re-run OpenFace on this clip")
    header = [cell.strip() for cell in lines[0]]
    needed = ("confidence",) + INTENSITY_COLUMNS + PRESENCE_COLUMNS
    missing = [name for name in needed if name not in header]
    if missing:
        raise OpenFaceError(f"{path}: not OpenFace AU output (no column {missing[0]}); run OpenFace with -aus")
    rows = []
    for line, cells in enumerate(lines[1:], start=2):
        if len(cells) != len(header):
            raise OpenFaceError(f"{path}, line {line}: {len(cells)} cells for {len(header)} columns; "
                                "the file is damaged, re-run OpenFace on this clip")
        try:
            rows.append([float(cell) for cell in cells])
        except ValueError as error:
            raise OpenFaceError(f"{path}, line {line}: {error}; re-run OpenFace on this clip") from None
    return header, rows


def _columns(header, rows, names):
    """(R, len(names)) float64 of the named columns."""
    index = [header.index(name) for name in names]
    return np.array([[row[i] for i in index] for row in rows], dtype=np.float64).reshape(len(rows), len(index))


def _check_values(path, intensity, presence):
    if ((intensity < 0) | (intensity > INTENSITY_MAX)).any() or np.isnan(intensity).any():
        raise OpenFaceError(f"{path}: AU intensity outside OpenFace's 0–5; is this OpenFace 2 output?")
    if not np.isin(presence, (0.0, 1.0)).all():
        raise OpenFaceError(f"{path}: AU presence (_c) other than 0 or 1; is this OpenFace 2 output?")


def _verdict(confidence, success, min_confidence):
    """'' for a usable row, else why it is not."""
    if success is not None and success != 1:
        return "OpenFace success 0"
    if confidence < min_confidence:
        return f"OpenFace confidence {confidence:.2f} < {min_confidence:g}"
    return ""


def _best_rows(header, rows):
    """{key: row} keeping the most confident row per key; key = the 'frame' cell (or 0 without one)."""
    conf = header.index("confidence")
    key = header.index("frame") if "frame" in header else None
    best = {}
    for row in rows:
        k = int(row[key]) if key is not None else 0
        if k not in best or row[conf] > best[k][conf]:
            best[k] = row
    return best


def _measure(path, header, row, min_confidence):
    """One frame's (intensity (A,), presence (A,), reason) from its OpenFace row."""
    success = row[header.index("success")] if "success" in header else None
    reason = _verdict(row[header.index("confidence")], success, min_confidence)
    intensity = _columns(header, [row], INTENSITY_COLUMNS)[0]
    presence = _columns(header, [row], PRESENCE_COLUMNS)[0]
    if reason:
        return None, None, reason
    _check_values(path, intensity, presence)
    return intensity, presence, ""


def import_feature_extraction(path, frame_names, min_confidence=DEFAULT_MIN_CONFIDENCE):
    """FeatureExtraction's CSV for a clip of frames ``frame_names`` [T] (natural order) →
    (AUTable, {frame name: reason} for frames without a usable face). Raises OpenFaceError."""
    header, rows = read_openface_csv(path)
    if "frame" not in header:
        raise OpenFaceError(f"{path}: no 'frame' column; a clip's CSV must come from OpenFace's FeatureExtraction "
                            "(FaceLandmarkImg output goes in DIR/<clip>/<frame stem>.csv)")
    best = _best_rows(header, rows)
    count = len(frame_names)
    outside = sorted(k for k in best if not 1 <= k <= count)
    if outside:
        raise OpenFaceError(f"{path}: rows for frame {outside[0]} but the clip has {count} frames (frame is "
                            "1-based); is this the CSV of this clip?")
    absent = [i for i in range(1, count + 1) if i not in best]
    if absent:
        shown = ", ".join(f"{i} ({frame_names[i - 1]})" for i in absent[:3])
        raise OpenFaceError(f"{path}: no row for {len(absent)} frame(s): {shown}{' …' if len(absent) > 3 else ''}; "
                            "run FeatureExtraction on all of the clip's frames")
    measured = [_measure(path, header, best[i + 1], min_confidence) for i in range(count)]
    return _table(frame_names, measured)


def import_face_landmark_img(folder, frame_names, min_confidence=DEFAULT_MIN_CONFIDENCE):
    """FaceLandmarkImg's CSVs ``folder/<frame stem>.csv`` for the frames ``frame_names`` [T] →
    (AUTable, {frame name: reason}). Raises OpenFaceError."""
    folder = Path(folder)
    absent = [name for name in frame_names if not (folder / f"{Path(name).stem}.csv").is_file()]
    if absent:
        raise OpenFaceError(f"{folder}: no {Path(absent[0]).stem}.csv for frame {absent[0]} ({len(absent)} frame(s) "
                            "without a CSV); run FaceLandmarkImg on every frame of the clip")
    measured = []
    for name in frame_names:
        path = folder / f"{Path(name).stem}.csv"
        header, rows = read_openface_csv(path)
        if not rows:   # FaceLandmarkImg writes only the header when it finds no face
            measured.append((None, None, "OpenFace found no face"))
            continue
        measured.append(_measure(path, header, _best_rows(header, rows)[0], min_confidence))
    return _table(frame_names, measured)


def _table(frame_names, measured):
    nan = np.full(len(AU_NAMES), np.nan)
    found = [m[0] is not None for m in measured]
    intensity = [m[0] if m[0] is not None else nan for m in measured]
    presence = [m[1] if m[1] is not None else nan for m in measured]
    reasons = {name: m[2] for name, m in zip(frame_names, measured) if m[2]}
    return make_table(frame_names, intensity, presence, found), reasons


def clip_sources(openface_dir, clip, frame_names):
    """(form, files) a clip is imported from: ('FeatureExtraction', [DIR/<clip>.csv]) or
    ('FaceLandmarkImg', [DIR/<clip>/<stem>.csv, …]).

    Raises OpenFaceError when there is neither form, or both.
    """
    single = Path(openface_dir) / f"{clip}.csv"
    folder = Path(openface_dir) / clip
    if single.is_file() and folder.is_dir():
        raise OpenFaceError(f"{openface_dir}: both {single.name} and {clip}/ exist for clip {clip}; keep one "
                            "(FeatureExtraction's CSV or FaceLandmarkImg's per-frame CSVs)")
    if single.is_file():
        return "FeatureExtraction", [single]
    if folder.is_dir():
        return "FaceLandmarkImg", [folder / f"{Path(name).stem}.csv" for name in frame_names]
    raise OpenFaceError(f"{openface_dir}: no OpenFace output for clip {clip} (expected {single.name} from "
                        f"FeatureExtraction or {clip}/<frame stem>.csv from FaceLandmarkImg)")


def import_clip(openface_dir, clip, frame_names, min_confidence=DEFAULT_MIN_CONFIDENCE):
    """A clip's AUs from whichever form ``openface_dir`` holds → (AUTable, {frame: reason})."""
    form, sources = clip_sources(openface_dir, clip, frame_names)
    if form == "FeatureExtraction":
        return import_feature_extraction(sources[0], frame_names, min_confidence)
    return import_face_landmark_img(Path(openface_dir) / clip, frame_names, min_confidence)
