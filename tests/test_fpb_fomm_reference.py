"""FPB-FOMM (FOMM_with_AWP): outputs recorded from the original in ../shared/reference/fpb-fomm-a.pt
(AU_AWP.md, second half), reproduced to 1e-5; prior maps to 1e-12; prior maps at other frame sizes."""
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from modules.discriminator import MultiScaleDiscriminator
from modules.face_landmarks import FaceLandmarker, to_uint8_rgb
from modules.facial_prior import fallback_prior, prior_from_landmarks
from modules.fpb_fomm import KPDetector, detect_prior, prior_maps
from modules.generator import OcclusionAwareGenerator
from modules.perceptual import ImagePyramid

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "fpb-fomm-a.pt"
ATOL = 1e-5
WHICH = ("source", "driving")


@pytest.fixture(scope="module")
def fpb():
    if not FIXTURE.is_file():
        pytest.fail(f"FPB-FOMM fixture missing: {FIXTURE} (shared/ must sit beside the clone)")
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope="module")
def landmarker():
    return FaceLandmarker()


def build(fpb, train=False):
    params = fpb["model_params"]
    common = params["common_params"]
    kp = KPDetector(**params["kp_detector_params"], **common)
    gen = OcclusionAwareGenerator(**params["generator_params"], **common)
    disc = MultiScaleDiscriminator(**params["discriminator_params"], **common)
    for name, module in (("kp_detector", kp), ("generator", gen), ("discriminator", disc)):
        module.load_state_dict(fpb["checkpoint"][name], strict=True)
        module.train(train)
    return kp, gen, disc


def chw(image):
    return image.permute(2, 0, 1).unsqueeze(0)


def prior_batch(fpb, which):
    return fpb["prior"][which]["prior_kp"][None]


def assert_close(actual, expected, atol=ATOL):
    assert actual.shape == expected.shape, (tuple(actual.shape), tuple(expected.shape))
    diff = (actual.double() - expected.double()).abs().max().item()
    assert diff <= atol, f"max abs diff {diff:.3g} > {atol}"


def literal_make_masks(points_xy, sigma=0.75):
    """The original's formula written out with its literals (64/256, 64×64, 1-based product grid), numpy
    float64, one point at a time. points_xy (18, 2) pixels of a 256 frame → (18, 64, 64)."""
    cells = np.array(list(itertools.product(range(1, 65), range(1, 65))), dtype=np.float64)
    out = []
    for x, y in np.asarray(points_xy, dtype=np.float64) * 64 / 256:
        d = np.sqrt((cells[:, 0] - y) ** 2 + (cells[:, 1] - x) ** 2)
        m = np.exp(-np.sqrt(d) / (2 * sigma**2))
        m = m / m.max()
        out.append((m * (m >= m.mean())).reshape(64, 64))
    return torch.from_numpy(np.stack(out))


def analytic_map(row, col, size, sigma=0.75, sqrt_distance=True):
    """One map by the formula, cell by cell in Python floats. (row, col) on the 1-based (h, w) grid."""
    h, w = size
    m = torch.empty(h, w, dtype=torch.float64)
    for r in range(h):
        for c in range(w):
            d = math.hypot(r + 1 - row, c + 1 - col)
            m[r, c] = math.exp(-(math.sqrt(d) if sqrt_distance else d) / (2 * sigma**2))
    m = m / m.max()
    return torch.where(m >= m.mean(), m, torch.zeros_like(m))


# --------------------------------------------------------------------------- checkpoint

def test_checkpoint_loads_strictly_with_the_original_names(fpb):
    kp, gen, disc = build(fpb)
    for name, module in (("kp_detector", kp), ("generator", gen), ("discriminator", disc)):
        ours = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in fpb["checkpoint"][name].items()}
        assert ours == theirs, name
    assert kp.predictor.encoder.down_blocks[0].conv.in_channels == 4
    assert kp.mode == "prior"


def test_antialias_buffer_as_built_equals_the_recorded_one(fpb):
    params = fpb["model_params"]
    fresh = KPDetector(**params["kp_detector_params"], **params["common_params"])
    assert torch.equal(fresh.down.weight, fpb["checkpoint"]["kp_detector"]["down.weight"])


def test_constructor_refuses_what_the_method_cannot_do(fpb):
    params = dict(fpb["model_params"]["kp_detector_params"], **fpb["model_params"]["common_params"])
    with pytest.raises(ValueError, match="18 prior keypoints"):
        KPDetector(**dict(params, num_kp=10))
    with pytest.raises(ValueError, match="keypoint_mode"):
        KPDetector(**params, keypoint_mode="learned")
    kp = KPDetector(**params)
    frame = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match="facial prior"):
        kp(frame)
    with pytest.raises(ValueError, match=r"\(B, 18, 2\)"):
        kp(frame, torch.rand(1, 17, 2))


# --------------------------------------------------------------------------- dlib prior

@pytest.mark.parametrize("which", WHICH)
def test_dlib_landmarks_and_prior_points(fpb, landmarker, which):
    image = fpb["inputs"][f"{which}_image"].numpy()
    recorded = fpb["prior"][which]
    # One face, so the original's last detection and the project's largest are the same face here.
    assert len(landmarker.detector(to_uint8_rgb(image), 1)) == recorded["num_faces"] == 1
    landmarks = landmarker.landmarks(image)
    assert torch.equal(torch.from_numpy(landmarks).long(), recorded["landmarks68"])
    assert torch.equal(prior_from_landmarks(torch.from_numpy(landmarks)), recorded["prior_kp"])
    for keep in ("largest", "last"):
        prior, found = detect_prior(chw(fpb["inputs"][f"{which}_image"]), landmarker, keep=keep)
        assert found.tolist() == [True]
        assert torch.equal(prior[0], recorded["prior_kp"])


def test_no_face_falls_back_to_the_original_template(fpb, landmarker):
    assert torch.equal(fallback_prior((256, 256)), fpb["prior"]["fallback_prior_kp"].detach())
    frames = torch.cat([torch.full((1, 3, 256, 256), 0.5), chw(fpb["inputs"]["source_image"])])
    prior, found = detect_prior(frames, landmarker)
    assert found.tolist() == [False, True]
    assert torch.equal(prior[0], fpb["prior"]["fallback_prior_kp"].detach())
    assert torch.equal(prior[1], fpb["prior"]["source"]["prior_kp"])
    small, found = detect_prior(torch.full((1, 3, 64, 64), 0.5), landmarker)
    assert not found.item()
    assert torch.equal(small[0], fpb["prior"]["fallback_prior_kp"].detach() / 4)


# --------------------------------------------------------------------------- prior maps

@pytest.mark.parametrize("which", WHICH)
def test_prior_maps_equal_the_recorded_float64_maps(fpb, which):
    maps = prior_maps(prior_batch(fpb, which), (256, 256), (64, 64))
    assert maps.dtype == torch.float64
    assert_close(maps[0], fpb["prior"][which]["prior_maps"], atol=1e-12)


@pytest.mark.parametrize("which", WHICH)
def test_prior_maps_at_256_equal_the_literal_64_over_256_formula(fpb, which):
    points = fpb["prior"][which]["prior_kp"]
    literal = literal_make_masks(points.numpy())
    assert_close(literal, fpb["prior"][which]["prior_maps"], atol=1e-12)  # the literal formula is the original's
    assert_close(prior_maps(points[None], (256, 256), (64, 64))[0], literal, atol=1e-12)


def test_prior_maps_properties(fpb):
    maps = prior_maps(prior_batch(fpb, "source"), (256, 256), (64, 64))[0]
    assert torch.allclose(maps.amax(dim=(1, 2)), torch.ones(18, dtype=torch.float64))
    nonzero = (maps > 0).double().mean(dim=(1, 2))
    assert ((nonzero > 0.2) & (nonzero < 0.35)).all()  # about 26 % per map (AU_AWP.md)
    # Each peak sits at the 1-based cell nearest the scaled point (ties at .5 go to either neighbour).
    points = fpb["prior"]["source"]["prior_kp"].double() / 4
    for k in range(18):
        row, col = divmod(int(maps[k].argmax()), 64)
        assert abs(row + 1 - points[k, 1].item()) <= 0.5 and abs(col + 1 - points[k, 0].item()) <= 0.5


def test_prior_maps_at_64_frame_are_the_analytic_maps_of_the_scaled_points(fpb):
    """A 64×64 frame at scale 0.25 → 16×16 maps: the same formula at the points ×16/64 (= 256 points / 16)."""
    prior256 = prior_batch(fpb, "source")
    prior64 = prior256 / 4  # the same face in a 64×64 frame
    maps = prior_maps(prior64, (64, 64), (16, 16))
    assert maps.shape == (1, 18, 16, 16)
    for k in range(18):
        x, y = prior256[0, k].tolist()
        assert_close(maps[0, k], analytic_map(y / 16, x / 16, (16, 16)), atol=1e-12)
    # Only the frame-to-grid ratio matters: the 256 points on a 16×16 grid give the same maps.
    assert_close(prior_maps(prior256, (256, 256), (16, 16)), maps, atol=1e-15)


def test_prior_maps_scale_each_axis_on_non_square_frames():
    prior = torch.tensor([[[40.0, 10.0], [3.0, 60.5]]], dtype=torch.float64)  # (x, y) in a 64 (H) × 128 (W) frame
    maps = prior_maps(prior, (64, 128), (16, 32))
    for k in range(2):
        x, y = prior[0, k].tolist()
        assert_close(maps[0, k], analytic_map(y / 4, x / 4, (16, 32)), atol=1e-12)


def test_prior_maps_without_the_square_root():
    prior = torch.tensor([[[20.0, 30.0]]])
    maps = prior_maps(prior, (64, 64), (16, 16), sigma=1.2, sqrt_distance=False)
    assert_close(maps[0, 0], analytic_map(7.5, 5.0, (16, 16), sigma=1.2, sqrt_distance=False), atol=1e-12)
    assert not torch.allclose(maps, prior_maps(prior, (64, 64), (16, 16), sigma=1.2))


# --------------------------------------------------------------------------- forward, eval mode

def test_eval_forward(fpb):
    kp, gen, disc = build(fpb)
    recorded = fpb["eval"]
    source, driving = chw(fpb["inputs"]["source_image"]), chw(fpb["inputs"]["driving_image"])
    with torch.no_grad():
        kps = {}
        for which, frame in (("source", source), ("driving", driving)):
            kps[which] = kp(frame, prior_batch(fpb, which))
            for key in ("value", "jacobian"):
                assert_close(kps[which][key], recorded[f"kp_{which}"][key])
            inputs = kp.network_input(frame, prior_batch(fpb, which))
            assert_close(inputs[:, 3], recorded[f"awp_{which}"])
            if which == "source":
                assert_close(inputs[0], recorded["hourglass_input_source"])
        out = gen(source, kp_source=kps["source"], kp_driving=kps["driving"])
        for key, expected in recorded["generator"].items():
            assert_close(out[key], expected)
        maps = disc(ImagePyramid([1], 3)(recorded["generator"]["prediction"]))
    assert_close(maps["prediction_map_1"], recorded["discriminator_prediction_map_1"])
    assert len(maps["feature_maps_1"]) == len(recorded["discriminator_feature_maps_1"]) == 4
    for ours, theirs in zip(maps["feature_maps_1"], recorded["discriminator_feature_maps_1"]):
        assert_close(ours, theirs)


def test_forward_leaves_the_input_frame_unchanged(fpb):
    kp, _, _ = build(fpb)
    frame = chw(fpb["inputs"]["source_image"]).clone()
    with torch.no_grad():
        kp(frame, prior_batch(fpb, "source"))
    assert torch.equal(frame, chw(fpb["inputs"]["source_image"]))  # the original scaled it by 255 on the CPU


# --------------------------------------------------------------------------- forward, train mode

def test_train_mode_forward_on_a_batch_of_two(fpb):
    kp, gen, _ = build(fpb, train=True)
    recorded = fpb["train"]
    source, driving = chw(fpb["inputs"]["source_image"]), chw(fpb["inputs"]["driving_image"])
    prior_s, prior_d = prior_batch(fpb, "source"), prior_batch(fpb, "driving")
    batch_s, batch_d = torch.cat([source, driving]), torch.cat([driving, source])
    batch_prior_s, batch_prior_d = torch.cat([prior_s, prior_d]), torch.cat([prior_d, prior_s])
    with torch.no_grad():
        kp_source = kp(batch_s, batch_prior_s)
        kp_driving = kp(batch_d, batch_prior_d)
        awp_source = kp.network_input(batch_s, batch_prior_s)[:, 3:]
        awp_driving = kp.network_input(batch_d, batch_prior_d)[:, 3:]
        out = gen(batch_s, kp_source=kp_source, kp_driving=kp_driving)
    for key in ("value", "jacobian"):
        assert_close(kp_source[key], recorded["kp_source"][key])
        assert_close(kp_driving[key], recorded["kp_driving"][key])
    assert_close(awp_source, recorded["awp_source"])
    assert_close(awp_driving, recorded["awp_driving"])
    for key in ("prediction", "mask", "occlusion_map"):
        assert_close(out[key], recorded["generator"][key])


def test_gradients_reach_the_awp_convs_through_the_jacobian_only(fpb):
    kp, _, _ = build(fpb, train=True)
    frame = torch.rand(2, 3, 64, 64)
    prior = (prior_batch(fpb, "source") / 4).repeat(2, 1, 1).requires_grad_(True)
    out = kp(frame, prior)
    assert not out["value"].requires_grad  # values are dlib's, as in the original
    out["jacobian"].square().sum().backward()
    for conv in (kp.learn, kp.learn1):
        assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert prior.grad is None


# --------------------------------------------------------------------------- other frame sizes

def test_detector_at_64_uses_16x16_maps_of_the_scaled_prior(fpb):
    kp, _, _ = build(fpb)
    frame = torch.nn.functional.interpolate(chw(fpb["inputs"]["source_image"]), size=(64, 64), mode="area")
    prior = prior_batch(fpb, "source") / 4
    with torch.no_grad():
        inputs = kp.network_input(frame, prior)
        out = kp(frame, prior)
        maps = prior_maps(prior, (64, 64), (16, 16)).float()
        expected_awp = kp.learn1(kp.learn(maps))
    assert inputs.shape == (1, 4, 16, 16)
    assert_close(inputs[:, 3:], expected_awp, atol=0)
    assert_close(out["value"], fpb["eval"]["kp_source"]["value"], atol=0)  # same normalised points
    assert out["jacobian"].shape == (1, 18, 2, 2)
