"""MRAA animation speed: the original's per-frame loop against the project's driver (modules/mraa/driver.py).

    .venv/bin/python benchmarks/bench_mraa.py [--quick] [--frames 16] [--repeats 3] [--out benchmarks/results]

Paths, each animating one clip against one target face (region parameters of the target and of the
first driving frame included), interleaved per repetition so that machine load hits all alike:

  (a) the original ``animate.py`` loop, rebuilt from the project's modules: per frame, batch 1, the
      region predictor on the driving frame, ``get_animation_region_params``, the whole generator
      (the target encoded again every frame), under no_grad, fp32;
  (b) the project's driver: target encoded once, batches of ``batch_frames`` frames, inference_mode,
      channels_last and row-split narrow convolutions on the CPU, fp32;
  (c) (b) in bf16 autocast.

Published widths (config/mraa/vox256.yaml) at 256×256, random weights (BatchNorm statistics
randomised), ``animate_params.mode`` relative and avd (the AVD marked as trained). ``--quick``: the
tiny config at 64×64, few frames (what tests/test_mraa_method.py runs). Inputs are a real face
(scikit-image's astronaut) driven by a real face clip when the face assets are available, else
random frames. Results: JSON and markdown in ``--out``.
"""
import argparse
import copy
import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import REPO, format_table, loadavg, machine_info, median, write_json  # noqa: E402

CONFIGS = {"published": "config/mraa/vox256.yaml", "tiny": "config/tiny_mraa.yaml"}
PATHS = {"a": "original loop (per frame, batch 1, target re-encoded), fp32",
         "b": "project driver, fp32", "c": "project driver, bf16"}


def random_mraa_networks(model_params, seed=0):
    """{name: network} of MRAA with random weights and BatchNorm statistics, eval mode, no gradients;
    the AVD's batch counters set so that the driver takes it as trained."""
    import itertools

    import torch

    import methods

    torch.manual_seed(seed)
    networks = methods.build_networks(model_params)
    with torch.no_grad():
        for module in itertools.chain(*(n.modules() for n in networks.values())):
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.8, 1.2)
                module.num_batches_tracked.fill_(1)
    for network in networks.values():
        network.eval().requires_grad_(False)
    return networks


def original_loop(networks, source, frames, mode, reconstruction=False):
    """The original animate.py (``reconstruction``: reconstruction.py) per-frame loop.

    source (1, C, H, W), frames (T, C, H, W) float32 → (T, C, H, W) float32 predictions.
    """
    import torch

    from modules.mraa.animation import get_animation_region_params

    region_predictor, generator = networks["region_predictor"], networks["generator"]
    out = []
    with torch.no_grad():
        source_params = region_predictor(source)
        initial_params = region_predictor(frames[:1])
        for t in range(frames.shape[0]):
            driving = frames[t:t + 1]
            driving_params = region_predictor(driving)
            if reconstruction:
                bg_params = networks["bg_predictor"](source, driving)
                prediction = generator(source, source_region_params=source_params,
                                       driving_region_params=driving_params, bg_params=bg_params)["prediction"]
            else:
                new_params = get_animation_region_params(source_params, driving_params, initial_params, mode=mode,
                                                         avd_network=networks["avd_network"])
                prediction = generator(source, source_region_params=source_params,
                                       driving_region_params=new_params)["prediction"]
            out.append(prediction)
    return torch.cat(out)


def inputs(size, count):
    """(target (size, size, 3) uint8, frames (T, size, size, 3) uint8): real faces where available."""
    import numpy as np

    try:
        from benchmarks.inputs import face_clip, target_face
        from modules.face_landmarks import FaceLandmarker

        landmarker = FaceLandmarker()
        target, _ = target_face(size, landmarker)
        frames, _ = face_clip(size, count, landmarker)
        return target, frames[:count]
    except Exception as error:  # no dlib model / face assets here: the timing does not depend on content
        print(f"real faces unavailable ({type(error).__name__}: {error}); random frames", file=sys.stderr)
        rng = np.random.default_rng(0)
        return (rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8))


class Workload:
    def __init__(self, config_path, frames, mode, batch_frames=8):
        from configuration import load_config

        self.config = load_config(REPO / config_path)
        self.config["animate_params"]["mode"] = mode
        self.mode = mode
        size = self.config["dataset_params"]["frame_shape"][0]
        self.target, self.frames = inputs(size, frames)
        self.networks = random_mraa_networks(self.config["model_params"])
        self.batch_frames = batch_frames

    def original(self):
        from inference import frames_to_tensor, tensor_to_frames

        networks = copy.deepcopy(self.networks)

        def run():
            source = frames_to_tensor(self.target[None])
            return tensor_to_frames(original_loop(networks, source, frames_to_tensor(self.frames), self.mode))
        return run

    def project(self, precision):
        import numpy as np

        from inference import stream
        from modules.mraa.driver import MraaDriver

        driver = MraaDriver(copy.deepcopy(self.networks), self.config, "cpu", precision, False, self.batch_frames)

        def run():
            pair = driver.start(self.target, self.frames[0], clip="driving", target_name="target")
            driving = ((i, frame, None) for i, frame in enumerate(self.frames))
            return np.stack([generated for _, _, generated in stream(driver, pair, driving)])
        return run


def measure(config, frames, repeats, modes, batch_frames):
    import numpy as np
    import torch

    results = []
    for mode in modes:
        workload = Workload(config, frames, mode, batch_frames)
        runners = {"a": workload.original(), "b": workload.project("fp32"), "c": workload.project("bf16")}
        outputs = {path: run() for path, run in runners.items()}   # warm-up, and the frames compared
        times = {path: [] for path in runners}
        for _ in range(repeats):
            for path, run in runners.items():
                start = time.perf_counter()
                run()
                times[path].append((time.perf_counter() - start) * 1000 / frames)
        diff = {path: int(np.abs(outputs[path].astype(np.int16) - outputs["a"].astype(np.int16)).max())
                for path in ("b", "c")}
        ms = {path: median(values) for path, values in times.items()}
        ratios = {path: median([a / x for a, x in zip(times["a"], times[path])]) for path in ("b", "c")}
        results.append({"config": config, "mode": mode, "size": workload.config["dataset_params"]["frame_shape"][0],
                        "frames": frames, "batch_frames": batch_frames, "threads": torch.get_num_threads(),
                        "ms_per_frame": ms, "all_ms_per_frame": times, "speedup_vs_original": ratios,
                        "max_pixel_difference_vs_original": diff})
    return results


def report(results):
    header = ["config", "mode", "size", "(a) original fp32 ms/frame", "(b) driver fp32 ms/frame", "(c) driver bf16 ms/frame",
              "speed-up (b)", "speed-up (c)", "max |Δ| (b), (c) vs (a), /255"]
    rows = [[r["config"], r["mode"], r["size"], f"{r['ms_per_frame']['a']:.1f}", f"{r['ms_per_frame']['b']:.1f}",
             f"{r['ms_per_frame']['c']:.1f}", f"{r['speedup_vs_original']['b']:.2f}×",
             f"{r['speedup_vs_original']['c']:.2f}×",
             f"{r['max_pixel_difference_vs_original']['b']}, {r['max_pixel_difference_vs_original']['c']}"]
            for r in results]
    return format_table(header, rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny config at 64×64, 4 frames, 1 repetition")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch_frames", type=int, default=8)
    parser.add_argument("--modes", nargs="+", default=["relative", "avd"], choices=["standard", "relative", "avd"])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    config, frames, repeats = (("tiny", 4, 1) if args.quick else ("published", args.frames, args.repeats))
    started = time.time()
    results = measure(CONFIGS[config], frames, repeats, args.modes, args.batch_frames)
    name = "bench_mraa_quick" if args.quick else "bench_mraa"
    data = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine_info(),
            "loadavg": loadavg(), "paths": PATHS, "seconds": time.time() - started, "results": results}
    write_json(Path(args.out) / f"{name}.json", data)
    table = report(results)
    text = (f"# MRAA animation speed ({data['date']})\n\n{table}\n\nPaths: "
            + "; ".join(f"({k}) {v}" for k, v in PATHS.items())
            + f".\n\nMachine: {data['machine']}; load {data['loadavg']}.\n")
    (Path(args.out) / f"{name}.md").write_text(text)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
