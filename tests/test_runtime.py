"""Device selection and process set-up."""
import os
from pathlib import Path

import pytest
import torch

from runtime import DeviceError, select_device, tune_allocator

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_and_auto():
    assert select_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    assert select_device(None).type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(DeviceError, match="no CUDA device"):
        select_device("cuda:0")


def test_nonsense_device():
    with pytest.raises(DeviceError, match="auto, cpu, cuda"):
        select_device("tpu")


def test_allocator_switch(monkeypatch):
    monkeypatch.setenv("FPFOMM_DEFAULT_MALLOC", "1")
    assert tune_allocator() is False


def test_tuned_allocator_keeps_freed_memory_mapped():
    """After tune_allocator, a large block freed and allocated again is not faulted in a second time
    (in a fresh process: the allocator is per process)."""
    import subprocess
    import sys

    code = """
import ctypes, resource
from runtime import tune_allocator
assert tune_allocator()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 * 1024 * 1024
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(faults)
assert faults[0] > 8000 and max(faults[1:]) < faults[0] // 10, faults
"""
    env = {k: v for k, v in os.environ.items() if k not in ("FPFOMM_DEFAULT_MALLOC", "GLIBC_TUNABLES")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
