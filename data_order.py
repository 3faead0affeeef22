"""A deterministic, resumable order of training samples.

Exact resume needs the data of step N to be the same whether the run got there straight or was
stopped and resumed — with any number of loader workers and processes. Two pieces give that:

- :class:`ResumableSampler` shuffles with a permutation fixed by (seed, epoch), shards it across
  processes like ``DistributedSampler`` (it is one), can start part-way through an epoch, and tags
  every index with a seed derived from (seed, epoch, global position);
- :class:`SeededSamples` wraps the dataset and runs each ``__getitem__`` under that seed (Python,
  NumPy and torch RNGs), restoring the caller's RNG states afterwards.

So a sample's random frame choice and augmentation depend only on where it sits in the epoch,
not on which worker or process loads it, nor on what ran before.
"""
import random
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler


def derive_seed(*keys):
    """A 63-bit seed from integers (and short strings), well mixed: (seed, epoch, position) → int.

    Adjacent keys give unrelated streams (unlike seed + epoch, where seed 0 epoch 1 == seed 1 epoch 0).
    """
    words = []
    for key in keys:
        if isinstance(key, str):
            words.extend(key.encode())
        else:
            words.append(int(key) & 0xFFFFFFFF)
            words.append((int(key) >> 32) & 0xFFFFFFFF)
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


@contextmanager
def seeded_rngs(seed):
    """Run a block with Python, NumPy and torch (CPU) RNGs seeded from ``seed``; restore them after."""
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


class SeededSamples(Dataset):
    """``dataset[index]`` under the seed a :class:`ResumableSampler` attached to the index.

    Items are looked up with ``(index, seed)`` pairs; a plain integer index works too (seed = index),
    so the wrapper can be inspected by hand.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, key)
        with seeded_rngs(seed):
            return self.dataset[index]


class ResumableSampler(DistributedSampler):
    """DistributedSampler that yields ``(index, sample_seed)`` and can start part-way into an epoch.

    ``set_epoch(epoch, skip=n)`` drops this process's first ``n`` samples of the epoch. Sample seeds
    depend on (seed, epoch, global position), where rank r's i-th sample has global position
    r + i·num_replicas; so one process with batch B and two processes with batch B/2 see the same
    samples, augmented the same way, in each global batch.
    """

    def __init__(self, dataset, num_replicas=1, rank=0, seed=0, shuffle=True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=derive_seed(seed, "order") % (2**62), drop_last=False)
        self.base_seed = seed
        self.skip = 0

    def set_epoch(self, epoch, skip=0):
        super().set_epoch(epoch)
        if not 0 <= skip <= self.num_samples:
            raise ValueError(f"cannot skip {skip} of {self.num_samples} samples")
        self.skip = skip

    def __len__(self):
        return self.num_samples - self.skip

    def __iter__(self):
        indices = list(super().__iter__())
        for local in range(self.skip, len(indices)):
            position = self.rank + local * self.num_replicas
            yield indices[local], derive_seed(self.base_seed, self.epoch, position)
