"""Checkpoint files survive a process killed while writing one."""
import os
import signal
import subprocess
import sys

import torch

import checkpoint as ckpt
from tests.train_helpers import ROOT

WRITER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import torch
import checkpoint

def stalled_save(obj, handle, *args, **kwargs):
    handle.write(b"the first bytes of a checkpoint")
    handle.flush()
    print("writing", flush=True)
    time.sleep(120)

checkpoint.torch.save = stalled_save
checkpoint.write_atomically({"value": torch.ones(3)}, sys.argv[2])
"""


def test_sigkill_mid_write_leaves_the_previous_checkpoint(tmp_path):
    target = tmp_path / "00000003-checkpoint.pth.tar"
    ckpt.write_atomically({"value": torch.zeros(3)}, str(target))
    before = target.read_bytes()

    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(ROOT), str(target)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"  # it is inside the write now
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait(timeout=30)
        writer.stdout.close()

    assert target.read_bytes() == before
    assert torch.equal(ckpt.read_checkpoint(str(target))["value"], torch.zeros(3))
    stale = [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")]
    assert len(stale) == 1  # what the killed writer left; the next run removes it
    assert ckpt.remove_stale_temporaries(str(tmp_path)) == [str(tmp_path / stale[0])]
    assert sorted(os.listdir(tmp_path)) == [target.name]
