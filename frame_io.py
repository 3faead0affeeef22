"""Reading clip folders: frames in natural order, any image mode as 8-bit RGB, clear errors.

Shared by preprocess.py, kpmaker.py and frames_dataset.py so that all three see the same frames in
the same order. No torch here: preprocessing workers stay light.

Frame order (``dataset_params.frame_order``): 'natural' (img9 before img10, the default) or
'lexicographic', the published reader's ``sorted(os.listdir(clip))``, in which a CASME II clip
img46 … img100 starts at img100. The published kpmaker took its one prior from
``os.listdir(clip)[0]``, on Windows (NTFS lists names sorted) the name that sorts first as a string:
``prior_frame: lexicographic_first`` (:func:`prior_reference`).
"""
import hashlib
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class FrameError(InputError, ValueError):
    """A frame that cannot be read; the message names the file and what to do."""


def natural_key(name):
    """Sort key that orders digit runs by value: 'img9' < 'img10' (plain sorting gives img10 < img9)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower())
                 for part in re.split(r"(\d+)", str(name)) if part != "")


def is_image(path):
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


FRAME_ORDERS = ("natural", "lexicographic")
PRIOR_FRAMES = ("first", "lexicographic_first")


def sort_names(names, order="natural"):
    """File names in ``order``: 'natural' (digit runs by value) or 'lexicographic' (plain str order)."""
    if order == "natural":
        return sorted(names, key=natural_key)
    if order == "lexicographic":
        return sorted(names)
    raise ValueError(f"frame order must be one of {', '.join(FRAME_ORDERS)}, got {order!r}")


def list_frames(folder, order="natural"):
    """Image files directly inside ``folder`` in ``order`` (see :func:`sort_names`). [] for a folder without images."""
    folder = Path(folder)
    names = [entry.name for entry in os.scandir(folder) if entry.is_file() and is_image(entry.name)]
    return [folder / name for name in sort_names(names, order)]


def prior_reference(names, prior_frame="first"):
    """Index in ``names`` (a clip's frames in reading order) of the frame a first_frame prior comes from.

    'first': index 0; 'lexicographic_first': the name that sorts first as a string (the published
    kpmaker's choice). Raises ValueError for an empty clip or an unknown choice.
    """
    names = [Path(str(name)).name for name in names]
    if not names:
        raise ValueError("a clip without frames has no reference frame")
    if prior_frame == "first":
        return 0
    if prior_frame == "lexicographic_first":
        return min(range(len(names)), key=names.__getitem__)
    raise ValueError(f"prior frame must be one of {', '.join(PRIOR_FRAMES)}, got {prior_frame!r}")


def frame_number(path):
    """The last run of digits in the file name: 'img46.jpg' → 46, '006_05562.jpg' → 5562; None if none."""
    digits = re.findall(r"\d+", Path(path).stem)
    return int(digits[-1]) if digits else None


def read_rgb(path):
    """Read an image as (H, W, 3) uint8 RGB, whatever its mode (gray, RGBA, palette, 16-bit).

    Alpha is dropped (the published code kept the first three channels); 16-bit gray is scaled to 8 bits;
    an EXIF orientation (phone photos) is applied.
    Raises FrameError naming the file when it is missing, truncated or not an image.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb_array(_upright(image))
    except FileNotFoundError:
        raise FrameError(f"{path}: frame not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise FrameError(f"{path}: unreadable image ({error}); re-extract or delete this frame") from None


_ORIENTATION = 0x0112          # the EXIF tag; values 5–8 turn the picture by 90° (width and height swap)


def _orientation(image):
    try:
        return int(image.getexif().get(_ORIENTATION, 1) or 1)
    except (ValueError, TypeError, OSError, SyntaxError):  # a damaged EXIF block: take the pixels as stored
        return 1


def _upright(image):
    """The picture as it is meant to be seen: phones store it sideways with an EXIF orientation, and
    dlib finds no face in a face lying on its side."""
    if _orientation(image) == 1:
        return image
    from PIL import ImageOps

    return ImageOps.exif_transpose(image)


def _to_rgb_array(image):
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # PIL's convert('L') clips 16-bit values at 255 instead of scaling them.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        gray = np.clip(np.round(array * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "RGBA":
        return np.ascontiguousarray(np.asarray(image)[..., :3])
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def image_size(path):
    """(H, W) from the file header without decoding the pixels. Raises FrameError."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            return (width, height) if _orientation(image) in (5, 6, 7, 8) else (height, width)
    except FileNotFoundError:
        raise FrameError(f"{path}: frame not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise FrameError(f"{path}: unreadable image ({error}); re-extract or delete this frame") from None


def check_image(path):
    """(H, W) of a frame after checking its data (PIL verify: structure and checksums). Raises FrameError."""
    size = image_size(path)
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise FrameError(f"{path}: damaged image ({error}); re-extract or delete this frame") from None
    return size


def frames_fingerprint(paths):
    """A short hash of the frames' names, byte sizes and modification times.

    Cached per-clip results (keypoint files) store it; any frame added, removed, renamed or rewritten
    changes it, without reading the pixels.
    """
    digest = hashlib.sha1()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{Path(path).name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def split_clips(root, splits, error, what):
    """[(split, clip folder)] under <root>/<split> for each split, in order; clip names must be unique
    across splits because the per-clip files (``what``: 'keypoint files', 'AU files') are keyed by the
    name. Raises ``error`` (an exception class) with a one-line message."""
    root = Path(root)
    found = [(split, folder) for split in splits for folder in clip_folders(root / split)]
    if not found:
        raise error(f"no clip folders under {root}/{{{','.join(splits)}}}; run preprocess.py first "
                    "(layout: ROOT/train/<clip>/<frame>.png)")
    seen = {}
    for _, folder in found:
        if folder.name in seen:
            raise error(f"clip name '{folder.name}' is in both {seen[folder.name]} and {folder}; {what} are keyed "
                        "by clip name, so rename one of them")
        seen[folder.name] = folder
    return found


def clip_folders(split_dir):
    """Clip folders directly under a split folder (train/ or test/), in natural order of their names."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        return []
    names = [e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith(".")]
    return [split_dir / name for name in sorted(names, key=natural_key)]
