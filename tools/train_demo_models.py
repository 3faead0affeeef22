"""Train every method's demo model and ship it as a small weights-only checkpoint (issue 17).

    python tools/train_demo_models.py [--out demo_output] [--models demo_models] [--methods NAME ...]
                                      [--steps N] [--device cpu] [--workers 2]

1. Builds the demo data in --out with demo_pipeline's own stages (shared with `make demo`: a later
   demo reuses them).
2. For every registered method (methods.names()) that has a demo config, trains it on that data for
   the same seeded budget: --steps optimiser steps (at least; whole epochs) of batch BATCH_SIZE over
   EPOCHS epochs, seed SEED, on the CPU.
3. Writes <models>/<method>.pth.tar: only the networks animation needs (spec.animation_networks),
   and <models>/manifest.json: method, config, budget, steps, wall time, seed, date, torch version,
   file SHA-256. A method whose training fails is reported and left out; the others still ship.

Demo configs: config/demo.yaml (FP-FOMM) and config/demo_fomm.yaml predate this tool; every other
method's config/demo_<method>.yaml is derived from its config/tiny_<method>.yaml (64×64, the widths of
the FOMM demo) the first time the tool meets the method, and committed. A method that lands later
needs nothing here: its tiny config is enough (or a hand-written demo config).
"""
import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import demo_pipeline  # noqa: E402  (the repository root is on sys.path only from here on)
import methods  # noqa: E402
from checkpoint import read_checkpoint, write_atomically  # noqa: E402

MODELS = REPO / "demo_models"
MANIFEST = "manifest.json"
# The one budget every method gets: same data, same number of steps of the same batch, same seed.
STEPS = 300
BATCH_SIZE = 4
EPOCHS = 4
SEED = 0
JOBS, THREADS = 4, 1   # methods trained at once, torch threads each (4 × 1 on 2 busy cores)
# Configs that existed before this tool (the FOMM-family demo); others: config/demo_<method>.yaml.
OWN_CONFIGS = {"fp-fomm": "config/demo.yaml", "fomm": "config/demo_fomm.yaml"}
# Widths of the derived configs: the tiny configs' test widths (8) are too narrow to learn a face in
# a few hundred steps; the FOMM demo's (16, up to 128 features) train at a similar step time.
WIDTHS = {"block_expansion": 16, "ngf": 16, "ndf": 16}
# Registered methods the default run leaves out, and why (a method named with --methods is trained):
# none today; a method whose demo model cannot be shipped says why here.
SKIP = {}
FP32_LIMIT = 8 << 20   # a checkpoint larger than this in fp32 is stored in fp16 (loads back as fp32)


def log(message):
    print(f"[train_demo_models {time.strftime('%H:%M:%S')}] {message}", flush=True)


def demo_config_path(method):
    return REPO / OWN_CONFIGS.get(method, f"config/demo_{method.replace('-', '_')}.yaml")


def tiny_config_path(method):
    return REPO / "config" / f"tiny_{method.replace('-', '_')}.yaml"


def _widen(node):
    """The tiny config's network sections with the demo widths (max_features scaled alike)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in WIDTHS and isinstance(value, int):
                out[key] = WIDTHS[key]
            elif key == "max_features" and isinstance(value, int):
                out[key] = value * 2
            else:
                out[key] = _widen(value)
        return out
    return node


def derive_demo_config(method):
    """config/demo_<method>.yaml from config/tiny_<method>.yaml: demo data paths, demo widths, the
    demo's output formats. Written once (then committed); an existing file is never overwritten."""
    target = demo_config_path(method)
    if target.is_file():
        return target
    tiny = tiny_config_path(method)
    if not tiny.is_file():
        return None
    config = yaml.safe_load(tiny.read_text())
    config["dataset_params"].update(root_dir="demo_output/data", pairs_list="demo_output/data_test.csv")
    config["model_params"] = _widen(config["model_params"])
    if "image_size" in config["model_params"]:
        config["model_params"]["image_size"] = config["dataset_params"]["frame_shape"][0]
    for section in ("animate_params", "reconstruction_params"):
        # GIFs play in every browser the demo page may open in; the demo clips are short: 12 fps.
        config.setdefault(section, {}).update(format=".gif")
    config["animate_params"].update(num_pairs=None, fps=12)
    header = (f"# The `make demo` model of {method}: {tiny.name} at 64×64 with the FOMM demo's widths, written by\n"
              "# tools/train_demo_models.py. Its train_params budget is set by that tool (STEPS, EPOCHS, BATCH_SIZE).\n")
    target.write_text(header + yaml.safe_dump(config, sort_keys=False))
    log(f"wrote {target.relative_to(REPO)} (derived from {tiny.relative_to(REPO)})")
    return target


def dataset_length(config_path):
    """Training samples per pass of the method's own dataset (AU-table methods count frames, not clips)."""
    import frames_dataset
    from configuration import load_config

    config = load_config(config_path)
    spec = methods.get(config["model_params"]["method"])
    build = getattr(spec, "build_dataset", frames_dataset.build_dataset)
    return len(build(config, is_train=True, validate=False))


def budget_config(layout, method, steps):
    """The method's demo config pointed at this run's data, with the shared budget in train_params:
    EPOCHS epochs of ceil(steps / EPOCHS) steps or a little more (whole passes over the clips).
    → (path, budget facts)."""
    name = f"demo_models-{method}"
    path = demo_pipeline.demo_config(layout, demo_config_path(method), name)
    samples = dataset_length(path)
    epochs, repeats = epochs_and_repeats(samples, steps)
    config = yaml.safe_load(path.read_text())
    train_params = config["train_params"]
    train_params.update(num_epochs=epochs, num_repeats=repeats, batch_size=BATCH_SIZE, checkpoint_freq=epochs)
    for key in ("num_workers", "dataloader_workers"):
        if key in train_params:
            train_params[key] = 0   # no worker processes: the two cores are busy with the steps
    if "epoch_milestones" in train_params:
        train_params["epoch_milestones"] = [m for m in [epochs * 3 // 4] if m > 0]
    if "niter" in train_params:   # GANimation's schedule: constant, then linear decay, in epochs
        train_params.update(niter=epochs // 2, niter_decay=epochs - epochs // 2)
    for key in ("dropout_epoch", "bg_start"):
        if key in train_params:
            train_params[key] = min(train_params[key], epochs - 1)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    planned = epochs * (samples * repeats // BATCH_SIZE)
    return path, {"samples": samples, "num_epochs": epochs, "num_repeats": repeats, "batch_size": BATCH_SIZE,
                  "planned_steps": planned}


def epochs_and_repeats(samples, steps):
    """(epochs, repeats) giving about ``steps`` steps of BATCH_SIZE in whole epochs: EPOCHS epochs
    over the clips repeated as often as needed; a dataset of many samples (AU-table methods train on
    single frames) gets fewer epochs of one pass each, the nearest whole number to ``steps``."""
    per_pass = max(1, samples // BATCH_SIZE)
    if EPOCHS * per_pass >= steps:
        return max(1, round(steps / per_pass)), 1
    return EPOCHS, math.ceil(steps * BATCH_SIZE / (EPOCHS * samples))


def train_one(layout, method, config_path, device):
    """run.py --mode train for the method; → (final training checkpoint, wall seconds)."""
    run_root = layout.out / "demo_models_log" / method
    begin = time.time()
    command = [sys.executable, "run.py", "--config", str(config_path), "--log_dir", str(run_root),
               "--device", device, "--seed", str(SEED)]
    # One thread per training process: JOBS processes share the cores without oversubscribing them.
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))
    if subprocess.run(command, cwd=REPO, env=env).returncode != 0:
        raise RuntimeError(f"run.py --mode train failed for {method} (its message is above)")
    checkpoint = demo_pipeline.latest_checkpoint(run_root)
    if checkpoint is None:
        raise RuntimeError(f"training {method} wrote no checkpoint under {run_root}")
    return checkpoint, time.time() - begin


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def ship(method, checkpoint, models):
    """<models>/<method>.pth.tar: the animation networks only (no optimisers, no discriminator), fp16
    when fp32 would pass FP32_LIMIT. → (path, dtype, iterations trained)."""
    trained = read_checkpoint(checkpoint)
    spec = methods.get(method)
    states = {name: trained[name] for name in spec.animation_networks}
    size = sum(t.numel() * t.element_size() for s in states.values() for t in s.values())
    dtype = "float32"
    if size > FP32_LIMIT:
        dtype = "float16"
        states = {name: {k: v.half() if v.is_floating_point() else v for k, v in s.items()}
                  for name, s in states.items()}
    path = Path(models) / f"{method}.pth.tar"
    write_atomically(states, str(path))
    return path, dtype, trained.get("train_state", {}).get("iteration")


def read_manifest(models):
    path = Path(models) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {"methods": {}}


def write_manifest(models, manifest):
    path = Path(models) / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def relative(path):
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def train_all(out, models=MODELS, names=None, steps=STEPS, device="cpu", workers=2, plan=None, jobs=JOBS):
    """Everything the tool does; → {method: manifest entry} of the methods shipped in this run,
    {method: reason} of those left out. ``plan``: the demo's data plan (default the full demo's)."""
    plan = plan or demo_pipeline.Plan()
    layout = demo_pipeline.open_output(out, plan)
    demo_pipeline.build_data(layout, plan, workers, demo_pipeline.stage_runner(layout, {}))
    Path(models).mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(models)
    manifest["budget"] = {"steps": steps, "batch_size": BATCH_SIZE, "epochs": EPOCHS, "seed": SEED,
                          "data": json.loads(plan.signature())[:2], 
                          "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
                          "threads_per_job": THREADS}
    manifest["budget"]["jobs"] = jobs
    shipped, left_out = {}, {}
    lock = threading.Lock()

    def one(method):
        """Train and ship one method; its failure must not cost the others their models."""
        try:
            config_path, facts = budget_config(layout, method, steps)
            log(f"{method}: {facts['planned_steps']} steps ({facts['num_epochs']} epochs × {facts['num_repeats']} "
                f"repeats of {facts['samples']} samples, batch {BATCH_SIZE})")
            checkpoint, seconds = train_one(layout, method, config_path, device)
            path, dtype, iterations = ship(method, checkpoint, models)
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            with lock:
                left_out[method] = f"training failed: {type(error).__name__}: {first}"
            log(f"{method}: left out ({left_out[method]})")
            return
        entry = {"method": method, "config": relative(demo_config_path(method)), "checkpoint": path.name,
                 "networks": list(methods.get(method).animation_networks), "dtype": dtype,
                 "steps": iterations, **facts, "seed": SEED, "device": device,
                 "wall_seconds": round(seconds, 1), "date": time.strftime("%Y-%m-%d"),
                 "torch": torch.__version__, "bytes": path.stat().st_size, "sha256": sha256_of(path)}
        with lock:
            shipped[method] = entry
            # Merged into the file as it is now, after every method: a stopped run keeps what it
            # finished, and a run of other --methods beside this one keeps its entries.
            current = read_manifest(models)
            current["methods"][method] = entry
            current.setdefault("left_out", {}).pop(method, None)
            current["budget"] = manifest["budget"]
            write_manifest(models, current)
        log(f"{method}: {iterations} steps in {seconds / 60:.1f} min → {relative(path)} "
            f"({path.stat().st_size / 1e6:.1f} MB, {dtype})")

    todo = []
    for method in names or methods.names():
        if method in SKIP and not names:
            left_out[method] = SKIP[method]
        elif derive_demo_config(method) is None:
            left_out[method] = f"no demo config and no {relative(tiny_config_path(method))} to derive one from"
        else:
            todo.append(method)
    with ThreadPoolExecutor(max_workers=jobs) as pool:   # threads only wait on run.py processes
        list(pool.map(one, todo))
    manifest = read_manifest(models)
    manifest["left_out"] = {**{k: v for k, v in manifest.get("left_out", {}).items()
                               if k not in manifest["methods"] and k in methods.names()}, **left_out}
    write_manifest(models, manifest)
    return shipped, left_out


def parse_args(argv=None):
    from cli_args import OneLineParser, positive_int

    parser = OneLineParser(prog="tools/train_demo_models.py", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "demo_output"), help="demo folder for the data (default demo_output)")
    parser.add_argument("--models", default=str(MODELS), help="where the checkpoints go (default demo_models/)")
    parser.add_argument("--methods", nargs="+", default=None, help="only these methods (default: every registered one)")
    parser.add_argument("--steps", type=positive_int, default=STEPS, help=f"training steps per method (default {STEPS})")
    parser.add_argument("--device", default="cpu", help="cpu (default: the budget is stated for 2 CPU cores)")
    parser.add_argument("--workers", type=positive_int, default=2, help="processes for dlib (default 2)")
    parser.add_argument("--jobs", type=positive_int, default=JOBS, help=f"methods trained at once (default {JOBS})")
    return parser.parse_args(argv)


def main(argv=None):
    from errors import EXIT_FAILED, EXIT_OK, InputError, RunError, report

    args = parse_args(argv)
    try:
        shipped, left_out = train_all(args.out, args.models, args.methods, args.steps, args.device, args.workers,
                                      jobs=args.jobs)
    except (InputError, RunError) as error:
        return report("train_demo_models", error)
    for method, reason in left_out.items():
        log(f"left out {method}: {reason}")
    return EXIT_OK if shipped else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
