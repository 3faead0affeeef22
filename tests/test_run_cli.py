"""run.py: bad input gives one line and exit code 2; a real training run from the command line, then
a resume of it into the same folder."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import checkpoint as ckpt
import run
from tests.train_helpers import ROOT, face_dataset, write_config  # noqa: F401 (fixture)

pytestmark = pytest.mark.filterwarnings("ignore::modules.perceptual.VGGWeightsMissing")


def _main(capsys, *argv):
    """run.main in this process: (exit code, stderr lines)."""
    try:
        code = run.main(list(argv))
    except SystemExit as exit_:  # argparse
        code = exit_.code
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def config_file(tmp_path):
    return write_config(tmp_path / "tiny.yaml", tmp_path / "no-data")


def test_unknown_config_key(tmp_path, capsys):
    path = tmp_path / "typo.yaml"
    path.write_text(Path(ROOT / "config" / "tiny.yaml").read_text().replace("num_repeats:", "num_repeat:"))
    code, err = _main(capsys, "--config", str(path))
    assert code == 2 and len(err) == 1
    assert "unknown key 'train_params.num_repeat'" in err[0] and "did you mean 'num_repeats'" in err[0]


def test_missing_config(tmp_path, capsys):
    code, err = _main(capsys, "--config", str(tmp_path / "nope.yaml"))
    assert code == 2 and len(err) == 1 and "config file not found" in err[0]


def test_missing_checkpoint(config_file, tmp_path, capsys):
    code, err = _main(capsys, "--config", str(config_file), "--checkpoint", str(tmp_path / "x.pth.tar"))
    assert code == 2 and len(err) == 1 and "checkpoint not found" in err[0]


def test_unreadable_checkpoint(config_file, tmp_path, capsys):
    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"not a checkpoint")
    code, err = _main(capsys, "--config", str(config_file), "--checkpoint", str(junk), "--device", "cpu")
    assert code == 2 and len(err) == 1 and "not a readable checkpoint" in err[0]


@pytest.mark.parametrize("flags, message", [
    (["--device", "tpu"], "is not"),
    (["--device_ids", "0,1"], "torchrun"),
    (["--cpu", "--device", "cuda"], "give one of them"),
    (["--device_ids", "a"], "GPU numbers"),
    (["--mode", "dream"], "invalid choice"),
    (["--no_such_flag"], "unrecognized arguments"),
])
def test_bad_flags(config_file, capsys, flags, message):
    code, err = _main(capsys, "--config", str(config_file), *flags)
    assert code == 2 and len(err) == 1 and message in err[0], err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu(config_file, capsys):
    code, err = _main(capsys, "--config", str(config_file), "--device", "cuda")
    assert code == 2 and len(err) == 1 and "no CUDA device" in err[0]


def test_device_ids_of_fomm_map_to_a_device():
    args = run.build_parser(()).parse_args(["--config", "c", "--device_ids", "0"])
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert run.device_request(args, environ={}) == expected
    args = run.build_parser(()).parse_args(["--config", "c", "--device_ids", "0,1"])
    assert run.device_request(args, environ={"WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == "auto"
    assert run.device_request(run.build_parser(()).parse_args(["--config", "c"]), environ={}) == "auto"


def test_missing_dataset(config_file, capsys):
    code, err = _main(capsys, "--config", str(config_file), "--device", "cpu")
    assert code == 2 and "does not exist" in err[-1] and "preprocess.py" in err[-1]


def test_help_explains_modes_and_flags():
    text = run.build_parser().format_help()
    for word in ("--config", "--mode", "--log_dir", "--checkpoint", "--device", "--device_ids", "--seed",
                 "--verbose", "torchrun", "resume", "exit codes"):
        assert word in text


def test_train_from_the_command_line_then_resume(face_dataset, tmp_path, capsys):
    # No perceptual loss: no VGG19 to build in the child process (test_train covers it).
    config = write_config(tmp_path / "faces.yaml", face_dataset, perceptual=False, num_epochs=1, num_repeats=1)
    log_root = tmp_path / "log"
    done = subprocess.run([sys.executable, "run.py", "--config", str(config), "--log_dir", str(log_root),
                           "--device_ids", "0", "--seed", "4"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    (folder,) = log_root.iterdir()
    assert re.fullmatch(r"faces_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", folder.name)
    assert (folder / "faces.yaml").read_text() == config.read_text()
    for name in ("00000000-checkpoint.pth.tar", "log.txt", "losses.jsonl", "loss-curves.png",
                 "train-vis/00000000-rec.png"):
        assert (folder / name).is_file(), name
    assert list((folder / "tensorboard").iterdir())

    # Resume with more epochs: same folder, the config that differs is kept beside the first.
    longer = write_config(tmp_path / "faces.yaml", face_dataset, perceptual=False, num_epochs=2, num_repeats=1)
    code, err = _main(capsys, "--config", str(longer), "--checkpoint", str(folder / "00000000-checkpoint.pth.tar"),
                      "--cpu", "--log_dir", str(tmp_path / "elsewhere"))
    assert code == 0, err
    assert not (tmp_path / "elsewhere").exists()
    data = ckpt.read_checkpoint(str(folder / "00000001-checkpoint.pth.tar"))
    assert data["train_state"]["iteration"] == 2 and data["train_state"]["seed"] == 4
    assert len(list(folder.glob("faces*.yaml"))) == 2
    log_text = (folder / "log.txt").read_text()
    assert "resumed from" in log_text and os.path.basename(str(folder)) in log_text


def test_nan_during_training_is_exit_code_1_in_one_line(face_dataset, tmp_path, capsys, monkeypatch):
    import modules.model

    config = write_config(tmp_path / "nan.yaml", face_dataset, perceptual=False, num_epochs=1, num_repeats=1)
    monkeypatch.setattr(modules.model, "equivariance_value_loss", lambda *a: torch.tensor(float("inf")))
    code, err = _main(capsys, "--config", str(config), "--log_dir", str(tmp_path / "log"), "--cpu")
    assert code == 1
    failures = [line for line in err if line.startswith("run.py:")]
    assert len(failures) == 1 and "training failed: loss equivariance_value = inf" in failures[0]
    assert "Traceback" not in "\n".join(err)
    (folder,) = (tmp_path / "log").iterdir()
    assert not list(folder.glob("*.pth.tar"))
