"""Reading and writing frames, clips and videos, one frame at a time.

Frames at this boundary are (H, W, 3) uint8 RGB. Readers yield frames lazily and writers take them one
by one, so memory does not grow with the length of a clip. Every writer writes to a temporary name
beside its destination and renames on ``close()``: an interrupted run leaves no half-written output
that a later run would mistake for a finished one.
"""
import os
import shutil

import numpy as np
from PIL import Image, ImageSequence

from frame_io import FrameError, list_frames, read_rgb
from errors import InputError
from fileio import make_temporary

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif")


class MediaError(InputError, ValueError):
    """An input that cannot be read as a frame, a clip or a video; the message says which and why."""


def to_rgb_uint8(image):
    """Any image array → (H, W, 3) uint8 RGB: gray is repeated, alpha dropped, floats in [0, 1] scaled."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating):
            image = np.round(np.clip(image, 0, 1) * 255)
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise MediaError(f"expected an image, got an array of shape {image.shape}")
    if image.shape[2] in (1, 2):  # gray, gray + alpha
        image = np.repeat(image[..., :1], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def read_image(path):
    """One image file → (H, W, 3) uint8 RGB (any mode). Raises MediaError for a missing or bad file."""
    if not os.path.isfile(path):
        raise MediaError(f"{path}: image not found")
    try:
        return read_rgb(path)
    except FrameError as error:
        raise MediaError(str(error)) from None


def _pil_to_rgb(picture):
    return np.asarray(picture.convert("RGB"))


def is_video_file(path):
    return os.path.isfile(path) and os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def _iter_gif(path):
    with Image.open(path) as picture:
        for index, frame in enumerate(ImageSequence.Iterator(picture)):
            yield f"{index:05d}.png", _pil_to_rgb(frame)


def _iter_ffmpeg(path):
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(path)
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as error:
        raise MediaError(f"{path}: not a readable video ({str(error).splitlines()[0] if str(error) else 'no frames'})") from None
    width, height = meta["size"]
    try:
        for index, raw in enumerate(reader):
            yield f"{index:05d}.png", np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3).copy()
    finally:
        reader.close()


def iter_clip(path):
    """Frames of a clip, lazily, as (name, (H, W, 3) uint8): a folder of images in natural order (names
    kept) or a video file (names 00000.png, 00001.png, …). Raises MediaError."""
    if os.path.isdir(path):
        files = list_frames(path)
        if not files:
            raise MediaError(f"{path}: folder holds no image frames")
        return ((f.name, read_image(f)) for f in files)
    if not os.path.exists(path):
        raise MediaError(f"{path}: no such clip (expected a folder of frames or a video file)")
    if not is_video_file(path):
        raise MediaError(f"{path}: not a video file or folder of frames "
                         f"(video extensions: {', '.join(VIDEO_EXTENSIONS)})")
    return _iter_gif(path) if path.lower().endswith(".gif") else _iter_ffmpeg(path)


def clip_frame_names(path):
    """Names of a clip's frames, in order, without decoding a folder's images (videos are decoded)."""
    if os.path.isdir(path):
        return [f.name for f in list_frames(path)]
    return [name for name, _ in iter_clip(path)]


def video_info(path):
    """{'fps': float, 'frames': int, 'size': (W, H)} of an mp4/gif, counting frames by decoding them
    (container metadata may say inf)."""
    if path.lower().endswith(".gif"):
        with Image.open(path) as picture:
            duration = picture.info.get("duration", 0) or 0
            return {"fps": 1000.0 / duration if duration else float("nan"), "frames": picture.n_frames,
                    "size": picture.size}
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    frames = sum(1 for _ in reader)
    return {"fps": float(meta["fps"]), "frames": frames, "size": tuple(meta["size"])}


TEMPORARY_PREFIX = ".tmp-"   # every writer's unfinished output; a later run may remove these


def _temporary_sibling(path, suffix=""):
    # The umask's mode: renamed into place, the file keeps it (mkstemp's 0600 hid outputs from the group).
    return make_temporary(os.path.dirname(os.path.abspath(path)) or ".", TEMPORARY_PREFIX, suffix)


class _AtomicOutput:
    """Base for writers: subclasses fill ``self._tmp``; ``close`` renames it over ``self.path``."""

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.close()
        else:
            self.abort()

    def _publish(self):
        if os.path.isdir(self.path) and not os.path.islink(self.path):
            shutil.rmtree(self.path)
        os.replace(self._tmp, self.path)

    def abort(self):
        """Drop what was written; the destination is left as it was."""
        if os.path.isdir(self._tmp):
            shutil.rmtree(self._tmp, ignore_errors=True)
        elif os.path.exists(self._tmp):
            os.remove(self._tmp)


class FrameFolderWriter(_AtomicOutput):
    """PNG frames into ``folder`` under given names (a name's extension is replaced by .png)."""

    def __init__(self, folder):
        self.path = os.path.abspath(folder)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._tmp = make_temporary(os.path.dirname(self.path), TEMPORARY_PREFIX, directory=True)
        self.count = 0

    def write(self, frame, name):
        name = os.path.splitext(os.path.basename(name))[0] + ".png"
        Image.fromarray(to_rgb_uint8(frame)).save(os.path.join(self._tmp, name))
        self.count += 1

    def close(self):
        self._publish()


def even_pixel_format(width, height):
    """yuv420p plays everywhere but needs even sizes; odd sizes keep full chroma instead."""
    return "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"


class VideoWriter(_AtomicOutput):
    """A streaming mp4 (H.264) or gif writer through the ffmpeg that imageio-ffmpeg ships.

    The gif gets a palette per frame (palettegen/paletteuse), which keeps faces free of banding without
    holding the clip in memory. GIF delays count in 1/100 s, so fps is rounded to that.
    """

    def __init__(self, path, fps):
        self.path = os.path.abspath(path)
        self.fps = float(fps)
        if self.fps <= 0:
            raise MediaError(f"fps must be positive, got {fps}")
        self.kind = os.path.splitext(path)[1].lower()
        if self.kind not in (".mp4", ".gif"):
            raise MediaError(f"{path}: video format must be .mp4 or .gif")
        self._tmp = _temporary_sibling(path, suffix=self.kind)
        self._writer = None
        self.size = None
        self.count = 0

    def _open(self, width, height):
        import imageio_ffmpeg

        common = dict(fps=self.fps, macro_block_size=1, ffmpeg_log_level="error")
        if self.kind == ".gif":
            palette = "split[a][b];[a]palettegen=stats_mode=single[p];[b][p]paletteuse=new=1"
            self._writer = imageio_ffmpeg.write_frames(
                self._tmp, (width, height), codec="gif", pix_fmt_out="pal8", quality=None,
                output_params=["-vf", palette, "-loop", "0", "-f", "gif"], **common)
        else:
            self._writer = imageio_ffmpeg.write_frames(
                self._tmp, (width, height), codec="libx264", pix_fmt_out=even_pixel_format(width, height),
                quality=None, output_params=["-crf", "18", "-f", "mp4"], **common)
        self._writer.send(None)
        self.size = (width, height)

    def write(self, frame):
        frame = to_rgb_uint8(frame)
        height, width = frame.shape[:2]
        if self._writer is None:
            self._open(width, height)
        elif (width, height) != self.size:
            raise MediaError(f"{self.path}: frame size {width}×{height} differs from the first frame's "
                             f"{self.size[0]}×{self.size[1]}")
        self._writer.send(frame)
        self.count += 1

    def close(self):
        if self._writer is None:
            self.abort()
            raise MediaError(f"{self.path}: no frames to write")
        self._writer.close()
        self._publish()

    def abort(self):
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # the encoder may already be gone; the file is discarded anyway
                pass
        super().abort()


def strip_indices(num_frames, max_columns):
    """Evenly spaced frame indices for a strip, first and last included. → list of ≤ max_columns ints."""
    if num_frames <= 0:
        return []
    if max_columns <= 0 or num_frames <= max_columns:
        return list(range(num_frames))
    return sorted({int(round(i)) for i in np.linspace(0, num_frames - 1, max_columns)})


class StripWriter(_AtomicOutput):
    """A PNG strip: selected frames side by side, one row per stream (e.g. driving over generated).

    Only the selected columns are kept, so memory is bounded by ``len(indices)``, not the clip length.
    """

    def __init__(self, path, indices, rows=1):
        self.path = os.path.abspath(path)
        self.indices = {index: column for column, index in enumerate(indices)}
        self.cells = [[None] * len(indices) for _ in range(rows)]
        self._tmp = _temporary_sibling(path, suffix=".png")

    def write(self, index, *row_frames):
        """Frame ``index`` of the clip, one frame per row."""
        column = self.indices.get(index)
        if column is None:
            return
        for row, frame in enumerate(row_frames):
            self.cells[row][column] = to_rgb_uint8(frame)

    def close(self):
        rows = []
        for cells in self.cells:
            present = [c for c in cells if c is not None]
            if not present:
                continue
            blank = np.zeros_like(present[0])
            rows.append(np.concatenate([c if c is not None else blank for c in cells], axis=1))
        if not rows:
            self.abort()
            raise MediaError(f"{self.path}: no frames for the strip")
        Image.fromarray(np.concatenate(rows, axis=0)).save(self._tmp, format="PNG")
        self._publish()


def resize_frame(frame, size):
    """(H, W, 3) uint8 → (size[0], size[1], 3) uint8 (Lanczos); returned unchanged when already that size."""
    frame = to_rgb_uint8(frame)
    if frame.shape[:2] == tuple(size):
        return frame
    return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.Resampling.LANCZOS))


def side_by_side(*frames):
    """Frames of one height placed left to right. (H, W_i, 3) uint8 … → (H, ΣW_i, 3) uint8."""
    return np.concatenate([to_rgb_uint8(f) for f in frames], axis=1)
