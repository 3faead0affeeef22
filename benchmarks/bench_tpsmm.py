"""TPSMM animation speed: the original's per-frame loop against the project's driver (modules/tpsmm/driver.py).

    .venv/bin/python benchmarks/bench_tpsmm.py [--quick] [--frames 8] [--repeats 3] [--out benchmarks/results]

Paths, each animating one clip against one target face in relative mode, interleaved per repetition
so that machine load hits all alike:

  (a) the original demo.py ``make_animation`` loop, rebuilt from the project's modules: per frame,
      batch 1, the keypoint detector on the driving frame, ``relative_kp``, the dense motion network
      on the full-size target and the whole inpainting network (the target encoded again every
      frame), under no_grad, fp32;
  (b) the project's driver: the target encoded and downsampled once, batches of ``batch_frames``
      frames, inference_mode, channels_last and row-split narrow convolutions on the CPU, fp32;
  (c) (b) in bf16 autocast (keypoints and the TPS fit stay fp32).

Published widths (config/tpsmm/vox-256.yaml) at 256×256, random weights (BatchNorm statistics of
the ResNet-18 randomised, its fc set to spread the keypoints over the frame as a trained detector
does). ``--quick``: the tiny config at 64×64, few frames (what tests run). Results: JSON and markdown
in ``--out``.
"""
import argparse
import copy
import datetime
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import REPO, format_table, loadavg, machine_info, median, write_json  # noqa: E402

CONFIGS = {"published": "config/tpsmm/vox-256.yaml", "tiny": "config/tiny_tpsmm.yaml"}
PATHS = {"a": "original loop (per frame, batch 1, target re-encoded), fp32",
         "b": "project driver, fp32", "c": "project driver, bf16"}


def random_tps_networks(model_params, seed=0):
    """{name: network} with random weights, eval mode, no gradients; keypoints spread over [-0.8, 0.8]."""
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
        fc = networks["kp_detector"].fg_encoder.fc
        spread = torch.rand(fc.out_features) * 1.6 - 0.8
        fc.bias.copy_(torch.logit((spread + 1) / 2))
        fc.weight.mul_(0.01)
    for network in networks.values():
        network.eval().requires_grad_(False)
    return networks


def original_loop(networks, source, frames):
    """demo.py's make_animation (relative). source (1, C, H, W), frames (T, C, H, W) → (T, C, H, W)."""
    import torch

    from modules.tpsmm.animation import relative_kp

    kp_detector, dense, inpainting = (networks[k] for k in ("kp_detector", "dense_motion_network",
                                                              "inpainting_network"))
    out = []
    with torch.no_grad():
        kp_source = kp_detector(source)
        kp_initial = kp_detector(frames[:1])
        for t in range(frames.shape[0]):
            kp_driving = kp_detector(frames[t:t + 1])
            kp_norm = relative_kp(kp_source=kp_source, kp_driving=kp_driving, kp_driving_initial=kp_initial)
            motion = dense(source_image=source, kp_driving=kp_norm, kp_source=kp_source, bg_param=None,
                           dropout_flag=False)
            out.append(inpainting(source, motion)["prediction"])
    return torch.cat(out)


def inputs(size, num_frames, seed=0):
    """(target (H, W, 3) uint8, clip (T, H, W, 3) uint8): smooth random images (fast to make, no assets)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_frames + 1, 3, 8, 8, generator=g)
    images = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    images = (images * 255).round().byte().permute(0, 2, 3, 1).numpy()
    return images[0], np.ascontiguousarray(images[1:])


def measure(config_path, num_frames, repeats, batch_frames):
    import torch

    import configuration
    from inference import Normalization, frames_to_tensor
    from modules.tpsmm.driver import TpsDriver

    config = configuration.load_config(REPO / config_path)
    config["animate_params"]["mode"] = "relative"
    size = config["dataset_params"]["frame_shape"][0]
    networks = random_tps_networks(config["model_params"])
    target, clip = inputs(size, num_frames)
    source = frames_to_tensor(target[None])
    frames = frames_to_tensor(clip)
    drivers = {key: TpsDriver(copy.deepcopy(networks), config, "cpu", precision, batch_frames=batch_frames)
               for key, precision in (("b", "fp32"), ("c", "bf16"))}

    def run_driver(driver):
        pair = driver.start(target, clip[0], normalization=Normalization())
        return torch.cat([driver.drive(pair, driver.to_device(clip[i:i + batch_frames]))
                          for i in range(0, num_frames, batch_frames)])

    runs = {"a": lambda: original_loop(networks, source, frames), "b": lambda: run_driver(drivers["b"]),
            "c": lambda: run_driver(drivers["c"])}
    outputs = {key: run() for key, run in runs.items()}            # warm-up (oneDNN primitives)
    times = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            started = time.perf_counter()
            run()
            times[key].append((time.perf_counter() - started) / num_frames * 1000)
    reference = outputs["a"]
    rows = {}
    for key in runs:
        rows[key] = {"path": PATHS[key], "ms_per_frame": median(times[key]), "all_ms_per_frame": times[key],
                     "speedup": median(times["a"]) / median(times[key]),
                     "max_abs_diff": float((outputs[key] - reference).abs().max()),
                     "mean_abs_diff": float((outputs[key] - reference).abs().mean())}
    return {"config": config_path, "size": size, "frames": num_frames, "batch_frames": batch_frames,
            "repeats": repeats, "paths": rows}


def report(result, quick):
    m = result["machine"]
    lines = [f"# TPSMM animation speed ({result['date']})", "",
             f"{result['config']} at {result['size']}×{result['size']}, {result['frames']} frames, batch "
             f"{result['batch_frames']}, median of {result['repeats']} repetitions; {m.get('cpu', '?')}, torch "
             f"{m.get('torch', '?')}, {m.get('threads', '?')} threads, load {result['load']}"
             f"{' (--quick)' if quick else ''}.", ""]
    table = [[key, row["path"], f"{row['ms_per_frame']:.1f}", f"{row['speedup']:.2f}×",
              f"{row['max_abs_diff']:.2g}", f"{row['mean_abs_diff']:.2g}"] for key, row in result["paths"].items()]
    lines.append(format_table(["", "path", "ms/frame", "speed-up", "max |Δ| vs (a)", "mean |Δ| vs (a)"], table))
    lines += ["", "fp32 differs from (a) only by rounding that the TPS fit amplifies (see tests/test_tpsmm_method.py: "
              "from the same keypoints the driver equals the per-frame forward to 1e-5)."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny config at 64×64, 4 frames, 1 repetition")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--batch_frames", type=int, default=None)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    config = CONFIGS["tiny" if args.quick else "published"]
    frames = args.frames or (4 if args.quick else 8)
    result = measure(config, frames, args.repeats or (1 if args.quick else 3), args.batch_frames or (2 if args.quick else 4))
    result.update(date=datetime.datetime.now().isoformat(timespec="seconds"), machine=machine_info(),
                  load=loadavg())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "bench_tpsmm_quick" if args.quick else "bench_tpsmm"
    write_json(out / f"{name}.json", result)
    text = report(result, args.quick)
    (out / f"{name}.md").write_text(text)
    print(text)
    return result


if __name__ == "__main__":
    main()
