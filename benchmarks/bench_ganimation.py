"""Animation speed of GANimation / ULME-GAN: the original's per-frame loop against the project's driver.

    .venv/bin/python benchmarks/bench_ganimation.py [--quick] [--frames 16] [--repeats 3] [--out benchmarks/results]

Networks: config/ulme_gan.yaml's (128×128, ngf 64, 6 residual blocks), random weights (N(0, 0.02) as
the original initialises them); target: a random 128×128 face-sized image (speed does not depend on
the pixels); AUs: a random table of ``--frames`` frames. Paths, each timed over the whole clip:

  (a) the original's structure, per frame: gen(target (1, 3, S, S), au (1, 17)) → compose, batch 1,
      under no_grad, fp32 (the target tiled with every AU vector through the full generator);
  (o) the original's test forward as ULME-GAN runs it: the whole clip as one batch (the template
      repeated), fp32 (memory grows with the clip; shown for reference);
  (b) the project's driver (modules/ganimation/driver.py): first convolution split (the target's part
      once), batches of ``batch_frames`` AU vectors, inference_mode, fp32;
  (c) the same in bf16 autocast.

Repetitions are interleaved (a, o, b, c, a, …) and ratios taken within each repetition. Also written:
the largest difference of (b) and (c) to (a) in [-1, 1] units. ``--quick``: 64×64, tiny widths (for
the test). Results: benchmarks/results/bench_ganimation.json and .md.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import REPO, format_table, machine_info, median, write_json  # noqa: E402

PATHS = {"a": "original structure, per frame (batch 1), fp32",
         "o": "original test forward, whole clip as one batch, fp32",
         "b": "project driver (split first conv, batches), fp32",
         "c": "project driver, bf16 autocast"}


def workload(quick, frames, batch_frames, seed=0):
    import numpy as np
    import torch

    import methods
    from configuration import load_config
    from modules.ganimation.driver import GanimationDriver, GanimationPair, SplitFirstConv

    config = load_config(REPO / "config" / ("tiny_ulme_gan.yaml" if quick else "ulme_gan.yaml"))
    size = config["model_params"]["image_size"]
    config["dataset_params"]["frame_shape"] = [size, size, 3]
    torch.manual_seed(seed)
    gen = methods.build_networks(config["model_params"])["gen"].eval().requires_grad_(False)
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    aus = rng.uniform(0, 1, (frames, 17)).astype(np.float32)
    drivers = {p: GanimationDriver(gen, config, "cpu", p, batch_frames) for p in ("fp32", "bf16")}

    def project(precision):
        driver = drivers[precision]
        image = driver.network_image(target)
        with torch.inference_mode(), driver._autocast():
            pair = GanimationPair(image, SplitFirstConv(gen.model[0], image), aus)
        return torch.cat([driver.forward(pair, aus[i:i + batch_frames]) for i in range(0, frames, batch_frames)])

    def per_frame():
        from modules.ganimation.driver import original_forward

        return original_forward(gen, drivers["fp32"].network_image(target), aus)

    def one_batch():
        from modules.ganimation.model_utils import compose

        image = drivers["fp32"].network_image(target).expand(frames, -1, -1, -1)
        with torch.no_grad():
            color, attention, _ = gen(image, torch.from_numpy(aus))
            return compose(image, color, attention)

    return {"a": per_frame, "o": one_batch, "b": lambda: project("fp32"), "c": lambda: project("bf16")}, size


def run(quick=False, frames=16, repeats=3, batch_frames=8, paths="aobc"):
    import torch

    fns, size = workload(quick, frames, batch_frames)
    fns["a"]()  # warm-up (oneDNN primitive creation)
    times = {p: [] for p in paths}
    outputs = {}
    for _ in range(repeats):
        for p in paths:
            start = time.perf_counter()
            outputs[p] = fns[p]()
            times[p].append((time.perf_counter() - start) * 1000 / frames)
    ms = {p: median(v) for p, v in times.items()}
    speedups = {p: median([a / t for a, t in zip(times["a"], times[p])]) for p in paths}
    diffs = {p: float((outputs[p].float() - outputs["a"]).abs().max()) for p in paths}
    return {"machine": machine_info(), "image_size": size, "frames": frames, "batch_frames": batch_frames,
            "repeats": repeats, "threads": torch.get_num_threads(), "paths": {p: PATHS[p] for p in paths},
            "ms_per_frame": ms, "all_ms_per_frame": times, "speedup_vs_a": speedups, "max_abs_diff_vs_a": diffs}


def markdown(result):
    rows = [[p, result["paths"][p], f"{result['ms_per_frame'][p]:.1f}", f"{result['speedup_vs_a'][p]:.2f}×",
             f"{result['max_abs_diff_vs_a'][p]:.1e}"] for p in result["paths"]]
    head = (f"GANimation / ULME-GAN animation, {result['image_size']}×{result['image_size']}, {result['frames']} "
            f"frames, batch_frames {result['batch_frames']}, median of {result['repeats']} interleaved runs, "
            f"{result['threads']} threads, {result['machine']['cpu']} ({result['machine']['date']})\n\n")
    return head + format_table(["path", "what", "ms/frame", "speed-up vs (a)", "max |Δ| vs (a)"], rows) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64×64, tiny widths (seconds)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_frames", type=int, default=8)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    result = run(args.quick, args.frames, args.repeats, args.batch_frames)
    name = "bench_ganimation_quick" if args.quick else "bench_ganimation"
    write_json(Path(args.out) / f"{name}.json", result)
    text = markdown(result)
    (Path(args.out) / f"{name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
