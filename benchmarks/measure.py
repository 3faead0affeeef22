"""Measuring on a shared CPU machine: load, memory, page faults, timing, conv throughput, worker processes.

Every benchmark measures in worker processes so that the memory allocator can be chosen before the
process starts (glibc reads its tunables and the project's entry points call ``mallopt`` at start-up)
and so that each figure of peak memory belongs to one configuration only.
"""
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The two allocator settings compared: the project's entry points call runtime.tune_allocator()
# (mmap off, high trim threshold); FPFOMM_DEFAULT_MALLOC=1 turns that off = glibc as users of the
# published code run it.
ALLOCATORS = {"tuned": {}, "default": {"FPFOMM_DEFAULT_MALLOC": "1"}}


def loadavg():
    """1-, 5- and 15-minute load averages."""
    with open("/proc/loadavg") as handle:
        return tuple(float(v) for v in handle.read().split()[:3])


def _status_kb(key):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_mb():
    """Resident memory of this process now, MB."""
    return _status_kb("VmRSS") / 1024


def peak_rss_mb():
    """Peak resident memory of this process so far (VmHWM), MB."""
    return _status_kb("VmHWM") / 1024


def minor_faults():
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def median(values):
    return statistics.median(values) if values else float("nan")


def timed(fn, *args, **kwargs):
    """(seconds, minor page faults, result) of one call."""
    faults, start = minor_faults(), time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, minor_faults() - faults, result


def cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni"})
    except OSError:
        pass
    return []


def machine_info():
    """What the figures were measured on."""
    import torch

    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "glibc": "-".join(platform.libc_ver()),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)}


def conv3x3_throughput(dtype="fp32", batch=8, channels=256, size=64, repeats=7):
    """GFLOP/s of one 3×3 convolution (padding 1) under inference_mode, median of ``repeats``.

    fp32 in the contiguous (NCHW) layout the fp32 path uses; bf16 in channels_last, the layout the
    bf16 path uses (oneDNN's bf16 kernels want it). The default shape is the generator's bottleneck
    (256 channels at 64×64), which holds most of the model's FLOPs.
    """
    import torch

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    layout = torch.channels_last if dtype == "bf16" else torch.contiguous_format
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(torch_dtype).to(memory_format=layout).eval()
    x = torch.randn(batch, channels, size, size).to(torch_dtype).contiguous(memory_format=layout)
    flops = 2 * batch * channels * channels * 9 * size * size
    times = []
    with torch.inference_mode():
        for _ in range(2):
            conv(x)
        for _ in range(repeats):
            start = time.perf_counter()
            conv(x)
            times.append(time.perf_counter() - start)
    return flops / median(times) / 1e9


def flops_of(fn):
    """(total FLOPs, result) of ``fn()`` as torch.utils.flop_counter counts them (convolutions and
    matrix products; element-wise work and grid sampling are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        result = fn()
    return counter.get_total_flops(), result


def run_worker(script, args, env=None, timeout=1800):
    """Run ``python script args --json FILE`` in a fresh process with ``env`` added; its JSON result.

    Raises RuntimeError with the worker's stderr when it fails.
    """
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "result.json")
        environment = {**os.environ, **(env or {})}
        command = [sys.executable, str(script), *args, "--json", out]
        done = subprocess.run(command, env=environment, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0 or not os.path.isfile(out):
            raise RuntimeError(f"worker {' '.join(command[1:])} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        with open(out) as handle:
            return json.load(handle)


def write_json(path, data):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        json.dump(data, handle, indent=1)


def format_table(header, rows):
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
