"""Animation speed: the published per-frame loop against the project's animate path (issue 7).

    .venv/bin/python benchmarks/bench_animate.py [--quick] [--configs published demo] [--out benchmarks/results]

For each config, in worker processes (one per allocator setting, chosen before the process starts):

  (a) published-style loop, written with the project's modules: per frame, batch 1, keypoints of the
      source and of the driving frame, full generator forward (the source is encoded again every frame),
      under no_grad, fp32 — FOMM's animate loop;
  (p) (a) with the published anti-alias blur (full-frame depthwise convolution, then subsampling)
      instead of the project's, i.e. the published code's arithmetic (only with --paths containing p);
  (b) the project's animate path (inference.Animator + animate_frames): source encoded once, batches of
      ``batch_frames`` driving frames, inference_mode, fp32;
  (c) the same with --precision bf16 (autocast, channels_last);
  (d) the same with --compile and bf16.

Each timed run is a whole clip (encoding the target and the reference frame included); repetitions
are interleaved (a, b, c, d, a, b, …) so that load from other processes hits every path alike, and
ratios are taken within a repetition. Also measured in the same worker: FLOPs per frame
(torch.utils.flop_counter: convolutions and matrix products), the 3×3-conv throughput of the machine
(fp32 and bf16, once per repetition) and the share of it each path reaches (per repetition, median), minor page faults per frame, and the pixel
difference of (c), (d) and (a) against (b) on the written uint8 frames.

Networks have random weights (benchmarks/inputs.py); inputs are a real face (scikit-image's astronaut)
driven by a real face clip (face_assets' single_face.mp4), cropped as preprocess.py does.
"""
import argparse
import copy
import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import (ALLOCATORS, REPO, format_table, loadavg, machine_info, median,  # noqa: E402
                                run_worker, write_json)

CONFIGS = {"published": "config/your_dataset_test.yaml", "demo": "config/demo.yaml", "tiny": "config/tiny.yaml"}
PATHS = {"p": "published code: (a) with the published full-frame blur",
         "a": "published loop (per frame, batch 1, source re-encoded), fp32",
         "b": "project animate path, fp32", "c": "project animate path, bf16",
         "d": "project animate path, bf16 + compile"}


# --------------------------------------------------------------------------- worker

class Workload:
    """One config's networks, target face and driving clip, and the paths that animate them."""

    def __init__(self, config_path, frames, batch_frames=None):
        from benchmarks.inputs import face_clip, random_networks, target_face
        from configuration import load_config
        from inference import Normalization
        from modules.face_landmarks import FaceLandmarker

        self.config = load_config(config_path)
        size = self.config["dataset_params"]["frame_shape"][0]
        landmarker = FaceLandmarker()
        self.target, self.target_prior = target_face(size, landmarker)
        self.frames, self.clip_prior = face_clip(size, frames, landmarker)
        self.normalization = Normalization.from_config(self.config)
        kp_detector, generator, _ = random_networks(self.config["model_params"])
        self.networks = (kp_detector.requires_grad_(False), generator.requires_grad_(False))
        self.batch_frames = batch_frames or (self.config.get("animate_params") or {}).get("batch_frames", 8)

    def published(self, blur=False):
        """A function animating the clip the published way (``blur``: also the published blur).
        → list of (H, W, 3) uint8 frames."""
        import numpy as np
        import torch

        from benchmarks.published import published_animation_frame, published_blur
        from inference import frames_to_tensor

        kp_detector, generator = copy.deepcopy(self.networks)
        if blur:
            published_blur(kp_detector), published_blur(generator)
        source_prior = torch.from_numpy(self.target_prior)[None]
        driving_prior = torch.from_numpy(self.clip_prior)[None]

        def run():
            source = frames_to_tensor(self.target[None])
            with torch.no_grad():
                kp_initial = kp_detector(frames_to_tensor(self.frames[:1]), driving_prior)
            out = []
            for frame in self.frames:
                prediction = published_animation_frame(kp_detector, generator, source, frames_to_tensor(frame[None]),
                                                       source_prior, driving_prior, kp_initial,
                                                       self.normalization.as_kwargs())
                out.append(np.round(np.clip(prediction, 0, 1) * 255).astype(np.uint8))
            return out
        return run

    def project(self, precision="fp32", compile=False):
        """A function animating the clip through inference.Animator. → list of uint8 frames."""
        import inference

        kp_detector, generator = copy.deepcopy(self.networks)
        animator = inference.Animator(kp_detector, generator, "cpu", precision, compile, self.batch_frames)

        def run():
            source = animator.encode_source(self.target, self.target_prior)
            kp_initial = inference.reference_keypoints(animator, self.frames[0], self.clip_prior)
            driving = ((index, frame, self.clip_prior) for index, frame in enumerate(self.frames))
            return [generated for _, _, generated in
                    inference.animate_frames(animator, source, driving, kp_initial, self.normalization)]
        return run

    def runner(self, path):
        return {"p": lambda: self.published(blur=True), "a": self.published, "b": lambda: self.project("fp32"), "c": lambda: self.project("bf16"),
                "d": lambda: self.project("bf16", compile=True)}[path]()


def pixel_difference(frames, reference):
    """Max and mean |difference| of uint8 frames, in units of 1/255."""
    import numpy as np

    a = np.stack(frames).astype(np.int16)
    b = np.stack(reference).astype(np.int16)
    diff = np.abs(a - b)
    return {"max": int(diff.max()), "mean": float(diff.mean())}


def worker(args):
    import torch

    from benchmarks.measure import conv3x3_throughput, flops_of, timed
    from runtime import tune_allocator

    allocator_tuned = tune_allocator()  # what the entry points do; a no-op with FPFOMM_DEFAULT_MALLOC=1
    load_before = loadavg()
    work = Workload(args.config, args.frames, args.batch_frames)
    conv = {"fp32": [], "bf16": []}
    runs = {path: work.runner(path) for path in args.paths}
    outputs, warmup = {}, {}
    for path, run in runs.items():
        seconds, _, outputs[path] = timed(run)  # compiles (d); first-touch allocations of every path
        warmup[path] = seconds
    flops = {}
    with torch.inference_mode():
        for path in ("p", "a"):
            if path in runs:
                flops[path] = flops_of(runs[path])[0] / args.frames
    flops_fp32_path, _ = flops_of(work.project("fp32"))
    for path in ("b", "c", "d"):
        flops[path] = flops_fp32_path / args.frames  # bf16 and compiled graphs do the same arithmetic
    times = {path: [] for path in runs}
    faults = {path: [] for path in runs}
    for _ in range(args.repeats):
        # The machine's conv throughput is measured in every repetition, beside the paths, so that
        # each path's share compares numbers taken under the same conditions.
        for dtype in conv:
            conv[dtype].append(conv3x3_throughput(dtype))
        for path, run in runs.items():
            seconds, page_faults, _ = timed(run)
            times[path].append(seconds)
            faults[path].append(page_faults)
    result = {"config": args.config, "frames": args.frames, "batch_frames": work.batch_frames,
              "repeats": args.repeats, "allocator_tuned": allocator_tuned, "machine": machine_info(),
              "load_before": load_before, "load_after": loadavg(), "warmup_s": warmup,
              "conv_gflops": {k: median(v) for k, v in conv.items()}, "conv_gflops_runs": conv,
              "flops_per_frame": {k: v for k, v in flops.items() if k in runs}, "paths": {}}
    for path in runs:
        per_frame = [t / args.frames for t in times[path]]
        entry = {"s_per_frame": median(per_frame), "s_per_frame_runs": per_frame,
                 "frames_per_s": 1 / median(per_frame),
                 "minor_faults_per_frame": median(faults[path]) / args.frames}
        if "a" in runs:
            entry["ratio_to_a"] = median([ta / tp for ta, tp in zip(times["a"], times[path])])
        if "b" in runs and path != "b":
            entry["pixels_vs_b"] = pixel_difference(outputs[path], outputs["b"])
        dtype = "bf16" if path in ("c", "d") else "fp32"
        entry["gflops_per_s"] = flops[path] * entry["frames_per_s"] / 1e9
        # Share per repetition (path and conv timed in the same repetition), then the median.
        entry["share_of_conv_peak"] = median([flops[path] / t / 1e9 / peak
                                              for t, peak in zip(per_frame, conv[dtype])])
        entry["share_of_fp32_conv_peak"] = median([flops[path] / t / 1e9 / peak
                                                   for t, peak in zip(per_frame, conv["fp32"])])
        result["paths"][path] = entry
    write_json(args.json, result)


# --------------------------------------------------------------------------- report

def report(results, quick):
    """Markdown for RESULTS.md from the workers' results {(config, allocator): result}."""
    lines = []
    first = next(iter(results.values()))
    m = first["machine"]
    lines.append(f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores, {', '.join(m['cpu_flags'])}), "
                 f"torch {m['torch']}, {m['threads']} threads{' (--quick)' if quick else ''}.")
    for (name, allocator), r in results.items():
        lines.append("")
        lines.append(f"**{name}** ({r['config']}), allocator {allocator} "
                     f"({'mallopt applied' if r['allocator_tuned'] else 'glibc defaults'}), clip of {r['frames']} "
                     f"frames, {r['batch_frames']} per forward, median of {r['repeats']}; load "
                     f"{r['load_before'][0]:.2f} → {r['load_after'][0]:.2f}; 3×3 conv "
                     f"{r['conv_gflops']['fp32']:.0f} GFLOP/s fp32, {r['conv_gflops']['bf16']:.0f} GFLOP/s bf16")
        lines.append("")
        rows = []
        for path, p in r["paths"].items():
            pixels = p.get("pixels_vs_b")
            rows.append([f"({path}) {PATHS[path]}", f"{1000 * p['s_per_frame']:.1f}", f"{p['frames_per_s']:.2f}",
                         f"{p['ratio_to_a']:.2f}×" if "ratio_to_a" in p else "–",
                         f"{r['flops_per_frame'][path] / 1e9:.1f}", f"{p['gflops_per_s']:.0f}",
                         f"{100 * p['share_of_conv_peak']:.0f} %", f"{p['minor_faults_per_frame']:.0f}",
                         f"{pixels['max']} / {pixels['mean']:.3f}" if pixels else "–"])
        lines.append(format_table(["path", "ms/frame", "frames/s", "× (a)", "GFLOP/frame", "GFLOP/s",
                                   "share of conv peak", "minor faults/frame", "pixels vs (b): max / mean (1/255)"],
                                  rows))
    cross = allocator_comparison(results)
    if cross:
        lines += ["", "Across allocators (separate processes, so less precise than the ratios above):", "", cross]
    return "\n".join(lines)


def allocator_comparison(results):
    """Per config and path: default vs tuned allocator, and each tuned path against the published
    baselines (p) and (a) as users run them (default allocator)."""
    rows = []
    for name in sorted({name for name, _ in results}):
        tuned, default = results.get((name, "tuned")), results.get((name, "default"))
        if not tuned or not default:
            continue
        for path, entry in tuned["paths"].items():
            t = entry["s_per_frame"]
            d = default["paths"].get(path, {}).get("s_per_frame")
            against = [f"{default['paths'][base]['s_per_frame'] / t:.2f}×" if base in default["paths"] else "–"
                       for base in ("p", "a")]
            rows.append([name, f"({path})", f"{1000 * d:.1f}" if d else "–", f"{1000 * t:.1f}",
                         f"{d / t:.2f}×" if d else "–", *against])
    header = ["config", "path", "default malloc ms/frame", "tuned ms/frame", "tuned vs default",
              "tuned vs (p) default", "tuned vs (a) default"]
    return format_table(header, rows) if rows else ""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["published", "demo"], choices=sorted(CONFIGS))
    parser.add_argument("--allocators", nargs="+", default=["tuned", "default"], choices=sorted(ALLOCATORS))
    parser.add_argument("--paths", default="pabcd", help="which of p, a, b, c, d to run (default all)")
    parser.add_argument("--default_malloc_paths", default="pabc",
                        help="paths run under the default allocator (default abc: compiling twice adds minutes)")
    parser.add_argument("--frames", type=int, default=None, help="clip length (default 16 at 256, 64 at 64 px)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default 5; --quick 1)")
    parser.add_argument("--batch_frames", type=int, default=None, help="default: the config's animate_params")
    parser.add_argument("--quick", action="store_true", help="one repetition, short clips, no default-malloc run")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for JSON and markdown")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.paths = list(args.paths)
        return worker(args)

    repeats = args.repeats or (1 if args.quick else 5)
    allocators = ["tuned"] if args.quick and args.allocators == ["tuned", "default"] else args.allocators
    results = {}
    for name in args.configs:
        for allocator in allocators:
            paths = args.paths if allocator == "tuned" else "".join(p for p in args.paths if p in args.default_malloc_paths)
            size_frames = args.frames or (8 if args.quick else 16)
            small = "published" not in name
            frames = args.frames or (size_frames * 4 if small else size_frames)
            worker_args = ["--worker", "--config", CONFIGS[name], "--frames", str(frames), "--repeats", str(repeats),
                           "--paths", paths]
            if args.batch_frames:
                worker_args += ["--batch_frames", str(args.batch_frames)]
            print(f"[{datetime.datetime.now():%H:%M:%S}] {name}, {allocator} malloc, paths {paths}, load "
                  f"{loadavg()[0]:.2f} …", file=sys.stderr, flush=True)
            results[(name, allocator)] = run_worker(__file__, worker_args, ALLOCATORS[allocator])
    text = report(results, args.quick)
    out = Path(args.out)
    write_json(out / "bench_animate.json", {f"{n}/{a}": r for (n, a), r in results.items()})
    (out / "bench_animate.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
