"""The resumable sample order: same samples and seeds for any number of processes, any start point."""
import random

import numpy as np
import torch

from data_order import ResumableSampler, SeededSamples, derive_seed


def _epoch(n, replicas, epoch, seed=7, skip=0):
    """{global position: (index, sample seed)} over all ranks."""
    out = {}
    for rank in range(replicas):
        sampler = ResumableSampler(range(n), num_replicas=replicas, rank=rank, seed=seed)
        sampler.set_epoch(epoch, skip=skip)
        for local, item in enumerate(sampler, start=skip):
            out[rank + local * replicas] = item
    return out


def test_one_and_two_processes_see_the_same_samples_with_the_same_seeds():
    one, two = _epoch(10, 1, epoch=3), _epoch(10, 2, epoch=3)
    assert two == one
    assert sorted(index for index, _ in one.values()) == list(range(10))
    assert len({seed for _, seed in one.values()}) == 10


def test_epochs_differ_and_repeat():
    assert _epoch(10, 1, epoch=0) != _epoch(10, 1, epoch=1)
    assert _epoch(10, 1, epoch=1) == _epoch(10, 1, epoch=1)
    assert _epoch(10, 1, epoch=1, seed=1) != _epoch(10, 1, epoch=1, seed=2)


def test_skip_continues_where_a_stopped_epoch_was():
    full = _epoch(12, 2, epoch=4)
    rest = _epoch(12, 2, epoch=4, skip=2)
    assert rest == {pos: item for pos, item in full.items() if pos >= 4}
    sampler = ResumableSampler(range(12), num_replicas=2, rank=1, seed=7)
    sampler.set_epoch(4, skip=2)
    assert len(sampler) == 4


def test_derive_seed_mixes_its_keys():
    assert derive_seed(0, 1) != derive_seed(1, 0)
    assert derive_seed(3, "step", 5) == derive_seed(3, "step", 5)
    assert 0 <= derive_seed(2**40, 9) < 2**63


class _Draws:
    def __len__(self):
        return 4

    def __getitem__(self, index):
        return index, random.random(), float(np.random.rand()), float(torch.rand(()))


def test_seeded_samples_are_reproducible_and_leave_the_callers_rngs_alone():
    samples = SeededSamples(_Draws())
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    first = samples[(2, 1234)]
    assert torch.equal(torch.rand(3), before)  # the caller's stream did not move
    assert samples[(2, 1234)] == first
    assert samples[(2, 1235)] != first
