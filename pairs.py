"""The pairs list: which target face performs which driving clip (FOMM's / MEGC's CSV), one reader.

    distance,source,driving,frame
    0,normalized_westernMale,Surprise_007_7_1,0

``source`` is the target face's folder, ``driving`` the clip's; the published ``distance`` and
``frame`` columns are read and not used. Without a list, every clip of a test split is paired with
every target face (folders holding one image).
"""
import csv
import logging
import os
from dataclasses import dataclass

from errors import InputError
from frame_io import clip_folders, list_frames


class PairsError(InputError):
    """A pairs list that cannot be read or names folders that are not there."""


@dataclass(frozen=True)
class Pair:
    driving: str
    target: str

    @property
    def name(self):
        """``<driving>-<target>``: the name of the pair's outputs (the MEGC submission form)."""
        return f"{self.driving}-{self.target}"


def read_pairs(path):
    """Pairs from a CSV with columns source (target face) and driving (clip), in file order. → [Pair]."""
    if os.path.isdir(path):
        raise PairsError(f"{path}: is a folder; dataset_params.pairs_list names a CSV file")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = [name.strip() for name in (reader.fieldnames or ())]
            missing = {"source", "driving"} - set(fields)
            if missing:
                raise PairsError(f"{path}: pairs file needs the columns source and driving "
                                 f"(distance,source,driving,frame); missing {', '.join(sorted(missing))}")
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except FileNotFoundError:
        raise PairsError(f"{path}: pairs file not found (dataset_params.pairs_list); "
                         "preprocess.py --dataset megc writes one, data/ ships the MEGC lists") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise PairsError(f"{path}: not a readable CSV pairs file ({error})") from None
    return [Pair(row["driving"], row["source"]) for row in rows if row["driving"] and row["source"]]


def default_pairs(test_dir):
    """Without a pairs list: every clip (folders of ≥ 2 frames) × every target face (folders of one image)."""
    clips, faces, empty = [], [], []
    for folder in clip_folders(test_dir):
        count = len(list_frames(folder))
        (faces if count == 1 else clips if count > 1 else empty).append(folder.name)
    if empty:
        # Not an error (other pairs can go on), but never silent: a face the user meant is missing.
        shown = ", ".join(empty[:5]) + (f", … ({len(empty)} in all)" if len(empty) > 5 else "")
        logging.getLogger("fpfomm").warning("%s: no image in %s; left out of the pairs (re-run preprocess.py "
                                            "or remove the folder)", test_dir, shown)
    return [Pair(clip, face) for face in faces for clip in clips]


def check_pairs(test_dir, pairs):
    """Every clip and face folder of the pairs exists. Raises one PairsError listing what is missing."""
    missing = sorted({p for pair in pairs for p in (pair.driving, pair.target)
                      if not os.path.isdir(os.path.join(test_dir, p))})
    if missing:
        shown = ", ".join(missing[:5]) + (f", … ({len(missing)} in all)" if len(missing) > 5 else "")
        raise PairsError(f"{test_dir}: no folder for {shown} named in the pairs; preprocess the test set first")
