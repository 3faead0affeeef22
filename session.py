"""A method's animation driver opened over a dataset's test split: target faces and driving clips
read, resized and given their facial priors (kpmaker files, else dlib on the fly), ready to stream.

Used by animate.py and reconstruction.py (and the same gray rule by demo.py):

    session = Session.open(config, checkpoint_path, device)
    job = session.prepare(target_name, target_file, clip_name, clip_files, normalization)
    for name, driving, generated in inference.stream(session.driver, job.pair, job.driving(), job.gray): ...
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import inference
from clip_priors import LazyLandmarker, PriorSource
from inference import ABSOLUTE, AnimationError
from video_io import read_image, resize_frame


def decide_gray(setting, num_channels, checkpoint, target, driving_first):
    """Gray output? 'gray'/'color' force it; 'auto': a one-channel model, a checkpoint that records
    gray training data, or a target and driving clip that are both gray."""
    if setting in ("gray", "color"):
        return setting == "gray"
    if num_channels == 1 or bool((checkpoint or {}).get("grayscale", False)):
        return True
    return inference.is_gray(target) and inference.is_gray(driving_first)


@dataclass
class Job:
    """One target face encoded and one driving clip ready to stream."""
    pair: object                # what the driver's start() returned
    target: np.ndarray          # (H, W, 3) uint8 at the model's size
    files: list
    frame_size: tuple
    gray: bool
    tracks: tuple               # PriorTracks (target, driving) or ()

    @property
    def num_frames(self):
        return len(self.files)

    def driving(self):
        """(name, frame at the model's size, prior or None) for every driving frame, read lazily."""
        prior_of = self.tracks[1] if self.tracks else None
        for index, path in enumerate(self.files):
            raw = read_image(path)
            yield path.name, resize_frame(raw, self.frame_size), (prior_of(index, raw) if prior_of else None)

    def warn_fallbacks(self):
        for track in self.tracks:
            inference.warn_fallback(track.clip, track.fallbacks)


@dataclass
class Session:
    """Driver, checkpoint and prior source of one run over a dataset's test split."""
    driver: object
    checkpoint: dict
    priors: PriorSource
    frame_size: tuple
    grayscale: str

    @classmethod
    def open(cls, config, checkpoint_path, device="cpu", precision="fp32", compile=False, batch_frames=None,
             grayscale=None, landmarker=None):
        dataset = config["dataset_params"]
        driver, checkpoint = inference.open_driver(config, checkpoint_path, device, precision, compile, batch_frames)
        frame_size = tuple(dataset["frame_shape"][:2])
        priors = PriorSource.from_config(dataset, LazyLandmarker(landmarker))
        return cls(driver, checkpoint, priors, frame_size, grayscale or config["animate_params"]["grayscale"])

    def prepare(self, target_name, target_file, clip, files, normalization=ABSOLUTE):
        """Encode the target face (an image file) and take the clip's reference frame (its first). → Job."""
        if not files:
            raise AnimationError(f"{clip}: driving clip has no frames")
        target_raw = read_image(target_file)
        target = resize_frame(target_raw, self.frame_size)
        first_raw = read_image(files[0])
        first = resize_frame(first_raw, self.frame_size)
        gray = decide_gray(self.grayscale, self.driver.num_channels, self.checkpoint, target, first)
        target_prior = first_prior = None
        tracks = ()
        if self.driver.uses_prior:
            driving_track = self.priors.track(clip, files, first_raw.shape[:2])
            if target_name == clip and Path(target_file) == Path(files[0]):
                # Reconstruction: the target is the clip's own first frame, whose prior is in the clip's file.
                target_track = driving_track
            else:
                target_track = self.priors.track(target_name, [target_file], target_raw.shape[:2])
            tracks = (target_track, driving_track)
            target_prior = tracks[0](0, target_raw)
            first_prior = tracks[1](0, first_raw)
        pair = self.driver.start(target, first, target_prior=target_prior, first_prior=first_prior,
                                 normalization=normalization, gray=gray, clip=clip, target_name=target_name,
                                 num_frames=len(files))
        return Job(pair, target, list(files), self.frame_size, gray, tracks)
