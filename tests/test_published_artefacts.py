"""Published Facial-Prior FOMM artefacts carry over (issue 13): configs, keypoint folders, frame order
and prior frame, FOMM's geometric augmentation, the MEGC pairs lists and template names.

The published-format files are built here from real faces: ``keypoint_folder/<clip>.pt`` tensors
made from kpmaker's own priors of the tiny CASME II / MEGC dataset of tests/data_helpers.py.
"""
import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import augmentation
import kpmaker
from clip_priors import PriorError, PriorSource
from configuration import load_config, validate_config
from frame_io import clip_folders, list_frames, prior_reference, read_rgb
from frames_dataset import DatasetError, FramesDataset, to_tensor, validate_dataset
from tests.data_helpers import (OUT_SIZE, keypointed_root, photos, processed_root, real_frames, face_cache,  # noqa: F401
                                save, write_clip)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference" / "published-configs.json"
SHAPE = (OUT_SIZE, OUT_SIZE, 3)

# Keys the project adds to the published configs, with the values both shipped configs hold after
# validation (defaults filled). Reviewed: each reproduces the published behaviour, or is a deliberate,
# documented change (prior_equivariance, frame_order, prior_frame), or only shapes the output.
PROJECT_KEYS = {
    "dataset_params.pairs_list": None,                      # train config only (the test config's is published)
    "dataset_params.augmentation_params.jitter_param.brightness": 0.0,
    "dataset_params.augmentation_params.jitter_param.contrast": 0.0,
    "dataset_params.augmentation_params.jitter_param.saturation": 0.0,
    "dataset_params.augmentation_params.rotation_param": None,
    "dataset_params.augmentation_params.resize_param": None,
    "dataset_params.augmentation_params.crop_param": None,
    "dataset_params.keypoint_dir": None,
    "dataset_params.prior_mode": "first_frame",
    "dataset_params.strict_prior": False,
    "dataset_params.frame_order": "natural",
    "dataset_params.prior_frame": "first",
    "model_params.method": "fp-fomm",
    "model_params.common_params.keypoint_mode": "prior",              # resolved from num_kp 18
    "model_params.common_params.align_corners": False,
    "model_params.kp_detector_params.single_jacobian_map": False,
    "model_params.kp_detector_params.pad": 0,
    "model_params.kp_detector_params.mask_sigma": 0.75,
    "model_params.generator_params.dense_motion_params.kp_variance": 0.01,
    "model_params.discriminator_params.sn": False,
    "model_params.discriminator_params.use_kp": False,
    "model_params.discriminator_params.kp_variance": 0.01,
    "train_params.prior_equivariance": "corrected",
    "train_params.vgg_weights": None,
    "train_params.num_workers": 2,
    "train_params.precision": "fp32",
    "train_params.log_freq": 10,
    "train_params.finite_check": "auto",                   # every step on the CPU, at log intervals on CUDA
    "reconstruction_params.fps": 25,
    "animate_params.fps": 25,
    "animate_params.batch_frames": 8,
    "animate_params.grayscale": "auto",
    "animate_params.strip_frames": 12,
}


def flatten(mapping, prefix=""):
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def published():
    if not REFERENCE.is_file():
        pytest.fail(f"fixture missing: {REFERENCE}")
    return json.loads(REFERENCE.read_text())


# --------------------------------------------------------------------------- 1. shipped configs

@pytest.mark.parametrize("name", ["your_dataset_train", "your_dataset_test"])
def test_shipped_configs_hold_the_published_values(name):
    expected = flatten(published()[f"{name}.yaml"])
    config = flatten(load_config(ROOT / "config" / f"{name}.yaml"))
    differ = {k: (config.get(k, "<absent>"), v) for k, v in expected.items() if config.get(k, "<absent>") != v}
    assert not differ, differ
    added = {k: v for k, v in config.items() if k not in expected}
    wanted = {k: v for k, v in PROJECT_KEYS.items() if k not in expected}
    assert added == wanted
    assert config["model_params.discriminator_params.sn"] is False and config["train_params.batch_size"] == 9


def test_recommended_config_differs_only_where_it_says_why():
    shipped = flatten(load_config(ROOT / "config" / "your_dataset_train.yaml"))
    recommended = flatten(load_config(ROOT / "config" / "your_dataset_recommended.yaml"))
    changed = {k for k in shipped if shipped[k] != recommended[k]}
    assert changed == {"model_params.discriminator_params.sn", "train_params.num_repeats", "train_params.batch_size",
                       "dataset_params.augmentation_params.jitter_param.brightness",
                       "dataset_params.augmentation_params.jitter_param.contrast",
                       "dataset_params.augmentation_params.jitter_param.saturation",
                       "reconstruction_params.num_videos", "animate_params.num_pairs"}
    text = (ROOT / "config" / "your_dataset_recommended.yaml").read_text()
    assert text.count("published") >= 7                      # every change names the published value


def test_dataset_defaults_come_from_the_validated_config():
    source = (ROOT / "frames_dataset.py").read_text()
    build = source[source.index("def build_dataset"):source.index("def make_train_loader")]
    assert 'params.get(' not in build
    with open(ROOT / "config" / "tiny.yaml") as handle:
        import yaml
        raw = yaml.safe_load(handle)
    raw["dataset_params"]["frame_order"] = "alphabetical"
    with pytest.raises(Exception, match="frame_order.*natural, lexicographic"):
        validate_config(raw)


# --------------------------------------------------------------------------- 2. published keypoint folders

def _published_tensor(prior_64):
    """What the published kpmaker wrote for a clip: pixels of the 256 frame, float32, requires_grad."""
    return torch.tensor(np.asarray(prior_64, np.float32) * (256 / OUT_SIZE)).requires_grad_(True)


@pytest.fixture
def published_root(tmp_path, processed_root, keypointed_root):
    """A copy of the tiny dataset (no kpmaker files) and keypoint_folder/<clip>.pt for every clip, each
    the prior of the clip's frame that sorts first as a string (the published kpmaker's os.listdir[0]).
    → (root, folder, {clip: expected (18, 2) prior at 64 px})."""
    root = tmp_path / "data" / "tiny"
    shutil.copytree(processed_root, root)
    shutil.copy(processed_root.parent / "tiny_test.csv", root.parent / "tiny_test.csv")
    folder = tmp_path / "keypoint_folder"
    folder.mkdir()
    expected = {}
    for split in ("train", "test"):
        for clip in [p.name for p in clip_folders(root / split)]:
            data = kpmaker.load_keypoints(keypointed_root / "keypoints" / f"{clip}.npz")
            ref = prior_reference(data["frames"], "lexicographic_first")
            tensor = _published_tensor(data["prior"][ref])
            torch.save(tensor, folder / f"{clip}.pt")
            expected[clip] = tensor.detach().numpy() * (OUT_SIZE / 256)
    return root, folder, expected


def test_import_published_folder_gives_first_frame_priors(published_root):
    root, folder, expected = published_root
    assert kpmaker.main(["--root", str(root), "--import-published", str(folder)]) == 0
    for clip, prior in expected.items():
        data = kpmaker.load_keypoints(root / "keypoints" / f"{clip}.npz")
        assert data["has_landmarks"] is False and data["landmarks"] is None
        split = "train" if (root / "train" / clip).is_dir() else "test"
        assert data["frames"] == [p.name for p in list_frames(root / split / clip)]
        np.testing.assert_allclose(data["prior"], np.repeat(prior[None], len(data["frames"]), 0), atol=1e-5)
        assert data["found"].all()
    dataset = FramesDataset(root, SHAPE, is_train=True, prior_mode="first_frame")
    for clip, (prior, found) in dataset.priors.items():
        np.testing.assert_allclose(prior, np.repeat(expected[clip][None], len(prior), 0), atol=1e-5)
    sample = dataset.frame_pair("sub01_EP02_01f")
    assert sample["source_prior"].shape == (18, 2)
    # per_frame needs each frame's landmarks: refused, with a message that says what to do.
    with pytest.raises(DatasetError, match="imported from the published .pt files.*prior_mode: first_frame"):
        FramesDataset(root, SHAPE, is_train=True, prior_mode="per_frame")
    with pytest.raises(DatasetError, match="no landmarks.*per_frame"):
        validate_dataset(root, SHAPE, prior_mode="per_frame")
    validate_dataset(root, SHAPE, prior_mode="first_frame")
    with pytest.raises(PriorError, match="first_frame"):
        PriorSource(root / "keypoints", SHAPE[:2], "per_frame").track(
            "Positive_EP01_01f", list_frames(root / "test" / "Positive_EP01_01f"), SHAPE[:2])


def test_import_refuses_bad_or_unmatched_files_and_writes_nothing(published_root):
    root, folder, _ = published_root
    # EP01_01 has no file of its own: the published substring match would have taken EP01_01f's.
    (folder / "sub02_EP01_01.pt").unlink()
    torch.save(torch.zeros(18, 2), folder / "POSITIVE_EP01_01F.pt")        # a case twin of an exact file: unused
    shutil.move(folder / "Positive_022_3_3.pt", folder / "positive_022_3_3.pt")   # case only: still one match
    torch.save(torch.zeros(18, 2, dtype=torch.float64), folder / "normalized_westernMale.pt")
    torch.save({"kp": torch.zeros(18, 2)}, folder / "normalized_asianFemale.pt")
    torch.save(torch.full((18, 2), float("nan")), folder / "Surprise_s20_sur_01.pt")
    torch.save(torch.zeros(17, 2), folder / "sub01_EP02_01f.pt")
    with pytest.raises(kpmaker.KeypointError) as error:
        kpmaker.import_published(root, folder, root / "keypoints")
    message = str(error.value)
    assert "nothing written" in message
    assert "sub02_EP01_01: no sub02_EP01_01.pt (the published substring match would have taken sub02_EP01_01f.pt)" \
        in message
    assert "normalized_westernMale.pt: tensor of dtype torch.float64" in message
    assert "normalized_asianFemale.pt: holds a dict" in message
    assert "Surprise_s20_sur_01.pt: holds NaN" in message
    assert "sub01_EP02_01f.pt: tensor of shape (17, 2)" in message
    assert "Positive_022_3_3" not in message and "Positive_EP01_01f" not in message
    assert not (root / "keypoints").exists()
    # Two files that differ from a clip name only in case: ambiguous.
    (folder / "Positive_EP01_01f.pt").rename(folder / "positive_ep01_01f.pt")
    matches, problems = kpmaker.match_published(["Positive_EP01_01f", "Positive_022_3_3"], sorted(folder.glob("*.pt")))
    assert problems == ["Positive_EP01_01f: several files differ only in case (POSITIVE_EP01_01F.pt, "
                        "positive_ep01_01f.pt)"]
    assert matches == {"Positive_022_3_3": folder / "positive_022_3_3.pt"}
    (folder / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(kpmaker.KeypointError, match=r"junk.pt: not a loadable tensor file"):
        kpmaker.read_published_prior(folder / "junk.pt")


def test_without_import_training_and_animation_name_the_pt_files(published_root):
    root, folder, _ = published_root
    shutil.copytree(folder, root / "keypoints")          # .pt files where the project's files belong
    with pytest.raises(DatasetError) as error:
        FramesDataset(root, SHAPE, is_train=True)
    assert "Positive_EP01_01f.pt" in str(error.value) and "and 3 more" in str(error.value)
    assert f"python kpmaker.py --root {root} --import-published {root / 'keypoints'}" in str(error.value)
    with pytest.raises(DatasetError, match=r"published keypoint files \(\.pt\).*--import-published"):
        validate_dataset(root, SHAPE)
    source = PriorSource(root / "keypoints", SHAPE[:2], landmarker=_no_dlib)
    with pytest.raises(PriorError, match=r"Positive_EP01_01f: no keypoint file .*Positive_EP01_01f.pt.*--import-published"):
        source.track("Positive_EP01_01f", list_frames(root / "test" / "Positive_EP01_01f"), SHAPE[:2])


def _no_dlib():
    raise AssertionError("dlib was asked for a prior that the imported files hold")


def test_training_and_animation_run_on_imported_keypoints(published_root, tmp_path):
    import animate
    from frames_dataset import build_dataset
    from tests.animation_helpers import tiny_checkpoint
    from tests.train_helpers import tiny_config
    from train import train

    root, folder, expected = published_root
    assert kpmaker.main(["--root", str(root), "--import-published", str(folder)]) == 0
    config = tiny_config(root, num_epochs=1, num_repeats=1, batch_size=2, num_workers=0)
    config["train_params"]["loss_weights"]["perceptual"] = [0, 0, 0, 0, 0]
    result = train(config, build_dataset(config), str(tmp_path / "log"), seed=0, progress=False)
    assert result.iteration == 1 and all(np.isfinite(v) for v in result.epoch_losses.values())

    config["dataset_params"]["pairs_list"] = str(root.parent / "tiny_test.csv")
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    # A landmarker that fails proves the priors come from the imported files, not dlib.
    done = animate.animate_dataset(config, str(checkpoint), out_dir=str(tmp_path / "anim"), num_pairs=1,
                                   log=lambda _: None, landmarker=_FailingLandmarker())
    assert done and done[0]["frames"] == len(list_frames(root / "test" / done[0]["pair"].split("-")[0]))


class _FailingLandmarker:
    def landmarks(self, image):
        raise AssertionError("dlib was asked for a prior that the imported files hold")

    detect = landmarks


# --------------------------------------------------------------------------- 4. frame order and prior frame

CASME_NAMES = ["img46.jpg", "img47.jpg", "img48.jpg", "img99.jpg", "img100.jpg"]
PUBLISHED_ORDER = sorted(CASME_NAMES)          # the published reader: sorted(os.listdir(clip))


@pytest.fixture
def casme_clip(tmp_path, real_frames):
    """A CASME II-named clip (img46 … img100) of real face frames at 64 px with kpmaker files."""
    from PIL import Image

    root = tmp_path / "data"
    small = [np.asarray(Image.fromarray(f).resize((OUT_SIZE, OUT_SIZE))) for f in real_frames[:5]]
    write_clip(root / "train" / "sub01_EP02_01f", CASME_NAMES, small)
    assert kpmaker.main(["--root", str(root), "--splits", "train"]) == 0
    return root


def test_published_frame_order_and_prior_frame(casme_clip):
    root = casme_clip
    assert PUBLISHED_ORDER == ["img100.jpg", "img46.jpg", "img47.jpg", "img48.jpg", "img99.jpg"]
    folder = root / "train" / "sub01_EP02_01f"
    assert [p.name for p in list_frames(folder)] == CASME_NAMES
    assert [p.name for p in list_frames(folder, "lexicographic")] == PUBLISHED_ORDER
    stored = kpmaker.load_keypoints(root / "keypoints" / "sub01_EP02_01f.npz")
    per_frame = dict(zip(stored["frames"], stored["prior"]))

    published = FramesDataset(root, SHAPE, is_train=True, frame_order="lexicographic",
                              prior_frame="lexicographic_first")
    sample = published.clip_sample("sub01_EP02_01f")
    expected_video = to_tensor(np.stack([read_rgb(folder / n) for n in PUBLISHED_ORDER])).movedim(0, 1)
    assert torch.equal(sample["video"], expected_video)
    assert [name for name, _ in published.clip_frames("sub01_EP02_01f")] == PUBLISHED_ORDER
    # The published kpmaker's one prior: os.listdir(clip)[0], i.e. img100 — for every frame.
    np.testing.assert_array_equal(sample["prior"].numpy(), np.repeat(per_frame["img100.jpg"][None], 5, 0))
    per = FramesDataset(root, SHAPE, is_train=True, frame_order="lexicographic", prior_mode="per_frame")
    np.testing.assert_array_equal(per.clip_sample("sub01_EP02_01f")["prior"].numpy(),
                                  np.stack([per_frame[n] for n in PUBLISHED_ORDER]))

    natural = FramesDataset(root, SHAPE, is_train=True).clip_sample("sub01_EP02_01f")
    np.testing.assert_array_equal(natural["prior"].numpy(), np.repeat(per_frame["img46.jpg"][None], 5, 0))
    assert not torch.equal(natural["video"], sample["video"])
    # Natural order with the published prior frame: the prior of img100, frames img46 first.
    mixed = FramesDataset(root, SHAPE, is_train=True, prior_frame="lexicographic_first").clip_sample("sub01_EP02_01f")
    np.testing.assert_array_equal(mixed["prior"][0].numpy(), per_frame["img100.jpg"])
    # Animation's prior source takes the same reference frame.
    files = list_frames(folder, "lexicographic")
    track = PriorSource(root / "keypoints", SHAPE[:2], prior_frame="lexicographic_first").track(
        "sub01_EP02_01f", list_frames(folder), SHAPE[:2])
    np.testing.assert_array_equal(track(3, None), per_frame["img100.jpg"])
    track = PriorSource.from_config(load_config(ROOT / "config" / "tiny.yaml")["dataset_params"] | {
        "keypoint_dir": str(root / "keypoints"), "prior_frame": "lexicographic_first"}).track(
        "sub01_EP02_01f", files, SHAPE[:2])
    np.testing.assert_array_equal(track(0, None), per_frame["img100.jpg"])


def test_published_choices_train_pairs_follow_the_published_order(casme_clip):
    """Train pairs: source before driving in the reader's order, as the published sampler (sorted indices)."""
    root = casme_clip
    dataset = FramesDataset(root, SHAPE, is_train=True, frame_order="lexicographic")
    assert [p.name for p in dataset.frames["sub01_EP02_01f"]] == PUBLISHED_ORDER
    frames = {n: to_tensor(read_rgb(root / "train" / "sub01_EP02_01f" / n)) for n in CASME_NAMES}
    for seed in range(6):
        torch.manual_seed(seed)
        sample = dataset.frame_pair("sub01_EP02_01f")
        torch.manual_seed(seed)                         # the same draw FramesDataset made
        i, j = torch.sort(torch.randint(5, (2,))).values.tolist()
        assert torch.equal(sample["source"], frames[PUBLISHED_ORDER[i]])
        assert torch.equal(sample["driving"], frames[PUBLISHED_ORDER[j]])


def test_animation_reads_driving_frames_in_the_configured_order(casme_clip, tmp_path, monkeypatch):
    import animate
    import session
    from tests.animation_helpers import tiny_checkpoint
    from tests.train_helpers import tiny_config

    root = casme_clip
    write_clip(root / "test" / "face", ["face.png"], [read_rgb(root / "train" / "sub01_EP02_01f" / "img46.jpg")])
    write_clip(root / "train" / "other", ["img1.png"], [read_rgb(root / "train" / "sub01_EP02_01f" / "img47.jpg")])
    shutil.move(root / "train" / "sub01_EP02_01f", root / "test" / "sub01_EP02_01f")
    shutil.rmtree(root / "keypoints")
    assert kpmaker.main(["--root", str(root)]) == 0
    seen = []
    original = session.Session.prepare

    def spy(self, target_name, target_file, clip, files, *rest, **kw):
        seen.append([Path(f).name for f in files])
        return original(self, target_name, target_file, clip, files, *rest, **kw)

    monkeypatch.setattr(session.Session, "prepare", spy)
    config = tiny_config(root)
    config["dataset_params"].update(frame_order="lexicographic", prior_frame="lexicographic_first")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("distance,source,driving,frame\n0,face,sub01_EP02_01f,0\n")
    config["dataset_params"]["pairs_list"] = str(pairs)
    animate.animate_dataset(config, str(tiny_checkpoint(tmp_path / "ckpt")), out_dir=str(tmp_path / "a"),
                            log=lambda _: None)
    assert seen == [PUBLISHED_ORDER]


# --------------------------------------------------------------------------- 5. FOMM's geometric augmentation

def _dot_frame(face, point):
    """The face frame (H, W, 3) uint8 with a bright 3×3 dot at ``point`` (x, y) → (1, 3, H, W) float."""
    frame = face.copy()
    x, y = int(round(float(point[0]))), int(round(float(point[1])))
    frame[y - 1:y + 2, x - 1:x + 2] = 255
    return to_tensor(frame[None])


def _dot_position(with_dot, without):
    """Centroid (x, y) of where two frames differ (the dot)."""
    weight = (with_dot - without).abs().sum(dim=0)
    ys, xs = torch.meshgrid(torch.arange(weight.shape[0], dtype=torch.float32),
                            torch.arange(weight.shape[1], dtype=torch.float32), indexing="ij")
    return torch.stack([(weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()])


@pytest.mark.parametrize("params", [
    {"rotation_param": {"degrees": 25}},
    {"resize_param": {"ratio": [0.8, 1.2], "interpolation": "bilinear"}, "crop_param": {"size": [64, 64]}},
    {"resize_param": {"ratio": [0.9, 1.1]}, "crop_param": {"size": [56, 60]}},
    {"flip_param": {"horizontal_flip": True, "time_flip": True}, "rotation_param": {"degrees": [-30, 30]},
     "resize_param": {"ratio": [0.9, 1.1]}, "crop_param": {"size": [64, 64]}},
])
def test_geometric_augmentation_moves_priors_with_the_frames(keypointed_root, params):
    clip = "sub01_EP02_01f"
    face = read_rgb(list_frames(keypointed_root / "train" / clip)[0])
    prior = torch.from_numpy(kpmaker.load_keypoints(keypointed_root / "keypoints" / f"{clip}.npz")["prior"][0])
    transform = augmentation.Augmentation(**params)
    assert transform.active
    for seed in range(4):
        for k in (4, 8, 14):                        # an eyebrow, a mouth corner and a nose point
            torch.manual_seed(seed)
            with_dot, moved = transform(_dot_frame(face, prior[k]), prior[None].clone())
            torch.manual_seed(seed)
            without, _ = transform(to_tensor(face[None]), prior[None].clone())
            if "crop_param" in params:
                assert tuple(with_dot.shape[-2:]) == tuple(params["crop_param"]["size"])
            found = _dot_position(with_dot[0], without[0])
            # A horizontal flip also swaps left/right keypoints (k becomes its mirror partner).
            distance = torch.linalg.norm(moved[0] - found, dim=-1)
            assert distance.min() < 1.0, (seed, k, found, moved[0])
            if "flip_param" not in params:
                assert distance.argmin() == k


def test_augmentation_analytic_cases():
    frames = torch.zeros(2, 1, 9, 9)
    prior = torch.tensor([[[6.0, 4.0]], [[6.0, 4.0]]])
    rotated, moved = augmentation.rotate(frames, prior, 90)
    torch.testing.assert_close(moved, torch.tensor([[[4.0, 2.0]], [[4.0, 2.0]]]))   # right of centre → above it
    resized, moved = augmentation.resize(frames, prior, 2.0)
    assert resized.shape[-2:] == (18, 18)
    torch.testing.assert_close(moved, torch.tensor([[[12.5, 8.5]], [[12.5, 8.5]]]))
    padded, moved = augmentation.pad_to(frames, prior, (12, 10))
    assert padded.shape[-2:] == (12, 10)
    torch.testing.assert_close(moved, prior + torch.tensor([0.0, 1.0]))
    with pytest.raises(augmentation.AugmentationError, match="resize_param needs crop_param"):
        augmentation.Augmentation(resize_param={"ratio": [0.9, 1.1]})
    with pytest.raises(augmentation.AugmentationError, match="rotation_param.degrees"):
        augmentation.Augmentation(rotation_param={"degrees": [30, -30]})


def test_fomm_augmentation_keys_load_and_reach_the_dataset(keypointed_root):
    with open(ROOT / "config" / "tiny.yaml") as handle:
        import yaml
        raw = yaml.safe_load(handle)
    raw["dataset_params"]["augmentation_params"].update(
        crop_param={"size": [64, 64]}, resize_param={"ratio": [0.9, 1.1]}, rotation_param={"degrees": 30})
    params = validate_config(raw)["dataset_params"]["augmentation_params"]
    assert params["resize_param"] == {"ratio": [0.9, 1.1], "interpolation": "nearest"}
    dataset = FramesDataset(keypointed_root, SHAPE, is_train=True, augmentation_params=params)
    assert dataset.transform.degrees == (-30.0, 30.0) and dataset.transform.crop_size == (64, 64)
    torch.manual_seed(0)
    sample = dataset[0]
    assert sample["source"].shape == (3, 64, 64) and sample["source_prior"].shape == (18, 2)


# --------------------------------------------------------------------------- 6. MEGC protocols as data

MEGC_CLIPS = ["Surprise_007_7_1", "Positive_022_3_3", "Negative_018_3_1", "Surprise_EP01_13", "Positive_EP01_01f",
              "Negative_EP19_06f", "Surprise_s20_sur_01", "Positive_s3_po_05", "Negative_s11_ne_02"]


def _rows(path):
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        assert next(reader) == ["distance", "source", "driving", "frame"]
        return [tuple(row) for row in reader]


def test_megc_pairs_lists_are_shipped_and_tracked():
    megc2021 = _rows(ROOT / "data" / "your_dataset_test.csv")
    assert len(megc2021) == 18 and len(set(megc2021)) == 18
    assert set(megc2021) == {("0", t, c, "0") for t in ("normalized_westernMale", "normalized_asianFemale")
                             for c in MEGC_CLIPS}
    # The published file's order: per dataset (SAMM, CASME II, SMIC-HS), each template × its three clips.
    assert megc2021[:4] == [("0", "normalized_westernMale", "Surprise_007_7_1", "0"),
                            ("0", "normalized_westernMale", "Positive_022_3_3", "0"),
                            ("0", "normalized_westernMale", "Negative_018_3_1", "0"),
                            ("0", "normalized_asianFemale", "Surprise_007_7_1", "0")]
    megc2022 = _rows(ROOT / "data" / "megc2022_test.csv")
    templates = ("normalized_asianFemale", "normalized_westernFemale", "normalized_asianMale", "normalized_westernMale")
    assert len(megc2022) == 36 and set(megc2022) == {("0", t, c, "0") for t in templates for c in MEGC_CLIPS}
    for name in ("your_dataset_test.csv", "megc2022_test.csv"):
        ignored = subprocess.run(["git", "check-ignore", "-q", f"data/{name}"], cwd=ROOT)
        assert ignored.returncode == 1, f"data/{name} is ignored by .gitignore"
    assert subprocess.run(["git", "check-ignore", "-q", "data/megc/train/x.png"], cwd=ROOT).returncode == 0
    test_config = load_config(ROOT / "config" / "your_dataset_test.yaml")["dataset_params"]
    assert test_config["pairs_list"] == "data/your_dataset_test.csv" and test_config["root_dir"] == "data/your_dataset"


def test_preprocess_megc_maps_the_organisers_template_names(tmp_path, real_frames, photos):
    import preprocess

    package = tmp_path / "MEGC2022_generation"
    write_clip(package / "source_samples" / "casme2" / "EP01_01f", ["img9.jpg", "img10.jpg"], real_frames[:2])
    templates = {"Template_Female_Asian.jpg": "0-f15-hao-ph.jpg", "Template_Female_Europe.png": "grace_hopper.jpg",
                 "Template_Male_Asian.bmp": "0-f1-su-ph.jpg", "Template_Male_Europe.JPEG": "obama.jpg"}
    for name, photo in templates.items():
        save(package / "faces" / name, photos[photo])
    out = tmp_path / "data" / "megc" / "test"
    assert preprocess.main(["--dataset", "megc", "--input", str(package), "--output", str(out),
                            "--size", str(OUT_SIZE)]) == 0
    names = {"normalized_asianFemale", "normalized_westernFemale", "normalized_asianMale", "normalized_westernMale"}
    assert {p.name for p in out.iterdir() if p.is_dir()} == names | {"Positive_EP01_01f"}
    for name in names:
        assert [p.name for p in list_frames(out / name)] == [f"{name}.png"]
    rows = _rows(tmp_path / "data" / "megc_test.csv")
    assert {row[1] for row in rows} == names and {row[2] for row in rows} == {"Positive_EP01_01f"}
