"""Training data of the TPS family: frames_dataset's clips plus what the variants need.

- TPSMM: frames_dataset.FramesDataset's pairs as they are (no prior).
- TPSMM-ME: a face mask per frame, ``source_mask`` / ``driving_mask`` (1, H, W) in {0, 1}: the convex
  hull of the frame's 68 dlib landmarks (kpmaker files) rasterised at frame size — the original used
  face-parsing masks, which nothing here can produce. The masks are extra channels through the
  geometric augmentation (flip, rotation, resize, crop, then the perspective warp of
  ``perspective_param``) so that they stay on the face; colour jitter touches the RGB channels only.
- TPSRAU: ``keypoints`` (50, 2) pixels: the chosen 50 landmarks of the clip's first frame (moved with
  the frames by the geometric augmentation), and ``au_cond`` (17,): (AU(driving) − AU(source)) / 5
  with ±``au_noise`` uniform noise on each, from aumaker's AU table of the clip.

Every random draw uses torch's default generator (seeded per sample by data_order.SeededSamples).
"""
import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from scipy.spatial import ConvexHull
from torchvision.transforms import InterpolationMode

import augmentation as aug
import frames_dataset
from frames_dataset import DatasetError, FramesDataset, to_tensor

MASK_NAMES = ("source_mask", "driving_mask")


def hull_masks(points, size):
    """Convex-hull masks. points (B, N, 2) pixels (x, y) → (B, 1, H, W) float32 in {0, 1}: 1 for a
    pixel centre inside or on the hull. A row with a NaN (no face) gives an all-ones mask."""
    h, w = size
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    masks = torch.ones(len(points), 1, h, w)
    for i, pts in enumerate(np.asarray(points, np.float64)):
        if not np.isfinite(pts).all():
            continue
        hull = pts[ConvexHull(pts).vertices]             # counter-clockwise in (x, y)
        a, b = torch.from_numpy(hull), torch.from_numpy(np.roll(hull, -1, axis=0))
        # Inside: on the left of (or on) every edge a → b.
        cross = ((b[:, 0] - a[:, 0])[:, None, None] * (ys - a[:, 1, None, None])
                 - (b[:, 1] - a[:, 1])[:, None, None] * (xs - a[:, 0, None, None]))
        masks[i, 0] = (cross >= -1e-9).all(dim=0).float()
    return masks


def perspective_points(size, distortion_scale):
    """torchvision's RandomPerspective draw: (startpoints, endpoints), corner lists of [x, y]."""
    h, w = size
    half_h, half_w = h // 2, w // 2
    dh, dw = int(distortion_scale * half_h) + 1, int(distortion_scale * half_w) + 1
    r = lambda n: int(torch.randint(0, n, ()).item())  # noqa: E731
    top_left = [r(dw), r(dh)]
    top_right = [w - 1 - r(dw), r(dh)]
    bottom_right = [w - 1 - r(dw), h - 1 - r(dh)]
    bottom_left = [r(dw), h - 1 - r(dh)]
    start = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
    return start, [top_left, top_right, bottom_right, bottom_left]


def flip_points(points, width):
    """Mirror (..., N, 2) pixel points for a horizontally flipped frame (indices kept)."""
    flipped = points.clone()
    flipped[..., 0] = (width - 1) - flipped[..., 0]
    return flipped


def augment(frames, points, params, perspective=None):
    """FOMM's order (flip → rotation → resize → crop), then the perspective warp, then jitter on the
    first three channels. frames (T, C, H, W) (mask channels after RGB), points (T, N, 2) or None.
    Returns (frames, points, time_flipped)."""
    params = params or {}
    flip = params.get("flip_param") or {}
    flipped_time = False
    if flip.get("time_flip") and torch.rand(()).item() < 0.5:
        frames, points, flipped_time = frames.flip(0), None if points is None else points.flip(0), True
    if flip.get("horizontal_flip") and torch.rand(()).item() < 0.5:
        frames = frames.flip(-1)
        points = None if points is None else flip_points(points, frames.shape[-1])
    if params.get("rotation_param"):
        degrees = aug._range(params["rotation_param"]["degrees"], "rotation_param.degrees", True)
        frames, points = aug.rotate(frames, points, aug._uniform(*degrees))
    if params.get("resize_param"):
        ratio = aug._range(params["resize_param"]["ratio"], "resize_param.ratio", False)
        frames, points = aug.resize(frames, points, aug._uniform(*ratio), params["resize_param"]["interpolation"])
    if params.get("crop_param"):
        frames, points = aug.random_crop(frames, points, tuple(params["crop_param"]["size"]))
    if perspective and perspective["p"] > 0 and torch.rand(()).item() < perspective["p"]:
        start, end = perspective_points(frames.shape[-2:], perspective["distortion_scale"])
        frames = TF.perspective(frames, start, end, interpolation=InterpolationMode.BILINEAR, fill=0.0)
    jitter = {k: float(v) for k, v in (params.get("jitter_param") or {}).items() if v}
    if jitter:
        rgb = aug.apply_jitter(frames[:, :3], aug.jitter_factors(**jitter))
        frames = torch.cat([rgb, frames[:, 3:]], dim=1)
    return frames.contiguous(), points, flipped_time


class TpsFrames(FramesDataset):
    """FramesDataset with the TPS variants' extras (module docstring). ``variant``: 'tpsmm', 'me' or
    'tpsrau'; ``landmark_indices``: the TPSRAU keypoints' dlib indices; ``au_dir``: AU tables."""

    def __init__(self, variant, augmentation_params=None, perspective=None, landmark_indices=None, au_dir=None,
                 au_noise=0.02, **kwargs):
        super().__init__(augmentation_params=None, use_prior=False, **kwargs)
        self.variant = variant
        self.params = augmentation_params or {}
        self.perspective = perspective
        self.landmark_indices = list(landmark_indices) if landmark_indices else None
        self.au_noise = au_noise
        self.landmarks = self._load_landmarks() if variant in ("me", "tpsrau") else {}
        self.aus = self._load_aus(au_dir) if variant == "tpsrau" else {}

    def _load_landmarks(self):
        from kpmaker import KeypointError, keypoint_path, load_keypoints

        out, problems = {}, []
        for name, paths in self.frames.items():
            path = keypoint_path(self.keypoint_dir, name)
            try:
                data = load_keypoints(path)
            except KeypointError as error:
                problems.append(str(error).split(";")[0])
                continue
            if not data["has_landmarks"]:
                problems.append(f"{path}: no landmarks (imported from the published .pt files)")
                continue
            position = {frame: i for i, frame in enumerate(data["frames"])}
            if sorted(position) != sorted(p.name for p in paths):
                problems.append(f"{path}: made for other frames than {name} has now")
                continue
            marks = np.asarray(data["landmarks"], np.float32)[[position[p.name] for p in paths]]
            size = tuple(int(v) for v in data["frame_size"]) if "frame_size" in data else self.frame_shape[:2]
            out[name] = _rescale(marks, size, self.frame_shape[:2])
            if self.variant == "tpsrau" and not np.isfinite(out[name][0]).all():
                problems.append(f"{name}: dlib found no face in its first frame ({paths[0].name}); TPSRAU takes its "
                                "keypoints from there: drop the clip or fix the frame")
        if problems:
            more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
            raise DatasetError(f"the landmarks this method needs are not usable ({'; '.join(problems[:3])}{more}); "
                               f"run: python kpmaker.py --root {self.root_dir} --out {self.keypoint_dir}")
        return out

    def _load_aus(self, au_dir):
        import au_format

        au_dir = au_dir or (self.root_dir / "aus")
        out, problems = {}, []
        for name, paths in self.frames.items():
            path = au_format.au_path(au_dir, name)
            if not path.is_file():
                problems.append(f"{path}: missing")
                continue
            table = au_format.read_aus(path)
            position = {frame: i for i, frame in enumerate(table.frames)}
            if sorted(position) != sorted(p.name for p in paths):
                problems.append(f"{path}: made for other frames than {name} has now")
                continue
            out[name] = np.nan_to_num(table.intensity[[position[p.name] for p in paths]], nan=0.0)
        if problems:
            more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
            raise DatasetError(f"TPSRAU's AU tables are not usable ({'; '.join(problems[:3])}{more}); run aumaker.py "
                               f"on {self.root_dir} (or set dataset_params.au_dir)")
        return out

    def frame_pair(self, name):
        paths = self.frames[name]
        indices = torch.sort(torch.randint(len(paths), (2,))).values.tolist()
        frames = to_tensor(np.stack([self._frame(paths[i]) for i in indices]))
        marks = self.landmarks[name]
        points = None
        if self.variant == "me":
            frames = torch.cat([frames, hull_masks(marks[indices], frames.shape[-2:])], dim=1)
        else:
            points = torch.from_numpy(marks[[0, 0]][:, self.landmark_indices])
        frames, points, time_flipped = augment(frames, points, self.params, self.perspective)
        sample = {"source": frames[0, :3], "driving": frames[1, :3], "name": name}
        if self.variant == "me":
            sample.update(source_mask=(frames[0, 3:] > 0.5).float(), driving_mask=(frames[1, 3:] > 0.5).float())
        else:
            sample.update(source_keypoints=points[0], driving_keypoints=points[1])
            first, second = (indices[::-1] if time_flipped else indices)
            au = torch.from_numpy(self.aus[name][[first, second]]) / 5.0
            au = au + (torch.rand(au.shape) * 2 - 1) * self.au_noise
            sample["au_cond"] = (au[1] - au[0]).float()
        return sample


def _rescale(points, from_size, to_size):
    """Pixel points of a (h, w) frame → those of the (H, W) frame (pixel centres)."""
    (h, w), (H, W) = from_size, to_size
    if (h, w) == (H, W):
        return points
    return (points + 0.5) * np.array([W / w, H / h], np.float32) - 0.5


def build_dataset(config, variant, is_train=True, validate=True):
    """The TPS variant's dataset from a validated config (frames_dataset.build_dataset's checks first)."""
    from pathlib import Path

    from modules.tpsmm.method import TPSRAU_LANDMARKS

    params = config["dataset_params"]
    needs_landmarks = variant in ("me", "tpsrau")
    if validate and (Path(params["root_dir"]) / ("train" if is_train else "test")).is_dir():
        frames_dataset.validate_dataset(params["root_dir"], params["frame_shape"], params["keypoint_dir"],
                                        splits=("train" if is_train else "test",), use_prior=needs_landmarks,
                                        prior_mode="per_frame", frame_order=params["frame_order"])
    common = dict(root_dir=params["root_dir"], frame_shape=params["frame_shape"], id_sampling=params["id_sampling"],
                  is_train=is_train, pairs_list=params["pairs_list"], keypoint_dir=params["keypoint_dir"],
                  frame_order=params["frame_order"])
    if variant == "tpsmm":
        return FramesDataset(augmentation_params=params["augmentation_params"], use_prior=False, **common)
    augmentation = dict(params["augmentation_params"] or {})
    perspective = augmentation.pop("perspective_param", None)
    return TpsFrames(variant, augmentation_params=augmentation, perspective=perspective,
                     landmark_indices=TPSRAU_LANDMARKS if variant == "tpsrau" else None,
                     au_dir=params.get("au_dir"), au_noise=params.get("au_noise", 0.02), **common)
