"""Training: a short run writes everything and loads back; exact resume; NaN and failed writes save
nothing corrupt; signals stop with a checkpoint; published checkpoints fine-tune.

All in one process on the CPU with the tiny config on real-face clips (tests/train_helpers.py).
"""
import json
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

import checkpoint as ckpt
import logger as logger_module
from configuration import build_networks
from tests.train_helpers import FacePairs, state_dicts_equal, tiny_config
from checkpoint import INTERRUPTED_CHECKPOINT, checkpoint_name
from train import CheckpointWriteError, NonFiniteError, TrainingSetupError, train

pytestmark = pytest.mark.filterwarnings("ignore::modules.perceptual.VGGWeightsMissing")


@pytest.fixture(scope="module")
def pairs():
    return FacePairs(num_clips=2, num_frames=4, size=64)


def fast_config(**train_overrides):
    """The tiny config without the perceptual loss (no VGG19): for tests about the run, not the losses."""
    config = tiny_config(**train_overrides)
    config["train_params"]["loss_weights"]["perceptual"] = [0, 0, 0, 0, 0]
    return config


def _files(folder):
    return sorted(p for p in os.listdir(folder))


def test_short_run_writes_checkpoints_pictures_and_logs(pairs, tmp_path):
    config = tiny_config(num_epochs=2, num_repeats=1, epoch_milestones=[1])
    result = train(config, pairs, str(tmp_path), seed=3, progress=False)

    assert result.stopped_by is None and result.epoch == 2 and result.iteration == 2
    assert result.epoch_losses and all(np.isfinite(v) for v in result.epoch_losses.values())
    assert {"perceptual", "gen_gan", "feature_matching", "equivariance_value", "equivariance_jacobian",
            "disc_gan"} <= set(result.epoch_losses)

    # Checkpoints: published layout + resume state, loadable with weights_only into fresh networks.
    assert result.checkpoint == str(tmp_path / checkpoint_name(1))
    assert (tmp_path / checkpoint_name(0)).is_file()
    data = ckpt.read_checkpoint(result.checkpoint)
    for key in ("generator", "kp_detector", "discriminator", "optimizer_generator", "optimizer_kp_detector",
                "optimizer_discriminator", "epoch", "scheduler_generator", "scheduler_kp_detector",
                "scheduler_discriminator", "train_state", "rng_states", "config"):
        assert key in data, key
    assert data["epoch"] == 1
    assert data["train_state"] == {"epoch": 2, "epoch_samples": 0, "iteration": 2, "seed": 3, "world_size": 1,
                                   "batch_size": 2, "stage": "train"}
    assert data["config"] == config
    # Milestone at epoch 1: learning rate ×0.1 after it.
    assert data["optimizer_generator"]["param_groups"][0]["lr"] == pytest.approx(2e-5)
    kp, gen, disc = build_networks(config["model_params"])
    ckpt.load_networks(data, {"kp_detector": kp, "generator": gen, "discriminator": disc}, result.checkpoint,
                       required=ckpt.NETWORKS)

    # Logs: one line per iteration (log_freq 1), one per epoch, and the same data as JSON lines.
    text = (tmp_path / "log.txt").read_text()
    assert "iteration 1 (epoch 0): perceptual - " in text and "iteration 2 (epoch 1)" in text
    assert "00000000) perceptual - " in text and "00000001) " in text
    entries = [json.loads(line) for line in (tmp_path / "losses.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in entries] == [1, 2]
    assert all(np.isfinite(list(e["losses"].values())).all() for e in entries)

    # Pictures: one sample sheet per epoch (2 rows, ≥ 8 columns of 64 px) and the loss curves.
    for epoch in (0, 1):
        sheet = Image.open(tmp_path / "train-vis" / f"{epoch:08d}-rec.png")
        sheet.load()
        assert sheet.height > 2 * 64 and sheet.width >= 8 * 64
    curves = Image.open(tmp_path / "loss-curves.png")
    curves.load()
    assert curves.width > 0

    # TensorBoard: losses, learning rates, gradient norms and the sample sheet.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    assert {"loss/perceptual", "loss/disc_gan", "lr/generator", "grad_norm/generator"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("loss/perceptual")] == [1, 2]
    assert "samples" in tags["images"]
    # The config's published keys survive; nothing else was left in the folder.
    assert not [f for f in _files(tmp_path) if f.startswith(".tmp")]


def _train_to(tmp, pairs, config, **kwargs):
    return train(config, pairs, str(tmp), progress=False, **kwargs)


def _assert_same_training_state(a, b):
    for name in ckpt.NETWORKS:
        assert state_dicts_equal(a[name], b[name]) == [], name
    for key in ("optimizer_generator", "optimizer_kp_detector", "optimizer_discriminator"):
        for index, state in a[key]["state"].items():
            other = b[key]["state"][index]
            for field in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(state[field], other[field]), (key, index, field)
    for key in ("scheduler_generator", "scheduler_discriminator"):
        assert a[key] == b[key]
    assert a["train_state"] == b["train_state"]


def test_exact_resume_mid_epoch_and_at_epoch_boundary(pairs, tmp_path):
    """4 steps straight == 3 steps, stop, resume 1 step (with loader workers this time) == resume the
    epoch-0 checkpoint for 2 steps: same weights, Adam moments and logged losses, bit for bit."""
    config = fast_config(num_epochs=2, num_repeats=2, epoch_milestones=[1])  # the frozen VGG has no state
    straight = _train_to(tmp_path / "straight", pairs, config, seed=11)
    assert straight.iteration == 4

    stopped = _train_to(tmp_path / "parts", pairs, config, seed=11, stop_at_iteration=3)
    assert stopped.stopped_by == "stop_at_iteration" and stopped.iteration == 3 and stopped.epoch == 1
    assert stopped.checkpoint.endswith(INTERRUPTED_CHECKPOINT)
    assert ckpt.read_checkpoint(stopped.checkpoint)["train_state"]["epoch_samples"] == 2
    with_workers = fast_config(num_epochs=2, num_repeats=2, epoch_milestones=[1], num_workers=2)
    resumed = _train_to(tmp_path / "parts", pairs, with_workers, checkpoint=stopped.checkpoint)  # seed from it
    assert resumed.iteration == 4 and resumed.stopped_by is None

    from_epoch = _train_to(tmp_path / "from_epoch", pairs, config,
                           checkpoint=str(tmp_path / "straight" / checkpoint_name(0)))
    assert from_epoch.iteration == 4

    reference = ckpt.read_checkpoint(straight.checkpoint)
    _assert_same_training_state(reference, ckpt.read_checkpoint(resumed.checkpoint))
    _assert_same_training_state(reference, ckpt.read_checkpoint(from_epoch.checkpoint))

    def logged(folder):
        return {e["iteration"]: e["losses"] for e in map(json.loads, (folder / "losses.jsonl").read_text().splitlines())}

    assert logged(tmp_path / "parts") == logged(tmp_path / "straight")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "parts" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("loss/gen_gan")] == [1, 2, 3, 4]


def test_sigterm_stops_after_the_step_with_a_checkpoint(pairs, tmp_path):
    config = fast_config(num_epochs=3, num_repeats=2)
    before = signal.getsignal(signal.SIGTERM)

    def send_sigterm(trainer, losses):
        if trainer.iteration == 1:
            os.kill(os.getpid(), signal.SIGTERM)

    result = _train_to(tmp_path, pairs, config, callback=send_sigterm)
    assert result.stopped_by == "SIGTERM" and result.iteration == 1
    data = ckpt.read_checkpoint(result.checkpoint)
    assert data["train_state"]["iteration"] == 1 and data["train_state"]["epoch"] == 0
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    assert "stopped (SIGTERM)" in (tmp_path / "log.txt").read_text()


def test_nan_loss_stops_naming_the_loss_and_saves_nothing(pairs, tmp_path, monkeypatch):
    import modules.model

    config = fast_config(num_epochs=3, num_repeats=1, checkpoint_freq=1)
    original = modules.model.equivariance_jacobian_loss

    def poison(trainer, losses):  # from the second step on, one loss is NaN
        monkeypatch.setattr(modules.model, "equivariance_jacobian_loss",
                            lambda *a: original(*a) * float("nan"))

    with pytest.raises(NonFiniteError, match=r"loss equivariance_jacobian = nan at epoch 1, iteration 2"):
        _train_to(tmp_path, pairs, config, callback=poison)
    assert (tmp_path / checkpoint_name(0)).is_file()
    assert not (tmp_path / checkpoint_name(1)).exists() and not (tmp_path / INTERRUPTED_CHECKPOINT).exists()
    ckpt.read_checkpoint(str(tmp_path / checkpoint_name(0)))


def test_nan_checked_at_log_intervals_stops_before_any_save(pairs, tmp_path, monkeypatch):
    """finite_check: log (the CUDA default: no host sync per step) finds the NaN of step 2 at the
    epoch's end, before the checkpoint of that epoch is written, and names the step it came from."""
    import modules.model

    config = fast_config(num_epochs=2, num_repeats=2, checkpoint_freq=1, finite_check="log", log_freq=100)
    original = modules.model.equivariance_jacobian_loss
    calls = []

    def poison_second(*args):
        calls.append(1)
        value = original(*args)
        return value * float("nan") if len(calls) == 2 else value

    monkeypatch.setattr(modules.model, "equivariance_jacobian_loss", poison_second)
    with pytest.raises(NonFiniteError, match=r"loss equivariance_jacobian = nan at epoch 0, iteration 2 "
                                             r"\(checked at iteration 2\)"):
        _train_to(tmp_path, pairs, config)
    assert not list(tmp_path.glob("*.pth.tar"))


def test_failed_checkpoint_write_leaves_the_previous_one_intact(pairs, tmp_path, monkeypatch):
    """torch.save dies half-way through the second checkpoint (same file name as the first)."""
    config = fast_config(num_epochs=1, num_repeats=1)
    first = _train_to(tmp_path, pairs, config)
    original_bytes = open(first.checkpoint, "rb").read()

    real_save = torch.save

    def half_then_fail(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.seek(len(original_bytes) // 2)
        handle.truncate()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", half_then_fail)
    # The same run again into the same folder: its first checkpoint replaces the file written above.
    # Issue 18: a full disk is said in plain words (it used to quote the OS / torch error).
    with pytest.raises(CheckpointWriteError, match="disk full while writing checkpoint"):
        _train_to(tmp_path, pairs, config)
    assert open(first.checkpoint, "rb").read() == original_bytes
    ckpt.read_checkpoint(first.checkpoint)
    assert not [f for f in _files(tmp_path) if f.startswith(".tmp")]


def test_published_checkpoint_fine_tunes_and_a_foreign_one_is_refused(pairs, tmp_path):
    config = fast_config(num_epochs=1, num_repeats=1)
    torch.manual_seed(5)
    kp, gen, disc = build_networks(config["model_params"])
    published = tmp_path / "published.pth.tar"
    torch.save({"kp_detector": kp.state_dict(), "generator": gen.state_dict()}, published)  # no disc, no optimizers

    seen = {}

    def first_weights(trainer, losses):
        seen.setdefault("epoch", trainer.epoch)

    result = _train_to(tmp_path / "run", pairs, config, checkpoint=str(published), callback=first_weights)
    assert result.epoch == 1 and result.iteration == 1 and seen["epoch"] == 0
    assert "fine-tuning from epoch 0" in (tmp_path / "run" / "log.txt").read_text()

    wider = fast_config()
    wider["model_params"]["generator_params"]["block_expansion"] = 16
    _, other_gen, _ = build_networks(wider["model_params"])
    foreign = tmp_path / "foreign.pth.tar"
    torch.save({"kp_detector": kp.state_dict(), "generator": other_gen.state_dict()}, foreign)
    with pytest.raises(ckpt.CheckpointError, match="wrong shape"):
        _train_to(tmp_path / "run2", pairs, config, checkpoint=str(foreign))


def test_setup_errors_are_clear(pairs, tmp_path):
    with pytest.raises(TrainingSetupError, match="less than batch_size"):
        _train_to(tmp_path, pairs, fast_config(batch_size=8, num_repeats=1))
    no_training = fast_config()
    no_training["train_params"] = None
    with pytest.raises(TrainingSetupError, match="no train_params"):
        _train_to(tmp_path, pairs, no_training)


def test_logger_of_other_processes_writes_nothing(tmp_path):
    with logger_module.Logger(str(tmp_path / "quiet"), enabled=False) as quiet:
        quiet.start_epoch(0, 1)
        quiet.log_iteration(0, 1, {"perceptual": 1.0})
        quiet.end_epoch(0, 1)
        quiet.note("nothing")
    assert not (tmp_path / "quiet").exists()


def test_logger_resume_drops_entries_after_the_checkpoint(tmp_path):
    with logger_module.Logger(str(tmp_path), log_freq=1, tensorboard=False, progress=False) as first:
        first.start_epoch(0, 3)
        for iteration in (1, 2, 3):
            first.log_iteration(0, iteration, {"perceptual": float(iteration)})
        first.end_epoch(0, 3)
    with logger_module.Logger(str(tmp_path), log_freq=1, tensorboard=False, start_iteration=2) as second:
        assert second.history == {"perceptual": [(1, 1.0), (2, 2.0)]}
    lines = (tmp_path / "losses.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2]



def test_bf16_autocast_trains(pairs, tmp_path):
    result = _train_to(tmp_path, pairs, fast_config(num_epochs=1, num_repeats=1, precision="bf16"))
    assert result.iteration == 1 and all(np.isfinite(v) for v in result.epoch_losses.values())
    weights = ckpt.read_checkpoint(result.checkpoint)["generator"]
    assert all(v.dtype != torch.bfloat16 for v in weights.values())  # autocast: the weights stay fp32


def test_progress_bar_shows_the_epoch(tmp_path, capsys):
    with logger_module.Logger(str(tmp_path), tensorboard=False, progress=True) as bar:
        bar.start_epoch(7, 2)
        bar.log_iteration(7, 1, {"perceptual": 1.5})
        bar.log_iteration(7, 2, {"perceptual": 0.5})
        bar.end_epoch(7, 2)
    assert "epoch 7" in capsys.readouterr().err
