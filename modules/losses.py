"""FOMM's loss terms (perceptual pyramid, LSGAN, feature matching, equivariance) as pure functions of tensors (weights applied by the caller's config)."""
import torch


def perceptual_loss(vgg, pyramid_generated, pyramid_real, scales, layer_weights):
    """Σ_scales Σ_layers w_l · mean |VGG_l(generated) − VGG_l(real)| over the image pyramid.

    Real features carry no gradient, so they are computed without building a graph.
    """
    total = 0.0
    for scale in scales:
        key = f"prediction_{scale}"
        generated = vgg(pyramid_generated[key])
        with torch.no_grad():
            real = vgg(pyramid_real[key])
        for weight, g, r in zip(layer_weights, generated, real):
            if weight != 0:
                total = total + weight * (g - r).abs().mean()
    return total


def lsgan_generator_loss(prediction_maps, weight):
    """Σ_scales weight · mean (1 − D(G))². prediction_maps: list of (B, 1, h, w)."""
    return sum(weight * ((1 - p) ** 2).mean() for p in prediction_maps)


def lsgan_discriminator_loss(real_maps, generated_maps, weight):
    """Σ_scales weight · mean[(1 − D(real))² + D(G)²]."""
    return sum(weight * ((1 - r) ** 2 + g**2).mean() for r, g in zip(real_maps, generated_maps))


def feature_matching_loss(real_features, generated_features, layer_weights):
    """Σ_scales Σ_layers w_l · mean |D_l(real) − D_l(G)|. Inputs: per scale, a list of feature maps."""
    total = 0.0
    for real, generated in zip(real_features, generated_features):
        for weight, a, b in zip(layer_weights, real, generated):
            if weight != 0:
                total = total + weight * (a - b).abs().mean()
    return total


def equivariance_value_loss(kp_value, warped_transformed_value):
    """mean |p − T(p')|: keypoints of a frame vs. those of its warped copy mapped back. (B, K, 2)."""
    return (kp_value - warped_transformed_value).abs().mean()


def equivariance_jacobian_loss(kp_jacobian, warp_jacobian, transformed_jacobian):
    """mean |I − J⁻¹ (∇T · J')| with J (B, K, 2, 2) of the frame, J' of the warped copy, ∇T the warp's jacobian."""
    value = torch.inverse(kp_jacobian) @ (warp_jacobian @ transformed_jacobian)
    eye = torch.eye(2, dtype=value.dtype, device=value.device)
    return (eye - value).abs().mean()
