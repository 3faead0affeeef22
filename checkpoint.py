"""Reading and writing checkpoints in the published layout.

A checkpoint is a dict with 'generator', 'kp_detector', 'discriminator' state dicts, plus optimizer
states and 'epoch' when written by training. Files are read with ``weights_only=True``.
"""
import os

import torch
from errors import InputError
from fileio import make_temporary

NETWORKS = ("kp_detector", "generator", "discriminator")


class CheckpointError(InputError, RuntimeError):
    """A checkpoint that cannot be read or does not fit the networks; the message says why."""


def read_checkpoint(path, map_location="cpu"):
    """The checkpoint dict at ``path`` (weights only: no code from the file is run)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint not found" + (" (it is a folder)" if os.path.isdir(path) else ""))
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated / foreign files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first_line})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a checkpoint (a {type(checkpoint).__name__}, not a dict of state "
                              "dicts); pass the file training wrote")
    return checkpoint


def _mismatch_report(name, module, state):
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and hasattr(state[k], "shape") and state[k].shape != own[k].shape]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            shown = ", ".join(items[:5]) + (f", … ({len(items)} in all)" if len(items) > 5 else "")
            parts.append(f"{label}: {shown}")
    return f"{name}: " + "; ".join(parts) if parts else ""


def load_networks(checkpoint, networks, path="checkpoint", required=("kp_detector", "generator"), tolerated=()):
    """Load state dicts strictly into ``networks`` {'kp_detector': m, ...}.

    Networks named in ``required`` must be in the checkpoint; others (e.g. a discriminator for
    animation) are loaded when present. A mismatch raises one CheckpointError listing missing,
    unexpected and wrongly shaped parameters, which usually means the config does not match.
    Networks in ``tolerated`` that do not fit are left as they are (freshly initialised) instead.
    Returns the names of the tolerated networks that were not loaded, with the reason.
    """
    problems, skipped = [], {}
    for name, module in networks.items():
        if module is None:
            continue
        state = checkpoint.get(name)
        if state is None:
            if name in required:
                problems.append(f"{name}: not in the checkpoint")
            continue
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            problems.append(f"{name}: not a state dict of tensors")
            continue
        report = _mismatch_report(name, module, state)
        if report:
            if name in tolerated:
                skipped[name] = report
            else:
                problems.append(report)
            continue
        module.load_state_dict(state, strict=True)
    if problems:
        raise CheckpointError(f"{path} does not fit the config's networks ({' | '.join(problems)}); "
                              "check that --config is the one the checkpoint was trained with")
    return skipped


TEMPORARY_PREFIX, TEMPORARY_SUFFIX = ".tmp-", ".pth.tar"
INTERRUPTED_CHECKPOINT = "interrupted-checkpoint.pth.tar"   # written on Ctrl-C / SIGTERM


def checkpoint_name(epoch, stage="train"):
    """File name of the checkpoint written after ``epoch`` (0-based) finished: FOMM's naming; the
    second (AVD) stage of MRAA / TPSMM prefixes ``avd-`` so both stages can share a run folder."""
    prefix = "" if stage == "train" else "avd-"
    return f"{prefix}{str(epoch).zfill(8)}-checkpoint.pth.tar"


def training_kind(checkpoint, stage="train", optimizer_keys=(), epoch_key="epoch"):
    """What a checkpoint offers a training run of ``stage``:

    'resume'     written by this project's training of the same stage: continue exactly;
    'published'  written by a published training loop (the original's optimiser states and the
                 finished epoch under ``epoch_key``, no training state): continue after that epoch;
    'weights'    anything else (weights only, or another stage's checkpoint): start from epoch 0.
    """
    if has_training_state(checkpoint):
        return "resume" if checkpoint[TRAIN_STATE].get("stage", "train") == stage else "weights"
    epoch = checkpoint.get(epoch_key)
    if optimizer_keys and all(key in checkpoint for key in optimizer_keys) and isinstance(epoch, int) \
            and not isinstance(epoch, bool):
        return "published"
    return "weights"



def write_atomically(obj, path):
    """torch.save to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash or kill mid-write leaves the previous file intact.
    """
    folder = os.path.dirname(os.path.abspath(path))
    # With the umask's mode, not mkstemp's 0600: a group shares checkpoints on a server.
    tmp = make_temporary(folder, TEMPORARY_PREFIX, TEMPORARY_SUFFIX)
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


# ---------------------------------------------------------------------------------------------------
# Training checkpoints: the published layout plus what an exact resume needs.

TRAIN_STATE = "train_state"
CHECKPOINT_FORMAT = 1


def rng_states():
    """This process's Python, NumPy, torch and CUDA RNG states, as types ``weights_only`` loading accepts."""
    import random

    import numpy as np

    np_state = np.random.get_state(legacy=False)
    np_state["state"] = {"key": torch.from_numpy(np_state["state"]["key"].astype("int64")),
                         "pos": int(np_state["state"]["pos"])}
    states = {"python": random.getstate(), "numpy": np_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states):
    """Inverse of :func:`rng_states`. CUDA states are restored when the device count matches."""
    import random

    import numpy as np

    random.setstate(states["python"])
    np_state = dict(states["numpy"])
    np_state["state"] = {"key": np_state["state"]["key"].numpy().astype("uint32"), "pos": np_state["state"]["pos"]}
    np.random.set_state(np_state)
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def optimized_name(key):
    """What an optimizer or scheduler key stands for: 'optimizer_generator' → 'generator'; a method's
    single optimizer 'optimizer' → 'all'."""
    for prefix in ("optimizer_", "scheduler_"):
        if key.startswith(prefix):
            return key[len(prefix):]
    return "all"


def training_checkpoint(networks, optimizers, schedulers, train_state, config, rng=None):
    """The dict a training run saves.

    ``networks``: {name: module} (plain modules, not DDP wrappers), saved under their names (the
    published layout: 'kp_detector', 'generator', 'discriminator' for FOMM). ``optimizers`` /
    ``schedulers``: {checkpoint key: ...}, e.g. 'optimizer_generator' / 'scheduler_generator'.
    ``train_state``: {'epoch': epoch to
    continue in, 'epoch_samples': samples of it already trained on (all processes), 'iteration':
    optimiser steps so far, 'seed': ...}. 'epoch' at the top level keeps the published meaning: the
    last finished epoch (-1 before the first one ends).
    """
    out = {"format": CHECKPOINT_FORMAT}
    for name, module in networks.items():
        out[name] = module.state_dict()
    for key, optimizer in optimizers.items():
        out[key] = optimizer.state_dict()
    for key, scheduler in schedulers.items():
        out[key] = scheduler.state_dict()
    out["epoch"] = train_state["epoch"] - 1
    out[TRAIN_STATE] = dict(train_state)
    out["config"] = config
    if rng is not None:
        out["rng_states"] = rng
    return out


def has_training_state(checkpoint):
    """True for checkpoints this project's training wrote (exact resume); False for published ones."""
    return TRAIN_STATE in checkpoint


def remove_stale_temporaries(folder):
    """Delete temporary files that a killed :func:`write_atomically` left in ``folder`` (they can be
    as large as a checkpoint). Only call this when no other process writes checkpoints there.
    Returns the removed paths."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    for name in os.listdir(folder):
        if name.startswith(TEMPORARY_PREFIX) and name.endswith(TEMPORARY_SUFFIX):
            path = os.path.join(folder, name)
            try:
                os.remove(path)
                removed.append(path)
            except OSError:
                pass
    return removed


def peek_checkpoint(path):
    """The checkpoint at ``path``, memory-mapped where the file format allows (cheap: a large
    checkpoint is not read twice just to look at its keys)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # legacy (pre-zip) files cannot be memory-mapped; read_checkpoint reports junk
        return read_checkpoint(path)
    if not isinstance(checkpoint, dict):
        return read_checkpoint(path)  # raises the one-line error
    return checkpoint


def is_training_checkpoint(path):
    """Whether the checkpoint at ``path`` was written by this project's training."""
    return has_training_state(peek_checkpoint(path))


def load_optimizer_states(checkpoint, optimizers, schedulers, path="checkpoint"):
    """Load optimizer and scheduler states of a training checkpoint. Raises CheckpointError on a mismatch."""
    problems = []
    for key, optimizer in optimizers.items():
        if key not in checkpoint:
            problems.append(f"{key}: not in the checkpoint")
            continue
        try:
            optimizer.load_state_dict(checkpoint[key])
        except (ValueError, KeyError, RuntimeError) as error:
            problems.append(f"{key}: {str(error).splitlines()[0]}")
    for key, scheduler in schedulers.items():
        if key not in checkpoint:
            problems.append(f"{key}: not in the checkpoint")
            continue
        scheduler.load_state_dict(checkpoint[key])
    if problems:
        raise CheckpointError(f"{path}: cannot resume the optimisers ({' | '.join(problems)})")
