"""Bad inputs and faults, every tool × every class (issue 18): one table, one runner.

Each row is a tool, an argument list built from the shared fixtures (``World``), the exit code, a
substring of the one error line, an optional fault (a full disk, an unwritable folder: patched in
this process, so the case runs as root too) and paths that must not exist afterwards (nothing written
that should not be). The runner asserts: that exit code, exactly one ``<tool>: error:`` /
``<tool>: failed:`` line on stderr containing the substring, no traceback, no temporary file left.
A new tool adds its rows to ``CASES`` and inherits every check; rows with ``subprocess=True`` run the
real command line, where a traceback could hide behind an in-process catch.

Plus: a SIGKILL in the middle of ``run.py --mode animate`` and a re-run that does only the missing
pairs; SIGTERM handled as Ctrl-C. (demo_pipeline's SIGKILL-then-rerun is the page test's fixture,
tests/test_demo_page.py, so the quick demo runs once.)
"""
import errno
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import aumaker
import demo
import demo_pipeline
import evaluate
import kpmaker
import preprocess
import run
from animation_helpers import CLIP, TARGETS, build_test_split, tiny_checkpoint, tiny_config
from tests.data_helpers import face_cache, real_frames  # noqa: F401 (fixtures)
from tests.train_helpers import face_dataset, write_config  # noqa: F401 (fixture)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::modules.perceptual.VGGWeightsMissing")

MAINS = {"run.py": run.main, "preprocess": preprocess.main, "kpmaker": kpmaker.main, "aumaker": aumaker.main,
         "demo": demo_pipeline.main, "demo.py": demo.main, "evaluate.py": evaluate.main}
SCRIPTS = {"run.py": "run.py", "preprocess": "preprocess.py", "kpmaker": "kpmaker.py", "aumaker": "aumaker.py",
           "demo": "tools/demo_pipeline.py", "demo.py": "demo.py", "evaluate.py": "evaluate.py"}
# Every tool: '<tool>: error: …' exit 2 for bad input, '<tool>: failed: …' exit 1 for work that could not finish.
TEMPORARY_MARKS = (".tmp-", ".partial-", ".tmp")


class World:
    """Everything the cases point at, built once per module under ``base``; ``case`` is each case's
    own empty folder (outputs go there)."""

    def __init__(self, base, split, checkpoint, train_data, raw):
        self.base, self.split, self.checkpoint, self.train_data, self.raw = base, split, checkpoint, train_data, raw
        self.file = base / "a-regular-file"
        self.file.write_text("not a folder")
        self.animate_config = self._yaml("animate.yaml", tiny_config(split))
        self.train_config = write_config(base / "train.yaml", train_data, perceptual=False, num_epochs=1,
                                         num_repeats=1)
        self.not_utf8 = base / "latin1.yaml"
        self.not_utf8.write_bytes("# café\n".encode("latin-1") + self.animate_config.read_bytes())
        self.config_folder = base / "config-folder.yaml"
        self.config_folder.mkdir(exist_ok=True)
        self.bare_tensor = base / "bare-tensor.pth.tar"
        torch.save(torch.zeros(18, 2), self.bare_tensor)
        self.not_state_dicts = base / "not-state-dicts.pth.tar"
        torch.save({"kp_detector": [1, 2, 3], "generator": "weights", "epoch": 0}, self.not_state_dicts)
        self.sheet = base / "sheet.csv"
        self.sheet.write_text("Subject,Filename,OnsetFrame,ApexFrame,OffsetFrame,Action Units,Estimated Emotion\n"
                              "1,clip1,first,2,5,12,happiness\n")
        self.case = None

    def _yaml(self, name, config):
        path = self.base / name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def config_with(self, name, section, key, value, source=None):
        """The animate (or ``source``) config with one key changed, as a file."""
        data = yaml.safe_load(Path(source or self.animate_config).read_text())
        data.setdefault(section, {})[key] = value
        path = self.base / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def animate(self, *more, config=None):
        return ["--mode", "animate", "--config", config or self.animate_config, "--checkpoint", self.checkpoint,
                "--cpu", "--out", self.case / "out", *more]

    def reconstruct(self, *more, config=None):
        return ["--mode", "reconstruction", "--config", config or self.animate_config, "--checkpoint",
                self.checkpoint, "--cpu", "--no_eval", "--out", self.case / "out", *more]

    def train(self, *more, config=None):
        return ["--config", config or self.train_config, "--cpu", "--log_dir", self.case / "log", *more]

    def preprocess(self, *more):
        return ["--dataset", "folder", "--input", self.raw, "--output", self.case / "out", "--size", "32", *more]

    def kpmaker(self, *more):
        return ["--root", self.split, "--out", self.case / "out", "--splits", "test", *more]

    def demo(self, *more, result=None, checkpoint=None, config=None):
        return ["--config", config or self.animate_config, "--checkpoint", checkpoint or self.checkpoint,
                "--source_image", self.split / "test" / "obama" / "obama.png", "--driving_video",
                self.split / "test" / CLIP, "--result_video", result or self.case / "out" / "r.mp4", "--cpu", *more]

    def evaluate(self, *more, out=None, real=None):
        return ["reconstruction", "--generated", self.split / "test", "--real", real or self.split / "test",
                "--out", out or self.case / "out", "--no_aus", *more]


@dataclass
class Case:
    id: str
    tool: str                                   # a key of MAINS
    argv: Callable                              # World → list of arguments
    code: int
    needle: str                                 # in the one error line
    fault: Callable = None                      # (monkeypatch, World) → None: patch a fault in
    absent: tuple = ("out", "log")              # below the case folder: must not exist afterwards
    subprocess: bool = False
    warns: tuple = field(default_factory=tuple)


# ------------------------------------------------------------------------------------------ faults

def _enospc(*_, **__):
    raise OSError(errno.ENOSPC, "No space left on device")


def full_disk_for_images(monkeypatch, world):
    """Every PNG written below the case folder fails as on a full disk (PIL raises ENOSPC)."""
    real = Image.Image.save

    def save(self, fp, *args, **kwargs):
        if str(world.case) in str(fp):
            _enospc()
        return real(self, fp, *args, **kwargs)
    monkeypatch.setattr(Image.Image, "save", save)


def full_disk_for_npz(monkeypatch, world):
    monkeypatch.setattr(np, "savez", _enospc)


def full_disk_for_videos(monkeypatch, world):
    """The video encoder's output fails on the second frame as on a full disk."""
    import video_io

    real = video_io.VideoWriter.write

    def write(self, frame):
        if self.count >= 1:
            _enospc()
        return real(self, frame)
    monkeypatch.setattr(video_io.VideoWriter, "write", write)


def full_disk_for_results(monkeypatch, world):
    monkeypatch.setattr(evaluate, "atomic_write_text", _enospc)


def full_disk_for_torch(monkeypatch, world):
    """torch.save's own words on a full disk: a RuntimeError from its zip writer."""
    def save(*_, **__):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")
    monkeypatch.setattr(torch, "save", save)


def unwritable(monkeypatch, world):
    """The case folder is not writable (root ignores modes, so os.access says it)."""
    real = os.access

    def access(path, mode, *args, **kwargs):
        if os.path.abspath(os.fspath(path)) == str(world.case) and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)
    monkeypatch.setattr(os, "access", access)


# ------------------------------------------------------------------------------------------ the table

UNDER_FILE = "is a file"
CASES = [
    # Output paths under a regular file: every tool, as real command lines.
    Case("train-log_dir-under-file", "run.py", lambda w: w.train()[:-1] + [w.file / "log"], 2, UNDER_FILE,
         subprocess=True),
    Case("animate-out-under-file", "run.py", lambda w: w.animate()[:-1] + [w.file / "out"], 2, UNDER_FILE,
         subprocess=True),
    Case("reconstruction-out-under-file", "run.py", lambda w: w.reconstruct()[:-1] + [w.file / "out"], 2,
         UNDER_FILE, subprocess=True),
    Case("preprocess-output-under-file", "preprocess", lambda w: w.preprocess()[:5] + [w.file / "x"] + ["--size", "32"],
         2, UNDER_FILE, subprocess=True),
    Case("kpmaker-out-under-file", "kpmaker", lambda w: w.kpmaker()[:3] + [w.file / "kp"] + ["--splits", "test"],
         2, UNDER_FILE, subprocess=True),
    Case("aumaker-out-under-file", "aumaker", lambda w: ["--root", w.split, "--out", w.file / "aus"], 2, UNDER_FILE,
         subprocess=True),
    Case("demo-out-under-file", "demo", lambda w: ["--quick", "--out", w.file / "demo"], 2, UNDER_FILE,
         subprocess=True),
    Case("demo.py-result_video-under-file", "demo.py", lambda w: w.demo(result=w.file / "r.mp4"), 2, UNDER_FILE,
         subprocess=True),
    Case("evaluate-out-under-file", "evaluate.py", lambda w: w.evaluate(out=w.file / "scores"), 2, UNDER_FILE,
         subprocess=True),
    # Output folders that cannot be written.
    Case("train-log_dir-unwritable", "run.py", lambda w: w.train(), 2, "no permission", fault=unwritable),
    Case("animate-out-unwritable", "run.py", lambda w: w.animate(), 2, "no permission", fault=unwritable),
    Case("reconstruction-out-unwritable", "run.py", lambda w: w.reconstruct(), 2, "no permission", fault=unwritable),
    Case("preprocess-output-unwritable", "preprocess", lambda w: w.preprocess(), 2, "no permission", fault=unwritable),
    Case("kpmaker-out-unwritable", "kpmaker", lambda w: w.kpmaker(), 2, "no permission", fault=unwritable),
    Case("aumaker-out-unwritable", "aumaker", lambda w: ["--root", w.split, "--out", w.case / "out"], 2,
         "no permission", fault=unwritable),
    Case("demo-out-unwritable", "demo", lambda w: ["--quick", "--out", w.case / "out"], 2, "no permission",
         fault=unwritable),
    Case("demo.py-result_video-unwritable", "demo.py", lambda w: w.demo(result=w.case / "r.mp4"), 2,
         "no permission", fault=unwritable),
    Case("evaluate-out-unwritable", "evaluate.py", lambda w: w.evaluate(out=w.case / "scores"), 2, "no permission",
         fault=unwritable),
    # A full disk while writing: one line, exit 1, no temporary files (absent: no output published).
    Case("animate-disk-full", "run.py", lambda w: w.animate("--num_pairs", "1"), 1, "disk full",
         fault=full_disk_for_images, absent=()),
    Case("reconstruction-disk-full", "run.py", lambda w: w.reconstruct(), 1, "disk full", fault=full_disk_for_images,
         absent=()),
    Case("train-disk-full", "run.py", lambda w: w.train(), 1, "disk full while writing checkpoint",
         fault=full_disk_for_torch, absent=()),
    Case("preprocess-disk-full", "preprocess", lambda w: w.preprocess(), 1, "disk full", fault=full_disk_for_images,
         absent=()),
    Case("kpmaker-disk-full", "kpmaker", lambda w: w.kpmaker(), 1, "disk full", fault=full_disk_for_npz, absent=()),
    Case("demo.py-disk-full", "demo.py", lambda w: w.demo(result=w.case / "r.mp4"), 1, "disk full",
         fault=full_disk_for_videos, absent=("r.mp4",)),
    Case("evaluate-disk-full", "evaluate.py", lambda w: w.evaluate(), 1, "disk full", fault=full_disk_for_results,
         absent=("out/reconstruction_metrics.csv", "out/reconstruction_metrics.json")),
    Case("evaluate-real-missing", "evaluate.py", lambda w: w.evaluate(real=w.case / "no-real"), 2, "--real"),
    Case("demo.py-config-not-utf8", "demo.py", lambda w: w.demo(config=w.not_utf8), 2, "not a text (UTF-8) file"),
    Case("demo.py-checkpoint-bare-tensor", "demo.py", lambda w: w.demo("--crop", "--find_best_frame",
                                                                       checkpoint=w.bare_tensor), 2,
         "not a checkpoint"),
    # Config files that are not UTF-8 or a folder; checkpoints that are not dicts of state dicts.
    Case("train-config-not-utf8", "run.py", lambda w: w.train(config=w.not_utf8), 2, "not a text (UTF-8) file"),
    Case("animate-config-not-utf8", "run.py", lambda w: w.animate(config=w.not_utf8), 2, "not a text (UTF-8) file"),
    Case("reconstruction-config-folder", "run.py", lambda w: w.reconstruct(config=w.config_folder), 2, "is a folder"),
    Case("train-config-folder", "run.py", lambda w: w.train(config=w.config_folder), 2, "is a folder"),
    Case("animate-checkpoint-bare-tensor", "run.py",
         lambda w: w.animate()[:4] + ["--checkpoint", w.bare_tensor] + w.animate()[6:], 2, "not a checkpoint"),
    Case("reconstruction-checkpoint-bare-tensor", "run.py",
         lambda w: w.reconstruct()[:4] + ["--checkpoint", w.bare_tensor] + w.reconstruct()[6:], 2, "not a checkpoint"),
    Case("train-checkpoint-bare-tensor", "run.py", lambda w: w.train("--checkpoint", w.bare_tensor), 2,
         "not a checkpoint"),
    Case("animate-checkpoint-not-state-dicts", "run.py",
         lambda w: w.animate()[:4] + ["--checkpoint", w.not_state_dicts] + w.animate()[6:], 2,
         "not a state dict of tensors"),
    # (the run folder with its config copy is made before the networks load: allowed to stay)
    Case("train-checkpoint-not-state-dicts", "run.py", lambda w: w.train("--checkpoint", w.not_state_dicts), 2,
         "not a state dict of tensors", absent=()),
    # Nonsense numbers: refused at parsing / loading with the allowed range.
    Case("animate-num_pairs-0", "run.py", lambda w: w.animate("--num_pairs", "0"), 2, "at least 1"),
    Case("animate-num_pairs-negative", "run.py", lambda w: w.animate("--num_pairs", "-1"), 2, "at least 1"),
    Case("animate-fps-0", "run.py", lambda w: w.animate("--fps", "0"), 2, "greater than 0"),
    Case("animate-batch_frames-0", "run.py", lambda w: w.animate("--batch_frames", "0"), 2, "at least 1"),
    Case("reconstruction-num_videos-0", "run.py", lambda w: w.reconstruct("--num_videos", "0"), 2, "at least 1"),
    Case("reconstruction-num_videos-negative", "run.py", lambda w: w.reconstruct("--num_videos", "-2"), 2,
         "at least 1"),
    Case("reconstruction-fps-nan", "run.py", lambda w: w.reconstruct("--fps", "nan"), 2, "finite"),
    Case("animate-config-fps-0", "run.py",
         lambda w: w.animate(config=w.config_with("fps0.yaml", "animate_params", "fps", 0)), 2, "greater than 0"),
    Case("train-batch_size-0", "run.py",
         lambda w: w.train(config=w.config_with("b0.yaml", "train_params", "batch_size", 0, w.train_config)), 2,
         "at least 1"),
    Case("train-num_epochs-negative", "run.py",
         lambda w: w.train(config=w.config_with("e.yaml", "train_params", "num_epochs", -3, w.train_config)), 2,
         "at least 0"),
    Case("train-frame_shape-0", "run.py",
         lambda w: w.train(config=w.config_with("fs.yaml", "dataset_params", "frame_shape", [0, 64, 3],
                                                w.train_config)), 2, "frame_shape"),
    Case("preprocess-upsample-negative", "preprocess", lambda w: w.preprocess("--upsample", "-1"), 2,
         "between 0 and 4", subprocess=True),
    Case("preprocess-margin-negative", "preprocess", lambda w: w.preprocess("--margin", "-0.6"), 2, "between 0 and 2"),
    Case("preprocess-workers-0", "preprocess", lambda w: w.preprocess("--workers", "0"), 2, "at least 1"),
    Case("preprocess-trim-onset-not-a-number", "preprocess",
         lambda w: w.preprocess("--annotations", w.sheet, "--trim"), 2, "'first', not a frame number"),
    Case("kpmaker-upsample-negative", "kpmaker", lambda w: w.kpmaker("--upsample", "-1"), 2, "between 0 and 4",
         subprocess=True),
    Case("kpmaker-workers-0", "kpmaker", lambda w: w.kpmaker("--workers", "0"), 2, "at least 1"),
    Case("demo.py-fps-0", "demo.py", lambda w: w.demo("--fps", "0"), 2, "greater than 0"),
    Case("demo.py-batch_frames-0", "demo.py", lambda w: w.demo("--batch_frames", "0"), 2, "at least 1"),
    Case("demo.py-margin-negative", "demo.py", lambda w: w.demo("--crop", "--margin", "-0.6"), 2, "between 0 and 2",
         subprocess=True),
    Case("demo-workers-0", "demo", lambda w: ["--quick", "--workers", "0", "--out", w.case / "out"], 2, "at least 1"),
    Case("demo-epochs-0", "demo", lambda w: ["--quick", "--epochs", "0", "--out", w.case / "out"], 2, "at least 1"),
]


# ------------------------------------------------------------------------------------------ the runner

@pytest.fixture(scope="module")
def world(tmp_path_factory, face_dataset, real_frames):  # noqa: F811 (fixtures)
    base = tmp_path_factory.getbasetemp()
    split = build_test_split(base / "animation_split")
    checkpoint = tiny_checkpoint(base / "tiny_checkpoint")
    raw = tmp_path_factory.mktemp("raw")
    clip = raw / "clip1"
    clip.mkdir()
    for index, frame in enumerate(real_frames[:3]):
        Image.fromarray(frame).save(clip / f"img{index + 1}.png")
    return World(tmp_path_factory.mktemp("world"), split, checkpoint, face_dataset, raw)


def _call(case, argv, capsys):
    """(exit code, stderr text) of the tool, in this process or as a command line."""
    argv = [str(a) for a in argv]
    if case.subprocess:
        result = subprocess.run([sys.executable, SCRIPTS[case.tool], *argv], cwd=ROOT, capture_output=True,
                                text=True, timeout=300)
        return result.returncode, result.stderr
    try:
        code = MAINS[case.tool](argv)
    except SystemExit as stop:   # argparse
        code = stop.code
    return code, capsys.readouterr().err


def _temporaries(folder):
    return [str(p) for p in Path(folder).rglob("*") if any(p.name.startswith(m) for m in TEMPORARY_MARKS)]


def error_lines(tool, stderr):
    """The error lines of ``tool``: '<tool>: error:' (argparse: '<script>: error:'), '<tool>: failed:'."""
    names = {tool, SCRIPTS[tool], os.path.basename(SCRIPTS[tool]), os.path.basename(sys.argv[0])}   # in-process argparse names itself after argv[0]
    starts = tuple(f"{name}: {kind}:" for name in names for kind in ("error", "failed", "training failed"))
    return [line for line in stderr.splitlines() if line.startswith(starts)]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input(case, world, tmp_path, monkeypatch, capsys):
    world.case = tmp_path
    if case.fault is not None:
        case.fault(monkeypatch, world)
    before = sorted(p.name for p in world.split.rglob("*"))
    code, stderr = _call(case, case.argv(world), capsys)
    lines = error_lines(case.tool, stderr)
    assert "Traceback" not in stderr, stderr
    assert code == case.code, stderr
    assert len(lines) == 1 and case.needle in lines[0], stderr
    assert not _temporaries(tmp_path), _temporaries(tmp_path)
    for name in case.absent:
        assert not (tmp_path / name).exists(), f"{name} written by a refused run"
    assert sorted(p.name for p in world.split.rglob("*")) == before     # inputs untouched


def test_the_table_covers_every_tool_and_class():
    tools = {case.tool for case in CASES}
    assert tools >= set(MAINS), set(MAINS) - tools
    for words in ("under-file", "unwritable", "disk-full", "not-utf8", "bare-tensor", "not-state-dicts"):
        assert any(words in case.id for case in CASES), words


def test_empty_target_folder_is_warned_not_dropped_silently(tmp_path, caplog):
    from pairs import default_pairs

    for name, count in (("clip", 2), ("face", 1), ("empty_face", 0)):
        folder = tmp_path / "test" / name
        folder.mkdir(parents=True)
        for index in range(count):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / f"{index}.png")
    assert [p.name for p in default_pairs(tmp_path / "test")] == ["clip-face"]
    assert "empty_face" in caplog.text and "left out of the pairs" in caplog.text


# ------------------------------------------------------------------------------------------ interruptions

def _animate_command(world, out, *more):
    return [sys.executable, "run.py", "--mode", "animate", "--config", str(world.animate_config), "--checkpoint",
            str(world.checkpoint), "--cpu", "--out", str(out), "--batch_frames", "1", *more]


def _finished(out):
    from outputs import is_finished, pair_outputs

    return {target: is_finished(pair_outputs(str(out), f"{CLIP}-{target}")) for target in TARGETS}


def test_sigkill_then_rerun_finishes_only_the_missing_pairs(world, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(_animate_command(world, out), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:   # kill once the first pair is written, while the second is in progress
        if "[1/2]" in line and "frames" in line:
            break
    process.kill()
    process.wait(timeout=60)
    finished = _finished(out)
    assert finished[TARGETS[0]], "the first pair was reported written"
    stamps = {target: (out / f"{CLIP}-{target}").stat().st_mtime_ns for target, done in finished.items() if done}
    (out / ".tmp-left-by-a-kill.mp4").write_bytes(b"partial")          # as a kill mid-write leaves them
    rerun = subprocess.run(_animate_command(world, out), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert all(_finished(out).values()) and not _temporaries(out)
    for target, stamp in stamps.items():     # finished pairs were kept, not redone
        assert (out / f"{CLIP}-{target}").stat().st_mtime_ns == stamp
        assert f"{CLIP}-{target}: finished earlier, kept" in rerun.stderr
    redone = [t for t, done in finished.items() if not done]
    assert f"pairs written: {len(redone)}, finished earlier (kept): {len(stamps)}, failed: 0" in rerun.stderr


def test_sigterm_stops_like_ctrl_c_and_keeps_finished_pairs(world, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(_animate_command(world, out), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "[1/2]" in line and "frames" in line:
            break
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    code = process.wait(timeout=120)
    if code == 0:    # the second pair finished before the signal arrived: nothing was left to stop
        pytest.skip("the run finished before SIGTERM arrived")
    assert code == 143, rest
    assert "interrupted (SIGTERM)" in rest and "Traceback" not in rest
    assert _finished(out)[TARGETS[0]] and not _temporaries(out)


def test_one_unreadable_clip_fails_that_pair_and_the_others_go_on(world, tmp_path, capsys, caplog):
    import shutil

    split = tmp_path / "data"
    shutil.copytree(world.split, split)
    broken = split / "test" / TARGETS[1] / f"{TARGETS[1]}.png"
    broken.write_bytes(broken.read_bytes()[:64])                     # a truncated target face
    config = tiny_config(split)
    config["dataset_params"]["pairs_list"] = str(world.split.parent / "pairs.csv")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    code = run.main(["--mode", "animate", "--config", str(path), "--checkpoint", str(world.checkpoint), "--cpu",
                     "--out", str(tmp_path / "out")])
    assert code == 1
    assert _finished(tmp_path / "out") == {TARGETS[0]: True, TARGETS[1]: False}
    assert f"FAILED {CLIP}-{TARGETS[1]}" in caplog.text and str(broken) in caplog.text
    assert "pairs written: 1, finished earlier (kept): 0, failed: 1" in caplog.text
    assert not _temporaries(tmp_path / "out")


def test_outputs_follow_the_umask(world, tmp_path):
    import checkpoint as ckpt
    from video_io import FrameFolderWriter, VideoWriter

    previous = os.umask(0o022)
    try:
        import fileio

        original = fileio.UMASK
        fileio.UMASK = 0o022
        ckpt.write_atomically({"a": torch.zeros(1)}, tmp_path / "c.pth.tar")
        with VideoWriter(str(tmp_path / "v.mp4"), 10) as video:
            video.write(np.zeros((8, 8, 3), np.uint8))
        with FrameFolderWriter(str(tmp_path / "frames")) as frames:
            frames.write(np.zeros((8, 8, 3), np.uint8), "a.png")
    finally:
        fileio.UMASK = original
        os.umask(previous)
    assert (tmp_path / "c.pth.tar").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "v.mp4").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "frames").stat().st_mode & 0o777 == 0o755


def test_exif_orientation_is_honoured(tmp_path):
    from frame_io import image_size, read_rgb

    picture = np.zeros((20, 40, 3), np.uint8)
    picture[:4] = 255                                 # a white band along the top as stored
    image = Image.fromarray(picture)
    exif = image.getexif()
    exif[0x0112] = 6                                  # "rotate 90° clockwise to view"
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = read_rgb(tmp_path / "phone.jpg")
    assert upright.shape == (40, 20, 3) and image_size(tmp_path / "phone.jpg") == (40, 20)
    assert upright[:, -4:].mean() > 200 and upright[:, :4].mean() < 50   # the band is now on the right


def test_demo_of_other_settings_is_kept_not_deleted(tmp_path, capsys):
    out = tmp_path / "demo_output"
    (out / ".stages").mkdir(parents=True)
    (out / ".stages" / "plan.json").write_text(demo_pipeline.Plan().signature())     # a full demo
    trained = out / "log" / "fp-fomm" / "run" / "00000007-checkpoint.pth.tar"
    trained.parent.mkdir(parents=True)
    trained.write_bytes(b"fifteen minutes of training")
    assert demo_pipeline.main(["--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "--out" in err and "demo_output-quick" in err and "--fresh" in err
    assert trained.read_bytes() == b"fifteen minutes of training"


def test_disk_full_words_from_torch_and_ffmpeg():
    from fileio import is_disk_full

    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"))
    assert is_disk_full(OSError("[Errno 32] Broken pipe\n\nFFMPEG: av_interleaved_write_frame(): No space left on device"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(RuntimeError("size mismatch"))


def test_help_groups_flags_by_mode():
    text = run.build_parser().format_help()
    for title in ("common options", "train and train_avd options", "animate and reconstruction options",
                  "animate options", "reconstruction options"):
        assert f"\n{title}:" in text
    shared = text.split("animate and reconstruction options:")[1].split("reconstruction options:")[0]
    assert "--out" in shared and "--fps" in shared and "--num_pairs" not in shared
