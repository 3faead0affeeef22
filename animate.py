"""Animation of the test pairs (``run.py --mode animate``): each target face performs each driving clip.

Per pair, named ``<driving>-<target>`` in the output folder (default ``<checkpoint folder>/animation``):

    <name>/                 PNG frames, same count and names as the driving clip (the MEGC submission form)
    <name>.mp4, <name>.gif  the generated clip at ``fps`` (default 25: ME clips are 100–200 fps slow motion)
    png/<name>.png          strip: driving frames over generated frames, up to ``strip_frames`` columns
    side_by_side/<name><format>   driving | target | generated, for looking at

The target face is encoded once per pair and the driving frames stream through in batches; nothing
holds a whole clip. Existing outputs are never replaced unless ``--overwrite`` is given.
"""
import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import inference
from clip_priors import LazyLandmarker, PriorSource
from frame_io import clip_folders, list_frames
from inference import AnimationError, Normalization
from video_io import FrameFolderWriter, StripWriter, VideoWriter, read_image, resize_frame, side_by_side, strip_indices

SIDE_FORMATS = (".mp4", ".gif")


@dataclass(frozen=True)
class Pair:
    driving: str
    target: str

    @property
    def name(self):
        return f"{self.driving}-{self.target}"


def add_cli_arguments(parser):
    """Flags of animate (run.py adds --config, --mode, --checkpoint, --device, …)."""
    inference.add_run_arguments(parser)
    _add = inference.add_argument_once
    _add(parser, "--num_pairs", type=int, default=None, help="animate only the first N pairs (default: config's num_pairs, else all)")
    _add(parser, "--grayscale", choices=("auto", "gray", "color"), default=None,
         help="gray output: auto (default) = when the model has one channel or target and driving clip are gray")


def read_pairs(path):
    """Pairs from a CSV with columns source (target face folder) and driving (clip folder); the
    published distance and frame columns are accepted and not used. → [Pair]."""
    if not os.path.isfile(path):
        raise AnimationError(f"{path}: pairs file not found (dataset_params.pairs_list)")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"source", "driving"} - set(reader.fieldnames or ())
        if missing:
            raise AnimationError(f"{path}: pairs file needs the columns source and driving "
                                 f"(missing {', '.join(sorted(missing))})")
        return [Pair(row["driving"].strip(), row["source"].strip()) for row in reader
                if row["driving"] and row["source"]]


def default_pairs(test_dir):
    """Without a pairs list: every clip (folders of ≥ 2 frames) × every target face (folders of one image)."""
    clips, faces = [], []
    for folder in clip_folders(test_dir):
        count = len(list_frames(folder))
        (faces if count == 1 else clips if count > 1 else []).append(folder.name)
    return [Pair(clip, face) for face in faces for clip in clips]


def pair_outputs(out_dir, name, side_format=".mp4"):
    """Every path written for one pair. → {'frames', 'mp4', 'gif', 'strip', 'side_by_side'}."""
    return {"frames": os.path.join(out_dir, name),
            "mp4": os.path.join(out_dir, name + ".mp4"),
            "gif": os.path.join(out_dir, name + ".gif"),
            "strip": os.path.join(out_dir, "png", name + ".png"),
            "side_by_side": os.path.join(out_dir, "side_by_side", name + side_format)}


def existing_outputs(out_dir, names, side_format=".mp4"):
    return [p for name in names for p in pair_outputs(out_dir, name, side_format).values() if os.path.exists(p)]


def refuse_overwrite(existing, what="outputs"):
    if existing:
        shown = ", ".join(existing[:3]) + (f", … ({len(existing)} in all)" if len(existing) > 3 else "")
        raise AnimationError(f"{what} exist already ({shown}); pass --overwrite to replace them or --out DIR")


def decide_gray(setting, num_channels, checkpoint, target, driving_first):
    """Gray output? 'gray'/'color' force it; 'auto': a one-channel model, a checkpoint that records
    gray training data, or a target and driving clip that are both gray."""
    if setting in ("gray", "color"):
        return setting == "gray"
    if num_channels == 1 or bool((checkpoint or {}).get("grayscale", False)):
        return True
    return inference.is_gray(target) and inference.is_gray(driving_first)


def write_pair(animator, source, target, driving, num_frames, kp_initial, normalization, outputs, fps,
               gray=False, strip_frames=12):
    """Generate one pair and write all its outputs, streaming. ``driving``: iterable of
    (name, frame (H, W, 3) uint8 at the model's size, prior (18, 2) or None). Returns the frame count.
    Nothing is published unless every output is complete."""
    writers = {"frames": FrameFolderWriter(outputs["frames"]),
               "mp4": VideoWriter(outputs["mp4"], fps),
               "gif": VideoWriter(outputs["gif"], fps),
               "strip": StripWriter(outputs["strip"], strip_indices(num_frames, strip_frames), rows=2),
               "side_by_side": VideoWriter(outputs["side_by_side"], fps)}
    try:
        count = 0
        for index, (name, driving_frame, generated) in enumerate(
                inference.animate_frames(animator, source, driving, kp_initial, normalization, gray)):
            writers["frames"].write(generated, name)
            writers["mp4"].write(generated)
            writers["gif"].write(generated)
            writers["strip"].write(index, driving_frame, generated)
            writers["side_by_side"].write(side_by_side(driving_frame, target, generated))
            count += 1
        for writer in writers.values():
            writer.close()
        return count
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise


def _target_image(test_dir, face):
    files = list_frames(os.path.join(test_dir, face))
    if not files:
        raise AnimationError(f"{os.path.join(test_dir, face)}: no target face image in this folder")
    return files[0]


def check_pairs(test_dir, pairs):
    """Every clip and face folder of the pairs exists. Raises one AnimationError listing what is missing."""
    missing = sorted({p for pair in pairs for p in (pair.driving, pair.target)
                      if not os.path.isdir(os.path.join(test_dir, p))})
    if missing:
        shown = ", ".join(missing[:5]) + (f", … ({len(missing)} in all)" if len(missing) > 5 else "")
        raise AnimationError(f"{test_dir}: no folder for {shown} named in the pairs; preprocess the test set first")


def animate_dataset(config, checkpoint_path, out_dir=None, device="cpu", precision="fp32", compile=False,
                    batch_frames=None, fps=None, overwrite=False, pairs=None, num_pairs=None, grayscale=None,
                    log=print, landmarker=None):
    """Animate the pairs of ``config`` (pairs_list, else every clip × every target face of test/).

    Returns a list of {'pair', 'frames', 'outputs': {...paths}} in order. Raises AnimationError,
    CheckpointError, PriorError or MediaError with one-line messages.
    """
    dataset = config["dataset_params"]
    params = config.get("animate_params") or {}
    test_dir = os.path.join(dataset["root_dir"], "test")
    if not os.path.isdir(test_dir):
        raise AnimationError(f"{test_dir}: no test split (dataset_params.root_dir/test)")
    if pairs is None:
        pairs = read_pairs(dataset["pairs_list"]) if dataset.get("pairs_list") else default_pairs(test_dir)
    num_pairs = num_pairs if num_pairs is not None else params.get("num_pairs")
    pairs = pairs[:num_pairs] if num_pairs else pairs
    if not pairs:
        raise AnimationError(f"{test_dir}: no pairs to animate (no clips or no target faces)")
    check_pairs(test_dir, pairs)
    side_format = params.get("format", ".mp4")
    if side_format not in SIDE_FORMATS:
        raise AnimationError(f"animate_params.format must be one of {', '.join(SIDE_FORMATS)}, got {side_format!r}")
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), "animation")
    if not overwrite:
        refuse_overwrite(existing_outputs(out_dir, [p.name for p in pairs], side_format),
                         f"animation outputs in {out_dir}")
    fps = fps or params.get("fps", 25)
    session = Session.open(config, checkpoint_path, device, precision, compile, batch_frames, grayscale, landmarker)
    normalization = Normalization.from_config(config)
    results = []
    for number, pair in enumerate(pairs, 1):
        job = session.prepare(pair.target, _target_image(test_dir, pair.target), pair.driving,
                              list_frames(os.path.join(test_dir, pair.driving)))
        outputs = pair_outputs(out_dir, pair.name, side_format)
        count = write_pair(session.animator, job.source, job.target, job.driving(), job.num_frames,
                           job.kp_initial, normalization, outputs, fps, job.gray, params.get("strip_frames", 12))
        job.warn_fallbacks()
        log(f"[{number}/{len(pairs)}] {pair.name}: {count} frames → {outputs['frames']}")
        results.append({"pair": pair.name, "frames": count, "outputs": outputs})
    return results


@dataclass
class Job:
    """One target face encoded and one driving clip ready to stream."""
    source: object
    target: np.ndarray          # (H, W, 3) uint8 at the model's size
    kp_initial: dict
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
    """Networks, animator and prior source of one run over a dataset's test split."""
    animator: inference.Animator
    checkpoint: dict
    priors: PriorSource
    frame_size: tuple
    grayscale: str

    @classmethod
    def open(cls, config, checkpoint_path, device="cpu", precision="fp32", compile=False, batch_frames=None,
             grayscale=None, landmarker=None):
        dataset = config["dataset_params"]
        params = config.get("animate_params") or {}
        kp_detector, generator, checkpoint = inference.load_animation_networks(config, checkpoint_path, device)
        animator = inference.Animator(kp_detector, generator, device, precision, compile,
                                      batch_frames or params.get("batch_frames", 8))
        frame_size = tuple(dataset["frame_shape"][:2])
        keypoint_dir = dataset.get("keypoint_dir") or os.path.join(dataset["root_dir"], "keypoints")
        priors = PriorSource(keypoint_dir, frame_size, dataset.get("prior_mode", "first_frame"),
                             dataset.get("strict_prior", False), LazyLandmarker(landmarker))
        return cls(animator, checkpoint, priors, frame_size, grayscale or params.get("grayscale", "auto"))

    def prepare(self, target_name, target_file, clip, files):
        """Encode the target face (an image file) and the clip's reference frame (its first). → Job."""
        if not files:
            raise AnimationError(f"{clip}: driving clip has no frames")
        target_raw = read_image(target_file)
        target = resize_frame(target_raw, self.frame_size)
        first_raw = read_image(files[0])
        first = resize_frame(first_raw, self.frame_size)
        gray = decide_gray(self.grayscale, self.animator.num_channels, self.checkpoint, target, first)
        target_prior = first_prior = None
        tracks = ()
        if self.animator.uses_prior:
            driving_track = self.priors.track(clip, files, first_raw.shape[:2])
            if target_name == clip and Path(target_file) == Path(files[0]):
                # Reconstruction: the target is the clip's own first frame, whose prior is in the clip's file.
                target_track = driving_track
            else:
                target_track = self.priors.track(target_name, [target_file], target_raw.shape[:2])
            tracks = (target_track, driving_track)
            target_prior = tracks[0](0, target_raw)
            first_prior = tracks[1](0, first_raw)
        source = self.animator.encode_source(target, target_prior, gray)
        kp_initial = inference.reference_keypoints(self.animator, first, first_prior, gray)
        return Job(source, target, kp_initial, list(files), self.frame_size, gray, tracks)


def run(config, args):
    """run.py --mode animate."""
    if not getattr(args, "checkpoint", None):
        raise AnimationError("animate needs --checkpoint (the trained model to animate with)")
    import logging

    from runtime import select_device

    return animate_dataset(config, args.checkpoint, out_dir=args.out, device=select_device(args.device),
                           precision=args.precision, compile=args.compile, batch_frames=args.batch_frames,
                           fps=args.fps, overwrite=args.overwrite, num_pairs=args.num_pairs,
                           grayscale=args.grayscale, log=logging.getLogger("fpfomm").info)
