"""Training speed and memory: the project's training step against the published one (issue 7).

    .venv/bin/python benchmarks/bench_train.py [--quick] [--cases published:1 published:4 demo:4 tiny:2]

Each case (config, batch size) runs in fresh worker processes (one per variant), so that the allocator
is set before start-up and the peak resident memory (VmHWM of the training process; data-loader worker
processes not included) belongs to that case alone:

  published  "the published code as users run it": glibc's default malloc (FPFOMM_DEFAULT_MALLOC=1) and
             the published step structure rebuilt from the project's modules (benchmarks/published.py:
             full-frame blur convolutions, the discriminator's weight gradients computed in the generator
             step and thrown away, torchvision's whole VGG19 built then sliced, FOMM's loop order, Adam's
             default implementation), FOMM's shuffled DataLoader;
  project    train.Trainer.step as run.py runs it (allocator tuned at start-up), its resumable loader.

``published@tuned`` and ``project@default`` swap the allocators, to show what the code changes and what
the allocator contribute on their own (--variants published project published@tuned project@default).

Both train the same networks (random weights, same seed) on the same data: a small dataset written
on the fly in preprocess.py's layout from real face videos (face_assets), with kpmaker's keypoints.
Per step the time is split into waiting for the data loader, generator forward, generator backward
(+ gradient checks), generator/keypoint-detector Adam updates, and the discriminator's step; the first
``--warmup`` steps are not counted; the training process's minor page faults are counted per step. The
data loader is also timed alone (samples/s) with the config's worker count and in-process, to show it is
never the bottleneck.
"""
import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import (ALLOCATORS, REPO, format_table, loadavg, machine_info, median,  # noqa: E402
                                run_worker, write_json)

CONFIGS = {"published": "config/your_dataset_train.yaml", "demo": "config/demo.yaml", "tiny": "config/tiny.yaml"}
VARIANTS = {"published": "default", "project": "tuned"}   # step structure → allocator as users run it
MIN_STEPS = 3   # timed steps per worker at the least, however long they take


def variant_allocator(variant):
    """'published', 'project', or 'published@tuned' / 'project@default' to separate the allocator's
    share from the code's. → (structure, allocator)."""
    structure, _, allocator = variant.partition("@")
    if structure not in VARIANTS or (allocator and allocator not in ALLOCATORS):
        raise ValueError(f"variant {variant!r}: use published or project, optionally @tuned or @default")
    return structure, allocator or VARIANTS[structure]
PHASES = ("data", "generator_forward", "generator_backward", "generator_update", "discriminator")


# --------------------------------------------------------------------------- worker

def load_case(config_path, batch_size, data_root):
    from configuration import load_config

    config = load_config(config_path)
    config["dataset_params"]["root_dir"] = str(data_root)
    config["dataset_params"]["keypoint_dir"] = None
    config["train_params"]["batch_size"] = batch_size
    config["train_params"]["num_repeats"] = 1000   # one epoch is longer than any benchmark
    return config


class PhaseClock:
    """Timestamps of a step's phase boundaries → durations."""

    def __init__(self):
        self.marks = []

    def start(self):
        self.marks = [("start", time.perf_counter())]

    def mark(self, name):
        self.marks.append((name, time.perf_counter()))

    def durations(self):
        out, previous = {}, self.marks[0][1]
        for name, when in self.marks[1:]:
            out[name] = out.get(name, 0.0) + when - previous
            previous = when
        return out


def project_stepper(config, dataset, log_dir, clock):
    """train.Trainer with its step instrumented by wrapping (not changing) the calls it makes.
    → (step(batch), loader)."""
    from parallel import Parallel
    from train import Trainer

    trainer = Trainer(config, dataset, log_dir, Parallel())
    training = trainer.training  # the FOMM family's training object (modules/training.py)
    generator_step, discriminator_step = training.generator_step, training.discriminator_step
    generator_optimizer = trainer.optimizers["optimizer_generator"]
    generator_update = generator_optimizer.step

    def timed_generator(batch):
        result = generator_step(batch)
        clock.mark("generator_forward")
        return result

    def timed_update(*args, **kwargs):
        clock.mark("generator_backward")   # backward and the gradient checks are done when Adam starts
        return generator_update(*args, **kwargs)

    def timed_discriminator(batch, generated):
        clock.mark("generator_update")
        return discriminator_step(batch, generated)

    training.generator_step = timed_generator
    training.discriminator_step = timed_discriminator
    generator_optimizer.step = timed_update

    def step(batch):
        trainer.step(batch)
        if not training.use_gan:
            clock.mark("generator_update")
        clock.mark("discriminator")
    return step, trainer.loader


def published_stepper(config, dataset, clock):
    """The published step (benchmarks/published.py) on the same networks. → (step(batch), loader)."""
    import warnings

    import torch

    from benchmarks.published import (PublishedDiscriminatorFullModel, PublishedGeneratorFullModel,
                                      published_blur, published_optimizers, published_step, published_vgg19)
    from configuration import build_networks
    from frames_dataset import make_train_loader
    from modules.perceptual import Vgg19

    train_params = config["train_params"]
    torch.manual_seed(0)
    kp_detector, generator, discriminator = build_networks(config["model_params"])
    for module in (kp_detector, generator, discriminator):
        published_blur(module).train()
    vgg = None
    if sum(train_params["loss_weights"]["perceptual"]) != 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vgg = published_vgg19(Vgg19(train_params.get("vgg_weights")))
    generator_full = PublishedGeneratorFullModel(kp_detector, generator, discriminator, train_params, vgg)
    discriminator_full = PublishedDiscriminatorFullModel(kp_detector, generator, discriminator, train_params)
    optimizers = published_optimizers(kp_detector, generator, discriminator, train_params)
    use_gan = train_params["loss_weights"]["generator_gan"] != 0
    loader = make_train_loader(dataset, train_params["batch_size"], train_params["num_repeats"],
                               train_params["num_workers"])

    def step(batch):
        published_step(generator_full, discriminator_full, optimizers, batch, use_gan, clock.mark)
    return step, loader


def loader_rate(loader, batches):
    """Samples per second of a loader alone (after its first batch: worker start-up excluded)."""
    iterator = iter(loader)
    next(iterator)
    start, count = time.perf_counter(), 0
    for _ in range(batches):
        count += len(next(iterator)["driving"])
    return count / (time.perf_counter() - start)


def worker(args):
    import torch

    from benchmarks.measure import minor_faults, peak_rss_mb, rss_mb
    from frames_dataset import build_dataset, make_train_loader
    from runtime import tune_allocator

    allocator_tuned = tune_allocator()   # as run.py does; a no-op with FPFOMM_DEFAULT_MALLOC=1
    load_before = loadavg()
    config = load_case(args.config, args.batch, args.data)
    dataset = build_dataset(config, is_train=True, validate=False)
    clock = PhaseClock()
    with tempfile.TemporaryDirectory() as log_dir:
        if args.variant.partition("@")[0] == "project":
            step, loader = project_stepper(config, dataset, log_dir, clock)
        else:
            step, loader = published_stepper(config, dataset, clock)
        rss_ready = rss_mb()
        iterator = iter(loader)
        records = []
        index, timed_started = 0, None
        # A fixed --steps, or as many steps as fill --seconds (at least MIN_STEPS): a handful of 0.2 s
        # steps at 64 px is all start-up noise, a handful of 3 s steps at 256 px is already minutes.
        while True:
            if index == args.warmup:
                timed_started = time.perf_counter()
            timed = len(records)
            if args.steps and timed >= args.steps:
                break
            if not args.steps and timed >= MIN_STEPS and time.perf_counter() - timed_started >= args.seconds:
                break
            faults = minor_faults()
            clock.start()
            batch = next(iterator)
            clock.mark("data")
            step(batch)
            if index >= args.warmup:
                phases = clock.durations()
                phases["total"] = clock.marks[-1][1] - clock.marks[0][1]
                phases["minor_faults"] = minor_faults() - faults   # of this process (loader workers apart)
                records.append(phases)
            index += 1
        result = {"variant": args.variant, "config": args.config, "batch": args.batch,
                  "allocator_tuned": allocator_tuned, "machine": machine_info(), "steps": len(records),
                  "warmup": args.warmup, "load_before": load_before, "rss_ready_mb": rss_ready,
                  "peak_rss_mb": peak_rss_mb(), "num_workers": config["train_params"]["num_workers"],
                  "s_per_step": median([r["total"] for r in records]),
                  "s_per_step_runs": [r["total"] for r in records],
                  "phases": {name: median([r.get(name, 0.0) for r in records]) for name in PHASES},
                  "minor_faults_per_step": median([r["minor_faults"] for r in records]),
                  "records": records}
        del iterator
        if args.loader_batches:
            result["loader_samples_per_s"] = loader_rate(loader, args.loader_batches)
            alone = make_train_loader(dataset, args.batch, 1000, 0)
            result["loader_samples_per_s_in_process"] = loader_rate(alone, args.loader_batches)
    result["load_after"] = loadavg()
    result["threads"] = torch.get_num_threads()
    write_json(args.json, result)


# --------------------------------------------------------------------------- report

def report(results, quick):
    first = next(iter(results.values()))
    m = first["machine"]
    lines = [f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores), torch {m['torch']}, {m['threads']} threads"
             f"{' (--quick)' if quick else ''}. {first['rounds']} round(s) of worker processes, variants alternating; "
             f"per worker {first['warmup']} warm-up step(s) then timed steps (count in the table); medians over all timed steps.",
             ""]
    rows = []
    for (case, variant), r in results.items():
        p = r["phases"]
        rows.append([case, variant, "tuned" if r["allocator_tuned"] else "default", str(r["steps"]), f"{r['s_per_step']:.2f}",
                     *(f"{p[name]:.2f}" for name in PHASES), f"{r.get('minor_faults_per_step', float('nan')):.0f}",
                     f"{r['peak_rss_mb'] / 1024:.2f}",
                     f"{r.get('loader_samples_per_s', float('nan')):.0f} ({r['num_workers']} w) / "
                     f"{r.get('loader_samples_per_s_in_process', float('nan')):.0f}",
                     f"{r['load_before'][0]:.1f} → {r['load_after'][0]:.1f}"])
    lines.append(format_table(["case (config:batch)", "step", "malloc", "timed steps", "s/step", "data wait", "gen fwd", "gen bwd",
                               "gen+kp Adam", "disc step", "minor faults/step", "peak RSS GB", "loader samples/s (workers / in-process)",
                               "load"], rows))
    speedups = []
    for case in sorted({c for c, _ in results}):
        ours, theirs = results.get((case, "project")), results.get((case, "published"))
        if ours and theirs:
            speedups.append([case, f"{theirs['s_per_step']:.2f}", f"{ours['s_per_step']:.2f}",
                             f"{paired_speedup(theirs, ours):.2f}× (rounds: "
                             + ", ".join(f"{t / o:.2f}" for t, o in zip(theirs["round_s_per_step"],
                                                                         ours["round_s_per_step"])) + ")",
                             f"{theirs['peak_rss_mb'] / 1024:.2f} → {ours['peak_rss_mb'] / 1024:.2f}"])
    if speedups:
        lines += ["", format_table(["case", "published s/step", "project s/step", "speed-up", "peak RSS GB"], speedups)]
    return "\n".join(lines)


def merge_rounds(rounds):
    """One result from the workers of several rounds of one (case, variant): medians over every timed
    step, the highest peak RSS, loads from first to last."""
    merged = dict(rounds[0])
    records = [record for result in rounds for record in result["records"]]
    merged.update(records=records, rounds=len(rounds), steps=len(records), s_per_step=median([r["total"] for r in records]),
                  s_per_step_runs=[r["total"] for r in records],
                  phases={name: median([r.get(name, 0.0) for r in records]) for name in PHASES},
                  minor_faults_per_step=median([r.get("minor_faults", float("nan")) for r in records]),
                  peak_rss_mb=max(r["peak_rss_mb"] for r in rounds), load_after=rounds[-1]["load_after"],
                  round_s_per_step=[r["s_per_step"] for r in rounds])
    for key in ("loader_samples_per_s", "loader_samples_per_s_in_process"):
        values = [r[key] for r in rounds if key in r]
        if values:
            merged[key] = median(values)
    return merged


def paired_speedup(theirs, ours):
    """Median over rounds of (their s/step ÷ our s/step) in the same round: load from other processes
    that comes and goes hits both sides of a pair alike."""
    return median([t / o for t, o in zip(theirs["round_s_per_step"], ours["round_s_per_step"])])


def build_data(root, sizes):
    from benchmarks.inputs import training_dataset
    from modules.face_landmarks import FaceLandmarker

    landmarker = FaceLandmarker()
    return {size: str(training_dataset(Path(root) / f"faces{size}", size, landmarker)) for size in sizes}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=None,
                        help="config:batch pairs (default published:1 published:4 demo:4 tiny:2)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                        help="published, project, published@tuned, project@default (default: the first two)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per worker (default: as many as fill --seconds, at least 3)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="timed seconds per worker when --steps is not given (default 15; --quick 5)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=None,
                        help="worker processes per variant, alternating with the other variants (default 3; --quick 1)")
    parser.add_argument("--quick", action="store_true", help="published:1 and demo:4 only, one round, 5 s per worker")
    parser.add_argument("--data", default=None, help="folder for the generated datasets (default: a temporary one)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for JSON and markdown")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--loader_batches", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    for variant in args.variants:
        variant_allocator(variant)

    cases = args.cases or (["published:1", "demo:4"] if args.quick else
                           ["published:1", "published:4", "demo:4", "tiny:2"])
    seconds = args.seconds or (5.0 if args.quick else 15.0)
    from configuration import load_config

    with tempfile.TemporaryDirectory() as scratch:
        data_root = args.data or scratch
        sizes = {load_config(CONFIGS[c.split(":")[0]])["dataset_params"]["frame_shape"][0] for c in cases}
        print(f"[{datetime.datetime.now():%H:%M:%S}] writing datasets {sorted(sizes)} px …", file=sys.stderr, flush=True)
        data = build_data(data_root, sizes)
        runs = {}
        rounds = args.rounds or (1 if args.quick else 3)
        for case in cases:
            name, batch = case.split(":")
            size = load_config(CONFIGS[name])["dataset_params"]["frame_shape"][0]
            for number in range(rounds):
                for variant in args.variants:
                    _, allocator = variant_allocator(variant)
                    measure_loader = variant == "project" and number == 0
                    worker_args = ["--worker", "--variant", variant, "--config", CONFIGS[name], "--batch", batch,
                                   "--steps", str(args.steps or 0), "--seconds", str(seconds), "--warmup", str(args.warmup), "--data", data[size],
                                   "--loader_batches", "8" if measure_loader else "0"]
                    print(f"[{datetime.datetime.now():%H:%M:%S}] {case} {variant} round {number + 1}/{rounds}, "
                          f"load {loadavg()[0]:.2f} …", file=sys.stderr, flush=True)
                    runs.setdefault((case, variant), []).append(
                        run_worker(__file__, worker_args, ALLOCATORS[allocator]))
        results = {key: merge_rounds(value) for key, value in runs.items()}
    text = report(results, args.quick)
    out = Path(args.out)
    write_json(out / "bench_train.json", {f"{c}/{v}": r for (c, v), r in results.items()})
    (out / "bench_train.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
