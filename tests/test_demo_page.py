"""`make demo` end to end (quick plan), and its page opened in headless Chromium through WebDriver."""
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import demo_pipeline

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


KILLED_IN = "train-fp-fomm …"   # the demo is SIGKILLed a few seconds into this stage (issue 18)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The quick demo, made the hard way: killed (SIGKILL, the whole process group: training too) in
    the middle of training, then run again, which must finish from the stages already done."""
    out = tmp_path_factory.mktemp("demo") / "demo_output"
    argv = ["--quick", "--out", str(out), "--workers", "1", "--device", "cpu"]
    first = subprocess.Popen([sys.executable, "demo_pipeline.py", *argv], cwd=Path(demo_pipeline.__file__).parent,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    for line in first.stdout:
        if KILLED_IN in line:
            time.sleep(3)
            break
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    assert (out / ".stages" / "prepare.done").is_file(), "the kill came before the stages it should leave done"
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        assert demo_pipeline.main(argv) == 0
    DEMO_RERUN["log"] = log.getvalue()
    return out


DEMO_RERUN = {}


def test_demo_killed_mid_training_finishes_on_the_rerun(demo):
    for stage in ("raw", "prepare", "micro"):
        assert f"{stage}: done earlier, skipped" in DEMO_RERUN["log"]
    assert "train-fp-fomm …" in DEMO_RERUN["log"]     # the killed stage was done again, not skipped
    assert not list(demo.rglob(".tmp-*")) and not list(demo.rglob(".partial-*"))


def ensure_chromium():
    """Debian's chromium and chromium-driver, installed here when missing (CI machines start without)."""
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "chromium is not installed and apt-get cannot install it here (needs root and apt-get)"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]):
        try:
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            return f"'{' '.join(command)}' timed out"
        if result.returncode != 0:
            return f"'{' '.join(command)}' failed: {result.stderr.strip().splitlines()[-1:] or result.returncode}"
    return None if os.path.exists(CHROMEDRIVER) else "chromium-driver installed no chromedriver"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriver:
    """The few W3C WebDriver calls the test needs, over HTTP to a local chromedriver."""

    def __init__(self, profile):
        self.port = free_port()
        self.process = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                self.call("GET", "/status")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--allow-file-access-from-files"]
        capabilities = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}}
        self.session = self.call("POST", "/session", capabilities)["sessionId"]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())["value"]

    def open(self, url):
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def run(self, script):
        return self.call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": []})

    def close(self):
        try:
            self.call("DELETE", f"/session/{self.session}")
        finally:
            self.process.terminate()
            self.process.wait(timeout=30)


MEDIA_STATE = """
return Array.from(document.querySelectorAll('img, video')).map(e => ({
  src: e.currentSrc || e.src, tag: e.tagName,
  loaded: e.tagName === 'IMG' ? (e.complete && e.naturalWidth > 0) : e.readyState >= 2}));
"""
METRIC_ROWS = """
return Array.from(document.querySelectorAll('table.metrics')).map(t =>
  Array.from(t.querySelectorAll('tr')).slice(1).map(r => r.querySelector('th').textContent));
"""


def test_demo_page_loads_every_media_and_lists_every_method(demo, tmp_path):
    page = demo / "index.html"
    assert page.is_file()
    reason = ensure_chromium()
    if reason:
        pytest.skip(f"headless Chromium unavailable: {reason}")
    driver = WebDriver(tmp_path / "profile")
    try:
        driver.open(page.resolve().as_uri())
        for _ in range(100):
            if driver.run("return document.readyState") == "complete":
                break
            time.sleep(0.1)
        media = driver.run(MEDIA_STATE)
        tables = driver.run(METRIC_ROWS)
    finally:
        driver.close()
    pairs = (demo / "data_test.csv").read_text().strip().splitlines()[1:]
    shown = shown_methods(demo)
    # Per pair: the driving clip, the target with its prior, and one clip per method.
    assert len(media) >= len(pairs) * (2 + len(shown))
    assert [m["src"] for m in media if not m["loaded"]] == []
    labels = list(demo_pipeline.method_labels(shown).values())
    assert tables == [labels, labels]  # reconstruction and animation tables, a row per method


def shown_methods(demo):
    """The methods the page shows: the short FP-FOMM trained by the run, shipped models, copy-the-target."""
    shown = json.loads((demo / "methods.json").read_text())
    assert shown[0] == demo_pipeline.SHORT and shown[-1] == demo_pipeline.COPY
    assert set(demo_pipeline.QUICK_METHODS) <= set(shown)   # --quick: these shipped checkpoints
    return shown


def test_demo_outputs_follow_the_megc_form(demo):
    pairs = (demo / "data_test.csv").read_text().strip().splitlines()
    assert pairs[0] == "distance,source,driving,frame"
    for line in pairs[1:]:
        _, target, driving, _ = line.split(",")
        for method in (demo_pipeline.SHORT, *demo_pipeline.QUICK_METHODS):
            generated = demo / "results" / method / "animation" / f"{driving}-{target}"
            real = demo / "data" / "test" / driving
            assert sorted(p.name for p in generated.iterdir()) == sorted(p.name for p in real.iterdir())
    for method in shown_methods(demo):
        summary = json.loads((demo / "results" / method / "scores-reconstruction" /
                              "reconstruction_metrics.json").read_text())["summary"]
        assert summary["l1"] is not None and 0 <= summary["l1"] < 1


def test_rerun_reuses_finished_stages(demo, capsys):
    assert demo_pipeline.main(["--quick", "--out", str(demo), "--workers", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for stage in ("raw", "prepare", "micro", "aus", "train-fp-fomm", "copy-target"):
        assert f"{stage}: done earlier, skipped" in out
    for method in shown_methods(demo):   # every method's animation, reconstruction and scores are reused
        for kind in ("animate", "reconstruct", "evaluate"):
            if kind != "evaluate" and method == demo_pipeline.COPY:
                continue
            assert any(line.startswith(f"{kind}-{method}-") and line.endswith(": done earlier, skipped")
                       for line in (l.split("] ", 1)[-1] for l in out.splitlines())), (kind, method)


def test_micro_window_on_a_known_trajectory():
    import numpy as np

    landmarks = np.zeros((20, 68, 2))
    landmarks[:, 36:42, 0] = 0.0  # right eye centre at x 0, left eye at x 10: inter-ocular distance 10
    landmarks[:, 42:48, 0] = 10.0
    moves = np.array([0, 0, 0, 0, 0.1, 0.3, 0.6, 0.9, 1.2, 2.0] + [3.0] * 10)  # pixels, all landmarks
    landmarks[..., 1] += moves[:, None]
    start, end = demo_pipeline.micro_window(landmarks, np.ones(20, bool))
    # Onset at frame 5 (0.03 IOD ≥ 0.02): starts two frames before; ends with the first frame ≥ 0.1 IOD (8).
    assert (start, end) == (3, 9)
    assert demo_pipeline.micro_window(landmarks, np.r_[False, np.ones(19, bool)]) is None


def test_parallel_commands_fill_a_freed_slot_at_once():
    """Two slots, one long command first: the short ones run beside it and end before it; a failing
    command is named after the others have finished, and only the successful ones are reported."""
    long, short = ("-c", "import time; time.sleep(2.5)"), ("-c", "import time; time.sleep(0.2)")
    ended = []
    begin = time.time()
    demo_pipeline.python_parallel([long, short, short, short], jobs=2, finished=ended.append)
    assert ended == [1, 2, 3, 0] and time.time() - begin < 3.5   # FIFO waiting would not reorder them
    ended.clear()
    with pytest.raises(demo_pipeline.StageError, match="exit 3"):
        demo_pipeline.python_parallel([short, ("-c", "raise SystemExit(3)"), short], jobs=2, finished=ended.append)
    assert sorted(ended) == [0, 2]
