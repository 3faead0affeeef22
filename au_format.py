"""The per-clip action-unit (AU) file: one home for its columns, reading, writing and validation.

aumaker.py writes one CSV per clip, ``<root>/aus/<clip>.csv``; the AU-driven methods (ULME-GAN,
TPSRAU) and evaluate.py's AU-fidelity metric read it with :func:`read_aus`. A row per frame, in the
clip's natural frame order:

    frame, AU01_r, …, AU45_r, AU01_c, …, AU45_c, found

- ``frame``: the frame's file name (``img46.png``), exactly as in the clip folder.
- ``AUxx_r``: intensity on OpenFace's 0–5 scale; ``AUxx_c``: presence, 0 or 1. The 17 AUs are
  OpenFace's, in OpenFace's order (:data:`AU_NAMES`). OpenFace's extra ``AU28_c`` (a presence with no
  intensity) is not kept: every AU here has both.
- ``found``: 1 when a face was measured in the frame. Where it is 0 the AU cells are empty (read back
  as NaN): nothing is invented for a frame without a face.

Plain CSV (comma, no spaces, no comment lines), so pandas and spreadsheets read it as it is. Numbers
are written in the shortest form that reads back to the same float32, so a file round-trips exactly.
"""
import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from errors import InputError
from fileio import atomic_write_text

AU_NAMES = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17",
            "AU20", "AU23", "AU25", "AU26", "AU45")
INTENSITY_COLUMNS = tuple(f"{au}_r" for au in AU_NAMES)
PRESENCE_COLUMNS = tuple(f"{au}_c" for au in AU_NAMES)
COLUMNS = ("frame",) + INTENSITY_COLUMNS + PRESENCE_COLUMNS + ("found",)
INTENSITY_MAX = 5.0   # OpenFace's scale: 0 (absent) … 5 (maximum), FACS A–E ≈ 1–5


class AUFormatError(InputError, ValueError):
    """An AU file (or table) that breaks the format; the message names the file and what to do."""


@dataclass
class AUTable:
    """One clip's AUs. T frames, A = len(AU_NAMES) = 17.

    frames     [T] str            frame file names, the clip's natural order
    intensity  (T, A) float32     0–5; NaN where found is False
    presence   (T, A) float32     0 or 1; NaN where found is False
    found      (T,) bool          a face was measured in the frame
    """
    frames: list
    intensity: np.ndarray
    presence: np.ndarray
    found: np.ndarray

    def au(self, name, kind="r"):
        """(T,) intensity (``kind`` 'r') or presence ('c') of one AU, e.g. ``table.au('AU12')``."""
        if name not in AU_NAMES:
            raise KeyError(f"{name}: not one of the 17 AUs ({', '.join(AU_NAMES)})")
        values = {"r": self.intensity, "c": self.presence}[kind]
        return values[:, AU_NAMES.index(name)]


def au_path(out_dir, clip):
    """<out_dir>/<clip>.csv — keyed by the exact clip name."""
    return Path(out_dir) / f"{clip}.csv"


def empty_rows(count):
    """(count, A) float32 of NaN: the AU values of frames without a face."""
    return np.full((count, len(AU_NAMES)), np.nan, np.float32)


def make_table(frames, intensity, presence, found):
    """An AUTable from array-likes, with NaN forced where ``found`` is False; validated."""
    found = np.asarray(found, dtype=bool)
    intensity = np.array(intensity, dtype=np.float32).reshape(len(found), len(AU_NAMES))
    presence = np.array(presence, dtype=np.float32).reshape(len(found), len(AU_NAMES))
    intensity[~found] = np.nan
    presence[~found] = np.nan
    table = AUTable([str(f) for f in frames], intensity, presence, found)
    validate(table)
    return table


def validate(table, source="AU table"):
    """Raise AUFormatError unless ``table`` keeps the format's rules (see AUTable). Returns it."""
    t, a = len(table.frames), len(AU_NAMES)
    if table.intensity.shape != (t, a) or table.presence.shape != (t, a) or table.found.shape != (t,):
        raise AUFormatError(f"{source}: shapes intensity {table.intensity.shape}, presence {table.presence.shape}, "
                            f"found {table.found.shape} do not fit {t} frames × {a} AUs")
    if any(not name or name != name.strip() or "," in name or "\n" in name for name in table.frames):
        raise AUFormatError(f"{source}: frame names must be plain file names")
    if len(set(table.frames)) != t:
        raise AUFormatError(f"{source}: a frame name appears twice")
    found = table.found
    for label, values in (("intensity", table.intensity), ("presence", table.presence)):
        if np.isnan(values[found]).any():
            raise AUFormatError(f"{source}: {label} missing in a frame with found=1; "
                                "a measured frame needs every AU (or set found=0)")
        if not np.isnan(values[~found]).all():
            raise AUFormatError(f"{source}: {label} given for a frame with found=0; leave its AU cells empty")
    measured = table.intensity[found]
    if ((measured < 0) | (measured > INTENSITY_MAX)).any():
        raise AUFormatError(f"{source}: intensity outside 0–{INTENSITY_MAX:g}")
    if not np.isin(table.presence[found], (0.0, 1.0)).all():
        raise AUFormatError(f"{source}: presence must be 0 or 1")
    return table


def _number(value):
    return "" if math.isnan(value) else np.format_float_positional(np.float32(value), unique=True, trim="-")


def format_aus(table):
    """The CSV text of a table (validated first)."""
    validate(table)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    for i, frame in enumerate(table.frames):
        writer.writerow([frame, *map(_number, table.intensity[i]), *map(_number, table.presence[i]),
                         int(table.found[i])])
    return text.getvalue()


def write_aus(path, table):
    """Write a table atomically (temp file + rename): an interrupted run leaves the old file or none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, format_aus(table))


def read_aus(path):
    """Read and validate an AU file → AUTable. Raises AUFormatError naming the file and the problem."""
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise AUFormatError(f"{path}: AU file missing; run aumaker.py") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise AUFormatError(f"{path}: unreadable AU file ({error}); delete it and re-run aumaker.py") from None
    if not rows or tuple(rows[0]) != COLUMNS:
        raise AUFormatError(f"{path}: not an aumaker AU file (the header must be {', '.join(COLUMNS[:3])}, …, "
                            "found); re-run aumaker.py")
    frames, values, found = [], [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(COLUMNS):
            raise AUFormatError(f"{path}, line {line}: {len(row)} cells, expected {len(COLUMNS)}; "
                                "delete the file and re-run aumaker.py")
        try:
            values.append([float(cell) if cell != "" else np.nan for cell in row[1:-1]])
            flag = int(row[-1])
        except ValueError as error:
            raise AUFormatError(f"{path}, line {line}: {error}; delete the file and re-run aumaker.py") from None
        if flag not in (0, 1):
            raise AUFormatError(f"{path}, line {line}: found must be 0 or 1, not {flag}")
        frames.append(row[0])
        found.append(bool(flag))
    a = len(AU_NAMES)
    values = np.array(values, dtype=np.float32).reshape(len(frames), 2 * a)
    table = AUTable(frames, values[:, :a].copy(), values[:, a:].copy(), np.array(found, dtype=bool))
    try:
        return validate(table, source=str(path))
    except AUFormatError as error:
        raise AUFormatError(f"{error}; delete the file and re-run aumaker.py") from None
