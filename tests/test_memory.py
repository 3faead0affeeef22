"""Animation streams: memory does not depend on the clip's length (issue 7).

Structural checks, no timing and no RSS thresholds: the driving clip is consumed lazily, at most one
batch ahead of the output; generated frames are not kept once the caller drops them; animate.py's
jobs and video_io read frames only when asked. benchmarks/bench_memory.py measures the peak RSS.
"""
import weakref

import numpy as np
import pytest
import torch

import inference
from configuration import build_networks, load_config

SIZE = 64
BATCH = 4


@pytest.fixture(scope="module")
def animator():
    config = load_config("config/tiny.yaml")
    torch.manual_seed(0)
    kp_detector, generator, _ = build_networks(config["model_params"])
    for module in (kp_detector, generator):
        module.eval().requires_grad_(False)
    return inference.Animator(kp_detector, generator, "cpu", batch_frames=BATCH)


def prior():
    rng = np.random.default_rng(0)
    return (np.full((18, 2), SIZE / 2) + rng.uniform(-SIZE / 4, SIZE / 4, (18, 2))).astype(np.float32)


class CountingClip:
    """A driving clip of ``length`` random frames made on demand; counts how many were taken."""

    def __init__(self, length):
        self.length = length
        self.taken = 0

    def __iter__(self):
        rng = np.random.default_rng(1)
        for index in range(self.length):
            self.taken += 1
            yield str(index), rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), prior()


def stream(animator, clip):
    source = animator.encode_source(np.full((SIZE, SIZE, 3), 128, np.uint8), prior())
    return inference.animate_frames(animator, source, iter(clip), None, inference.ABSOLUTE)


def test_driving_frames_are_taken_at_most_one_batch_ahead(animator):
    clip = CountingClip(3 * BATCH + 1)
    for produced, _ in enumerate(stream(animator, clip), 1):
        assert clip.taken - produced < BATCH
    assert produced == clip.length == clip.taken


def test_generated_frames_are_released_when_the_caller_drops_them(animator):
    clip = CountingClip(4 * BATCH)
    alive = []
    for name, driving, generated in stream(animator, clip):
        # Every yielded frame is a view of its batch's array (or the array itself): follow the owner.
        owner = generated.base if generated.base is not None else generated
        alive.append(weakref.ref(owner))
        del driving, generated, owner
        # The batch being yielded and, at a batch boundary, the next one: never the whole clip.
        assert len({id(ref()) for ref in alive if ref() is not None}) <= 2
    assert len(alive) == clip.length


def test_memory_of_a_stream_does_not_grow_with_length(animator):
    """numpy allocations traced while streaming 2 and 10 batches: the peak is the same."""
    import tracemalloc

    peaks = []
    for batches in (2, 10):
        clip = CountingClip(batches * BATCH)
        tracemalloc.start()
        for _ in stream(animator, clip):
            pass
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # Holding the clip would keep ≥ 32 more frames of 12 KB; allow a few KB of interpreter noise.
    assert peaks[1] - peaks[0] < 64 * 1024


def test_session_job_reads_frames_only_when_asked(monkeypatch, tmp_path):
    import session

    reads = []
    frame = np.zeros((SIZE, SIZE, 3), np.uint8)
    monkeypatch.setattr(session, "read_image", lambda path: reads.append(path) or frame)
    files = [tmp_path / f"img{i}.png" for i in range(50)]
    job = session.Job(pair=None, target=frame, files=files, frame_size=(SIZE, SIZE), gray=False, tracks=())
    driving = job.driving()
    assert reads == []
    next(driving)
    next(driving)
    assert reads == files[:2]


def test_clip_reader_is_lazy(tmp_path, monkeypatch):
    import video_io
    from PIL import Image

    for index in range(20):
        Image.fromarray(np.full((8, 8, 3), index, np.uint8)).save(tmp_path / f"img{index}.png")
    reads = []
    original = video_io.read_image
    monkeypatch.setattr(video_io, "read_image", lambda path: reads.append(path) or original(path))
    frames = video_io.iter_clip(str(tmp_path))
    assert reads == []
    name, first = next(frames)
    assert name == "img0.png" and len(reads) == 1 and first[0, 0, 0] == 0
