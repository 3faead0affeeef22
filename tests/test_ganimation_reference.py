"""GANimation / ULME-GAN (modules/ganimation) against ganimation-a.pt, plus analytic and behaviour checks.

The fixture and its tolerances are described in ../shared/reference/AU_AWP.md (first half).
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from modules.ganimation import au_sequence as aus
from modules.ganimation.ganimation import (GANimationModel, add_aus_noise, discriminator_losses, gan_loss,
                                           gradient_penalty, total_variation, train_gen_this_step)
from modules.ganimation.model_utils import (GANLoss, SplitDiscriminator, SplitGenerator, TVLoss, compose,
                                            define_splitD, define_splitG, get_norm_layer, get_scheduler,
                                            linear_decay_factor)

FIXTURE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "ganimation-a.pt"
ATOL = 1e-5
GEN_BIAS_PREFIXES = ("model.0.", "model.3.", "model.6.", "model.15.", "model.18.")


@pytest.fixture(scope="module")
def ref():
    if not FIXTURE.is_file():
        pytest.fail(f"reference fixture missing: {FIXTURE} (shared/ must sit beside the clone)")
    return torch.load(FIXTURE, weights_only=True)


def build_gen(ref):
    p = ref["params"]["generator"]
    net = SplitGenerator(p["img_nc"], p["aus_nc"], p["ngf"], norm_layer=get_norm_layer(p["norm"]),
                         use_dropout=p["use_dropout"], n_blocks=p["n_blocks"], padding_type=p["padding_type"])
    net.load_state_dict(ref["checkpoint"]["gen"], strict=True)
    return net


def build_dis(ref, squeeze_batch=False):
    p = ref["params"]["discriminator"]
    net = SplitDiscriminator(p["input_nc"], p["aus_nc"], p["image_size"], p["ndf"], n_layers=p["n_layers"],
                             norm_layer=get_norm_layer(p["norm"]), squeeze_batch=squeeze_batch)
    net.load_state_dict(ref["checkpoint"]["dis"], strict=True)
    return net


def close(actual, expected, atol=ATOL):
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = (actual.detach().double() - expected.double()).abs().max().item()
    assert diff <= atol, diff


@pytest.fixture(scope="module")
def model(ref):
    return GANimationModel(build_gen(ref), build_dis(ref), gan_type=ref["params"]["gan_type"],
                           **ref["params"]["lambdas"])


@pytest.fixture(scope="module")
def train_step(ref, model):
    """One forward, backward_dis and backward_gen on the train batch, as the fixture recorded them."""
    batch = ref["inputs"]["train"]
    out = model(batch["src_img"], batch["tar_aus"], batch["src_aus"])
    torch.manual_seed(ref["inputs"]["gp_seed"])
    dis = model.dis_losses(batch["src_img"], batch["src_aus"], out)
    model.zero_grad()
    dis["dis"].backward()
    dis_grads = {k: p.grad.clone() for k, p in model.net_dis.named_parameters()}
    model.zero_grad()
    gen = model.gen_losses(batch["src_img"], batch["tar_aus"], out)
    gen["gen"].backward()
    gen_grads = {k: p.grad.clone() for k, p in model.net_gen.named_parameters()}
    model.zero_grad()
    return out, dis, gen, dis_grads, gen_grads


# ---------------------------------------------------------------------------------------- networks


def test_define_functions_build_the_checkpoint_layout(ref):
    g, d = ref["params"]["generator"], ref["params"]["discriminator"]
    gen = define_splitG(g["img_nc"], g["aus_nc"], g["ngf"])
    dis = define_splitD(d["input_nc"], d["aus_nc"], d["image_size"], d["ndf"])
    gen.load_state_dict(ref["checkpoint"]["gen"], strict=True)
    dis.load_state_dict(ref["checkpoint"]["dis"], strict=True)
    assert len(gen.state_dict()) == 36 and len(dis.state_dict()) == 14


def test_eval_generator(ref):
    gen = build_gen(ref).eval()
    src = ref["inputs"]["source"]
    with torch.no_grad():
        color, mask, embed = gen(src, ref["inputs"]["tar_aus"])
    close(color, ref["eval"]["color_mask"])
    close(mask, ref["eval"]["aus_mask"])
    close(embed, ref["eval"]["embed"])
    close(compose(src, color, mask), ref["eval"]["fake_img"])


@pytest.mark.parametrize("name,image", [("dis_real", "source"), ("dis_fake", "fake_img")])
def test_eval_discriminator_both_squeeze_modes(ref, name, image):
    x = ref["inputs"]["source"] if image == "source" else ref["eval"]["fake_img"]
    want = ref["eval"][name]
    with torch.no_grad():
        pred_map, pred_aus = build_dis(ref, squeeze_batch=True).eval()(x)
        kept_map, kept_aus = build_dis(ref, squeeze_batch=False).eval()(x)
    close(pred_map, want["pred_map"])  # (2, 2): the original drops the batch dim at N = 1
    close(pred_aus, want["pred_aus"])  # (17,)
    close(kept_map, want["pred_map"][None])
    close(kept_aus, want["pred_aus"][None])


def test_train_forward_and_cycle(ref, train_step):
    out = train_step[0]
    for key in ("color_mask", "aus_mask", "fake_img", "rec_color_mask", "rec_aus_mask", "rec_real_img"):
        close(out[key], ref["train"][key])


@pytest.mark.parametrize("squeeze_batch", [False, True])
def test_train_discriminator(ref, squeeze_batch):
    dis = build_dis(ref, squeeze_batch).train()
    with torch.no_grad():
        for name, x in (("dis_real", ref["inputs"]["train"]["src_img"]), ("dis_fake", ref["train"]["fake_img"])):
            pred_map, pred_aus = dis(x)
            close(pred_map, ref["train"][name]["pred_map"])
            close(pred_aus, ref["train"][name]["pred_aus"])


# ------------------------------------------------------------------------------------------ losses


def test_discriminator_losses(ref, train_step):
    dis = train_step[1]
    close(dis["gp_alpha"], ref["losses"]["gp_alpha"], atol=0)
    for key, want in ref["losses"]["dis"].items():
        if key == "dis_gp":
            assert abs(dis[key].item() - want) <= 1e-7
        else:
            assert dis[key].item() == pytest.approx(want, rel=1e-5), key
    close(dis["pred_real_aus"], ref["losses"]["pred_real_aus"])


def test_generator_losses(ref, train_step):
    gen = train_step[2]
    for key, want in ref["losses"]["gen"].items():
        assert gen[key].item() == pytest.approx(want, rel=1e-5), key
    close(gen["pred_fake_aus"], ref["losses"]["pred_fake_aus"])


def test_discriminator_gradients_include_the_double_backward(ref, train_step):
    grads = train_step[3]
    assert grads.keys() == ref["losses"]["dis_grads"].keys()
    for key, want in ref["losses"]["dis_grads"].items():
        close(grads[key], want, atol=1e-5 * want.abs().max().item())


def test_generator_gradients(ref, train_step):
    grads = train_step[4]
    assert grads.keys() == ref["losses"]["gen_grads"].keys()
    checked = 0
    for key, want in ref["losses"]["gen_grads"].items():
        if key.endswith(".bias") and (key.startswith(GEN_BIAS_PREFIXES) or ".conv_block." in key):
            # InstanceNorm cancels these biases: true gradient 0, the stored values are float noise.
            assert grads[key].abs().max() < 1e-4
            continue
        close(grads[key], want, atol=1e-5 * want.abs().max().item())
        checked += 1
    assert checked == 19


def test_gradient_penalty_draws_alpha_like_the_original(ref):
    torch.manual_seed(ref["inputs"]["gp_seed"])
    alpha = torch.rand(2, 1, 1, 1)
    close(alpha, ref["losses"]["gp_alpha"], atol=0)


# --------------------------------------------------------------------------------- ULME AU handling


@pytest.mark.parametrize("re_code,key", [(True, "re_code"), (False, "no_re_code")])
def test_get_data(ref, re_code, key):
    table = ref["inputs"]["au_table"]
    au_r, mask, top = aus.get_data_reference(table["au_r"].numpy(), table["au_c"].numpy(), re_code=re_code)
    want = ref["ulme_au"]["get_data"][key]
    np.testing.assert_allclose(au_r, want["au_r"].numpy(), rtol=0, atol=1e-12)
    assert top == want["top_frame"]
    assert au_r.dtype == np.float64


def test_presence(ref):
    table = ref["inputs"]["au_table"]
    want = ref["ulme_au"]["presence"].numpy()
    np.testing.assert_array_equal(aus.presence_mask_openface18(table["au_c"].numpy()), want)
    # The project's 17-column presence table gives the same mask.
    au_c17 = aus.au_c_from_openface18(table["au_c"].numpy())
    assert au_c17.shape == (8, 17)
    np.testing.assert_array_equal(aus.presence_mask(au_c17), want)
    _, mask, top = aus.prepare_sequence(table["au_r"].numpy(), au_c17, re_code=True)
    np.testing.assert_array_equal(mask, want)
    assert top == 5


def ulme_inputs(ref):
    table = ref["inputs"]["au_table"]
    au_r, _, top = aus.get_data_reference(table["au_r"].numpy(), table["au_c"].numpy(), re_code=True)
    return aus.scale_intensities(au_r), aus.scale_intensities(table["template_au_r"].numpy()), top


@pytest.mark.parametrize("mode", ["linear_fitting", "apex_frame", "1V1"])
def test_fitting_modes_published(ref, mode):
    x, template, top = ulme_inputs(ref)
    want = ref["ulme_au"][mode]
    assert want["top_frame"] == (top if mode != "1V1" else 0)
    fitted = aus.fit_sequence(x, mode, top_frame=want["top_frame"], src_aus=template, quirk=True)
    np.testing.assert_allclose(fitted, want["batch_tar_aus_after"].numpy(), rtol=0, atol=1e-12)
    fed = aus.to_generator(fitted)
    assert fed.dtype == np.float32
    np.testing.assert_allclose(fed, want["tar_aus_fed"].numpy(), rtol=0, atol=1e-7)
    # The apex found from the fed table itself is the one the reference used.
    if mode != "1V1":
        assert aus.apex_frame(x) == want["top_frame"]


def test_linear_fitting_fake_sequence(ref):
    gen = build_gen(ref).eval()
    fed = torch.from_numpy(ref["ulme_au"]["linear_fitting"]["tar_aus_fed"].numpy())
    src = ref["inputs"]["source"]
    with torch.no_grad():
        color, mask, _ = gen(src, fed)  # one template face, a batch of AU vectors
        fake = compose(src, color, mask)
    close(fake, ref["ulme_au"]["linear_fitting"]["fake_img"])


def test_corrected_linear_fitting_is_the_default_and_differs(ref):
    x, _, top = ulme_inputs(ref)
    fixed = aus.fit_sequence(x, "linear_fitting", top_frame=top)
    np.testing.assert_allclose(fixed[-1], x[-1], rtol=0, atol=1e-15)  # ends on the clip's real last frame
    np.testing.assert_allclose(fixed[top], x[top], rtol=0, atol=1e-15)
    assert not np.allclose(fixed, ref["ulme_au"]["linear_fitting"]["batch_tar_aus_after"].numpy())


# ------------------------------------------------------------------- hand-computed sequence fitting


TABLE = np.array([[1.0, 0.0], [3.0, 9.0], [5.0, 2.0], [2.0, 6.0], [4.0, 2.0]])
TABLE_TOP = 2  # given, not the largest row sum (frame 1): the fitting takes any apex


def test_corrected_ramp_hand_computed():
    # Column 0: onset 1, apex 5 (frame 2), last 4 → rise 1, 3, 5 then fall 5 → 4 over frames 2..4.
    # Column 1: onset 0, apex 2, last 2 → 0, 1, 2, 2, 2.
    want = np.array([[1.0, 0.0], [3.0, 1.0], [5.0, 2.0], [4.5, 2.0], [4.0, 2.0]])
    np.testing.assert_allclose(aus.linear_fitting(TABLE, TABLE_TOP), want, rtol=0, atol=1e-15)


def test_published_ramp_hand_computed():
    # Frame 1 is ramped to (3, 1) first and then read as "the last frame": frame 3 repeats the apex
    # (a = 2/2) and frame 4 is halfway between the apex and (3, 1).
    want = np.array([[1.0, 0.0], [3.0, 1.0], [5.0, 2.0], [5.0, 2.0], [4.0, 1.5]])
    np.testing.assert_allclose(aus.linear_fitting(TABLE, TABLE_TOP, quirk=True), want, rtol=0, atol=1e-15)


def test_linear_fitting_edges():
    x = np.array([[4.0], [1.0], [2.0]])
    np.testing.assert_allclose(aus.linear_fitting(x, 0), [[4.0], [3.0], [2.0]])  # apex first: fall only
    np.testing.assert_allclose(aus.linear_fitting(x, 2), [[4.0], [3.0], [2.0]])  # apex last: rise only
    np.testing.assert_allclose(aus.linear_fitting(x[:1], 0), x[:1])
    with pytest.raises(ValueError, match="at least 2 frames"):
        aus.linear_fitting(x[:1], 0, quirk=True)
    with pytest.raises(ValueError, match="outside"):
        aus.linear_fitting(x, 3)
    assert aus.linear_fitting(x, 1) is not x and np.array_equal(x, [[4.0], [1.0], [2.0]])  # input untouched


def test_apex_fitting_hand_computed_and_apex_at_frame_zero():
    x, s = np.array([[4.0], [1.0], [2.0]]), np.array([0.0])
    # t = 0 (the reference divides by zero): frame 0 is the apex, then a = (3-i)/3.
    np.testing.assert_allclose(aus.apex_fitting(x, s, 0), [[4.0], [8 / 3], [4 / 3]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(aus.apex_fitting(x, s, 0, end_at_template=True), [[4.0], [2.0], [0.0]])
    # t = 1: template → apex → a = (3-2)/(3-1).
    np.testing.assert_allclose(aus.apex_fitting(x, s, 1), [[0.0], [1.0], [0.5]])
    with pytest.raises(ValueError, match="src_aus"):
        aus.fit_sequence(x, "apex_frame", top_frame=1)


def test_fit_sequence_factor_mode_and_default_apex():
    x = TABLE / 5
    np.testing.assert_allclose(aus.fit_sequence(x, "1V1", factor=2.0), 2 * x)
    np.testing.assert_allclose(aus.fit_sequence(x, "linear_fitting"), aus.linear_fitting(x, aus.apex_frame(x)))
    with pytest.raises(ValueError, match="unknown fitting mode"):
        aus.fit_sequence(x, "cubic")


def test_presence_apex_and_re_encode_small():
    au_c = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(aus.presence_mask(au_c), [1.0, 0.0, 0.0])  # 3/4, 1/4, 1/4
    np.testing.assert_array_equal(aus.presence_mask(au_c[:2]), [1.0, 1.0, 1.0])  # exactly half counts
    np.testing.assert_array_equal(aus.re_encode([[2.0, 3.0, 4.0]], [1, 0, 1]), [[2.0, 0.0, 4.0]])
    assert aus.apex_frame([[1.0, 1.0], [2.0, 0.5], [0.5, 2.0]]) == 1  # first of the tied maxima


# ------------------------------------------------------------------------------ behaviour, analytic


def small_nets(seed=0, ngf=4, ndf=4, size=64):
    torch.manual_seed(seed)
    gen = SplitGenerator(3, 17, ngf, norm_layer=get_norm_layer("instance"))
    dis = SplitDiscriminator(3, 17, image_size=size, ndf=ndf, norm_layer=get_norm_layer("instance"))
    return gen, dis


def test_batched_driving_equals_per_frame():
    gen, _ = small_nets()
    gen.eval()
    torch.manual_seed(1)
    src = torch.rand(1, 3, 64, 64) * 2 - 1
    au = torch.rand(5, 17)
    with torch.no_grad():
        color, mask, _ = gen(src, au)
        batched = compose(src, color, mask)
        frames = [compose(src, *gen(src, au[i:i + 1])[:2]) for i in range(5)]
        repeated = compose(src.expand(5, -1, -1, -1), *gen(src.expand(5, -1, -1, -1), au)[:2])
    assert batched.shape == (5, 3, 64, 64)
    close(batched, torch.cat(frames), atol=1e-6)
    close(batched, repeated, atol=0)
    with pytest.raises(ValueError, match="differ"):
        gen(torch.zeros(2, 3, 64, 64), au)


def test_au_noise_bounds_and_batch_shapes():
    gen, dis = small_nets()
    x = torch.zeros(1, 3, 64, 64)
    pred_map, pred_aus = dis(x)
    assert pred_map.shape == (1,) and pred_aus.shape == (1, 17)  # 1×1 patch map at 64×64: (N,)
    dis.squeeze_batch = True
    assert dis(x)[0].shape == () and dis(x)[1].shape == (17,)
    noisy = add_aus_noise(torch.full((1000, 17), 0.5), 0.1, generator=torch.Generator().manual_seed(0))
    assert noisy.min() >= 0.4 and noisy.max() <= 0.6 and abs(noisy.mean().item() - 0.5) < 0.005


def test_batch_one_training_is_the_same_in_both_squeeze_modes():
    gen, dis = small_nets()
    torch.manual_seed(2)
    src, src_aus, tar_aus = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 17), torch.rand(1, 17)
    results = []
    for squeeze in (False, True):
        dis.squeeze_batch = squeeze
        model = GANimationModel(gen, dis)
        out = model(src, tar_aus, src_aus)
        d = model.dis_losses(src, src_aus, out, alpha=torch.full((1, 1, 1, 1), 0.3))
        g = model.gen_losses(src, tar_aus, out)
        results.append((d["dis"].item(), g["gen"].item()))
    assert results[0] == pytest.approx(results[1], rel=1e-6)


def test_losses_train_both_networks_and_fake_is_detached_for_dis():
    gen, dis = small_nets()
    model = GANimationModel(gen, dis, lambda_mask=0.1, lambda_tv=1e-5)
    torch.manual_seed(3)
    src, src_aus, tar_aus = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 17), torch.rand(2, 17)
    out = model(src, tar_aus, src_aus)
    model.dis_losses(src, src_aus, out)["dis"].backward()
    assert all(p.grad is None for p in gen.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dis.parameters())
    gen_out = model.gen_losses(src, tar_aus, out)
    want = (gen_out["gen_GAN"] + 160 * gen_out["gen_fake_aus"] + 10 * gen_out["gen_rec"]
            + 0.1 * (gen_out["gen_mask_real_aus"] + gen_out["gen_mask_fake_aus"])
            + 1e-5 * (gen_out["gen_smooth_real_aus"] + gen_out["gen_smooth_fake_aus"]))
    assert gen_out["gen"].item() == pytest.approx(want.item(), rel=1e-6)
    gen_out["gen"].backward()
    assert gen.au_top[0].weight.grad.abs().sum() > 0 and gen.color_top[0].weight.grad.abs().sum() > 0


class LinearCritic(nn.Module):
    """D(x) = Σ w·x per sample: its input gradient is w everywhere, so the GP is (‖w‖ - 1)²."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1), x.new_zeros(x.shape[0], 17)


def test_gradient_penalty_analytic():
    w = torch.full((1, 3, 4, 4), 0.5)  # ‖w‖ = 0.5·√48
    critic = LinearCritic(w)
    real, fake = torch.rand(3, 3, 4, 4), torch.rand(3, 3, 4, 4)
    gp, alpha = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0))
    assert alpha.shape == (3, 1, 1, 1)
    assert gp.item() == pytest.approx((0.5 * 48 ** 0.5 - 1) ** 2, rel=1e-6)
    gp.backward()  # the penalty trains the critic: d/dw (‖w‖-1)² = 2(‖w‖-1)·w/‖w‖
    norm = 0.5 * 48 ** 0.5
    close(critic.w.grad, 2 * (norm - 1) * w / norm, atol=1e-6)
    terms = discriminator_losses(critic, real, torch.zeros(3, 17), fake, alpha=alpha)
    assert terms["dis_gp"].item() == pytest.approx(gp.item(), rel=1e-6)


def test_total_variation_gan_loss_and_compose_analytic():
    ramp = torch.arange(5.0)[None, None, :, None].expand(2, 1, 5, 6)  # Δ_h = 1, Δ_w = 0
    # Σ Δ_h² over the batch = N·C(H-1)W, normalised per sample and averaged over N: 2·1.
    assert total_variation(ramp).item() == pytest.approx(2.0)
    assert TVLoss(0.5)(ramp).item() == pytest.approx(1.0)
    assert total_variation(ramp.transpose(2, 3)).item() == pytest.approx(2.0)
    pred = torch.tensor([[1.0, 3.0]])
    assert gan_loss(pred, True).item() == -2.0 and GANLoss()(pred, False).item() == 2.0
    assert gan_loss(pred, True, "lsgan").item() == pytest.approx((0 + 4) / 2)
    src, color = torch.ones(1, 3, 2, 2), -torch.ones(1, 3, 2, 2)
    mask = torch.tensor([1.0, 0.0, 0.25, 0.5]).reshape(1, 1, 2, 2)
    close(compose(src, color, mask), (2 * mask - 1).expand(1, 3, 2, 2), atol=0)


def test_schedule_and_generator_step_frequency():
    # Default (pix2pix's rule): 20 full epochs, then 10/11 ... 1/11 in epochs 21..30.
    assert [linear_decay_factor(e) for e in (0, 19, 20, 29)] == pytest.approx([1, 1, 10 / 11, 1 / 11])
    # The replicate's: 19 full epochs, and epoch 30 at LR 0.
    assert [linear_decay_factor(e, published=True) for e in (18, 19, 28, 29)] == pytest.approx(
        [1, 10 / 11, 1 / 11, 0])
    for published, last in ((False, 1e-4 / 11), (True, 0.0)):
        optim = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1e-4, betas=(0.5, 0.999))
        sched = get_scheduler(optim, published=published)
        lrs = []
        for _ in range(30):  # one scheduler step after each epoch, as the original
            lrs.append(optim.param_groups[0]["lr"])
            optim.step()
            sched.step()
        assert lrs[:19] == pytest.approx([1e-4] * 19)
        assert lrs[29] == pytest.approx(last, abs=1e-12)
    assert [i for i in range(12) if train_gen_this_step(i)] == [0, 5, 10]
