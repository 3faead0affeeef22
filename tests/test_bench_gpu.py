"""benchmarks/bench_gpu.py cannot rot: its --quick mode runs every method's code paths on the CPU, and
without CUDA the GPU run says so in one line."""
import json
import subprocess
import sys

import pytest
import torch

from tests.train_helpers import ROOT

SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_says_so_and_exits_2():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no CUDA device" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def _quick(tmp_path, *flags):
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(tmp_path), *flags],
                          capture_output=True, text=True, timeout=1500, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((tmp_path / "bench_gpu_quick.json").read_text())


def test_quick_run_measures_every_method_and_checks_the_fixtures(tmp_path):
    import methods

    report = _quick(tmp_path, "--no-compile")
    assert set(report["methods"]) == set(methods.names())
    for name, result in report["methods"].items():
        assert "skipped" not in result, f"{name}: {result.get('skipped')}"
        animation = result["animation"]
        assert animation["frames_per_s"]["fp32@2"] > 0 and animation["frames_per_s"]["bf16@2"] > 0
        assert 0 <= animation["bf16_vs_fp32_mean_grey_levels"] < 16
        assert animation["gflop_per_frame"] > 0
        training = result["training"]
        assert "skipped" not in training, f"{name}: {training.get('skipped')}"
        assert training["fp32"]["s_per_step"] > 0 and training["bf16"]["s_per_step"] > 0
        fixture = result["fixture_max_abs_diff"]
        assert fixture is None or fixture <= 1e-5, f"{name}: fixture max abs diff {fixture}"
    assert (tmp_path / "bench_gpu_quick.md").read_text().count("\n|") >= len(report["methods"]) + 1


@pytest.mark.slow
def test_quick_run_with_compile(tmp_path):
    report = _quick(tmp_path, "--methods", "fp-fomm")
    assert report["methods"]["fp-fomm"]["animation"]["frames_per_s"]["bf16+compile@2"] > 0
