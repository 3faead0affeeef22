"""Every method on one CUDA device, in one run of a few minutes: speed, memory and correctness.

    .venv/bin/python benchmarks/bench_gpu.py                  # on a CUDA machine: every registered method
    .venv/bin/python benchmarks/bench_gpu.py --methods fp-fomm tpsmm
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --quick   # the same code paths, tiny sizes (a test runs it)

Per method, at its published config (256×256, published widths; GANimation 128), random weights:

* animation through the method's own driver (the target encoded once, driving frames in batches), as
  frames/s at batch sizes 1, 8 and 32 in fp32 and bf16 autocast, and bf16 + torch.compile at batch 8
  (one compiled graph per batch size; compiling all three would cost minutes per method);
* achieved TFLOP/s of the fp32 and bf16 batch-8 forward (FLOPs counted by torch's FlopCounterMode)
  against the device's dense peak, derived from ``torch.cuda.get_device_properties`` (SM count and
  clock) and the architecture's FLOP/clock/SM;
* one training step at the published batch size (fp32 and bf16): seconds, samples/s, peak memory;
  a 2-GPU DDP step (torchrun, 2 processes) when more than one device is visible;
* correctness: the method's recorded fixture (../shared/reference) run on the device in fp32 against
  the recorded CPU output (max abs difference), and bf16 animation against fp32 (mean difference in
  grey levels of 0–255 frames).

Writes ``benchmarks/results/bench_gpu.json`` and ``bench_gpu.md``. Without CUDA (and without
``--device cpu``) it says so in one line and exits 2.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import methods  # noqa: E402
from configuration import load_config  # noqa: E402

REFERENCE = REPO.parent / "shared" / "reference"
# method → (published config, tiny config for --quick). A method whose config is not in this checkout is
# reported as not available.
CONFIGS = {
    "fp-fomm": ("config/your_dataset_train.yaml", "config/tiny.yaml"),
    "fomm": ("config/fomm/vox-256.yaml", "config/tiny_fomm.yaml"),
    "fpb-fomm": ("config/fpb_fomm.yaml", "config/tiny_fpb_fomm.yaml"),
    "mraa": ("config/mraa/vox256.yaml", "config/tiny_mraa.yaml"),
    "fpb-mraa": ("config/fpb_mraa.yaml", "config/tiny_fpb_mraa.yaml"),
    "tpsmm": ("config/tpsmm/vox-256.yaml", "config/tiny_tpsmm.yaml"),
    "tpsmm-me": ("config/tpsmm_me.yaml", "config/tiny_tpsmm_me.yaml"),
    "tpsrau": ("config/tpsrau.yaml", "config/tiny_tpsrau.yaml"),
    "ganimation": ("config/ganimation.yaml", "config/tiny_ganimation.yaml"),
    "ulme-gan": ("config/ulme_gan.yaml", "config/tiny_ulme_gan.yaml"),
}
# Dense FLOP per clock per SM: (fp32 without tensor cores, bf16 tensor cores), by compute capability major.
FLOP_PER_CLOCK_SM = {7: (128, 1024), 8: (128, 2048), 9: (256, 4096), 10: (256, 8192)}


class NoCuda(SystemExit):
    pass


# ------------------------------------------------------------------------------------------------
# Timing.

def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, warmup, reps):
    """Median seconds of ``fn()`` over ``reps`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def device_peak(device):
    """(fp32 TFLOP/s, bf16 TFLOP/s) dense peaks of a CUDA device, or (None, None) when unknown."""
    if device.type != "cuda":
        return None, None
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "clock_rate", None)
    if not clock_khz:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits",
                                  f"--id={device.index or 0}"], capture_output=True, text=True, timeout=20)
            clock_khz = float(out.stdout.strip().splitlines()[0]) * 1000
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return None, None
    per_clock = FLOP_PER_CLOCK_SM.get(props.major)
    if per_clock is None:
        return None, None
    scale = props.multi_processor_count * clock_khz * 1e3 / 1e12
    return per_clock[0] * scale, per_clock[1] * scale


def counted_flops(fn):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


# ------------------------------------------------------------------------------------------------
# One method.

def method_config(method, quick):
    published, tiny = CONFIGS.get(method, (None, None))
    path = REPO / (tiny if quick else published) if published else None
    if path is None or not path.is_file():
        return None, f"no config {path.relative_to(REPO) if path else '(none listed)'} in this checkout"
    config = load_config(path)
    if config["model_params"]["method"] != method:
        return None, f"{path.name} is a {config['model_params']['method']} config"
    return config, str(path.relative_to(REPO))


def animation_inputs(spec, config, batch, seed=0):
    """(target (H, W, 3) uint8, frames (B, H, W, 3) uint8, priors (B, 18, 2) or None): a real face
    (scikit-image's astronaut, so that methods driven by landmarks find one) with a little noise."""
    from PIL import Image
    from skimage import data

    from modules.facial_prior import fallback_prior

    rng = np.random.default_rng(seed)
    h, w = config["dataset_params"]["frame_shape"][:2]
    face = np.asarray(Image.fromarray(data.astronaut()[20:340, 90:410]).resize((w, h), Image.BICUBIC))
    target = face
    noise = rng.integers(-6, 7, (batch, h, w, 3))
    frames = np.clip(face[None].astype(np.int16) + noise, 0, 255).astype(np.uint8)
    priors = None
    if getattr(spec, "uses_prior", False):
        priors = np.repeat(fallback_prior((h, w)).numpy()[None], batch, axis=0)
    return target, frames, priors


def random_au_table(num_frames, seed=0):
    """An AU table (au_format.AUTable) of ``num_frames`` random frames, for AU-driven drivers."""
    import au_format

    rng = np.random.default_rng(seed)
    intensity = rng.uniform(0, 5, (num_frames, len(au_format.AU_NAMES))).astype(np.float32)
    return au_format.make_table([f"img{i + 1}.png" for i in range(num_frames)], intensity,
                                (intensity >= 2.5).astype(np.float32), np.ones(num_frames, dtype=bool))


def bench_data(config, target, total_frames):
    """Per-clip data a driver may read, in a temporary folder the config then points at: the target's
    landmark file (kpmaker's format; dlib on the 256-pixel face, scaled) and the driving clip's AU
    table (``total_frames`` rows). Returns the folder (a TemporaryDirectory)."""
    import au_format
    import kpmaker
    from PIL import Image

    from modules.face_landmarks import FaceLandmarker
    from modules.facial_prior import prior_from_landmarks

    folder = tempfile.TemporaryDirectory(prefix="bench_gpu-")
    h, w = target.shape[:2]
    large = np.asarray(Image.fromarray(target).resize((256, 256), Image.BICUBIC))
    marks = FaceLandmarker().landmarks(large)
    if marks is not None:
        marks = ((np.asarray(marks, np.float32) + 0.5) * np.array([w / 256, h / 256], np.float32) - 0.5)[None]
        arrays = {"frames": np.array(["img1.png"]), "landmarks": marks,
                  "prior": prior_from_landmarks(torch.from_numpy(marks)).numpy().astype(np.float32),
                  "found": np.ones(1, dtype=bool), "frame_size": np.array([h, w], dtype=np.int64)}
        kpmaker.write_keypoints(kpmaker.keypoint_path(Path(folder.name) / "keypoints", "bench-target"), arrays,
                                "bench", "bench")
    au_format.write_aus(au_format.au_path(Path(folder.name) / "aus", "bench"), random_au_table(total_frames))
    dataset = config["dataset_params"]
    dataset["root_dir"], dataset["keypoint_dir"] = folder.name, str(Path(folder.name) / "keypoints")
    if "au_dir" in dataset:
        dataset["au_dir"] = str(Path(folder.name) / "aus")
    return folder


def start_pair(driver, target, frames, priors, total_frames):
    """driver.start for a benchmark pair (clip 'bench', target 'bench-target', see bench_data)."""
    return driver.start(target, frames[0], target_prior=None if priors is None else priors[0],
                        first_prior=None if priors is None else priors[0], clip="bench",
                        target_name="bench-target", num_frames=total_frames)


def random_driver(spec, config, device, precision, compile_, batch):
    torch.manual_seed(0)
    networks = methods.build_networks(config["model_params"])
    networks = {k: v.eval().requires_grad_(False).to(device) for k, v in networks.items()
                if k in spec.animation_networks}
    return spec.driver(networks, config, device, precision, compile_, batch)


def bench_animation(spec, config, device, quick, compile_=True):
    """Frames/s per (precision, batch), TFLOP/s, bf16 vs fp32 difference."""
    sizes = (2,) if quick else (1, 8, 32)   # --quick: one small batch, the same code paths
    warmup, reps = (1, 1) if quick else (2, 5)
    compile_batch = 2 if quick else 8
    out = {"frames_per_s": {}, "tflops": {}}
    outputs = {}
    variants = (("fp32", False), ("bf16", False)) + ((("bf16+compile", True),) if compile_ else ())
    for precision, compile_ in variants:
        for batch in sizes:
            if compile_ and batch != compile_batch:
                continue
            target, frames, priors = animation_inputs(spec, config, batch)
            total = batch * (warmup + reps + 4)
            data = bench_data(config, target, total)
            driver = random_driver(spec, config, device, "bf16" if precision != "fp32" else "fp32", compile_, batch)
            pair = start_pair(driver, target, frames, priors, total)

            def run():
                return driver.generate(pair, frames, priors)

            seconds = timed(run, device, warmup + (1 if compile_ else 0), reps)
            out["frames_per_s"][f"{precision}@{batch}"] = batch / seconds
            if batch == compile_batch and not compile_:
                # The same operations in both precisions: count them once, in fp32 (the counter does not
                # follow autocast's casts).
                if precision == "fp32":
                    out["gflop_per_frame"] = counted_flops(run) / batch / 1e9
                outputs[precision] = run().astype(np.float64)
                out["tflops"][precision] = out["gflop_per_frame"] * batch / seconds / 1e3
            del driver
            data.cleanup()
    if "fp32" in outputs and "bf16" in outputs:
        out["bf16_vs_fp32_mean_grey_levels"] = float(np.abs(outputs["bf16"] - outputs["fp32"]).mean())
    return out


def bench_training(spec, config, device, quick):
    """Seconds per step and samples/s at the config's batch size, fp32 and bf16; peak memory."""
    from parallel import Parallel
    from train import Trainer

    if not hasattr(spec, "example_item"):
        return {"skipped": "the method's spec has no example_item"}
    results = {}
    batch = config["train_params"]["batch_size"]
    for precision in ("fp32", "bf16"):
        cfg = json.loads(json.dumps(config))
        cfg["train_params"].update(precision=precision, num_workers=0, num_repeats=1, log_freq=10 ** 6)
        generator = torch.Generator().manual_seed(0)
        dataset = [spec.example_item(cfg, generator) for _ in range(batch)]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            torch.backends.cudnn.benchmark = True
        with tempfile.TemporaryDirectory() as log_dir:
            trainer = Trainer(cfg, dataset, log_dir, Parallel(device=device))
            stacked = next(iter(trainer.loader))
            stacked = {k: v.to(device) if torch.is_tensor(v) else v for k, v in stacked.items()}
            seconds = timed(lambda: trainer.step(stacked), device, 1 if quick else 2, 1 if quick else 5)
            trainer.close()
        results[precision] = {"s_per_step": seconds, "samples_per_s": batch / seconds, "batch": batch}
        if device.type == "cuda":
            results[precision]["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    return results


def bench_ddp(method, config_path, device, quick):
    """A 2-process DDP training step (torchrun), when at least two CUDA devices are visible."""
    if device.type != "cuda" or torch.cuda.device_count() < 2:
        return {"skipped": "fewer than 2 CUDA devices"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(__file__).resolve()), "--ddp-worker", "--methods", method, "--config", config_path]
    done = subprocess.run(command + (["--quick"] if quick else []), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return {"failed": done.stderr.strip().splitlines()[-1:] or ["?"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def ddp_worker(method, config_path, quick):
    from parallel import finish, start
    from train import Trainer

    spec = methods.get(method)
    config = load_config(REPO / config_path)
    parallel = start("auto")
    batch = config["train_params"]["batch_size"] * parallel.world_size
    config["train_params"].update(batch_size=batch, num_workers=0, log_freq=10 ** 6)
    generator = torch.Generator().manual_seed(0)
    dataset = [spec.example_item(config, generator) for _ in range(batch)]
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = Trainer(config, dataset, log_dir, parallel)
        stacked = next(iter(trainer.loader))
        stacked = {k: v.to(parallel.device) if torch.is_tensor(v) else v for k, v in stacked.items()}
        seconds = timed(lambda: trainer.step(stacked), parallel.device, 1 if quick else 2, 1 if quick else 5)
        trainer.close()
    finish(parallel, wait=True)
    if parallel.is_main:
        print(json.dumps({"s_per_step": seconds, "samples_per_s": batch / seconds, "global_batch": batch}))


# ------------------------------------------------------------------------------------------------
# Correctness on the device: the recorded fixtures, fp32.

def _get(fixture, path):
    """``fixture['a/b/c']`` whether the file stores flat keys or nested dicts."""
    if path in fixture:
        return fixture[path]
    node = fixture
    for part in path.split("/"):
        node = node[part]
    return node


def _max_diff(actual, expected):
    return float((actual.detach().float().cpu() - expected.float()).abs().max())


def _fomm_fixture(device, file, kp_key="kp_detector"):
    fixture = torch.load(REFERENCE / file, weights_only=True)
    from configuration import validate_config

    model_params = dict(fixture["model_params"])
    method = "fpb-fomm" if "fpb" in file else "fp-fomm"
    config = validate_config({"dataset_params": {"root_dir": "unused", "frame_shape": [256, 256, 3]},
                              "model_params": {**model_params, "method": method}})
    networks = methods.build_networks(config["model_params"])
    for name in ("kp_detector", "generator"):
        networks[name].load_state_dict(fixture["checkpoint"][name], strict=True)
        networks[name].eval().to(device)
    if "fpb" in file:
        source = _get(fixture, "inputs/source_image").permute(2, 0, 1)[None].to(device)
        driving = _get(fixture, "inputs/driving_image").permute(2, 0, 1)[None].to(device)
        prior_s = _get(fixture, "prior/source/prior_kp")[None].to(device)
        prior_d = _get(fixture, "prior/driving/prior_kp")[None].to(device)
        expected = _get(fixture, "eval/generator/prediction")
    else:
        source = fixture["source_image"].permute(2, 0, 1)[None].to(device)
        driving = fixture["driving_image"].permute(2, 0, 1)[None].to(device)
        prior_s, prior_d = fixture["prior_kp_source"][None].to(device), fixture["prior_kp_driving"][None].to(device)
        expected = _get(fixture, "eval/generator/prediction")
    with torch.no_grad():
        kp_s, kp_d = networks["kp_detector"](source, prior_s), networks["kp_detector"](driving, prior_d)
        prediction = networks["generator"](source, kp_source=kp_s, kp_driving=kp_d)["prediction"]
    return _max_diff(prediction, expected)


def _tpsmm_fixture(device):
    from modules.tpsmm import DenseMotionNetwork, InpaintingNetwork, KPDetector

    f = torch.load(REFERENCE / "tpsmm-a.pt", weights_only=True)
    cp, mp = f["model_params"]["common_params"], f["model_params"]
    kp = KPDetector(**cp)
    dm = DenseMotionNetwork(**cp, **mp["dense_motion_params"])
    inp = InpaintingNetwork(**mp["generator_params"], **cp)
    for module, name in ((kp, "kp_detector"), (dm, "dense_motion_network"), (inp, "inpainting_network")):
        module.load_state_dict(f["checkpoint"][name], strict=True)
        module.eval().to(device)
    source, driving = _get(f, "inputs/source").to(device), _get(f, "inputs/driving").to(device)
    with torch.no_grad():
        motion = dm(source_image=source, kp_driving=kp(driving), kp_source=kp(source), bg_param=None,
                    dropout_flag=False)
        prediction = inp(source, motion)["prediction"]
    return _max_diff(prediction, _get(f, "eval/inpainting_no_bg/prediction"))


def _mraa_fixture(device):
    from modules.mraa.generator import Generator
    from modules.mraa.region_predictor import RegionPredictor

    f = torch.load(REFERENCE / "mraa-a.pt", weights_only=True)
    mp = f["model_params"]
    rp = RegionPredictor(num_regions=mp["num_regions"], num_channels=mp["num_channels"],
                         estimate_affine=mp["estimate_affine"], **mp["region_predictor_params"])
    gen = Generator(num_regions=mp["num_regions"], num_channels=mp["num_channels"],
                    revert_axis_swap=mp["revert_axis_swap"], **mp["generator_params"])
    rp.load_state_dict(f["checkpoint"]["region_predictor"], strict=True)
    gen.load_state_dict(f["checkpoint"]["generator"], strict=True)
    rp.eval().to(device)
    gen.eval().to(device)
    source, driving = _get(f, "inputs/source").to(device), _get(f, "inputs/driving").to(device)
    with torch.no_grad():
        prediction = gen(source, source_region_params=rp(source), driving_region_params=rp(driving))["prediction"]
    return _max_diff(prediction, _get(f, "eval/generator_no_bg/prediction"))


def _ganimation_fixture(device):
    from modules.ganimation.model_utils import SplitGenerator, compose

    f = torch.load(REFERENCE / "ganimation-a.pt", weights_only=True)
    params = dict(_get(f, "params/generator"))
    params.pop("norm", None)
    gen = SplitGenerator(norm_layer=__import__("modules.ganimation.model_utils", fromlist=["get_norm_layer"])
                         .get_norm_layer("instance"), **params)
    gen.load_state_dict(_get(f, "checkpoint/gen"), strict=True)
    gen.eval().to(device)
    source = _get(f, "inputs/source").to(device)
    with torch.no_grad():
        color, attention, _ = gen(source, _get(f, "inputs/tar_aus").to(device))
    return _max_diff(compose(source, color, attention), _get(f, "eval/fake_img"))


FIXTURES = {"fp-fomm": lambda d: _fomm_fixture(d, "reference-a.pt"),
            "fpb-fomm": lambda d: _fomm_fixture(d, "fpb-fomm-a.pt"),
            "tpsmm": _tpsmm_fixture, "mraa": _mraa_fixture, "ganimation": _ganimation_fixture,
            "ulme-gan": _ganimation_fixture}


def check_fixture(method, device):
    check = FIXTURES.get(method)
    if check is None:
        return None
    try:
        return check(device)
    except (FileNotFoundError, ImportError, KeyError) as error:
        return f"unavailable ({type(error).__name__}: {error})"


# ------------------------------------------------------------------------------------------------
# The run.

def bench_method(method, device, quick, compile_=True):
    spec = methods.get(method)
    config, where = method_config(method, quick)
    if config is None:
        return {"skipped": where}
    result = {"config": where}
    started = time.perf_counter()
    result["animation"] = bench_animation(spec, config, device, quick, compile_)
    result["training"] = bench_training(spec, config, device, quick)
    result["ddp"] = bench_ddp(method, where, device, quick)
    result["fixture_max_abs_diff"] = check_fixture(method, device)
    result["seconds"] = time.perf_counter() - started
    print(f"bench_gpu: {method}: {result['seconds']:.0f} s", file=sys.stderr, flush=True)
    return result


def markdown(report):
    lines = [f"# bench_gpu — {report['device']}", "",
             f"torch {report['torch']}, {report['date']}, peak fp32 {report['peak_tflops']['fp32']} / bf16 "
             f"{report['peak_tflops']['bf16']} TFLOP/s (dense, from SM count × clock){' (--quick)' if report['quick'] else ''}.",
             "", "| method | config | animation frames/s (precision@batch) | TFLOP/s fp32 / bf16 | bf16 vs fp32 (grey levels) "
             "| train s/step fp32 / bf16 (batch) | peak GB | DDP ×2 | fixture max abs diff |", "|" + "---|" * 9]
    for method, r in report["methods"].items():
        if "skipped" in r:
            lines.append(f"| {method} | {r['skipped']} |" + " |" * 7)
            continue
        anim, train = r["animation"], r["training"]
        fps = ", ".join(f"{k} {v:.1f}" for k, v in anim["frames_per_s"].items())
        tf = " / ".join(f"{anim['tflops'].get(p, float('nan')):.3g}" for p in ("fp32", "bf16"))
        if "skipped" in train:
            tr, peak = train["skipped"], ""
        else:
            tr = f"{train['fp32']['s_per_step']:.3f} / {train['bf16']['s_per_step']:.3f} ({train['fp32']['batch']})"
            peak = f"{train['fp32'].get('peak_memory_gb', float('nan')):.1f}"
        ddp = r["ddp"].get("skipped") or r["ddp"].get("failed") or f"{r['ddp']['s_per_step']:.3f} s"
        fixture = r["fixture_max_abs_diff"]
        fixture = f"{fixture:.2e}" if isinstance(fixture, float) else (fixture or "—")
        lines.append(f"| {method} | {r['config']} | {fps} | {tf} | {anim.get('bf16_vs_fp32_mean_grey_levels', float('nan')):.3f} "
                     f"| {tr} | {peak} | {ddp} | {fixture} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu (with --quick: a test)")
    parser.add_argument("--methods", nargs="+", default=None, help="methods to measure (default: every registered one)")
    parser.add_argument("--quick", action="store_true", help="tiny configs and one repetition (the test's mode)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for bench_gpu.json / .md")
    parser.add_argument("--no-compile", action="store_true", help="skip the bf16 + torch.compile measurement")
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_worker:
        ddp_worker(args.methods[0], args.config, args.quick)
        return 0
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device on this machine; run it on a GPU machine (or --device cpu --quick to "
              "check the code paths)", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    chosen = args.methods or methods.names()
    unknown = [m for m in chosen if m not in methods.names()]
    if unknown:
        print(f"bench_gpu: error: unknown method(s) {', '.join(unknown)}; known: {', '.join(methods.names())}",
              file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    fp32_peak, bf16_peak = device_peak(device)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M"), "quick": args.quick,
              "peak_tflops": {"fp32": fp32_peak and round(fp32_peak, 1), "bf16": bf16_peak and round(bf16_peak, 1)},
              "methods": {}}
    for number, method in enumerate(chosen):
        # On the CPU one compiled graph takes a minute of C++ compilation: --quick compiles the first
        # method's only (the code path is the same for every method).
        compile_ = not args.no_compile and not (args.quick and device.type == "cpu" and number > 0)
        try:
            report["methods"][method] = bench_method(method, device, args.quick, compile_)
        except Exception as error:  # noqa: BLE001 — one method's failure must not cost the others' figures
            line = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
            print(f"bench_gpu: {method} failed: {line}", file=sys.stderr, flush=True)
            report["methods"][method] = {"skipped": f"failed: {line}"}
    name = "bench_gpu_quick" if args.quick else "bench_gpu"
    Path(args.out, f"{name}.json").write_text(json.dumps(report, indent=1))
    Path(args.out, f"{name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
