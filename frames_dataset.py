"""Clips of PNG frames with their facial prior, as FOMM's FramesDataset/PairedDataset/DatasetRepeater.

Layout: <root>/train/<clip>/<frame>.png, <root>/test/<clip or face>/..., keypoints from
kpmaker.py in <keypoint_dir>/<clip>.npz (default <root>/keypoints).

Train samples are two frames of one clip, each with the clip's prior keypoints (the first frame's for
every frame, or each frame's own: ``prior_mode``):

    {'source': (C, H, W) float32 [0, 1], 'driving': (C, H, W), 'source_prior': (18, 2) float32 pixels,
     'driving_prior': (18, 2), 'name': clip}

Test samples are whole clips: {'video': (C, T, H, W), 'prior': (T, 18, 2), 'name': clip}. Code that must
not hold a whole clip in memory reads frames one at a time with :func:`iter_clip_frames` and the
prior with :func:`read_clip_prior`.

Call :func:`validate_dataset` (``build_dataset`` does) before training: it checks every clip once and
raises one DatasetError listing all problems and what to run, instead of failing mid-epoch.

Published behaviours kept selectable (frame_io.py): ``frame_order: lexicographic`` reads frames in
plain string order as the published reader did; ``prior_frame: lexicographic_first`` takes the
first-frame prior from the name that sorts first, as the published kpmaker did. Keypoint files
imported from the published .pt files (``kpmaker.py --import-published``) hold no landmarks: they
serve ``prior_mode: first_frame`` and are refused for ``per_frame``.
"""
import csv
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from augmentation import Augmentation
from frame_io import FrameError, check_image, clip_folders, image_size, list_frames, prior_reference, read_rgb
from kpmaker import KeypointError, keypoint_path, load_keypoints, published_files_hint
from errors import InputError

PRIOR_MODES = ("first_frame", "per_frame")
TEST_FRACTION = 0.2      # FOMM's split when the root has no train/ and test/ folders


class DatasetError(InputError, RuntimeError):
    """The dataset cannot be used as it is; the message lists the clips and what to run."""


# --------------------------------------------------------------------------- reading one clip

def iter_clip_frames(folder, channels=3, order="natural"):
    """Yield (frame name, (H, W, C) uint8) for every frame of a clip folder in ``order``
    ('natural' | 'lexicographic'), one at a time.

    Gray/RGBA/palette frames come out RGB (``channels=1``: luma). Raises DatasetError naming a bad file.
    """
    for path in list_frames(folder, order):
        yield path.name, _read_frame(path, channels)


def read_clip(folder, channels=3, order="natural"):
    """A whole clip as (T, H, W, C) uint8 in ``order``. Prefer iter_clip_frames for long clips."""
    frames = [frame for _, frame in iter_clip_frames(folder, channels, order)]
    if not frames:
        raise DatasetError(f"{folder}: no frames; remove the folder or re-run preprocess.py")
    _check_same_size(frames, folder)
    return np.stack(frames)


def _read_frame(path, channels=3):
    try:
        image = read_rgb(path)
    except FrameError as error:
        raise DatasetError(f"{error} (then run validate_dataset / kpmaker.py again)") from None
    if channels == 1:
        luma = np.round(image @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)
        return luma[..., None]
    return image


def _check_same_size(frames, folder):
    sizes = {frame.shape[:2] for frame in frames}
    if len(sizes) > 1:
        raise DatasetError(f"{folder}: frames of mixed sizes {sorted(sizes)}; re-run preprocess.py for this clip")


def read_clip_prior(keypoint_dir, clip, mode="first_frame", frame_names=None, strict=False, prior_frame="first"):
    """Prior keypoints of a clip from its kpmaker file. Returns (prior (T, 18, 2) float32 pixels, found (T,) bool),
    in the order of ``frame_names`` (the file's own order when None).

    ``mode`` 'first_frame' repeats the reference frame's prior for every frame (the paper; the reference is
    ``prior_frame``: 'first' of ``frame_names`` or 'lexicographic_first', see frame_io.prior_reference);
    'per_frame' keeps each frame's own (refused for a file without landmarks, i.e. imported from the
    published .pt files). ``frame_names``: the clip's frames now, in reading order (checked against the
    file: a clip changed since kpmaker ran is an error). ``strict``: a used prior that is the no-face
    fallback is an error.
    """
    if mode not in PRIOR_MODES:
        raise ValueError(f"prior mode must be one of {PRIOR_MODES}, got {mode!r}")
    path = keypoint_path(keypoint_dir, clip)
    try:
        data = load_keypoints(path)
    except KeypointError as error:
        raise DatasetError(str(error)) from None
    if mode == "per_frame" and not data["has_landmarks"]:
        raise DatasetError(no_landmarks_message(path))
    names = data["frames"] if frame_names is None else [os.path.basename(str(n)) for n in frame_names]
    if sorted(names) != sorted(data["frames"]):
        raise DatasetError(f"{path}: made for other frames than {clip} now has ({len(data['frames'])} vs "
                           f"{len(names)}); re-run kpmaker.py")
    # The file lists frames in natural order; the reader's order may differ (frame_order).
    position = {name: i for i, name in enumerate(data["frames"])}
    order = [position[name] for name in names]
    prior, found = np.asarray(data["prior"], np.float32)[order], np.asarray(data["found"], bool)[order]
    if mode == "first_frame":
        ref = prior_reference(names, prior_frame)
        prior, found = np.repeat(prior[ref:ref + 1], len(prior), axis=0), np.repeat(found[ref:ref + 1], len(found))
    if strict and not found.all():
        missing = [name for name, f in zip(names, found) if not f]
        raise DatasetError(f"{clip}: no face in {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''} and "
                           "strict_prior is on; fix the frames or turn strict_prior off (fallback template)")
    return prior, found


def no_landmarks_message(path):
    return (f"{path}: imported from the published .pt files (one prior per clip, no landmarks), so it serves "
            "prior_mode: first_frame only; set prior_mode: first_frame, or run python kpmaker.py without "
            "--import-published to measure every frame")


def missing_keypoints_message(keypoint_dir, clips, root):
    """The "no keypoint file" line: the clips, published .pt files seen nearby, the command to run."""
    line = f"no keypoint file in {keypoint_dir} for {len(clips)} clip(s): {_listing(clips)}"
    hint = published_files_hint(keypoint_dir, root)
    return line + (f"; {hint}" if hint else "")


def to_tensor(frames):
    """(…, H, W, C) uint8 → (…, C, H, W) float32 in [0, 1]."""
    # Converted in numpy: the float copy is writable, so a read-only input (a memory-mapped or cached
    # frame array) raises no "non-writable tensor" warning; the same values as .float() on the uint8.
    tensor = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).div_(255)
    return tensor.movedim(-1, -3)


# --------------------------------------------------------------------------- the datasets

class FramesDataset(Dataset):
    """FOMM's FramesDataset for folders of frames, with the facial prior.

    root_dir: holds train/ and test/ (or, FOMM-style, only clip folders, split by ``random_seed``);
    frame_shape: (H, W, C); id_sampling: one item per identity '<id>#…' (FOMM), a random clip of it
    each time; is_train: pairs of frames vs whole clips; pairs_list: kept for PairedDataset;
    augmentation_params: see augmentation.Augmentation (train only); keypoint_dir: kpmaker output
    (None → <root_dir>/keypoints); prior_mode: 'first_frame' | 'per_frame'; strict_prior: a no-face
    fallback prior is an error; use_prior: False for the learned-keypoint baseline (no keypoint files
    needed, no prior in the samples); frame_order: 'natural' | 'lexicographic' (published);
    prior_frame: 'first' | 'lexicographic_first' (published), the frame of a first_frame prior.
    """

    def __init__(self, root_dir, frame_shape=(256, 256, 3), id_sampling=False, is_train=True, random_seed=0,
                 pairs_list=None, augmentation_params=None, keypoint_dir=None, prior_mode="first_frame",
                 strict_prior=False, use_prior=True, frame_order="natural", prior_frame="first"):
        if prior_mode not in PRIOR_MODES:
            raise DatasetError(f"prior_mode must be one of {', '.join(PRIOR_MODES)}, got {prior_mode!r}")
        self.root_dir = Path(root_dir)
        self.frame_shape = tuple(frame_shape)
        self.is_train = is_train
        self.id_sampling = id_sampling
        self.pairs_list = pairs_list
        self.prior_mode = prior_mode
        self.strict_prior = strict_prior
        self.use_prior = use_prior
        self.frame_order, self.prior_frame = frame_order, prior_frame
        self.keypoint_dir = Path(keypoint_dir) if keypoint_dir else self.root_dir / "keypoints"
        self.folders = _split_folders(self.root_dir, is_train, random_seed)
        self.frames = {name: list_frames(folder, frame_order) for name, folder in self.folders.items()}
        self._check_not_empty()
        self.videos = sorted({_identity(n) for n in self.folders}) if id_sampling else list(self.folders)
        self.priors = self._load_priors() if use_prior else {}
        augmentation_params = augmentation_params or {}
        self.transform = Augmentation(**augmentation_params) if is_train and augmentation_params else None

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, idx):
        name = self._pick_clip(idx)
        return self.frame_pair(name) if self.is_train else self.clip_sample(name)

    def _pick_clip(self, idx):
        if not self.id_sampling:
            return self.videos[idx]
        clips = [n for n in self.folders if _identity(n) == self.videos[idx]]
        return clips[torch.randint(len(clips), ()).item()]

    def frame_pair(self, name):
        """Two random frames of clip ``name`` (source before driving in time, before augmentation)."""
        paths = self.frames[name]
        indices = torch.sort(torch.randint(len(paths), (2,))).values.tolist()
        frames = to_tensor(np.stack([self._frame(paths[i]) for i in indices]))
        priors = torch.from_numpy(self.priors[name][0][indices]) if self.use_prior else None
        if self.transform is not None:
            frames, priors = self.transform(frames, priors)
        sample = {"source": frames[0], "driving": frames[1], "name": name}
        if priors is not None:
            sample.update(source_prior=priors[0], driving_prior=priors[1])
        return sample

    def clip_sample(self, name):
        """The whole clip: {'video': (C, T, H, W), 'prior': (T, 18, 2), 'name'}."""
        frames = np.stack([self._frame(path) for path in self.frames[name]])
        sample = {"video": to_tensor(frames).movedim(0, 1), "name": name}
        if self.use_prior:
            sample["prior"] = torch.from_numpy(self.priors[name][0])
        return sample

    def clip_frames(self, name):
        """Lazily (frame name, (H, W, C) uint8) of clip ``name``, in the dataset's frame_order."""
        if name not in self.frames:
            split = "train" if self.is_train else "test"
            raise DatasetError(f"no clip '{name}' in the {split} split of {self.root_dir}")
        for path in self.frames[name]:
            yield path.name, self._frame(path)

    def _frame(self, path):
        frame = _read_frame(path, self.frame_shape[2])
        if frame.shape[:2] != self.frame_shape[:2]:
            raise DatasetError(f"{path}: {frame.shape[1]}×{frame.shape[0]} but frame_shape is "
                               f"{self.frame_shape[1]}×{self.frame_shape[0]}; run validate_dataset and re-run "
                               f"preprocess.py --size {self.frame_shape[0]}")
        return frame

    def _check_not_empty(self):
        if not self.folders:
            split = "train" if self.is_train else "test"
            raise DatasetError(f"no clip folders for the {split} split under {self.root_dir}; run preprocess.py "
                               f"--output {self.root_dir / split}")
        empty = [n for n, frames in self.frames.items() if not frames]
        if empty:
            raise DatasetError(f"clip folders without frames: {_listing(empty)}; remove them or re-run preprocess.py")

    def _load_priors(self):
        """{clip: (prior (T, 18, 2), found (T,))}, all clips at once so that a problem shows before training."""
        priors, missing, problems = {}, [], []
        for name, paths in self.frames.items():
            if not keypoint_path(self.keypoint_dir, name).is_file():
                missing.append(name)
                continue
            try:
                priors[name] = read_clip_prior(self.keypoint_dir, name, self.prior_mode, paths, self.strict_prior,
                                               self.prior_frame)
            except DatasetError as error:
                problems.append(str(error))
        if missing or problems:
            lines = [missing_keypoints_message(self.keypoint_dir, missing, self.root_dir)] if missing else []
            lines += problems[:10] + ([f"… and {len(problems) - 10} more"] if len(problems) > 10 else [])
            raise DatasetError("the dataset's prior keypoints are not usable:\n  " + "\n  ".join(lines) +
                               f"\nrun: python kpmaker.py --root {self.root_dir} --out {self.keypoint_dir}")
        return priors


def _identity(name):
    """FOMM's id_sampling groups clips named '<id>#<rest>' by <id>."""
    return name.split("#")[0]


def _split_folders(root, is_train, seed):
    """{clip name: folder} of the requested split (FOMM: a random 80/20 split when there are no split folders)."""
    split = root / ("train" if is_train else "test")
    if (root / "train").is_dir() or (root / "test").is_dir():
        return {folder.name: folder for folder in clip_folders(split)}
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist; run preprocess.py --output {root}/train")
    folders = clip_folders(root)
    order = np.random.default_rng(seed).permutation(len(folders))
    n_test = int(round(len(folders) * TEST_FRACTION))
    chosen = order[n_test:] if is_train else order[:n_test]
    return {folders[i].name: folders[i] for i in sorted(chosen)}


class DatasetRepeater(Dataset):
    """The dataset ``num_repeats`` times over: one 'epoch' visits every clip num_repeats times."""

    def __init__(self, dataset, num_repeats=100):
        self.dataset = dataset
        self.num_repeats = num_repeats

    def __len__(self):
        return self.num_repeats * len(self.dataset)

    def __getitem__(self, idx):
        return self.dataset[idx % len(self.dataset)]


def read_pairs(pairs_list):
    """Pairs CSV (distance,source,driving,frame; FOMM's columns) → [(source, driving)] in file order."""
    try:
        with open(pairs_list, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise DatasetError(f"pairs list {pairs_list} not found; preprocess.py --dataset megc writes it") from None
    if rows and not {"source", "driving"} <= set(rows[0]):
        raise DatasetError(f"{pairs_list}: needs columns source and driving (distance,source,driving,frame), "
                           f"has {', '.join(rows[0])}")
    return [(row["source"].strip(), row["driving"].strip()) for row in rows]


class PairedDataset(Dataset):
    """Pairs of test clips: {'driving_<key>', 'source_<key>'} from two items of a test FramesDataset.

    From the dataset's pairs_list (``source`` = target face, ``driving`` = clip) or, without one, random
    pairs of distinct clips. ``number_of_pairs`` limits the count (a seeded random subset).
    """

    def __init__(self, initial_dataset, number_of_pairs=None, seed=0):
        self.initial_dataset = initial_dataset
        names = list(initial_dataset.videos)
        index = {name: i for i, name in enumerate(names)}
        rng = np.random.default_rng(seed)
        pairs_list = getattr(initial_dataset, "pairs_list", None)
        if pairs_list is None:
            candidates = [(d, s) for d in range(len(names)) for s in range(len(names)) if d != s]
        else:
            wanted = read_pairs(pairs_list)
            missing = sorted({n for pair in wanted for n in pair if n not in index})
            if missing:
                raise DatasetError(f"{pairs_list} names {_listing(missing)}, not in {initial_dataset.root_dir}'s "
                                   "test split; preprocess them (preprocess.py --dataset megc) or fix the list")
            candidates = [(index[driving], index[source]) for source, driving in wanted]
        if number_of_pairs is not None and number_of_pairs < len(candidates):
            chosen = sorted(rng.choice(len(candidates), size=number_of_pairs, replace=False))
            candidates = [candidates[i] for i in chosen]
        self.pairs = candidates

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, idx):
        driving_index, source_index = self.pairs[idx]
        driving = self.initial_dataset[driving_index]
        source = self.initial_dataset[source_index]
        sample = {f"driving_{k}": v for k, v in driving.items()}
        sample.update({f"source_{k}": v for k, v in source.items()})
        return sample


# --------------------------------------------------------------------------- validation

def validate_dataset(root_dir, frame_shape, keypoint_dir=None, splits=("train",), use_prior=True,
                     prior_mode="first_frame", strict_prior=False, check_pixels=True, prior_frame="first",
                     frame_order="natural"):
    """Check the dataset once before training; raise one DatasetError listing every problem.

    Checks: clip folders exist; no empty clip; every frame readable (``check_pixels``: structure and
    checksums, not just the header) and of size frame_shape[:2]; a kpmaker file per clip that lists
    exactly the clip's frames (with landmarks for ``per_frame``); with ``strict_prior``, a face wherever
    the prior is taken from (``prior_frame`` of the clip in ``frame_order`` for ``first_frame``).
    Returns {'clips': n, 'frames': n, 'fallback_frames': n} and warns about fallback priors.
    """
    root = Path(root_dir)
    keypoint_dir = Path(keypoint_dir) if keypoint_dir else root / "keypoints"
    problems = {key: [] for key in ("empty", "unreadable", "size", "keypoints", "stale", "no_landmarks", "strict")}
    counts = {"clips": 0, "frames": 0, "fallback_frames": 0}
    fallback_clips = []
    split_dirs = _validation_folders(root, splits)
    for name, folder in split_dirs.items():
        frames = list_frames(folder, frame_order)
        counts["clips"] += 1
        counts["frames"] += len(frames)
        if not frames:
            problems["empty"].append(str(folder))
            continue
        _check_frames(frames, tuple(frame_shape[:2]), problems, check_image if check_pixels else image_size)
        if use_prior:
            fallback = _check_keypoints(keypoint_dir, name, frames, prior_mode, strict_prior, problems, prior_frame)
            counts["fallback_frames"] += fallback
            if fallback:
                fallback_clips.append(name)
    message = _validation_message(problems, root, keypoint_dir, frame_shape)
    if message:
        raise DatasetError(message)
    if fallback_clips:
        warnings.warn(f"{counts['fallback_frames']} frame(s) in {len(fallback_clips)} clip(s) "
                      f"({_listing(fallback_clips)}) use the fallback prior template (no face found); "
                      f"see {keypoint_dir / 'fallback_report.csv'}, or set strict_prior to refuse them",
                      stacklevel=2)
    return counts


def _validation_folders(root, splits):
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist; run preprocess.py --output {root}/train")
    folders, missing = {}, []
    for split in splits:
        found = clip_folders(root / split)
        if not found:
            missing.append(split)
        folders.update({folder.name: folder for folder in found})
    if missing:
        raise DatasetError(f"no clip folders in {', '.join(str(root / s) for s in missing)}; run preprocess.py "
                           f"--output {root / missing[0]}")
    return folders


def _check_frames(frames, size, problems, check):
    """Appends unreadable frames and wrong/mixed sizes of one clip to problems; check(path) -> (H, W)."""
    sizes = set()
    for path in frames:
        try:
            frame_size = check(path)
        except FrameError as error:
            problems["unreadable"].append(str(error).split(";")[0])
            continue
        sizes.add(frame_size)
    wrong = sorted(s for s in sizes if s != size)
    if wrong:
        shown = ", ".join(f"{w}×{h}" for h, w in wrong)
        problems["size"].append(f"{frames[0].parent} ({shown})")


def _check_keypoints(keypoint_dir, name, frames, prior_mode, strict, problems, prior_frame="first"):
    """Appends to problems; returns the number of fallback frames this clip contributes. ``frames`` in reading order."""
    path = keypoint_path(keypoint_dir, name)
    if not path.is_file():
        problems["keypoints"].append(name)
        return 0
    try:
        data = load_keypoints(path)
    except KeypointError as error:
        problems["stale"].append(str(error).split(";")[0])
        return 0
    if sorted(data["frames"]) != sorted(p.name for p in frames):
        problems["stale"].append(f"{name} ({len(data['frames'])} frames in {path.name}, {len(frames)} in the folder)")
        return 0
    if prior_mode == "per_frame" and not data["has_landmarks"]:
        problems["no_landmarks"].append(name)
        return 0
    found_of = dict(zip(data["frames"], np.asarray(data["found"], bool)))
    found = np.array([found_of[p.name] for p in frames], bool)
    if prior_mode == "first_frame":
        ref = prior_reference([p.name for p in frames], prior_frame)
        used = found[ref:ref + 1]
    else:
        used = found
    if strict and not used.all():
        missing = [p.name for p, f in zip(frames, found) if not f]
        problems["strict"].append(f"{name} ({', '.join(missing[:3])}{' …' if len(missing) > 3 else ''})")
    return int((~used).sum())


def _validation_message(problems, root, keypoint_dir, frame_shape):
    kpmaker = f"python kpmaker.py --root {root} --out {keypoint_dir}"
    advice = {
        "empty": ("clip folders without frames", "remove them or re-run preprocess.py"),
        "unreadable": ("unreadable frames", "delete those clip folders and re-run preprocess.py, then kpmaker.py"),
        "size": (f"clips whose frames are not {frame_shape[0]}×{frame_shape[1]} (H×W) or of mixed sizes",
                 f"re-run preprocess.py --size {frame_shape[0]} (or change dataset_params.frame_shape)"),
        "keypoints": (f"clips without a keypoint file in {keypoint_dir}",
                      published_files_hint(keypoint_dir, root) or f"run: {kpmaker}"),
        "stale": ("keypoint files that do not match their clip's frames", f"run: {kpmaker}"),
        "no_landmarks": ("keypoint files imported from the published .pt files (no landmarks) while prior_mode is "
                         "per_frame", f"set prior_mode: first_frame, or run: {kpmaker}"),
        "strict": ("clips whose prior comes from a frame without a face (strict_prior is on)",
                   "fix or drop those frames, or set strict_prior: False to use the fallback template"),
    }
    lines = [f"{title}: {_listing(problems[key])} → {todo}" for key, (title, todo) in advice.items() if problems[key]]
    if not lines:
        return ""
    return f"dataset {root} is not ready for training:\n  " + "\n  ".join(lines)


def _listing(items, limit=8):
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# --------------------------------------------------------------------------- from a config

def build_dataset(config, is_train=True, validate=True):
    """FramesDataset from a loaded config (configuration.load_config), checked by validate_dataset first.

    The prior is read when the config's method uses it (methods.py: the spec's ``uses_prior``).
    """
    import methods

    # A validated config holds every key (configuration.py is the one place of the defaults).
    params = config["dataset_params"]
    use_prior = methods.get(config["model_params"]["method"]).uses_prior
    if validate and (Path(params["root_dir"]) / ("train" if is_train else "test")).is_dir():
        validate_dataset(params["root_dir"], params["frame_shape"], params["keypoint_dir"],
                         splits=("train" if is_train else "test",), use_prior=use_prior,
                         prior_mode=params["prior_mode"], strict_prior=params["strict_prior"],
                         prior_frame=params["prior_frame"], frame_order=params["frame_order"])
    return FramesDataset(root_dir=params["root_dir"], frame_shape=params["frame_shape"],
                         id_sampling=params["id_sampling"], is_train=is_train,
                         pairs_list=params["pairs_list"], augmentation_params=params["augmentation_params"],
                         keypoint_dir=params["keypoint_dir"], prior_mode=params["prior_mode"],
                         strict_prior=params["strict_prior"], use_prior=use_prior,
                         frame_order=params["frame_order"], prior_frame=params["prior_frame"])


def make_train_loader(dataset, batch_size, num_repeats=1, num_workers=0, sampler=None, generator=None):
    """DataLoader over DatasetRepeater(dataset, num_repeats): shuffled (unless a sampler, e.g.
    DistributedSampler, is given), last incomplete batch dropped as FOMM does, workers kept alive."""
    repeated = DatasetRepeater(dataset, num_repeats)
    if len(repeated) < batch_size:
        raise DatasetError(f"{len(repeated)} sample(s) per epoch (clips × num_repeats) is less than batch_size "
                           f"{batch_size}; raise num_repeats or lower batch_size")
    return DataLoader(repeated, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                      num_workers=num_workers, drop_last=True, persistent_workers=num_workers > 0,
                      generator=generator)


def example_item(config, generator, uses_prior):
    """A random training item shaped as FramesDataset gives it (benchmarks and device checks):
    {'source', 'driving': (C, H, W) in [0, 1]} plus, when ``uses_prior``, 'source_prior' and
    'driving_prior' (18, 2) pixels near the fallback template."""
    from modules.facial_prior import fallback_prior

    h, w, c = config["dataset_params"]["frame_shape"]
    item = {name: torch.rand(c, h, w, generator=generator) for name in ("source", "driving")}
    if uses_prior:
        prior = fallback_prior((h, w))
        item["source_prior"] = prior + torch.randn(prior.shape, generator=generator)
        item["driving_prior"] = prior + torch.randn(prior.shape, generator=generator)
    return item
