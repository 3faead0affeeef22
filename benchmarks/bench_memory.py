"""Memory of animation against clip length: peak RSS must not grow with the number of frames (issue 7).

    .venv/bin/python benchmarks/bench_memory.py [--quick] [--config published] [--lengths 30 300 900]

Writes a test split in preprocess.py's layout (one target face, one driving clip cut from a real face
video, frames as PNG files; a length beyond the video plays it back and forth) and a random checkpoint, then animates the pair through
the real path, ``animate.animate_dataset`` (the code behind ``run.py --mode animate``: PNG frames, mp4,
gif, strip and side-by-side video written while frames stream), once per clip length, each in a fresh
process with the allocator tuned as run.py does and with glibc's defaults (``--allocators tuned`` for the first only:
the tuned allocator keeps freed memory, which raises the peak but not its growth). Reported per length:
resident memory after start-up (imports, networks), peak resident memory (VmHWM of the animating process; the ffmpeg encoders are
separate processes), and the resident memory sampled every 0.2 s at quarters of the run.
"""
import argparse
import datetime
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.measure import (ALLOCATORS, REPO, format_table, loadavg, machine_info, peak_rss_mb,  # noqa: E402
                                rss_mb, run_worker, write_json)

CONFIGS = {"published": "config/your_dataset_test.yaml", "demo": "config/demo.yaml", "tiny": "config/tiny.yaml"}
TARGET, CLIP = "astronaut", "Positive_long"


class RssSampler:
    """Samples this process's resident memory every ``interval`` seconds in a background thread."""

    def __init__(self, interval=0.2):
        self.interval = interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def quarters(self):
        """Resident memory at 25, 50, 75 and 100 % of the samples, MB."""
        if not self.samples:
            return []
        n = len(self.samples)
        return [self.samples[min(n - 1, max(0, round(q * n) - 1))] for q in (0.25, 0.5, 0.75, 1.0)]


def ping_pong(index, count):
    """Frame ``index`` of a clip of ``count`` real frames played forwards, backwards, forwards …, so that
    a clip longer than the source video still moves continuously."""
    if count == 1:
        return 0
    phase = index % (2 * count - 2)
    return phase if phase < count else 2 * count - 2 - phase


def write_split(root, config, length, video):
    """test/<TARGET>/<TARGET>.png, test/<CLIP>/img0.png … and a pairs CSV under ``root``."""
    from PIL import Image

    from benchmarks.inputs import FaceCrop, video_frames, write_clip
    from face_assets import astronaut
    from modules.face_landmarks import FaceLandmarker

    size = config["dataset_params"]["frame_shape"][0]
    landmarker = FaceLandmarker()
    face = astronaut()
    (root / "test" / TARGET).mkdir(parents=True, exist_ok=True)
    Image.fromarray(FaceCrop(landmarker, face, size)(face)).save(root / "test" / TARGET / f"{TARGET}.png")
    frames = video_frames(video, length)
    first = next(frames)
    crop = FaceCrop(landmarker, first, size)
    write_clip(root / "test" / CLIP, (crop(frame) for frame in [first, *frames]))
    (root / "pairs.csv").write_text(f"distance,source,driving,frame\n0,{TARGET},{CLIP},0\n")


def worker(args):
    import torch

    from configuration import load_config
    from runtime import tune_allocator

    tuned = tune_allocator()
    import animate

    config = load_config(args.config)
    root = Path(args.data)
    clip = root / "test" / CLIP
    # A view of the split with the first ``frames`` frames of the clip (symlinks, nothing copied).
    view = Path(args.view)
    (view / "test").mkdir(parents=True)
    (view / "test" / TARGET).symlink_to(root / "test" / TARGET)
    (view / "test" / CLIP).mkdir()
    available = len(list(clip.iterdir()))
    for index in range(args.frames):
        (view / "test" / CLIP / f"img{index}.png").symlink_to(clip / f"img{ping_pong(index, available)}.png")
    config["dataset_params"]["root_dir"] = str(view)
    config["dataset_params"]["pairs_list"] = str(root / "pairs.csv")
    config["dataset_params"]["keypoint_dir"] = None
    rss_start = rss_mb()
    start = time.perf_counter()
    with RssSampler() as sampler:
        results = animate.animate_dataset(config, args.checkpoint, out_dir=str(view / "out"), device="cpu",
                                          precision=args.precision, log=lambda *a: None)
    seconds = time.perf_counter() - start
    assert results[0]["frames"] == args.frames
    write_json(args.json, {"frames": args.frames, "seconds": seconds, "allocator_tuned": tuned,
                           "rss_start_mb": rss_start, "peak_rss_mb": peak_rss_mb(),
                           "rss_quarters_mb": sampler.quarters(), "rss_max_sampled_mb": max(sampler.samples),
                           "threads": torch.get_num_threads(), "machine": machine_info()})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="published", choices=sorted(CONFIGS))
    parser.add_argument("--lengths", nargs="+", type=int, default=[30, 300, 900])
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--allocators", nargs="+", default=["tuned", "default"], choices=sorted(ALLOCATORS))
    parser.add_argument("--quick", action="store_true", help="the demo config (64 px): seconds instead of minutes")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for JSON and markdown")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--view", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.config = CONFIGS.get(args.config, args.config)
        return worker(args)

    from benchmarks.inputs import LONG_VIDEO, random_networks, save_checkpoint
    from configuration import load_config

    name = "demo" if args.quick and args.config == "published" else args.config
    config = load_config(CONFIGS[name])
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        print(f"[{datetime.datetime.now():%H:%M:%S}] writing a {max(args.lengths)}-frame clip …", file=sys.stderr)
        write_split(scratch / "data", config, max(args.lengths), LONG_VIDEO)
        checkpoint = save_checkpoint(random_networks(config["model_params"]), scratch / "checkpoint.pth.tar")
        for allocator in args.allocators:
            for length in args.lengths:
                print(f"[{datetime.datetime.now():%H:%M:%S}] animating {length} frames, {allocator} malloc, load "
                      f"{loadavg()[0]:.2f} …", file=sys.stderr, flush=True)
                view = scratch / f"view{length}{allocator}"
                results[(allocator, length)] = run_worker(
                    __file__, ["--worker", "--config", name, "--frames", str(length), "--data", str(scratch / "data"),
                               "--view", str(view), "--checkpoint", str(checkpoint), "--precision", args.precision],
                    ALLOCATORS[allocator], timeout=3600)
                shutil.rmtree(view, ignore_errors=True)
    m = next(iter(results.values()))["machine"]
    rows = [[allocator, length, f"{r['seconds']:.0f}", f"{r['rss_start_mb']:.0f}", f"{r['peak_rss_mb']:.0f}",
             " / ".join(f"{v:.0f}" for v in r["rss_quarters_mb"])] for (allocator, length), r in results.items()]
    lines = [f"Measured {m['date']} on {m['cpu']}, torch {m['torch']}, {m['threads']} threads; config {CONFIGS[name]}, "
             f"{args.precision}, animate.animate_dataset (PNG frames + mp4 + gif + strip + side-by-side).", "",
             format_table(["malloc", "frames", "seconds", "RSS after start-up MB", "peak RSS MB",
                           "RSS at 25 / 50 / 75 / 100 % of the run MB"], rows), ""]
    for allocator in args.allocators:
        lengths = sorted(length for a, length in results if a == allocator)
        low, high = results[(allocator, lengths[0])]["peak_rss_mb"], results[(allocator, lengths[-1])]["peak_rss_mb"]
        lines.append(f"Peak RSS growth from {lengths[0]} to {lengths[-1]} frames, {allocator} malloc: {high - low:+.0f} MB "
                     f"({100 * (high - low) / low:+.1f} %).")
    text = "\n".join(lines)
    out = Path(args.out)
    write_json(out / "bench_memory.json", {f"{a}/{n}": v for (a, n), v in results.items()})
    (out / "bench_memory.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
