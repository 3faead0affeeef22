"""Where animation and reconstruction put their outputs, and how a run over many pairs (or clips)
survives interruptions.

Per animated pair ``<name>`` = ``<driving>-<target>`` in the output folder:

    <name>/                       PNG frames, same count and names as the driving clip (MEGC's form)
    <name>.mp4, <name>.gif        the generated clip
    png/<name>.png                strip: driving frames over generated frames
    side_by_side/<name><format>   driving | target | generated

Every output is written under a temporary name (``.tmp-…``) and renamed when complete, so a pair
(or clip) is *finished* exactly when all its outputs exist. :func:`run_resumable` skips finished
ones (``--overwrite`` redoes them), stops cleanly on Ctrl-C / SIGTERM after the current frame,
goes on past a pair whose input cannot be read, and removes what a killed run left behind.
"""
import os

from errors import InputError
from fileio import check_output_dir, disk_full_error, is_disk_full, remove_temporaries
from stop_requests import StopRequests

STOP_MESSAGE = "stopping after this frame; finished outputs are kept (run again to continue, Ctrl-C again aborts)"


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


def is_finished(outputs):
    """All outputs of one item exist (each was renamed into place only when complete)."""
    return all(os.path.exists(path) for path in outputs.values())


def prepare_output_folder(out_dir, outputs_of_some_item):
    """Check ``out_dir`` can be written (before any work) and remove the temporary files a killed run
    left in it and in the sub-folders its outputs go to. Returns the removed paths."""
    check_output_dir(out_dir, "--out")
    folders = {out_dir} | {os.path.dirname(path) for path in outputs_of_some_item.values()}
    removed = []
    for folder in sorted(folders):
        removed += remove_temporaries(folder)
    return removed


def run_resumable(items, outputs_of, work, out_dir, overwrite=False, log=print, what="pair"):
    """Run ``work(item, outputs, stop)`` for every item whose outputs are not all there (every item
    with ``overwrite``). ``work`` returns the item's frame count and calls ``stop.check()`` at safe
    points. An InputError in one item (an unreadable clip or frame) fails that item and the others
    go on. A full disk stops the run with DiskFullError. Ctrl-C / SIGTERM raise stop_requests.Interrupted
    after the unfinished item's temporary files are gone.

    Returns [{'name', 'status': 'written' | 'done' | 'failed', 'frames', 'outputs', 'reason'}].
    """
    results = []
    with StopRequests(STOP_MESSAGE) as stop:
        for number, (name, item) in enumerate(items, 1):
            outputs = outputs_of(name)
            prefix = f"[{number}/{len(items)}] {name}"
            if not overwrite and is_finished(outputs):
                results.append(dict(name=name, status="done", frames=None, outputs=outputs, reason=""))
                log(f"{prefix}: finished earlier, kept (--overwrite redoes it)")
                continue
            try:
                count = work(item, outputs, stop)
            except InputError as error:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                results.append(dict(name=name, status="failed", frames=0, outputs=outputs, reason=reason))
                log(f"{prefix}: FAILED: {reason}")
                continue
            except (OSError, RuntimeError) as error:
                if not is_disk_full(error):
                    raise
                kept = sum(r["status"] in ("written", "done") for r in results)
                raise disk_full_error(f"{what} {name} in {out_dir}",
                                      f"{kept} finished {what}(s) kept, the unfinished one removed") from None
            results.append(dict(name=name, status="written", frames=count, outputs=outputs, reason=""))
            log(f"{prefix}: {count} frames → {outputs.get('frames', out_dir)}")
            stop.check()
    return results


def summary_lines(results, what="pair"):
    """The closing lines: counts, then each failed item with its reason."""
    counts = {status: sum(r["status"] == status for r in results) for status in ("written", "done", "failed")}
    lines = [f"{what}s written: {counts['written']}, finished earlier (kept): {counts['done']}, "
             f"failed: {counts['failed']}"]
    lines += [f"  FAILED {r['name']}: {r['reason']}" for r in results if r["status"] == "failed"]
    return lines


def exit_code(results):
    """What a run over items exits with: EXIT_FAILED when any item failed, else EXIT_OK."""
    from errors import EXIT_FAILED, EXIT_OK

    return EXIT_FAILED if any(r.get("status") == "failed" for r in results or ()) else EXIT_OK
