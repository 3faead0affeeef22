"""GANimation's networks, as in donydchen/ganimation_replicate ``model/model_utils.py`` (used unchanged by ULME-GAN).

Module, attribute and constructor names follow the original so that its ``<epoch>_net_gen.pth`` /
``<epoch>_net_dis.pth`` state dicts load with ``strict=True`` and its code runs on these classes.

What the original does, where it matters:

* ``SplitGenerator`` takes the image and the AU vector tiled over the image plane (AUs enter at the
  input, so the target face cannot be encoded once and reused across AU vectors). Every trunk conv has a
  bias that the following ``InstanceNorm2d(affine=False)`` cancels; the biases are stored anyway.
* ``SplitDiscriminator`` has no normalisation layer at all: ``norm='instance'`` only switches the conv
  biases of layers 1..5 on. Its outputs are ``.squeeze()``d, which also drops the batch dimension when
  N = 1; here that is ``squeeze_batch=True`` (the original's behaviour), the default keeps the batch dim.
* Differences from the original that do not change numbers: the generator does not keep its last input
  on the module (``self.input_img_au``), ``norm='none'`` builds (the original crashes on it),
  ``get_scheduler`` raises for an unknown policy (the original returns the exception), ``init_net`` never
  wraps in ``DataParallel`` (state-dict names stay those of the saved files).
* The replicate's linear LR decay is off by one (its last epoch trains at LR 0); ``linear_decay_factor``
  uses pix2pix's rule by default and keeps the replicate's as ``published=True``.
"""
import functools

import torch
from torch import nn
from torch.nn import init
from torch.optim import lr_scheduler


def get_norm_layer(norm_type='instance'):
    """Norm-layer factory: 'batch' | 'instance' (affine=False, no running stats, as the original) | 'none'."""
    if norm_type == 'batch':
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm_type == 'instance':
        # No running statistics: train and eval forwards are identical.
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm_type == 'none':
        return None
    raise NotImplementedError('normalization layer [%s] is not found' % norm_type)


def _uses_bias(norm_layer):
    # The original's rule: convs get a bias only in front of InstanceNorm (BatchNorm has its own shift).
    func = norm_layer.func if isinstance(norm_layer, functools.partial) else norm_layer
    return func == nn.InstanceNorm2d


def _norm(norm_layer, channels):
    # Identity keeps the Sequential indices (and so the state-dict names) of the normalised network.
    return nn.Identity() if norm_layer is None else norm_layer(channels)


def compose(src, color_mask, aus_mask):
    """GANimation's composition ``A * src + (1 - A) * C``: A = 1 keeps the source pixel.

    src (N, C, H, W), color_mask (N, C, H, W), aus_mask (N, 1, H, W) → (N, C, H, W). A source of batch 1
    broadcasts over N masks.
    """
    return aus_mask * src + (1 - aus_mask) * color_mask


class ResnetBlock(nn.Module):
    """``x + [conv3×3 → norm → ReLU (→ Dropout 0.5) → conv3×3 → norm](x)``. (N, dim, H, W) → same."""

    def __init__(self, dim, padding_type, norm_layer, use_dropout, use_bias):
        super().__init__()
        self.conv_block = self.build_conv_block(dim, padding_type, norm_layer, use_dropout, use_bias)

    @staticmethod
    def _padding(padding_type):
        """(explicit padding layers, conv padding) for one 3×3 conv."""
        if padding_type == 'reflect':
            return [nn.ReflectionPad2d(1)], 0
        if padding_type == 'replicate':
            return [nn.ReplicationPad2d(1)], 0
        if padding_type == 'zero':
            return [], 1
        raise NotImplementedError('padding [%s] is not implemented' % padding_type)

    def build_conv_block(self, dim, padding_type, norm_layer, use_dropout, use_bias):
        pad, p = self._padding(padding_type)
        layers = pad + [nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias),
                        _norm(norm_layer, dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        pad, p = self._padding(padding_type)
        layers += pad + [nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias), _norm(norm_layer, dim)]
        return nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class SplitGenerator(nn.Module):
    """GANimation's generator: a ResNet trunk shared by a colour head (tanh) and an attention head (sigmoid).

    forward(img (N, img_nc, H, W), au (M, aus_nc)) → (color_mask (M, img_nc, H, W) in (-1, 1),
    aus_mask (M, 1, H, W) in (0, 1), embed (M, ngf, H, W)). M = N as in the original; an image of batch 1
    is also accepted with M AU vectors (one target face driven by a batch of AU vectors), which equals
    running each frame on its own. H and W must be divisible by 4.
    """

    def __init__(self, img_nc, aus_nc, ngf=64, norm_layer=nn.BatchNorm2d, use_dropout=False, n_blocks=6,
                 padding_type='zero'):
        assert n_blocks >= 0
        super().__init__()
        self.input_nc = img_nc + aus_nc
        self.ngf = ngf
        use_bias = _uses_bias(norm_layer)

        model = [nn.Conv2d(self.input_nc, ngf, kernel_size=7, stride=1, padding=3, bias=use_bias),
                 _norm(norm_layer, ngf), nn.ReLU(True)]
        n_downsampling = 2
        for i in range(n_downsampling):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=4, stride=2, padding=1, bias=use_bias),
                      _norm(norm_layer, ngf * mult * 2), nn.ReLU(True)]
        mult = 2 ** n_downsampling
        model += [ResnetBlock(ngf * mult, padding_type=padding_type, norm_layer=norm_layer,
                              use_dropout=use_dropout, use_bias=use_bias) for _ in range(n_blocks)]
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            model += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, kernel_size=4, stride=2, padding=1,
                                         bias=use_bias),
                      _norm(norm_layer, ngf * mult // 2), nn.ReLU(True)]
        self.model = nn.Sequential(*model)
        self.color_top = nn.Sequential(nn.Conv2d(ngf, img_nc, kernel_size=7, stride=1, padding=3, bias=False),
                                       nn.Tanh())
        self.au_top = nn.Sequential(nn.Conv2d(ngf, 1, kernel_size=7, stride=1, padding=3, bias=False),
                                    nn.Sigmoid())

    def forward(self, img, au):
        if img.shape[0] == 1 and au.shape[0] != 1:
            img = img.expand(au.shape[0], -1, -1, -1)
        if img.shape[0] != au.shape[0]:
            raise ValueError(f'batch of images ({img.shape[0]}) and of AU vectors ({au.shape[0]}) differ')
        au = au.to(img.dtype)
        sparse_au = au[:, :, None, None].expand(-1, -1, img.shape[2], img.shape[3])
        embed_features = self.model(torch.cat([img, sparse_au], dim=1))
        return self.color_top(embed_features), self.au_top(embed_features), embed_features


def _squeeze_keep_batch(x):
    """The original's ``.squeeze()`` applied to every dimension but the batch one."""
    return x.reshape(x.shape[0], *[d for d in x.shape[1:] if d != 1])


class SplitDiscriminator(nn.Module):
    """GANimation's critic: a strided conv body (LeakyReLU 0.01, no norm) with a patch head and an AU head.

    forward(img (N, input_nc, S, S), S = image_size) → (pred_map, pred_aus). Before squeezing these are
    (N, 1, S/2^n_layers, S/2^n_layers) patch scores and (N, aus_nc, 1, 1) AU regressions; both lose their
    singleton dims: (N, 2, 2) and (N, aus_nc) at S = 128, n_layers = 6. With
    ``squeeze_batch=True`` (the original) the batch dim goes too when N = 1: (2, 2) and (aus_nc,).
    """

    def __init__(self, input_nc, aus_nc, image_size=128, ndf=64, n_layers=6, norm_layer=nn.BatchNorm2d,
                 squeeze_batch=False):
        super().__init__()
        use_bias = _uses_bias(norm_layer)
        self.squeeze_batch = squeeze_batch
        kw, padw = 4, 1
        # The first conv always has a bias, the others only when the (unused) norm is InstanceNorm.
        sequence = [nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw), nn.LeakyReLU(0.01, True)]
        cur_dim = ndf
        for _ in range(1, n_layers):
            sequence += [nn.Conv2d(cur_dim, 2 * cur_dim, kernel_size=kw, stride=2, padding=padw, bias=use_bias),
                         nn.LeakyReLU(0.01, True)]
            cur_dim *= 2
        self.model = nn.Sequential(*sequence)
        self.dis_top = nn.Conv2d(cur_dim, 1, kernel_size=kw - 1, stride=1, padding=padw, bias=False)
        k_size = int(image_size / (2 ** n_layers))
        self.aus_top = nn.Conv2d(cur_dim, aus_nc, kernel_size=k_size, stride=1, bias=False)

    def forward(self, img):
        embed_features = self.model(img)
        pred_map = self.dis_top(embed_features)
        pred_aus = self.aus_top(embed_features)
        if self.squeeze_batch:
            return pred_map.squeeze(), pred_aus.squeeze()
        return _squeeze_keep_batch(pred_map), _squeeze_keep_batch(pred_aus)


class TVLoss(nn.Module):
    """The original's total variation: ``w * 2 * (Σ Δ_h² / (C(H-1)W) + Σ Δ_w² / (CH(W-1))) / N``.

    (N, C, H, W) → scalar. ``modules.ganimation.ganimation.total_variation`` is the same as a function.
    """

    def __init__(self, TVLoss_weight=1):
        super().__init__()
        self.TVLoss_weight = TVLoss_weight

    def forward(self, x):
        from .ganimation import total_variation
        return self.TVLoss_weight * total_variation(x)


class GANLoss(nn.Module):
    """The original's adversarial criterion: ``GANLoss(gan_type)(pred, target_is_real)`` → scalar.

    'wgan-gp': -mean(pred) for real, mean(pred) for fake; 'lsgan': MSE to 1 / 0. 'gan': binary cross
    entropy; the critic has no sigmoid, so this takes logits (the original's BCELoss on raw scores fails).
    """

    def __init__(self, gan_type='wgan-gp', target_real_label=1.0, target_fake_label=0.0):
        super().__init__()
        self.register_buffer('real_label', torch.tensor(target_real_label))
        self.register_buffer('fake_label', torch.tensor(target_fake_label))
        self.gan_type = gan_type

    def forward(self, input, target_is_real):
        from .ganimation import gan_loss
        label = self.real_label if target_is_real else self.fake_label
        return gan_loss(input, target_is_real, self.gan_type, label=label)


def get_scheduler(optimizer, opt=None, *, lr_policy='lambda', niter=20, niter_decay=10, epoch_count=1,
                  lr_decay_iters=50, published=False):
    """The original's per-epoch LR schedule. ``opt`` (an options object) overrides the keywords.

    'lambda': constant for ``niter`` epochs, then linear decay over ``niter_decay`` epochs
    (``linear_decay_factor``; ``published=True`` is the replicate's off-by-one version); 'step': ×0.1
    every ``lr_decay_iters``; 'plateau': ReduceLROnPlateau.
    """
    if opt is not None:
        lr_policy, niter, niter_decay = opt.lr_policy, opt.niter, opt.niter_decay
        epoch_count, lr_decay_iters = opt.epoch_count, getattr(opt, 'lr_decay_iters', lr_decay_iters)
    if lr_policy == 'lambda':
        return lr_scheduler.LambdaLR(optimizer, lr_lambda=functools.partial(
            linear_decay_factor, niter=niter, niter_decay=niter_decay, epoch_count=epoch_count,
            published=published))
    if lr_policy == 'step':
        return lr_scheduler.StepLR(optimizer, step_size=lr_decay_iters, gamma=0.1)
    if lr_policy == 'plateau':
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode='min', factor=0.2, threshold=0.01, patience=5)
    raise NotImplementedError('learning rate policy [%s] is not implemented' % lr_policy)


def linear_decay_factor(epoch, niter=20, niter_decay=10, epoch_count=1, published=False):
    """LR multiplier after ``epoch`` scheduler steps (the original steps once, after each epoch).

    Default: ``1 - max(0, epoch + epoch_count - niter) / (niter_decay + 1)`` (pix2pix/CycleGAN's rule):
    ``niter`` epochs at the full LR, then a linear decay that is at 1/(niter_decay+1) in the last epoch.
    ``published=True``: the replicate's rule, with an extra ``+ 1`` in the numerator: only ``niter - 1``
    full epochs, and the last epoch (30 with the defaults) trains at LR 0.
    """
    shift = 1 if published else 0
    return 1.0 - max(0, epoch + shift + epoch_count - niter) / float(niter_decay + 1)


def init_weights(net, init_type='normal', gain=0.02):
    """The original's init: conv/linear weights from ``init_type``, their biases 0; BatchNorm weight N(1, gain)."""
    def init_func(m):
        classname = m.__class__.__name__
        if hasattr(m, 'weight') and ('Conv' in classname or 'Linear' in classname):
            if init_type == 'normal':
                init.normal_(m.weight.data, 0.0, gain)
            elif init_type == 'xavier':
                init.xavier_normal_(m.weight.data, gain=gain)
            elif init_type == 'kaiming':
                init.kaiming_normal_(m.weight.data, a=0, mode='fan_in')
            elif init_type == 'orthogonal':
                init.orthogonal_(m.weight.data, gain=gain)
            else:
                raise NotImplementedError('initialization method [%s] is not implemented' % init_type)
            if getattr(m, 'bias', None) is not None:
                init.constant_(m.bias.data, 0.0)
        elif 'BatchNorm2d' in classname:
            init.normal_(m.weight.data, 1.0, gain)
            init.constant_(m.bias.data, 0.0)

    net.apply(init_func)


def init_net(net, init_type='normal', init_gain=0.02, gpu_ids=()):
    """Initialise ``net``; with ``gpu_ids`` move it to the first of them (never wrapped in DataParallel)."""
    if len(gpu_ids) > 0:
        net.to(torch.device('cuda', gpu_ids[0]))
    init_weights(net, init_type, gain=init_gain)
    return net


def define_splitG(img_nc, aus_nc, ngf, use_dropout=False, norm='instance', init_type='normal', init_gain=0.02,
                  gpu_ids=()):
    """``SplitGenerator`` with 6 residual blocks and zero padding, initialised as the original."""
    net = SplitGenerator(img_nc, aus_nc, ngf, norm_layer=get_norm_layer(norm), use_dropout=use_dropout, n_blocks=6)
    return init_net(net, init_type, init_gain, gpu_ids)


def define_splitD(input_nc, aus_nc, image_size, ndf, norm='instance', init_type='normal', init_gain=0.02,
                  gpu_ids=(), squeeze_batch=False):
    """``SplitDiscriminator`` with 6 layers, initialised as the original."""
    net = SplitDiscriminator(input_nc, aus_nc, image_size, ndf, n_layers=6, norm_layer=get_norm_layer(norm),
                             squeeze_batch=squeeze_batch)
    return init_net(net, init_type, init_gain, gpu_ids)
