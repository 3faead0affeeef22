"""GANimation (donydchen/ganimation_replicate) and ULME-GAN (xiaoxiaozhou24/ULME-GAN), which trains it.

``model_utils``: the networks with the original's names (``SplitGenerator``, ``SplitDiscriminator``, ...).
``ganimation``: the losses and a ``GANimationModel`` that computes them for the project's trainer.
``au_sequence``: ULME's test-time AU processing (presence, re-encoding, apex, sequence fitting).
"""
from .au_sequence import (FITTING_MODES, OPENFACE_AUS, apex_fitting, apex_frame, fit_sequence,
                          get_data_reference, linear_fitting, prepare_sequence, presence_mask,
                          presence_mask_openface18, re_encode, to_generator)
from .ganimation import (GANIMATION_PAPER_LAMBDAS, REPLICATE_LAMBDAS, TRAIN_DEFAULTS, ULME_LAMBDAS,
                         GANimationModel, add_aus_noise, build_optimizers, discriminator_losses, gan_loss,
                         generator_losses, gradient_penalty, total_variation, train_gen_this_step)
from .model_utils import (GANLoss, ResnetBlock, SplitDiscriminator, SplitGenerator, TVLoss, compose,
                          define_splitD, define_splitG, get_norm_layer, get_scheduler, init_weights,
                          linear_decay_factor)
