"""frames_dataset: samples, prior modes, augmentation consistency, pairs, validation before training."""
import copy
import shutil
import types

import numpy as np
import pytest
import torch
from PIL import Image

import kpmaker
from augmentation import Augmentation, apply_jitter, flip_horizontal, flip_time, jitter_factors
from configuration import load_config
from frame_io import list_frames, read_rgb
from frames_dataset import (DatasetError, DatasetRepeater, FramesDataset, PairedDataset, build_dataset,
                            iter_clip_frames, make_train_loader, read_clip, read_clip_prior, validate_dataset)
from modules.face_landmarks import FaceLandmarker
from modules.facial_prior import prior_from_landmarks
from tests.data_helpers import (OUT_SIZE, ROOT_DIR, face_cache, keypointed_root, no_face, photos,  # noqa: F401
                                processed_root, real_frames, save)

SHAPE = (OUT_SIZE, OUT_SIZE, 3)
FLIP_ONLY = {"flip_param": {"horizontal_flip": True, "time_flip": False}}
TRAIN_CLIPS = ["sub01_EP02_01f", "sub02_EP01_01", "sub02_EP01_01f"]


@pytest.fixture(scope="module")
def landmarker():
    return FaceLandmarker()


@pytest.fixture
def root(tmp_path, keypointed_root):
    """A private copy of the dataset with keypoints (for tests that change it)."""
    copy_root = tmp_path / "data" / "tiny"
    shutil.copytree(keypointed_root, copy_root)
    return copy_root


def png_frames(folder):
    """{index: (H, W, 3) uint8} of a processed clip, natural order."""
    return [read_rgb(p) for p in list_frames(folder)]


def to_uint8(image):
    """(C, H, W) float in [0, 1] → (H, W, C) uint8 (exact for frames that were not jittered)."""
    return np.round(image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def frame_index(image, frames):
    matches = [i for i, f in enumerate(frames) if np.array_equal(to_uint8(image), f)]
    assert len(matches) >= 1, "sample frame is not a frame of its clip"
    return matches[0]


def test_train_sample_shapes_and_first_frame_prior(keypointed_root):
    dataset = FramesDataset(keypointed_root, SHAPE, is_train=True)
    assert dataset.videos == TRAIN_CLIPS and len(dataset) == 3
    torch.manual_seed(0)
    for index, name in enumerate(TRAIN_CLIPS):
        sample = dataset[index]
        assert sample["name"] == name
        for key in ("source", "driving"):
            assert sample[key].shape == (3, OUT_SIZE, OUT_SIZE) and sample[key].dtype == torch.float32
            assert 0 <= sample[key].min() and sample[key].max() <= 1
        frames = png_frames(keypointed_root / "train" / name)
        assert frame_index(sample["source"], frames) <= frame_index(sample["driving"], frames)
        stored = kpmaker.load_keypoints(keypointed_root / "keypoints" / f"{name}.npz")["prior"]
        for key in ("source_prior", "driving_prior"):
            assert sample[key].shape == (18, 2) and sample[key].dtype == torch.float32
            np.testing.assert_array_equal(sample[key].numpy(), stored[0])   # the paper: first frame's prior


def test_per_frame_prior_belongs_to_each_frame(keypointed_root):
    dataset = FramesDataset(keypointed_root, SHAPE, is_train=True, prior_mode="per_frame")
    frames = png_frames(keypointed_root / "train" / "sub01_EP02_01f")
    stored = kpmaker.load_keypoints(keypointed_root / "keypoints" / "sub01_EP02_01f.npz")["prior"]
    torch.manual_seed(1)
    for _ in range(6):
        sample = dataset[0]
        for key in ("source", "driving"):
            np.testing.assert_array_equal(sample[f"{key}_prior"].numpy(), stored[frame_index(sample[key], frames)])


def test_horizontal_flip_prior_matches_dlib_on_flipped_frame(keypointed_root, landmarker):
    dataset = FramesDataset(keypointed_root, SHAPE, is_train=True, augmentation_params=FLIP_ONLY,
                            prior_mode="per_frame")
    frames = png_frames(keypointed_root / "train" / "sub01_EP02_01f")
    torch.manual_seed(0)
    flipped_seen = plain_seen = 0
    for _ in range(8):
        sample = dataset[0]
        image = to_uint8(sample["source"])
        flipped = not any(np.array_equal(image, f) for f in frames)
        if flipped:
            assert any(np.array_equal(image, f[:, ::-1]) for f in frames)
        flipped_seen += flipped
        plain_seen += not flipped
        expected = prior_from_landmarks(torch.from_numpy(landmarker.landmarks(image)))
        distance = (sample["source_prior"] - expected).norm(dim=-1)
        assert distance.max() < 2.5, f"prior off by {distance.max():.2f} px (flipped={flipped})"
        prior = sample["source_prior"]
        # Semantics kept: index 0/1 are still landmarks 19/24, 7/8 the mouth corners 48/54 (image left→right).
        assert prior[0, 0] < prior[1, 0] and prior[7, 0] < prior[8, 0] and prior[12, 0] < prior[13, 0]
    assert flipped_seen and plain_seen


def test_time_flip_keeps_frames_and_priors_together(keypointed_root):
    params = {"flip_param": {"horizontal_flip": False, "time_flip": True}}
    dataset = FramesDataset(keypointed_root, SHAPE, is_train=True, augmentation_params=params, prior_mode="per_frame")
    frames = png_frames(keypointed_root / "train" / "sub01_EP02_01f")
    stored = kpmaker.load_keypoints(keypointed_root / "keypoints" / "sub01_EP02_01f.npz")["prior"]
    torch.manual_seed(3)
    reversed_seen = False
    for _ in range(10):
        sample = dataset[0]
        source, driving = frame_index(sample["source"], frames), frame_index(sample["driving"], frames)
        reversed_seen |= source > driving
        np.testing.assert_array_equal(sample["source_prior"].numpy(), stored[source])
        np.testing.assert_array_equal(sample["driving_prior"].numpy(), stored[driving])
    assert reversed_seen


def test_augmentation_functions():
    frames = torch.rand(2, 3, 8, 10)
    priors = torch.rand(2, 18, 2) * 8
    out, out_priors = flip_time(frames, priors)
    assert torch.equal(out[0], frames[1]) and torch.equal(out_priors[0], priors[1])
    out, out_priors = flip_horizontal(frames, priors)
    assert torch.equal(out[..., 0], frames[..., -1])
    twice, twice_priors = flip_horizontal(out, out_priors)
    assert torch.equal(twice, frames) and torch.allclose(twice_priors, priors)
    assert flip_horizontal(frames, None)[1] is None
    # Jitter: the same random factors for every frame of a sample, values stay in [0, 1].
    same = torch.rand(1, 3, 8, 10).repeat(2, 1, 1, 1)
    torch.manual_seed(0)
    factors = jitter_factors(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1)
    assert sorted(op for op, _ in factors) == ["brightness", "contrast", "hue", "saturation"]
    jittered = apply_jitter(same, factors)
    assert torch.equal(jittered[0], jittered[1]) and not torch.equal(jittered, same)
    assert jittered.min() >= 0 and jittered.max() <= 1
    augment = Augmentation(jitter_param={"brightness": 0.5, "hue": 0.0})
    out, out_priors = augment(same, priors)
    assert out_priors is priors and augment.active


def test_test_split_whole_clips_in_natural_order(keypointed_root):
    dataset = FramesDataset(keypointed_root, SHAPE, is_train=False)
    assert dataset.videos == ["normalized_asianFemale", "normalized_westernMale", "Positive_022_3_3",
                              "Positive_EP01_01f", "Surprise_s20_sur_01"]
    sample = dataset[dataset.videos.index("Positive_EP01_01f")]
    assert sample["name"] == "Positive_EP01_01f"
    assert sample["video"].shape == (3, 2, OUT_SIZE, OUT_SIZE) and sample["prior"].shape == (2, 18, 2)
    folder = keypointed_root / "test" / "Positive_EP01_01f"
    names = [name for name, _ in iter_clip_frames(folder)]
    assert names == ["img9.png", "img10.png"]
    for t, (name, frame) in enumerate(dataset.clip_frames("Positive_EP01_01f")):
        np.testing.assert_array_equal(to_uint8(sample["video"][:, t]), frame)
        np.testing.assert_array_equal(frame, read_rgb(folder / name))
    np.testing.assert_array_equal(read_clip(folder), np.stack([read_rgb(folder / n) for n in names]))
    face = dataset[dataset.videos.index("normalized_westernMale")]
    assert face["video"].shape == (3, 1, OUT_SIZE, OUT_SIZE) and face["prior"].shape == (1, 18, 2)
    assert isinstance(iter_clip_frames(folder), types.GeneratorType)


def test_read_clip_prior_modes_and_checks(root):
    kp, name = root / "keypoints", "sub01_EP02_01f"
    stored = kpmaker.load_keypoints(kp / f"{name}.npz")
    first, found = read_clip_prior(kp, name, "first_frame")
    assert first.shape == (5, 18, 2) and found.all() and (first == stored["prior"][0]).all()
    per_frame, _ = read_clip_prior(kp, name, "per_frame", frame_names=list_frames(root / "train" / name))
    np.testing.assert_array_equal(per_frame, stored["prior"])
    with pytest.raises(DatasetError, match="other frames"):
        read_clip_prior(kp, name, frame_names=["img8.png"])
    with pytest.raises(DatasetError, match="kpmaker"):
        read_clip_prior(kp, "sub01_EP02_01", "first_frame")     # a prefix is not a clip
    # A fallback prior is refused only in strict mode, and only where it is used.
    save(root / "train" / name / "img13.png", no_face(SHAPE))
    assert kpmaker.main(["--root", str(root)]) == 0
    _, found = read_clip_prior(kp, name, "per_frame")
    assert found.tolist() == [True] * 5 + [False]
    read_clip_prior(kp, name, "first_frame", strict=True)
    with pytest.raises(DatasetError, match="img13.png.*strict_prior"):
        read_clip_prior(kp, name, "per_frame", strict=True)


def test_validation_lists_every_problem_once(root, real_frames):
    assert validate_dataset(root, SHAPE, splits=("train", "test")) == {"clips": 8, "frames": 18, "fallback_frames": 0}
    (root / "keypoints" / "sub02_EP01_01f.npz").unlink()                       # missing keypoints
    (root / "train" / "sub03_EP07_01").mkdir()                                 # empty clip
    corrupt = root / "train" / "sub02_EP01_01" / "img2.png"                    # unreadable frame
    corrupt.write_bytes(corrupt.read_bytes()[:300])
    save(root / "train" / "sub01_EP02_01f" / "img13.png", real_frames[0][:32, :32])   # wrong size, stale keypoints
    with pytest.raises(DatasetError) as error:
        validate_dataset(root, SHAPE)
    message = str(error.value)
    for expected in ("sub02_EP01_01f", "sub03_EP07_01", "img2.png", "sub01_EP02_01f (32×32)",
                     f"python kpmaker.py --root {root}", f"--size {OUT_SIZE}", "clip folders without frames"):
        assert expected in message, expected
    assert "Traceback" not in message


def test_validation_fallback_warns_and_strict_fails(root):
    save(root / "train" / "sub02_EP01_01f" / "img0.png", no_face(SHAPE))   # becomes the first frame
    assert kpmaker.main(["--root", str(root)]) == 0
    with pytest.warns(UserWarning, match="1 frame.*sub02_EP01_01f.*fallback"):
        counts = validate_dataset(root, SHAPE)
    assert counts["fallback_frames"] == 1
    with pytest.raises(DatasetError, match="sub02_EP01_01f \\(img0.png\\).*strict_prior: False"):
        validate_dataset(root, SHAPE, strict_prior=True)
    with pytest.raises(DatasetError, match="strict_prior"):
        FramesDataset(root, SHAPE, strict_prior=True)


def test_dataset_refuses_missing_keypoints_and_empty_clips(root):
    shutil.rmtree(root / "keypoints")
    with pytest.raises(DatasetError, match="(?s)for 3 clip\\(s\\): sub01_EP02_01f, .*run: python kpmaker.py"):
        FramesDataset(root, SHAPE)
    dataset = FramesDataset(root, SHAPE, use_prior=False)         # the learned-keypoint baseline needs none
    assert set(dataset[0]) == {"source", "driving", "name"}
    (root / "train" / "sub04_EP01_01").mkdir()
    with pytest.raises(DatasetError, match="without frames: sub04_EP01_01"):
        FramesDataset(root, SHAPE, use_prior=False)


def test_rgba_and_grayscale_frames_become_rgb(root):
    clip = root / "train" / "sub02_EP01_01"
    rgb = read_rgb(clip / "img1.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])).save(clip / "img1.png")
    gray = np.asarray(Image.fromarray(read_rgb(clip / "img2.png")).convert("L"))
    Image.fromarray(gray).save(clip / "img2.png")
    assert kpmaker.main(["--root", str(root)]) == 0
    train = FramesDataset(root, SHAPE)
    frames = dict(train.clip_frames("sub02_EP01_01"))
    np.testing.assert_array_equal(frames["img1.png"], rgb)
    np.testing.assert_array_equal(frames["img2.png"], np.repeat(gray[..., None], 3, axis=2))
    assert train[TRAIN_CLIPS.index("sub02_EP01_01")]["source"].shape == (3, OUT_SIZE, OUT_SIZE)
    with pytest.raises(DatasetError, match="no clip 'sub02_EP01' in the train split"):
        next(train.clip_frames("sub02_EP01"))


def test_unreadable_frame_mid_epoch_is_a_clear_error(root):
    dataset = FramesDataset(root, SHAPE, is_train=False)
    bad = root / "test" / "Positive_EP01_01f" / "img10.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="img10.png: unreadable image"):
        dataset[dataset.videos.index("Positive_EP01_01f")]


def test_paired_dataset_from_pairs_csv(keypointed_root):
    pairs_csv = keypointed_root.parent / "tiny_test.csv"
    dataset = FramesDataset(keypointed_root, SHAPE, is_train=False, pairs_list=pairs_csv)
    paired = PairedDataset(dataset)
    assert len(paired) == 6
    sample = paired[0]
    assert sample["source_name"].startswith("normalized_") and sample["source_video"].shape[1] == 1
    assert sample["driving_video"].shape[:2] == (3, 2) and sample["driving_prior"].shape == (2, 18, 2)
    assert len(PairedDataset(dataset, number_of_pairs=4)) == 4
    random_pairs = PairedDataset(FramesDataset(keypointed_root, SHAPE, is_train=False), number_of_pairs=3, seed=1)
    assert len(random_pairs) == 3 and all(d != s for d, s in random_pairs.pairs)
    bad = keypointed_root.parent / "bad_pairs.csv"
    bad.write_text("distance,source,driving,frame\n0,normalized_westernMale,Negative_EP19_06f,0\n")
    with pytest.raises(DatasetError, match="Negative_EP19_06f"):
        PairedDataset(FramesDataset(keypointed_root, SHAPE, is_train=False, pairs_list=bad))


def test_repeater_and_id_sampling(root):
    dataset = FramesDataset(root, SHAPE)
    repeated = DatasetRepeater(dataset, 4)
    assert len(repeated) == 12 and repeated[5]["name"] == dataset[2]["name"]
    for old, new in (("sub02_EP01_01", "sub02#EP01_01"), ("sub02_EP01_01f", "sub02#EP01_01f")):
        (root / "train" / old).rename(root / "train" / new)
        (root / "keypoints" / f"{old}.npz").rename(root / "keypoints" / f"{new}.npz")
    grouped = FramesDataset(root, SHAPE, id_sampling=True)
    assert grouped.videos == ["sub01_EP02_01f", "sub02"]
    torch.manual_seed(0)
    assert {grouped[1]["name"] for _ in range(12)} == {"sub02#EP01_01", "sub02#EP01_01f"}


def test_build_dataset_from_config_and_loader_with_workers(keypointed_root, tmp_path):
    config = load_config(ROOT_DIR / "config" / "tiny.yaml")
    config["dataset_params"]["root_dir"] = str(keypointed_root)
    dataset = build_dataset(config, is_train=True)
    assert dataset.transform is not None and dataset.transform.active
    loader = make_train_loader(dataset, batch_size=2, num_repeats=2, num_workers=2)
    batches = list(loader)
    assert len(batches) == 3
    batch = batches[0]
    assert batch["source"].shape == (2, 3, OUT_SIZE, OUT_SIZE) and batch["driving_prior"].shape == (2, 18, 2)
    assert len(batch["name"]) == 2
    # A dataset that is not ready fails before training with the validation message.
    broken = copy.deepcopy(config)
    broken["dataset_params"]["keypoint_dir"] = str(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="without a keypoint file.*kpmaker.py"):
        build_dataset(broken, is_train=True)
    with pytest.raises(DatasetError, match="less than batch_size"):
        make_train_loader(dataset, batch_size=8, num_repeats=1)
