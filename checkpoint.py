"""Reading and writing checkpoints in the published layout.

A checkpoint is a dict with 'generator', 'kp_detector', 'discriminator' state dicts, plus optimizer
states and 'epoch' when written by training. Files are read with ``weights_only=True``.
"""
import os
import tempfile

import torch

NETWORKS = ("kp_detector", "generator", "discriminator")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the networks; the message says why."""


def read_checkpoint(path, map_location="cpu"):
    """The checkpoint dict at ``path`` (weights only: no code from the file is run)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated / foreign files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first_line})") from None


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


def load_networks(checkpoint, networks, path="checkpoint", required=("kp_detector", "generator")):
    """Load state dicts strictly into ``networks`` {'kp_detector': m, ...}.

    Networks named in ``required`` must be in the checkpoint; others (e.g. a discriminator for
    animation) are loaded when present. A mismatch raises one CheckpointError listing missing,
    unexpected and wrongly shaped parameters, which usually means the config does not match.
    """
    problems = []
    for name, module in networks.items():
        if module is None:
            continue
        if name not in checkpoint:
            if name in required:
                problems.append(f"{name}: not in the checkpoint")
            continue
        report = _mismatch_report(name, module, checkpoint[name])
        if report:
            problems.append(report)
            continue
        module.load_state_dict(checkpoint[name], strict=True)
    if problems:
        raise CheckpointError(f"{path} does not fit the config's networks ({' | '.join(problems)}); "
                              "check that --config is the one the checkpoint was trained with")


def write_atomically(obj, path):
    """torch.save to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash or kill mid-write leaves the previous file intact.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth.tar", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
