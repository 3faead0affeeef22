"""Checkpoints written by the published training loop carry over: one continues its run after the saved
epoch (its Adam states, the schedule's learning rate, in its folder); one whose discriminator does not
fit the config fine-tunes with a one-line warning and a fresh discriminator, as the published code did."""
import logging
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import checkpoint as ckpt
from tests.method_helpers import faces, run_main, write_config  # noqa: F401 (fixture)

pytestmark = pytest.mark.filterwarnings("ignore::modules.perceptual.VGGWeightsMissing")
PUBLISHED_KEYS = ("generator", "kp_detector", "discriminator", "optimizer_generator", "optimizer_kp_detector",
                  "optimizer_discriminator", "epoch")


def published_layout(faces, base, folder, name, keys, **extra):
    """One epoch of training with the config ``base``, saved again as a published loop saves it: only
    ``keys`` of our checkpoint, plus ``extra``, in <folder>/published/<name>. → (path, config)."""
    import run

    config = write_config(folder / Path(base).name, base, faces, num_epochs=1, num_repeats=1)
    assert run.main(["--config", str(config), "--log_dir", str(folder / "log"), "--cpu"]) == 0
    (run_dir,) = (folder / "log").iterdir()
    ours = ckpt.read_checkpoint(str(run_dir / "00000000-checkpoint.pth.tar"))
    path = folder / "published" / name
    path.parent.mkdir()
    torch.save({**{key: ours[key] for key in keys}, **extra}, path)
    return path, config


@pytest.fixture(scope="module")
def published(faces, tmp_path_factory):
    """A checkpoint in the published layout after one epoch of training (only the keys its loop saved)."""
    return published_layout(faces, "config/tiny.yaml", tmp_path_factory.mktemp("published_run"),
                            "00000000-checkpoint.pth.tar", PUBLISHED_KEYS)


def test_published_training_checkpoint_continues_after_its_epoch(published, tmp_path, capsys):
    source, _ = published
    path = tmp_path / "run" / source.name
    path.parent.mkdir()
    shutil.copy(source, path)
    config = write_config(tmp_path / "tiny.yaml", "config/tiny.yaml", yaml.safe_load(
        published[1].read_text())["dataset_params"]["root_dir"], num_epochs=2, num_repeats=1)
    before = torch.load(path, weights_only=True)
    code, err = run_main(capsys, "--config", config, "--checkpoint", path, "--cpu", "--log_dir", tmp_path / "else")
    assert code == 0, err
    assert not (tmp_path / "else").exists()  # in the checkpoint's folder, as the published code did
    after = ckpt.read_checkpoint(str(path.parent / "00000001-checkpoint.pth.tar"))
    assert after["train_state"]["epoch"] == 2 and after["epoch"] == 1
    # Adam continued: one more step on top of the saved state.
    step_before = next(iter(before["optimizer_generator"]["state"].values()))["step"]
    step_after = next(iter(after["optimizer_generator"]["state"].values()))["step"]
    assert float(step_after) == float(step_before) + 1
    # The schedule's rate at epoch 1 (tiny.yaml: milestone [1], ×0.1), not the start rate or a double decay.
    assert after["optimizer_generator"]["param_groups"][0]["lr"] == pytest.approx(2e-5)
    assert "continuing the published training run" in (path.parent / "log.txt").read_text()


def test_published_checkpoint_with_another_discriminator_fine_tunes_with_a_warning(published, tmp_path, capsys,
                                                                                   caplog):
    source, config = published
    data = torch.load(source, weights_only=True)
    # The published config has no spectral norm: rename the discriminator's weights to the plain names.
    data["discriminator"] = {k.replace("weight_orig", "weight"): v for k, v in data["discriminator"].items()
                             if not k.endswith(("weight_u", "weight_v"))}
    for key in ("optimizer_generator", "optimizer_kp_detector", "optimizer_discriminator", "epoch"):
        del data[key]
    path = tmp_path / "weights.pth.tar"
    torch.save(data, path)
    longer = write_config(tmp_path / "tiny.yaml", "config/tiny.yaml", yaml.safe_load(config.read_text())
                          ["dataset_params"]["root_dir"], num_epochs=1, num_repeats=1)
    with caplog.at_level(logging.WARNING):
        code, err = run_main(capsys, "--config", longer, "--checkpoint", path, "--cpu", "--log_dir", tmp_path / "log")
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if "does not fit the config" in r.getMessage()]
    assert len(warnings) == 1 and "discriminator" in warnings[0] and "\n" not in warnings[0]
    (run_dir,) = (tmp_path / "log").iterdir()
    saved = ckpt.read_checkpoint(str(run_dir / "00000000-checkpoint.pth.tar"))
    assert any(k.endswith("weight_orig") for k in saved["discriminator"])  # the config's (spectral-norm) one


def test_generator_that_does_not_fit_still_stops_in_one_line(published, tmp_path, capsys):
    source, config = published
    data = torch.load(source, weights_only=True)
    data["generator"] = {k: v for k, v in data["generator"].items() if "bottleneck" not in k}
    path = tmp_path / "broken.pth.tar"
    torch.save(data, path)
    code, err = run_main(capsys, "--config", config, "--checkpoint", path, "--cpu", "--log_dir", tmp_path / "log")
    assert code == 2 and "generator: missing" in err and len(err.strip().splitlines()) == 1


def test_bare_tensor_checkpoint_is_refused_in_one_line(published, tmp_path, capsys):
    _, config = published
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(18, 2), path)
    code, err = run_main(capsys, "--config", config, "--checkpoint", path, "--cpu", "--log_dir", tmp_path / "log")
    assert code == 2 and "not a checkpoint" in err and "Traceback" not in err


def test_published_mraa_checkpoint_continues_after_its_epoch_reconstruction(faces, tmp_path, capsys):
    """MRAA's Logger saves the finished epoch as 'epoch_reconstruction' (and 'epoch_avd'), not 'epoch':
    such a checkpoint continues after that epoch too, rather than fine-tuning from epoch 0."""
    keys = ("region_predictor", "bg_predictor", "generator", "avd_network", "optimizer_reconstruction")
    path, _ = published_layout(faces, "config/tiny_mraa.yaml", tmp_path, "00000000-cpk-reconstruction.pth", keys,
                               epoch_reconstruction=0)
    assert ckpt.training_kind(torch.load(path, weights_only=True), "train", ("optimizer_reconstruction",)) == "weights"
    longer = write_config(tmp_path / "two.yaml", "config/tiny_mraa.yaml", faces, num_epochs=2, num_repeats=1)
    code, err = run_main(capsys, "--config", longer, "--checkpoint", path, "--cpu")
    assert code == 0, err
    after = ckpt.read_checkpoint(str(path.parent / "00000001-checkpoint.pth.tar"))
    assert after["train_state"]["epoch"] == 2 and not (path.parent / "00000000-checkpoint.pth.tar").exists()
    assert "continuing the published training run" in (path.parent / "log.txt").read_text()
