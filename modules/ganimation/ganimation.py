"""GANimation's training losses and model step, as ganimation_replicate ``model/ganimation.py`` /
``model/base_model.py`` (ULME-GAN's ``model/ULMEGAN.py`` is the same code), without the optimisers.

One training iteration of the original (``optimize_paras``):

1. ``forward``: ``fake = A*src + (1-A)*C`` from ``net_gen(src, tar_aus)``; the cycle
   ``rec = A'*fake + (1-A')*C'`` from ``net_gen(fake, src_aus)``.
2. D step: ``loss_dis`` (``discriminator_losses``) → backward → ``optim_dis.step()``.
3. Every ``train_gen_iter`` (5) iterations (``idx % 5 == 0``, so the first one too), G step: ``loss_gen``
   (``generator_losses``) with the *updated* D on the fake of step 1 → backward → ``optim_gen.step()``.
   The original's ``set_requires_grad(net_dis, False)`` sets an attribute on the module, not on its
   parameters, so D's parameters also collect gradients in the G step; harmless, since
   ``optim_dis.zero_grad()`` runs before the next D step.

Training facts (replicate ``options.py``, ULME ``options.py``; see ``TRAIN_DEFAULTS``): Adam, lr 1e-4,
betas (0.5, 0.999), one optimiser per network; per-epoch ``LambdaLR``: constant for ``niter`` = 20
epochs, then linear decay over ``niter_decay`` = 10 (``model_utils.linear_decay_factor``; the
replicate's rule is off by one, see there); 30 epochs; batch 25;
images 128×128 in [-1, 1] (``ToTensor`` → ``Normalize(0.5, 0.5)``), random horizontal flip in training;
AUs = OpenFace intensities / 5, target AUs get U(-0.1, 0.1) noise in training (``add_aus_noise``);
weights N(0, 0.02), biases 0.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .model_utils import compose

# ULME-GAN's defaults, identical to ganimation_replicate's options.py defaults.
ULME_LAMBDAS = dict(lambda_dis=1.0, lambda_aus=160.0, lambda_rec=10.0, lambda_mask=0.0, lambda_tv=0.0,
                    lambda_wgan_gp=10.0)
REPLICATE_LAMBDAS = dict(ULME_LAMBDAS)
# The GANimation paper / official code (albertpumarola/GANimation options): lambda_D_cond 4000 on an MSE
# that is further divided by the batch size, i.e. 4000/25 = 160 on a plain MSE at batch 25 (what the
# replicate uses); lambda_cyc 10, lambda_mask 0.1, lambda_mask_smooth 1e-5, lambda_D_gp 10. The official
# smoothness term is an L1 sum of differences; here lambda_tv weighs the replicate's squared TV instead.
GANIMATION_PAPER_LAMBDAS = dict(lambda_dis=1.0, lambda_aus=160.0, lambda_rec=10.0, lambda_mask=0.1,
                                lambda_tv=1e-5, lambda_wgan_gp=10.0)

TRAIN_DEFAULTS = dict(lr=1e-4, beta1=0.5, beta2=0.999, lr_policy='lambda', niter=20, niter_decay=10,
                      epoch_count=1, batch_size=25, train_gen_iter=5, image_size=128, aus_nc=17, ngf=64,
                      ndf=64, aus_noise=0.1, init_type='normal', init_gain=0.02, gan_type='wgan-gp')


def gan_loss(pred, target_is_real, gan_type='wgan-gp', label=None):
    """Adversarial loss of critic scores ``pred`` (any shape) → scalar.

    'wgan-gp': ``-mean(pred)`` for real, ``mean(pred)`` for fake. 'lsgan': MSE to ``label`` (1 / 0).
    'gan': BCE with logits to ``label`` (the original applied BCELoss to the sigmoid-free scores).
    """
    if gan_type == 'wgan-gp':
        return -pred.mean() if target_is_real else pred.mean()
    if label is None:
        label = 1.0 if target_is_real else 0.0
    target = torch.as_tensor(label, dtype=pred.dtype, device=pred.device).expand_as(pred)
    if gan_type == 'lsgan':
        return F.mse_loss(pred, target)
    if gan_type == 'gan':
        return F.binary_cross_entropy_with_logits(pred, target)
    raise NotImplementedError('GAN loss type [%s] is not found' % gan_type)


def total_variation(x):
    """The original's TVLoss: ``2 * (Σ(Δ_h x)² / (C(H-1)W) + Σ(Δ_w x)² / (CH(W-1))) / N``.

    x (N, C, H, W) → scalar; the sums run over the whole batch.
    """
    n, c, h, w = x.shape
    h_tv = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).sum()
    w_tv = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).sum()
    return 2 * (h_tv / (c * (h - 1) * w) + w_tv / (c * h * (w - 1))) / n


def draw_gp_alpha(n, like, generator=None):
    """The WGAN-GP interpolation weights: ``torch.rand(n, 1, 1, 1)`` drawn on the CPU generator as the
    original (so ``torch.manual_seed`` reproduces them on any device), then moved to ``like``. → (n, 1, 1, 1)."""
    return torch.rand(n, 1, 1, 1, generator=generator).to(device=like.device, dtype=like.dtype)


def gradient_penalty(net_dis, real_img, fake_img, alpha=None, generator=None):
    """WGAN-GP: ``mean_n((‖∂ΣD_map(x̂)/∂x̂_n‖₂ - 1)²)``, ``x̂ = α·real + (1-α)·fake``, both detached.

    real_img, fake_img (N, C, H, W); alpha (N, 1, 1, 1) or None to draw it (``draw_gp_alpha``).
    Returns (penalty scalar, alpha). The gradient keeps its graph, so the penalty trains D.
    """
    if alpha is None:
        alpha = draw_gp_alpha(real_img.shape[0], real_img, generator)
    inter_img = (alpha * real_img.detach() + (1 - alpha) * fake_img.detach()).requires_grad_(True)
    inter_prob, _ = net_dis(inter_img)
    dydx, = torch.autograd.grad(outputs=inter_prob, inputs=inter_img, grad_outputs=torch.ones_like(inter_prob),
                                retain_graph=True, create_graph=True)
    dydx_l2norm = dydx.reshape(dydx.shape[0], -1).pow(2).sum(dim=1).sqrt()
    return (dydx_l2norm - 1).pow(2).mean(), alpha


def discriminator_losses(net_dis, src_img, src_aus, fake_img, *, lambda_dis=1.0, lambda_aus=160.0,
                         lambda_wgan_gp=10.0, gan_type='wgan-gp', alpha=None, generator=None, **_unused):
    """The terms of the original's ``backward_dis`` (without the backward).

    src_img, fake_img (N, C, H, W) (fake is detached here), src_aus (N, aus_nc). Returns a dict of
    scalars ``dis_real``, ``dis_fake``, ``dis_real_aus`` (MSE of D's AU head on the real image),
    ``dis_gp`` (wgan-gp only), ``dis`` = λ_dis(fake + real) + λ_aus·real_aus + λ_gp·gp, and the tensors
    ``pred_real_aus`` (N, aus_nc) and ``gp_alpha`` (N, 1, 1, 1) (wgan-gp only). Extra lambdas are ignored,
    so a whole lambda dict can be passed.
    """
    pred_real, pred_real_aus = net_dis(src_img)
    out = {'dis_real': gan_loss(pred_real, True, gan_type),
           'dis_real_aus': F.mse_loss(pred_real_aus, src_aus.to(pred_real_aus.dtype).reshape(pred_real_aus.shape))}
    pred_fake, _ = net_dis(fake_img.detach())
    out['dis_fake'] = gan_loss(pred_fake, False, gan_type)
    total = lambda_dis * (out['dis_fake'] + out['dis_real']) + lambda_aus * out['dis_real_aus']
    if gan_type == 'wgan-gp':
        out['dis_gp'], out['gp_alpha'] = gradient_penalty(net_dis, src_img, fake_img, alpha, generator)
        total = total + lambda_wgan_gp * out['dis_gp']
    out['dis'] = total
    out['pred_real_aus'] = pred_real_aus
    return out


def generator_losses(net_dis, src_img, tar_aus, fake_img, aus_mask, rec_real_img, rec_aus_mask, *,
                     lambda_dis=1.0, lambda_aus=160.0, lambda_rec=10.0, lambda_mask=0.0, lambda_tv=0.0,
                     gan_type='wgan-gp', **_unused):
    """The terms of the original's ``backward_gen`` (without the backward).

    src_img, fake_img, rec_real_img (N, C, H, W); aus_mask, rec_aus_mask (N, 1, H, W); tar_aus
    (N, aus_nc). Returns scalars ``gen_GAN``, ``gen_fake_aus`` (MSE of D's AU head on the fake to the
    target AUs), ``gen_rec`` (L1 of the cycle to the source), ``gen_mask_real_aus`` = mean(A),
    ``gen_mask_fake_aus`` = mean(A'), ``gen_smooth_real_aus`` = TV(A), ``gen_smooth_fake_aus`` = TV(A'),
    ``gen`` (the λ-weighted sum), and the tensor ``pred_fake_aus`` (N, aus_nc).
    """
    pred_fake, pred_fake_aus = net_dis(fake_img)
    out = {'gen_GAN': gan_loss(pred_fake, True, gan_type),
           'gen_fake_aus': F.mse_loss(pred_fake_aus, tar_aus.to(pred_fake_aus.dtype).reshape(pred_fake_aus.shape)),
           'gen_rec': F.l1_loss(rec_real_img, src_img),
           'gen_mask_real_aus': aus_mask.mean(),
           'gen_mask_fake_aus': rec_aus_mask.mean(),
           'gen_smooth_real_aus': total_variation(aus_mask),
           'gen_smooth_fake_aus': total_variation(rec_aus_mask)}
    out['gen'] = (lambda_dis * out['gen_GAN'] + lambda_aus * out['gen_fake_aus'] + lambda_rec * out['gen_rec']
                  + lambda_mask * (out['gen_mask_real_aus'] + out['gen_mask_fake_aus'])
                  + lambda_tv * (out['gen_smooth_real_aus'] + out['gen_smooth_fake_aus']))
    out['pred_fake_aus'] = pred_fake_aus
    return out


def add_aus_noise(aus, amplitude=0.1, generator=None):
    """Training-time target-AU jitter of the original loaders: ``aus + U(-amplitude, amplitude)``. (N, K) → (N, K)."""
    noise = torch.rand(aus.shape, generator=generator).to(device=aus.device, dtype=aus.dtype)
    return aus + (2 * noise - 1) * amplitude


def train_gen_this_step(idx, train_gen_iter=5):
    """Whether iteration ``idx`` (0-based, within the epoch) also updates G: ``idx % train_gen_iter == 0``."""
    return idx % train_gen_iter == 0


def build_optimizers(net_gen, net_dis, lr=1e-4, beta1=0.5, beta2=0.999):
    """The original's two Adam optimisers: (optim_gen, optim_dis)."""
    return (torch.optim.Adam(net_gen.parameters(), lr=lr, betas=(beta1, beta2)),
            torch.optim.Adam(net_dis.parameters(), lr=lr, betas=(beta1, beta2)))


class GANimationModel(nn.Module):
    """Generator + critic + lambdas; computes what the original's model computes, the trainer steps.

    ``forward(src_img, tar_aus, src_aus=None)`` → dict ``color_mask``, ``aus_mask``, ``embed``,
    ``fake_img`` and, when ``src_aus`` is given (training), the cycle ``rec_color_mask``,
    ``rec_aus_mask``, ``rec_embed``, ``rec_real_img``. ``dis_losses(src_img, src_aus, out)`` and
    ``gen_losses(src_img, tar_aus, out)`` return the loss dicts of ``discriminator_losses`` /
    ``generator_losses`` for that forward. Parameter names: ``net_gen.*``, ``net_dis.*``.
    """

    def __init__(self, net_gen, net_dis=None, *, lambda_dis=1.0, lambda_aus=160.0, lambda_rec=10.0,
                 lambda_mask=0.0, lambda_tv=0.0, lambda_wgan_gp=10.0, gan_type='wgan-gp'):
        super().__init__()
        self.net_gen = net_gen
        self.net_dis = net_dis
        self.gan_type = gan_type
        self.lambdas = dict(lambda_dis=lambda_dis, lambda_aus=lambda_aus, lambda_rec=lambda_rec,
                            lambda_mask=lambda_mask, lambda_tv=lambda_tv, lambda_wgan_gp=lambda_wgan_gp)

    def forward(self, src_img, tar_aus, src_aus=None):
        color_mask, aus_mask, embed = self.net_gen(src_img, tar_aus)
        out = {'color_mask': color_mask, 'aus_mask': aus_mask, 'embed': embed,
               'fake_img': compose(src_img, color_mask, aus_mask)}
        if src_aus is not None:
            rec_color, rec_mask, rec_embed = self.net_gen(out['fake_img'], src_aus)
            out.update(rec_color_mask=rec_color, rec_aus_mask=rec_mask, rec_embed=rec_embed,
                       rec_real_img=compose(out['fake_img'], rec_color, rec_mask))
        return out

    def dis_losses(self, src_img, src_aus, out, alpha=None, generator=None):
        """``backward_dis``'s losses for the forward ``out``; the fake is detached."""
        return discriminator_losses(self.net_dis, src_img, src_aus, out['fake_img'], gan_type=self.gan_type,
                                    alpha=alpha, generator=generator, **self.lambdas)

    def gen_losses(self, src_img, tar_aus, out):
        """``backward_gen``'s losses for the training forward ``out`` (needs the cycle)."""
        return generator_losses(self.net_dis, src_img, tar_aus, out['fake_img'], out['aus_mask'],
                                out['rec_real_img'], out['rec_aus_mask'], gan_type=self.gan_type, **self.lambdas)
