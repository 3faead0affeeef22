"""Training of any registered method (methods.py), resumable exactly, on one process or several (torchrun).

    result = train(config, dataset, "log/run", parallel=Parallel(), checkpoint=None, seed=0)

The method supplies its networks and a *training* object (e.g. modules/training.py for the FOMM
family) that builds its optimisers and schedulers and splits one step into *phases*: each phase is
a set of losses and the optimisers they update (FOMM: generator + keypoint detector, then the
discriminator; GANimation: the discriminator every step, the generator every fifth). This module
runs them all the same way: losses averaged over the processes and checked, backward, gradient
norms checked, optimiser steps. Schedulers step once per epoch; one epoch is ``num_repeats`` passes
over the clips.

Every loss and gradient norm is checked: a NaN/inf stops the run with a message naming it, before
any weight is changed by it, and nothing is saved from then on (the last checkpoint stays valid).

Checkpoints (``NNNNNNNN-checkpoint.pth.tar`` every ``checkpoint_freq`` epochs and at the end;
``interrupted-checkpoint.pth.tar`` on Ctrl-C / SIGTERM) hold the published layout plus schedulers,
RNG states, the position in the run and the config. Resuming from one continues bit for bit (on
the same machine and process count): the data order and augmentation of every sample depend only
on (seed, epoch, position) — see data_order.py — and the model's random warps on (seed, step, rank).
"""
import logging
import math
import os
import signal
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

import checkpoint as ckpt
import methods
from data_order import ResumableSampler, SeededSamples, derive_seed
import logger
from logger import Logger
from parallel import Parallel
from runtime import seed_everything
from errors import InputError, RunError
from fileio import check_output_dir, disk_full_error, is_disk_full
from stop_requests import StopRequests

log = logging.getLogger("fpfomm.train")

ADAM_BETAS = (0.5, 0.999)
LR_DECAY = 0.1


class TrainingSetupError(InputError, ValueError):
    """Settings that cannot train (batch size vs processes, too few samples, no train_params)."""


class NonFiniteError(RunError):
    """A loss or gradient became NaN or infinite; the message names it."""


class CheckpointWriteError(RunError):
    """A checkpoint could not be written (disk full, permissions); the previous ones are intact."""


@dataclass
class TrainResult:
    log_dir: str
    epoch: int                      # the epoch training would continue in
    iteration: int                  # optimiser steps done over the whole run
    checkpoint: str = None          # the last checkpoint written by this call
    stopped_by: str = None          # 'SIGINT', 'SIGTERM', 'stop_at_iteration', or None when finished
    epoch_losses: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# Pieces a method's training object uses.

class Phase(NamedTuple):
    """One part of an optimiser step: ``losses`` {name: scalar tensor} are summed and back-propagated,
    then the optimisers named in ``optimizers`` (checkpoint keys) step. ``networks`` (names) are those
    whose gradient norms are checked and logged; ``generated`` (optional) the outputs shown in the
    epoch's sample sheet; ``before_step`` (optional) runs between backward and the optimiser steps
    (e.g. TPSMM's gradient clipping)."""
    losses: dict
    optimizers: tuple
    networks: tuple
    generated: dict = None
    before_step: object = None


def adam_optimizers(networks, train_params, betas=ADAM_BETAS):
    """Adam per network at its ``lr_<name>``, keyed ``optimizer_<name>`` (FOMM's checkpoint names)."""
    return {f"optimizer_{name}": torch.optim.Adam(module.parameters(), lr=train_params[f"lr_{name}"], betas=betas)
            for name, module in networks.items()}


def multistep_schedulers(optimizers, milestones, gamma=LR_DECAY):
    """MultiStepLR ×``gamma`` at ``milestones`` epochs, per optimizer, keyed ``scheduler_<name>``."""
    return {scheduler_key(key): torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=gamma)
            for key, optimizer in optimizers.items()}


def scheduler_key(optimizer_key):
    """'optimizer_generator' → 'scheduler_generator'; 'optimizer' → 'scheduler'."""
    return "scheduler" + optimizer_key[len("optimizer"):]


def gradient_norm(module, as_tensor=False):
    """Total L2 norm of the module's gradients (0 when none), as a float (or a 0-d tensor on the
    gradients' device, which needs no host synchronisation)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(()) if as_tensor else 0.0
    norm = torch.nn.utils.get_total_norm(grads)
    return norm.detach().float() if as_tensor else float(norm)


def _to_device(batch, device):
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}


def stage_section(method, stage):
    """The config section of a training stage: ``train_params``; ``train_avd_params`` for the second
    (animation-via-disentanglement) stage of MRAA and TPSMM."""
    stages = getattr(method, "stages", {"train": "train_params"})
    if stage not in stages:
        raise TrainingSetupError(f"method {method.name!r} has no stage {stage!r} (it has: {', '.join(stages)})")
    return stages[stage]


def stage_networks(method, stage):
    """Networks a checkpoint must hold to start ``stage`` from it (weights only)."""
    return getattr(method, "stage_networks", {}).get(stage, method.animation_networks)


def published_optimizers(method, stage):
    """Optimiser keys of the method's published training checkpoints (for continuing one)."""
    return getattr(method, "published_optimizers", {}).get(stage, ())


def published_epoch_key(method, stage):
    """The key under which the method's published training loop saved the finished epoch: FOMM's
    'epoch', MRAA's 'epoch_reconstruction' / 'epoch_avd'."""
    return getattr(method, "published_epoch_keys", {}).get(stage, "epoch")


def continue_published(loaded, optimizers, schedulers, path, skip=(), epoch_key="epoch"):
    """Load the optimiser states of a published training checkpoint and bring the schedulers to the
    epoch after its ``epoch_key``. Optimisers of networks in ``skip`` (not loaded) start fresh. Returns
    the epoch to continue in."""
    epoch = int(loaded[epoch_key]) + 1
    for key, optimizer in optimizers.items():
        if ckpt.optimized_name(key) in skip:
            log.warning("%s: %s starts fresh (its network did not fit)", path, key)
            continue
        try:
            optimizer.load_state_dict(loaded[key])
        except (ValueError, KeyError, RuntimeError) as error:
            raise ckpt.CheckpointError(f"{path}: cannot continue {key} ({str(error).splitlines()[0]})") from None
        for group in optimizer.param_groups:
            # The published file holds the decayed rate; the schedule below decays from the start rate.
            group["lr"] = group.get("initial_lr", group["lr"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "scheduler.step() before optimizer.step()"
        for scheduler in schedulers.values():
            for _ in range(epoch):
                scheduler.step()
    return epoch


def _gray_frames(batch, tolerance=2 / 255):
    """True when every frame of the batch has (nearly) equal channels (one-channel frames count as gray)."""
    frames = [batch[k] for k in ("source", "driving") if torch.is_tensor(batch.get(k))]
    if not frames:
        return False
    return all(f.shape[1] == 1 or bool(((f[:, :1] - f[:, 1:]).abs() <= tolerance).all()) for f in frames)


def _nonfinite(values):
    return [name for name, value in values.items() if not math.isfinite(value)]


# ------------------------------------------------------------------------------------------------
# The run.

class Trainer:
    """State of one training run in one process. Use :func:`train`."""

    def __init__(self, config, dataset, log_dir, parallel, checkpoint=None, seed=None, progress=None, stage="train"):
        self.method = methods.get(config["model_params"]["method"])
        section = stage_section(self.method, stage)
        train_params = config.get(section)
        if not train_params:
            raise TrainingSetupError(f"the config has no {section} section; {stage} needs one "
                                     "(see the method's config in config/)")
        self.config = config
        self.stage = stage
        self.train_params = train_params
        self.log_dir = log_dir
        self.parallel = parallel
        self.device = parallel.device
        # Loss and gradient checks need the values on the host: every step on the CPU (free), at
        # log intervals on CUDA (a per-step check would stall the GPU pipeline once per step).
        check = train_params["finite_check"]
        self.check_each_step = check == "step" or (check == "auto" and self.device.type != "cuda")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed frame size: pick the fastest kernels once

        loaded = ckpt.read_checkpoint(checkpoint) if checkpoint else None
        self.kind = ckpt.training_kind(loaded, stage, published_optimizers(self.method, stage),
                                       published_epoch_key(self.method, stage)) if loaded else None
        self.resuming = self.kind == "resume"
        if stage != "train" and loaded is None:
            raise TrainingSetupError(f"--mode {stage} trains on top of a trained model: pass its checkpoint "
                                     "with --checkpoint")
        saved_state = loaded[ckpt.TRAIN_STATE] if self.resuming else {}
        if seed is None:
            seed = saved_state.get("seed", 0)
        elif self.resuming and seed != saved_state.get("seed", seed):
            log.warning("--seed %d differs from the checkpoint's %s: the resumed run will not repeat the "
                        "original exactly", seed, saved_state.get("seed"))
        self.seed = seed

        seed_everything(seed)  # identical initial weights in every process and every run with this seed
        self.networks = methods.build_networks(config["model_params"])
        fresh = {}
        if loaded is not None:
            tolerated = () if self.resuming else getattr(self.method, "optional_networks", ())
            required = tuple(self.networks) if self.resuming else stage_networks(self.method, stage)
            fresh = ckpt.load_networks(loaded, self.networks, checkpoint, required=required, tolerated=tolerated)
            for name, why in fresh.items():
                log.warning("%s: %s does not fit the config (%s); training it from a fresh start, as the "
                            "published code did", checkpoint, name, why.split(": ", 1)[-1])
        for name, module in self.networks.items():
            module.to(self.device).train()
        if parallel.distributed and self.device.type == "cuda":
            # Batch statistics over all GPUs; on CPU SyncBatchNorm is unsupported, plain BatchNorm stays.
            for name in getattr(self.method, "sync_batchnorm", ()):
                self.networks[name] = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.networks[name])

        self.training = self.method.training(self.networks, config, self.device, stage) if stage != "train" \
            else self.method.training(self.networks, config, self.device)
        self.optimizers = self.training.optimizers()
        self.schedulers = self.training.schedulers(self.optimizers)
        if self.kind == "published":
            self.epoch = continue_published(loaded, self.optimizers, self.schedulers, checkpoint, skip=fresh,
                                            epoch_key=published_epoch_key(self.method, stage))
            self.epoch_samples, self.iteration = 0, 0
        elif self.resuming:
            ckpt.load_optimizer_states(loaded, self.optimizers, self.schedulers, checkpoint)
            self.epoch = saved_state["epoch"]
            self.epoch_samples = saved_state.get("epoch_samples", 0)
            self.iteration = saved_state["iteration"]
            states = loaded.get("rng_states")
            if isinstance(states, list) and len(states) == parallel.world_size:
                ckpt.restore_rng_states(states[parallel.rank])
        else:
            self.epoch, self.epoch_samples, self.iteration = 0, 0, 0
        self.checkpoint_source = checkpoint
        # Whether the training frames are gray (R = G = B), seen on the first batch; kept across resumes.
        self.grayscale = loaded.get("grayscale") if self.resuming else None
        self._published_epoch = self.epoch if self.kind == "published" else None
        self.last_checkpoint = None
        del loaded

        if parallel.distributed:
            self.training.distribute(self.device)
        self._build_loader(dataset)
        if hasattr(self.training, "set_steps_per_epoch"):  # e.g. GANimation's every-n-th-step generator
            self.training.set_steps_per_epoch(self.batches_per_epoch)
        self.logger = Logger(log_dir, enabled=parallel.is_main, log_freq=train_params["log_freq"],
                             start_iteration=self.iteration, progress=progress)
        if parallel.is_main:
            for path in ckpt.remove_stale_temporaries(log_dir):
                self.logger.note(f"removed {path}, left by a checkpoint write that was killed")

    def _build_loader(self, dataset):
        from torch.utils.data import DataLoader

        from frames_dataset import DatasetRepeater

        world = self.parallel.world_size
        self.batch_size = self.train_params["batch_size"]
        if self.batch_size % world != 0:
            raise TrainingSetupError(f"train_params.batch_size {self.batch_size} is the batch of all processes "
                                     f"together and must divide among {world} processes")
        self.local_batch = self.batch_size // world
        repeated = DatasetRepeater(dataset, self.train_params["num_repeats"])
        self.sampler = ResumableSampler(repeated, num_replicas=world, rank=self.parallel.rank, seed=self.seed)
        self.batches_per_epoch = self.sampler.num_samples // self.local_batch
        if self.batches_per_epoch == 0:
            raise TrainingSetupError(f"{len(repeated)} sample(s) per epoch ({len(dataset)} clips × num_repeats "
                                     f"{self.train_params['num_repeats']}) is less than batch_size "
                                     f"{self.batch_size}; raise num_repeats or lower batch_size")
        workers = self.train_params["num_workers"]
        self.loader = DataLoader(SeededSamples(repeated), batch_size=self.local_batch, sampler=self.sampler,
                                 num_workers=workers, drop_last=True, pin_memory=self.device.type == "cuda",
                                 persistent_workers=workers > 0)

    # -- one step ---------------------------------------------------------------------------------

    def _autocast(self):
        bf16 = self.train_params["precision"] == "bf16"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=bf16)

    def _mean_values(self, losses):
        """Losses averaged over the processes (NaN anywhere → NaN everywhere): floats, or 0-d device
        tensors when the finiteness check waits for the log interval."""
        names = list(losses)
        values = torch.stack([losses[n].detach().float() for n in names])
        values = self.parallel.sum(values) / self.parallel.world_size
        return dict(zip(names, values.tolist() if self.check_each_step else values.unbind()))

    def _check(self, values, what):
        bad = _nonfinite(values)
        if bad:
            shown = ", ".join(f"{name} = {values[name]}" for name in bad)
            last = (f"the last checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                    else "no checkpoint was written by this run")
            raise NonFiniteError(f"{what} {shown} at epoch {self.epoch}, iteration {self.iteration + 1}: stopped "
                                 f"before applying it, nothing saved ({last}); lower the learning rates or check "
                                 "the data")

    def _checked(self, pending):
        """The (iteration, values, norms) of steps whose finiteness check waited for the log interval
        (CUDA: no host synchronisation per step), as floats, checked in order. A non-finite one stops
        the run before anything is saved; the steps after it were applied but are never saved."""
        out = []
        for iteration, values, norms in pending:
            values = {k: float(v) for k, v in values.items()}
            norms = {k: float(v) for k, v in norms.items()}
            for what, numbers in (("loss", values), ("gradient norm", norms)):
                bad = _nonfinite(numbers)
                if bad and not self.check_each_step:
                    shown = ", ".join(f"{name} = {numbers[name]}" for name in bad)
                    last = (f"the last checkpoint is {self.last_checkpoint}" if self.last_checkpoint
                            else "no checkpoint was written by this run")
                    raise NonFiniteError(f"{what} {shown} at epoch {self.epoch}, iteration {iteration} (checked at "
                                         f"iteration {self.iteration}): stopped, nothing saved ({last}); lower the "
                                         "learning rates or check the data")
            out.append((iteration, values, norms))
        return out

    def step(self, batch):
        """One optimiser step: every phase of the method in turn. Returns (loss values, gradient
        norms, generated outputs of the last phase that had any)."""
        torch.manual_seed(derive_seed(self.seed, "step", self.iteration, self.parallel.rank))
        values, norms, generated = {}, {}, None
        phases = self.training.phases(batch, self.epoch, self.iteration)
        while True:
            with self._autocast():  # the phase's forward runs when the generator is advanced
                phase = next(phases, None)
            if phase is None:
                break
            for key in phase.optimizers:
                self.optimizers[key].zero_grad()
            phase_values = self._mean_values(phase.losses)
            if self.check_each_step:
                self._check(phase_values, "loss")
            sum(phase.losses.values()).backward()
            phase_norms = {f"grad_norm/{n}": gradient_norm(self.networks[n], not self.check_each_step)
                           for n in phase.networks}
            if self.check_each_step:
                self._check(phase_norms, "gradient norm")
            if phase.before_step is not None:
                phase.before_step()
            for key in phase.optimizers:
                self.optimizers[key].step()
                self.optimizers[key].zero_grad()
            values.update(phase_values)
            norms.update(phase_norms)
            if phase.generated is not None:
                generated = phase.generated
        return values, norms, generated

    # -- checkpoints ------------------------------------------------------------------------------

    def train_state(self):
        return {"epoch": self.epoch, "epoch_samples": self.epoch_samples, "iteration": self.iteration,
                "seed": self.seed, "world_size": self.parallel.world_size, "batch_size": self.batch_size,
                "stage": self.stage}

    def save(self, name):
        """Write a checkpoint (main process; every process must call: RNG states are gathered)."""
        states = self.parallel.gather(ckpt.rng_states())
        if not self.parallel.is_main:
            return None
        path = os.path.join(self.log_dir, name)
        data = ckpt.training_checkpoint(self.networks, self.optimizers, self.schedulers, self.train_state(),
                                        self.config, rng=states)
        # Animation's grayscale 'auto' reads this: a model trained on gray clips (SAMM) animates in gray.
        data["grayscale"] = bool(self.grayscale)
        try:
            ckpt.write_atomically(data, path)
        except (OSError, RuntimeError) as error:  # torch.save reports a full disk as RuntimeError
            kept = "earlier checkpoints are intact, no partial file is left"
            if is_disk_full(error):
                # torch's own words ("PytorchStreamWriter failed writing file …") say nothing to a user.
                raise CheckpointWriteError(f"disk full while writing checkpoint {path}; {kept}; free some "
                                           "space and resume with --checkpoint <the last checkpoint>") from None
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointWriteError(f"could not write checkpoint {path} ({first}); {kept}") from None
        self.logger.note(f"checkpoint {path} (epoch {self.epoch}, {self.epoch_samples} samples into it, "
                         f"iteration {self.iteration})")
        return path

    # -- the loop ---------------------------------------------------------------------------------

    def _sheet(self, batch, generated):
        """The epoch's sample sheet (H, W, 3) uint8, drawn by the method from its last step."""
        if generated is None:
            return None
        return self.training.sheet(batch, generated, self.config.get("visualizer_params") or {})

    def run(self, stop, stop_at_iteration=None, callback=None):
        num_epochs = self.train_params["num_epochs"]
        freq = self.train_params["checkpoint_freq"]
        self._note_start(num_epochs)
        epoch_losses = {}
        while self.epoch < num_epochs:
            done = self.epoch_samples // self.batch_size
            # min(): a resumed run whose config has fewer samples per epoch just finishes that epoch.
            skip = min(self.epoch_samples // self.parallel.world_size, self.sampler.num_samples)
            self.sampler.set_epoch(self.epoch, skip=skip)
            self.logger.start_epoch(self.epoch, self.batches_per_epoch, done=done)
            started, sample, sums, count, pending = time.time(), None, {}, 0, []
            for batch in self.loader:
                # Under DDP asking every process is an all-reduce and a host sync: on CUDA it is done at
                # log intervals only (a stop then comes up to log_freq steps later).
                ask = (not self.parallel.distributed or self.check_each_step
                       or self.iteration % self.train_params["log_freq"] == 0)
                if ask and self.parallel.any(stop.reason is not None):
                    self._checked(pending)  # nothing is saved from a step that was not finite
                    return self._stop(stop.reason or "another process")
                if self.grayscale is None:
                    self.grayscale = _gray_frames(batch)
                batch = _to_device(batch, self.device)
                values, norms, generated = self.step(batch)
                self.iteration += 1
                self.epoch_samples += self.batch_size
                done += 1
                pending.append((self.iteration, values, norms))
                if self.check_each_step or self.iteration % self.train_params["log_freq"] == 0 \
                        or done == self.batches_per_epoch:
                    for iteration, values, norms in self._checked(pending):
                        for name, value in values.items():
                            sums[name] = sums.get(name, 0.0) + value
                        count += 1
                        self.logger.log_iteration(self.epoch, iteration, values, norms)
                        if log.isEnabledFor(logging.DEBUG):
                            log.debug("iteration %d (epoch %d): %s", iteration, self.epoch,
                                      "; ".join(f"{k} {v:.5f}" for k, v in values.items()))
                        if callback is not None:
                            callback(self, values)
                    pending = []
                if done == self.batches_per_epoch and self.parallel.is_main:
                    sample = self._sheet(batch, generated)
                del generated
                if stop_at_iteration is not None and self.iteration >= stop_at_iteration:
                    stop.request("stop_at_iteration")
            for scheduler in self.schedulers.values():
                scheduler.step()
            learning_rates = {ckpt.optimized_name(key): s.get_last_lr()[0] for key, s in self.schedulers.items()}
            epoch_losses = {name: total / max(1, count) for name, total in sums.items()}
            self.logger.end_epoch(self.epoch, self.iteration, learning_rates, sample, time.time() - started)
            finished = self.epoch
            self.epoch, self.epoch_samples = self.epoch + 1, 0
            if (finished + 1) % freq == 0 or self.epoch == num_epochs:
                self.last_checkpoint = self.save(ckpt.checkpoint_name(finished, self.stage)) or self.last_checkpoint
        self.logger.note(f"training finished: {num_epochs} epochs, {self.iteration} iterations")
        return TrainResult(self.log_dir, self.epoch, self.iteration, self.last_checkpoint, None, epoch_losses)

    def _note_start(self, num_epochs):
        if self.resuming:
            self.logger.note(f"resumed from {self.checkpoint_source} at epoch {self.epoch} "
                             f"({self.epoch_samples} samples into it), iteration {self.iteration}")
        elif self.kind == "published":
            self.logger.note(f"continuing the published training run {self.checkpoint_source} after its epoch "
                             f"{self.epoch - 1}: its Adam states, the learning rate the schedule has at epoch "
                             f"{self.epoch} (the published loop re-ran the saved epoch; this run does not)")
        elif self.checkpoint_source:
            what = ("a model of the first stage: training " + self.stage) if self.stage != "train" else \
                "no training state in it: fine-tuning"
            self.logger.note(f"weights from {self.checkpoint_source} ({what} from epoch 0 with fresh optimisers)")
        if self.epoch >= num_epochs:
            self.logger.note(f"nothing to do: the checkpoint is at epoch {self.epoch} and num_epochs is "
                             f"{num_epochs}; raise train_params.num_epochs to train further")
            return
        self.logger.note(f"training epochs {self.epoch}..{num_epochs - 1}, {self.batches_per_epoch} iterations "
                         f"each, batch {self.batch_size} over {self.parallel.world_size} process(es) on "
                         f"{self.device}, seed {self.seed}, precision {self.train_params['precision']}")

    def _stop(self, reason):
        path = self.save(ckpt.INTERRUPTED_CHECKPOINT)
        self.logger.note(f"stopped ({reason}) at epoch {self.epoch}, iteration {self.iteration}"
                         + (f"; resume with --checkpoint {path}" if path else ""))
        return TrainResult(self.log_dir, self.epoch, self.iteration, path, reason)

    def close(self):
        self.logger.close()


def train(config, dataset, log_dir, parallel=None, checkpoint=None, seed=None, progress=None,
          stop_at_iteration=None, callback=None, stage="train"):
    """Train on ``dataset`` (items as frames_dataset.FramesDataset gives them) into ``log_dir``.

    config: a validated config (configuration.load_config). parallel: this process's place in the
    run (parallel.start()); default one process on the CPU. checkpoint: path to resume from (a
    checkpoint of this code: exactly where it stopped) or to fine-tune from (a published one:
    weights only, epoch 0, fresh optimisers). seed: None → the checkpoint's, else 0.
    stop_at_iteration: stop as an interrupt would (checkpoint written) once that many steps are done.
    callback(trainer, losses) runs after every step. Returns a TrainResult.
    """
    parallel = parallel or Parallel()
    if parallel.is_main:
        os.makedirs(log_dir, exist_ok=True)
    trainer = Trainer(config, dataset, log_dir, parallel, checkpoint=checkpoint, seed=seed, progress=progress,
                      stage=stage)
    try:
        with StopRequests() as stop:
            return trainer.run(stop, stop_at_iteration=stop_at_iteration, callback=callback)
    finally:
        trainer.close()


# ------------------------------------------------------------------------------------------------
# Command line (run.py --mode train).

def add_cli_arguments(parser):
    """Training has no flags beyond run.py's common ones (--config, --checkpoint, --log_dir, --seed, ...)."""


def choose_log_dir(args, parallel, resuming):
    """Resuming a training checkpoint (ours, or a published run's) continues in its folder, as FOMM
    does, and so does a second stage on top of a first; anything else gets a new folder."""
    folder = None
    if parallel.is_main:
        if resuming:
            folder = os.path.dirname(os.path.abspath(args.checkpoint))
        else:
            folder = logger.run_folder(args.log_dir, args.config)
        os.makedirs(folder, exist_ok=True)
        logger.copy_config(args.config, folder)
    return parallel.broadcast(folder)


def run(config, args, parallel=None):
    """run.py's train mode: dataset from the config, log folder, train. Returns the process exit code."""
    import frames_dataset
    from parallel import finish, start

    own = parallel is None
    parallel = parallel or start(args.device)
    ok = False
    try:
        # A checkpoint that cannot be read is reported before the dataset is looked at.
        stage = args.mode
        method = methods.get(config["model_params"]["method"])
        stage_section(method, stage)
        resuming = False
        if args.checkpoint:
            kind = ckpt.training_kind(ckpt.peek_checkpoint(args.checkpoint), stage, published_optimizers(method, stage),
                                      published_epoch_key(method, stage))
            resuming = kind in ("resume", "published") or stage != "train"
        # The main process validates the dataset once; the others wait for its verdict rather than
        # each checking every frame (or hanging in a collective if only the main process failed).
        build_dataset = getattr(method, "build_dataset", frames_dataset.build_dataset)
        problem, dataset = None, None
        if parallel.is_main:
            try:
                # Before the dataset is checked (minutes on a large one): checkpoints must be writable.
                if resuming:
                    check_output_dir(os.path.dirname(os.path.abspath(args.checkpoint)), "the checkpoint's folder")
                else:
                    check_output_dir(args.log_dir, "--log_dir")
                dataset = build_dataset(config, is_train=True, validate=True)
            except InputError as error:
                problem = str(error)
        problem = parallel.broadcast(problem)
        if problem is not None:
            raise frames_dataset.DatasetError(problem)
        if dataset is None:
            dataset = build_dataset(config, is_train=True, validate=False)
        log_dir = choose_log_dir(args, parallel, resuming)
        if parallel.is_main:
            log.info("log folder: %s", log_dir)
        try:
            result = train(config, dataset, log_dir, parallel=parallel, checkpoint=args.checkpoint,
                           seed=args.seed, progress=None, stage=stage)
        except (OSError, RuntimeError) as error:
            # The log, TensorBoard and pictures can fill a disk too; checkpoint writes say so themselves.
            if isinstance(error, RunError) or not is_disk_full(error):
                raise
            raise disk_full_error(log_dir, "the checkpoints written so far are intact (resume with "
                                           "--checkpoint <the last one>)") from None
        ok = True
    finally:
        if own:
            finish(parallel, wait=ok)
    if result.stopped_by in ("SIGINT", "SIGTERM"):
        return 128 + getattr(signal, result.stopped_by)
    return 0
