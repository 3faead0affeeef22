"""The animation fast path (issue 7): channels_last memory in fp32 keeps the published numbers."""
import copy

import numpy as np
import torch

import inference
from checkpoint import load_networks
from configuration import build_networks
from modules.motion_transfer import normalize_kp


def reference_networks(reference):
    kp_detector, generator, _ = build_networks(reference["model_params"])
    load_networks(reference["checkpoint"], {"kp_detector": kp_detector, "generator": generator})
    return kp_detector.eval(), generator.eval()


def test_fp32_fast_path_uses_channels_last_and_matches_the_published_forward(reference):
    """Batched, source encoded once, channels_last on the CPU: every frame equals the published
    per-frame forward of the contiguous networks to 1e-5."""
    kp_detector, generator = reference_networks(reference)
    published_kp, published_generator = copy.deepcopy(kp_detector), copy.deepcopy(generator)
    animator = inference.Animator(kp_detector, generator, "cpu", batch_frames=3)
    assert animator.precision == "fp32" and animator.channels_last

    frames = torch.stack([reference["source_image"], reference["driving_image"]] * 2)
    frames = np.round(frames.numpy() * 255).astype(np.uint8)             # (4, 256, 256, 3)
    priors = torch.stack([reference["prior_kp_source"], reference["prior_kp_driving"]] * 2).numpy().astype(np.float32)
    x = animator.to_device(frames)
    assert x.is_contiguous(memory_format=torch.channels_last)
    source = animator.encode_source(frames[0], priors[0])
    kp_initial = inference.reference_keypoints(animator, frames[1], priors[1])
    normalization = inference.Normalization()
    fast = torch.cat([animator.drive(source, x[i:i + 3], priors[i:i + 3], kp_initial, normalization)
                      for i in (0, 3)])

    with torch.no_grad():
        contiguous = inference.frames_to_tensor(frames)
        p = torch.from_numpy(priors)
        kp_source = published_kp(contiguous[:1], p[:1])
        kp_init = published_kp(contiguous[1:2], p[1:2])
        for i in range(len(frames)):
            kp_norm = normalize_kp(kp_source, published_kp(contiguous[i:i + 1], p[i:i + 1]), kp_init,
                                   **normalization.as_kwargs())
            expected = published_generator(contiguous[:1], kp_driving=kp_norm, kp_source=kp_source)["prediction"]
            assert (fast[i:i + 1] - expected).abs().max() <= 1e-5, i
