"""torchrun with 2 processes (gloo, CPU) runs run.py's training: it finishes, only rank 0 writes,
and both processes end with identical parameters, equal to rank 0's checkpoint."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import checkpoint as ckpt
from tests.train_helpers import ROOT, face_dataset, state_dicts_equal, write_config  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch without gloo")


def _torchrun():
    found = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def test_two_processes_train_in_step_and_only_rank0_writes(face_dataset, tmp_path):
    # Global batch 2 = 1 per process; 2 clips × 2 repeats → 2 steps in the one epoch.
    config = write_config(tmp_path / "ddp.yaml", face_dataset, perceptual=False, num_epochs=1, num_repeats=2,
                          batch_size=2)
    log_root, out = tmp_path / "log", tmp_path / "ranks"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(_torchrun() + ["--standalone", "--nproc_per_node", "2", "tests/ddp_driver.py", str(out),
                                         "--config", str(config), "--log_dir", str(log_root), "--device", "cpu",
                                         "--seed", "2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["iteration"] == ranks[1]["iteration"] == 2
    assert ranks[0]["losses"] == ranks[1]["losses"]  # averaged over the processes
    assert state_dicts_equal(ranks[0]["parameters"], ranks[1]["parameters"]) == []

    (folder,) = log_root.iterdir()  # one run folder, made by rank 0
    data = ckpt.read_checkpoint(str(folder / "00000000-checkpoint.pth.tar"))
    assert data["train_state"]["world_size"] == 2 and data["train_state"]["iteration"] == 2
    assert len(data["rng_states"]) == 2
    saved = {f"{name}.{key}": value for name in ckpt.NETWORKS for key, value in data[name].items()}
    assert state_dicts_equal(ranks[0]["parameters"], saved) == []

    assert len(list((folder / "tensorboard").iterdir())) == 1
    lines = [json.loads(line) for line in (folder / "losses.jsonl").read_text().splitlines()]
    assert [entry["iteration"] for entry in lines] == [1, 2]
    log_text = (folder / "log.txt").read_text()
    assert log_text.count("iteration 1 (epoch 0)") == 1
    assert "over 2 process(es)" in log_text
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["00000000-checkpoint.pth.tar", "ddp.yaml", "log.txt", "losses.jsonl", "loss-curves.png", "tensorboard",
         "train-vis"])
