"""What the static result pages (tools/demo_page.py, compare_page.py) share: number formatting, relative
links, clip GIFs, atomic file writes and the base style. Pages are plain files beside their pictures:
no server, no script, no external asset."""
import html
import os
import uuid
from pathlib import Path

from PIL import Image

from video_io import iter_clip

BASE_CSS = """body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: center; }
.note { max-width: 60em; }"""

# (summary key, label, digits) of evaluate.py's animation metrics, as both pages show them.
ANIMATION_METRICS = (("identity_aed", "identity AED to target ↓", 3), ("face_found", "face found ↑", 3),
                     ("motion_correlation", "motion correlation ↑", 3),
                     ("motion_magnitude_ratio", "motion magnitude ratio (→ 1)", 3),
                     ("background_change", "background change ↓", 4))


def fmt(value, digits):
    return "–" if value is None else f"{value:.{digits}f}"


def rel(path, root):
    """``path`` relative to the page's folder ``root``, escaped for an HTML attribute."""
    return html.escape(os.path.relpath(path, root))


def atomic_save(path, save):
    """Call ``save(temporary path)`` and rename the result to ``path``: a crash leaves the old file or none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name that ``save`` creates itself, so the file gets the umask's mode (mkstemp's is 0600).
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}"
    try:
        save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def clip_gif(clip, out_path, fps):
    """A looping GIF of a clip (a folder of frames or a video file, see video_io.iter_clip)."""
    frames = [Image.fromarray(frame) for _, frame in iter_clip(str(clip))]
    atomic_save(out_path, lambda tmp: frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                                                     duration=int(1000 / fps), loop=0))
