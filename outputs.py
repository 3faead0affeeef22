"""Where animation and reconstruction put their outputs, and the rule that nothing is replaced
without ``--overwrite``.

Per animated pair ``<name>`` = ``<driving>-<target>`` in the output folder:

    <name>/                       PNG frames, same count and names as the driving clip (MEGC's form)
    <name>.mp4, <name>.gif        the generated clip
    png/<name>.png                strip: driving frames over generated frames
    side_by_side/<name><format>   driving | target | generated
"""
import os

from errors import InputError


class OutputExistsError(InputError):
    """Outputs that would be replaced; the message says how to keep or replace them."""


def pair_outputs(out_dir, name, side_format=".mp4"):
    """Every path written for one pair. → {'frames', 'mp4', 'gif', 'strip', 'side_by_side'}."""
    return {"frames": os.path.join(out_dir, name),
            "mp4": os.path.join(out_dir, name + ".mp4"),
            "gif": os.path.join(out_dir, name + ".gif"),
            "strip": os.path.join(out_dir, "png", name + ".png"),
            "side_by_side": os.path.join(out_dir, "side_by_side", name + side_format)}


def existing_outputs(out_dir, names, side_format=".mp4"):
    return [p for name in names for p in pair_outputs(out_dir, name, side_format).values() if os.path.exists(p)]


def refuse_overwrite(existing, what="outputs"):
    """Raise OutputExistsError naming the first few ``existing`` paths (nothing when the list is empty)."""
    if existing:
        shown = ", ".join(existing[:3]) + (f", … ({len(existing)} in all)" if len(existing) > 3 else "")
        raise OutputExistsError(f"{what} exist already ({shown}); pass --overwrite to replace them or --out DIR")
