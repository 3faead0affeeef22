"""Device selection and process set-up."""
import pytest
import torch

from runtime import DeviceError, select_device, tune_allocator


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
