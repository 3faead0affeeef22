"""Process-level set-up shared by the entry points: device choice, seeding, the memory allocator."""
import ctypes
import ctypes.util
import os
import random

import numpy as np
import torch
from errors import InputError

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
ALLOCATOR_ENV = "FPFOMM_DEFAULT_MALLOC"


class DeviceError(InputError, ValueError):
    """A --device value that cannot be used on this machine."""


def select_device(name="auto"):
    """'auto' → first CUDA device if there is one, else CPU; 'cpu', 'cuda', 'cuda:N' as given."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA device on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise DeviceError(f"--device {name!r} is not supported: use auto, cpu, cuda or cuda:N")
    return device


def seed_everything(seed):
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def tune_allocator():
    """Keep big tensors in glibc's heap instead of mmap'ing and unmapping them on every call.

    With the default malloc each 256×256 frame costs ~77,000 minor page faults; disabling mmap and
    raising the trim threshold removes them (see benchmarks/RESULTS.md). Set FPFOMM_DEFAULT_MALLOC=1 to
    keep glibc's defaults. Returns True when applied; a no-op off glibc or where GLIBC_TUNABLES
    already sets malloc parameters.
    """
    if os.environ.get(ALLOCATOR_ENV, "") not in ("", "0"):
        return False
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1
        # mallopt takes a C int: -1 is the documented "never trim" (man mallopt). A size such as
        # 16 GiB does not fit and wraps to 0, which trims the heap on every free — every large
        # tensor then faults its pages in again, the very cost this function exists to remove.
        ok = libc.mallopt(_M_TRIM_THRESHOLD, -1) == 1 and ok
        return ok
    except (OSError, AttributeError):
        return False
