"""`evaluate.py compare`: several methods' animations of the same pairs in one table and one page.

    compare(methods={NAME: DIR, ...}, driving_root, out, ...) writes to ``out``:
      compare.csv        one row per method: every pooled metric of its animation_metrics.json
      compare_pairs.csv  one row per (method, pair): every per-clip metric
      compare.md         the main metrics as a markdown table
      index.html         per pair: the driving clip | one column per method (clip + AU-trajectory plot),
                         and the metric table (a static page, like the demo's)
      media/, plots/     the GIFs and the matplotlib PNGs the page shows

DIR is a method's animation folder (clips named <driving>-<target>); its metrics and per-frame AUs
(evaluate.py animation: animation_metrics.json, aus_generated/, aus_reference/) are computed there
when missing. Every file is written atomically.
"""
import csv
import html
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np

import au_metrics
import evaluate
from au_format import AU_NAMES, AUFormatError, read_aus
from fileio import atomic_write_text
from static_page import ANIMATION_METRICS, BASE_CSS, atomic_save, clip_gif, fmt, rel

AU_METRICS = (("au_correlation", "AU correlation ↑", 3), ("au_f1", "AU F1 at apex ↑", 3),
              ("au_timing_error", "apex timing error (frames) ↓", 1),
              ("au_intensity_ratio", "AU intensity ratio (→ 1)", 3))
PAGE_METRICS = ANIMATION_METRICS + AU_METRICS
PAIR_COLUMNS = ("method",) + evaluate.ANIMATION_COLUMNS + evaluate.AU_COLUMNS
METRICS_FILE = "animation_metrics.json"


def _safe(name):
    """A file-name-safe form of a method name (the page's files are named after methods)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _read_metrics(folder):
    try:
        data = json.loads((Path(folder) / METRICS_FILE).read_text())
        return data if isinstance(data.get("summary"), dict) and isinstance(data.get("clips"), list) else None
    except (OSError, ValueError, AttributeError):
        return None


def _complete(data, folder, aus):
    """True when a method's stored metrics can be used as they are (with the AU parts when ``aus``)."""
    if data is None:
        return False
    if not aus:
        return True
    return "au_f1" in data["summary"] and all(
        (Path(folder) / evaluate.AUS_GENERATED / f"{c['pair']}.csv").is_file()
        and (Path(folder) / evaluate.AUS_REFERENCE / f"{c['driving']}.csv").is_file() for c in data["clips"])


def method_metrics(methods, driving_root, targets_root, pairs_csv=None, aus=True, aus_dir=None, recompute=False,
                   measurer=None, au_measurer=None, log=print):
    """{NAME: animation_metrics.json contents} of every method, scoring (evaluate.evaluate_animation)
    those whose metrics are missing, lack the AU parts, or all of them with ``recompute``. One dlib
    measurer and one AU estimator serve every method (made here when needed, closed after)."""
    for name, folder in methods.items():
        if not Path(folder).is_dir():
            raise evaluate.EvaluationError(f"--method {name}={folder}: no such folder of animations")
    results, own = {}, None
    try:
        for name, folder in methods.items():
            data = _read_metrics(folder)
            if recompute or not _complete(data, folder, aus):
                log(f"{name}: scoring {folder}")
                measurer = measurer or evaluate.FaceMeasurer()
                if aus and au_measurer is None:
                    au_measurer = own = evaluate.AUMeasurer()
                evaluate.evaluate_animation(folder, driving_root, targets_root, pairs_csv, folder, measurer, log,
                                            aus=aus, au_measurer=au_measurer, aus_dir=aus_dir)
                data = _read_metrics(folder)
            results[name] = data
    finally:
        if own is not None:
            own.close()
    return results


def _pairs(results):
    """[(pair, driving)] over all methods, in the first method's order, then any others' extra pairs."""
    seen = {}
    for data in results.values():
        for clip in data["clips"]:
            seen.setdefault(clip["pair"], clip["driving"])
    return list(seen.items())


def _csv_text(columns, rows):
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return text.getvalue()


def write_tables(results, methods, out):
    """compare.csv (per method, every pooled metric), compare_pairs.csv (per method and pair) and
    compare.md (the page's metrics). → the three paths."""
    keys = []
    for data in results.values():
        keys += [k for k in data["summary"] if k not in keys]
    rows = [dict(method=name, folder=str(methods[name]), **data["summary"]) for name, data in results.items()]
    paths = out / "compare.csv", out / "compare_pairs.csv", out / "compare.md"
    atomic_write_text(paths[0], _csv_text(("method", "folder", *keys), rows))
    atomic_write_text(paths[1], _csv_text(PAIR_COLUMNS, [dict(clip, method=name) for name, data in results.items()
                                                         for clip in data["clips"]]))
    lines = ["| method | pairs | " + " | ".join(label for _, label, _ in PAGE_METRICS) + " |",
             "|---" * (len(PAGE_METRICS) + 2) + "|"]
    for name, data in results.items():
        summary = data["summary"]
        lines.append(f"| {name} | {summary.get('pairs', '–')} | "
                     + " | ".join(fmt(summary.get(k), d) for k, _, d in PAGE_METRICS) + " |")
    atomic_write_text(paths[2], "\n".join(lines) + "\n")
    return paths


def au_plot(generated, driving, out_path, title, threshold=au_metrics.ACTIVE_THRESHOLD):
    """PNG of the driving clip's active AUs against the generated clip's, both relative to the
    baseline frame (au_metrics.departures): solid = driving, dashed = generated, one colour per AU."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    frames, gen, drv = au_metrics.departures(generated, driving)
    active = np.flatnonzero(au_metrics.active_aus(drv, threshold))
    figure = Figure(figsize=(3.6, 2.4), dpi=80)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for index, a in enumerate(active):
        colour = f"C{index % 10}"
        axes.plot(frames, drv[:, a], color=colour, label=AU_NAMES[a])
        axes.plot(frames, gen[:, a], color=colour, linestyle="--")
    if not len(active):
        axes.text(0.5, 0.5, "no AU active in the driving clip" if len(frames) else "no face in both clips",
                  ha="center", va="center", transform=axes.transAxes, fontsize=8)
    else:
        axes.legend(fontsize=6, ncol=3, loc="upper left")
    axes.axhline(threshold, color="0.7", linewidth=0.6)
    axes.set_title(title, fontsize=8)
    axes.set_xlabel("frame (solid: driving, dashed: generated)", fontsize=7)
    axes.set_ylabel("AU rise (0–5)", fontsize=7)
    axes.tick_params(labelsize=6)
    figure.tight_layout()
    atomic_save(out_path, lambda tmp: figure.savefig(tmp, format="png"))


def _aus(path):
    try:
        return read_aus(path).intensity.astype(np.float64)
    except AUFormatError as error:
        raise evaluate.EvaluationError(str(error)) from None


def _method_media(name, folder, pair, out, fps):
    """The method's clip for ``pair`` as a GIF under out/media (its own .gif copied when it has one)."""
    target = out / "media" / _safe(name) / f"{pair}.gif"
    own = Path(folder) / f"{pair}.gif"
    if own.is_file():
        atomic_save(target, lambda tmp: shutil.copyfile(own, tmp))
    else:
        clips = evaluate.generated_clips(folder)
        if pair not in clips:
            return None
        clip_gif(clips[pair], target, fps)
    return target


def _metric_table(results):
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in PAGE_METRICS)
    body = "".join(f"<tr><th>{html.escape(name)}</th><td>{data['summary'].get('pairs', '–')}</td>"
                   + "".join(f"<td>{fmt(data['summary'].get(k), d)}</td>" for k, _, d in PAGE_METRICS) + "</tr>"
                   for name, data in results.items())
    return f'<table class="metrics"><tr><th>method</th><th>pairs</th>{head}</tr>{body}</table>'


def write_page(results, methods, driving_root, out, fps=10.0, aus=True):
    """out/index.html with its GIFs and AU plots. → the page's path."""
    rows = []
    for pair, driving in _pairs(results):
        driving_clip = evaluate._find_clip(driving_root, driving)
        cells = ["<td>–</td>"]
        if driving_clip is not None:
            gif = out / "media" / "driving" / f"{driving}.gif"
            clip_gif(driving_clip, gif, fps)
            cells = [f'<td><img src="{rel(gif, out)}" alt="driving {html.escape(driving)}"></td>']
        for name, folder in methods.items():
            clip = next((c for c in results[name]["clips"] if c["pair"] == pair), None)
            media = _method_media(name, folder, pair, out, fps) if clip is not None else None
            if media is None:
                cells.append("<td>not generated</td>")
                continue
            cell = f'<img src="{rel(media, out)}" alt="{html.escape(name)} {html.escape(pair)}">'
            generated_aus = Path(folder) / evaluate.AUS_GENERATED / f"{pair}.csv"
            driving_aus = Path(folder) / evaluate.AUS_REFERENCE / f"{driving}.csv"
            if aus and generated_aus.is_file() and driving_aus.is_file():
                plot = out / "plots" / _safe(name) / f"{pair}.png"
                au_plot(_aus(generated_aus), _aus(driving_aus), plot,
                        f"{name}: r {fmt(clip.get('au_correlation'), 2)}, F1 {fmt(clip.get('au_f1'), 2)}")
                cell += f'<br><img class="plot" src="{rel(plot, out)}" alt="AU trajectories {html.escape(name)}">'
            cells.append(f"<td>{cell}</td>")
        rows.append(f"<tr><th>{html.escape(pair)}</th>{''.join(cells)}</tr>")
    heads = "".join(f"<th>{html.escape(name)}</th>" for name in methods)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Method comparison</title>
<style>
{BASE_CSS}
img {{ width: 128px; }} img.plot {{ width: 288px; }}
</style></head><body>
<h1>Method comparison</h1>
{_metric_table(results)}
<p class="note">Measured with the same instruments for every method (definitions in the README, "Metrics"):
dlib for identity and landmark motion; the MediaPipe blendshape AU estimator for the AU metrics — proxies,
not FACS-coded intensities. AU values are rises above each clip's first frame; an AU is active at a rise
of {au_metrics.ACTIVE_THRESHOLD:g} (0–5 scale). Plots: the driving clip's active AUs (solid) and the
generated clip's (dashed).</p>
<h2>Pairs</h2>
<table class="pairs"><tr><th>pair</th><th>driving</th>{heads}</tr>
{''.join(rows)}</table>
</body></html>
"""
    path = out / "index.html"
    atomic_write_text(path, page)
    return path


def compare(methods, driving_root, out, targets_root=None, pairs_csv=None, aus=True, aus_dir=None,
            recompute=False, fps=10.0, measurer=None, au_measurer=None, log=print):
    """Everything `evaluate.py compare` does. ``methods``: {NAME: animation folder}, in table order.
    → {NAME: metrics JSON contents}."""
    if not methods:
        raise evaluate.EvaluationError("--method: give at least one NAME=DIR")
    if not Path(driving_root).is_dir():
        raise evaluate.EvaluationError(f"--driving {driving_root}: no such folder of driving clips")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise evaluate.EvaluationError(f"--out {out}: exists and is not a folder")
    results = method_metrics(methods, driving_root, targets_root or driving_root, pairs_csv, aus, aus_dir,
                             recompute, measurer, au_measurer, log)
    out.mkdir(parents=True, exist_ok=True)
    write_tables(results, methods, out)
    page = write_page(results, methods, driving_root, out, fps, aus)
    log(f"compare: {page}")
    return results
