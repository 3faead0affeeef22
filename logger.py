"""The run folder of a training run, what it holds besides checkpoints, and the progress bar.

A new run gets ``<log_dir>/<config name>_<YYYY-MM-DD_HH-MM-SS>`` (:func:`run_folder`), with the
config file copied in (:func:`copy_config`); a resumed run continues in its checkpoint's folder.
In the run folder:
    <config>.yaml             the config as given (a differing one of a resume is kept beside it)
    NNNNNNNN-checkpoint.pth.tar, interrupted-checkpoint.pth.tar   checkpoints (checkpoint.py)
    log.txt                   one line per ``log_freq`` iterations (mean losses since the last line),
                              one summary line per epoch (FOMM's format), notes (start, resume, stop)
    losses.jsonl              the same per-iteration means as data, read back for the loss curves
    tensorboard/              scalars (losses, learning rates, gradient norms) and the sample sheet
    train-vis/NNNNNNNN-rec.png  the per-epoch sample sheet (FOMM's file name)
    loss-curves.png           every loss over the iterations, redrawn each epoch

Only the main process of a run writes: other processes build the Logger with ``enabled=False``
and every call is then a no-op.
"""
import json
import logging
import math
import os
import shutil
import time

import numpy as np
from PIL import Image

import visualizer

log = logging.getLogger("fpfomm.train")

LOG_FILE = "log.txt"
LOSSES_FILE = "losses.jsonl"
TENSORBOARD_DIR = "tensorboard"
VISUALISATION_DIR = "train-vis"
LOSS_CURVES_FILE = "loss-curves.png"


def _format_losses(losses):
    return "; ".join(f"{name} - {value:.5f}" for name, value in losses.items())


class Logger:
    """Losses to log.txt, losses.jsonl, TensorBoard and a tqdm bar; per-epoch pictures.

    ``start_iteration``: where a resumed run continues; later entries of an earlier attempt are
    dropped from losses.jsonl and TensorBoard, so curves do not double back. ``progress``: show a
    tqdm bar (None: only on a terminal).
    """

    def __init__(self, log_dir, enabled=True, log_freq=10, start_iteration=0, progress=None, tensorboard=True):
        self.enabled = enabled
        self.log_dir = log_dir
        self.log_freq = max(1, int(log_freq))
        self.progress = progress
        self._bar = None
        self._window = {}       # sums since the last log line
        self._window_count = 0
        self._epoch_sums = {}
        self._epoch_count = 0
        self._writer = None
        self._log_file = None
        self.history = {}       # {name: [(iteration, value), ...]} for the loss curves
        if not enabled:
            return
        os.makedirs(os.path.join(log_dir, VISUALISATION_DIR), exist_ok=True)
        self._log_file = open(os.path.join(log_dir, LOG_FILE), "a", buffering=1)
        self._load_history(start_iteration)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # deferred: imports tensorboard (~1 s)

            # Events of an earlier attempt after the resumed step are dropped (step N itself was
            # logged before its checkpoint was written).
            self._writer = SummaryWriter(os.path.join(log_dir, TENSORBOARD_DIR),
                                         purge_step=start_iteration + 1 if start_iteration > 0 else None)

    # -- files -------------------------------------------------------------------------------------

    def _load_history(self, start_iteration):
        """Read losses.jsonl back, keeping entries up to ``start_iteration`` (rewrites the file)."""
        path = os.path.join(self.log_dir, LOSSES_FILE)
        kept = []
        if os.path.isfile(path):
            with open(path) as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut short by a kill
                    if entry.get("iteration", 0) <= start_iteration:
                        kept.append(entry)
        with open(path, "w") as handle:
            for entry in kept:
                handle.write(json.dumps(entry) + "\n")
        for entry in kept:
            self._remember(entry["iteration"], entry["losses"])

    def _remember(self, iteration, losses):
        for name, value in losses.items():
            self.history.setdefault(name, []).append((iteration, value))

    def note(self, message):
        """A line in log.txt (timestamped) and on the console."""
        if not self.enabled:
            return
        log.info(message)
        self._log_file.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}\n")

    # -- per iteration ------------------------------------------------------------------------------

    def start_epoch(self, epoch, num_batches, done=0):
        """Open the progress bar of ``epoch`` (``done`` of ``num_batches`` already trained on)."""
        self._epoch_sums, self._epoch_count = {}, 0
        if not self.enabled:
            return
        from tqdm import tqdm

        disable = None if self.progress is None else not self.progress
        self._bar = tqdm(total=num_batches, initial=done, desc=f"epoch {epoch}", unit="it",
                         dynamic_ncols=True, leave=False, disable=disable)

    def log_iteration(self, epoch, iteration, losses, scalars=None):
        """Losses (name → float) of optimiser step ``iteration`` (1-based, counted over the run).

        Every ``log_freq`` iterations the means since the last line go to log.txt, losses.jsonl and
        TensorBoard; ``scalars`` (e.g. gradient norms) go to TensorBoard at the same moments.
        """
        if not self.enabled:
            return
        for name, value in losses.items():
            self._window[name] = self._window.get(name, 0.0) + value
            self._epoch_sums[name] = self._epoch_sums.get(name, 0.0) + value
        self._window_count += 1
        self._epoch_count += 1
        if self._bar is not None:
            self._bar.update(1)
            running = {name: f"{total / self._epoch_count:.4g}" for name, total in self._epoch_sums.items()}
            self._bar.set_postfix(running, refresh=False)
        if iteration % self.log_freq != 0:
            return
        means = {name: total / self._window_count for name, total in self._window.items()}
        self._window, self._window_count = {}, 0
        self._log_file.write(f"iteration {iteration} (epoch {epoch}): {_format_losses(means)}\n")
        with open(os.path.join(self.log_dir, LOSSES_FILE), "a") as handle:
            handle.write(json.dumps({"iteration": iteration, "epoch": epoch, "losses": means}) + "\n")
        self._remember(iteration, means)
        if self._writer is not None:
            for name, value in means.items():
                self._writer.add_scalar(f"loss/{name}", value, iteration)
            for name, value in (scalars or {}).items():
                if math.isfinite(value):
                    self._writer.add_scalar(name, value, iteration)

    # -- per epoch ----------------------------------------------------------------------------------

    def end_epoch(self, epoch, iteration, learning_rates=None, sample=None, seconds=None):
        """Epoch summary line, learning rates, the sample sheet PNG and the loss curves.

        ``sample``: the sample sheet (H, W, 3) uint8 the method drew from the epoch's last step, or
        None. Returns the sheet's path.
        """
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if not self.enabled:
            return None
        means = {name: total / max(1, self._epoch_count) for name, total in self._epoch_sums.items()}
        timing = f" ({seconds:.1f} s)" if seconds is not None else ""
        self._log_file.write(f"{str(epoch).zfill(8)}) {_format_losses(means)}{timing}\n")
        if self._writer is not None:
            for name, value in (learning_rates or {}).items():
                self._writer.add_scalar(f"lr/{name}", value, iteration)
        path = None
        if sample is not None:
            sheet = sample
            path = os.path.join(self.log_dir, VISUALISATION_DIR, f"{str(epoch).zfill(8)}-rec.png")
            Image.fromarray(sheet).save(path)
            if self._writer is not None:
                self._writer.add_image("samples", sheet, iteration, dataformats="HWC")
        self.draw_loss_curves()
        if self._writer is not None:
            self._writer.flush()
        return path

    def draw_loss_curves(self):
        if not self.enabled:
            return None
        path = os.path.join(self.log_dir, LOSS_CURVES_FILE)
        Image.fromarray(np.ascontiguousarray(visualizer.loss_curves(self.history))).save(path)
        return path

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------------------------
# The run folder.

def run_folder(log_root, config_path, when=None):
    """A new folder ``<log_root>/<config name>_<YYYY-MM-DD_HH-MM-SS>`` (suffixed if taken)."""
    stem = os.path.splitext(os.path.basename(config_path))[0]
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(when))
    base = os.path.join(log_root, f"{stem}_{stamp}")
    path, n = base, 1
    while os.path.exists(path):
        path, n = f"{base}_{n}", n + 1
    return path


def copy_config(config_path, log_dir):
    """The config file as given, beside the checkpoints; a differing one of a resumed run is kept too."""
    target = os.path.join(log_dir, os.path.basename(config_path))
    if os.path.exists(target):
        with open(config_path, "rb") as a, open(target, "rb") as b:
            if a.read() == b.read():
                return target
        stem, ext = os.path.splitext(target)
        target = f"{stem}.resumed-{time.strftime('%Y-%m-%d_%H-%M-%S')}{ext}"
    shutil.copyfile(config_path, target)
    return target
