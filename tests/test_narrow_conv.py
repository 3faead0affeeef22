"""Row-split convolutions (modules/narrow_conv.py): the same convolution, computed in another order."""
import pytest
import torch
import torch.nn.functional as F

from checkpoint import load_networks
from configuration import build_networks
from modules.narrow_conv import RowSplitConv2d, row_split_conv2d, split_narrow_convolutions

CASES = [  # (in, out, kernel, padding, height, width)
    (64, 3, (7, 7), (3, 3), 20, 24),   # the generator's final convolution
    (36, 1, (7, 7), (3, 3), 16, 16),   # an occlusion head
    (12, 10, (7, 7), (0, 0), 16, 13),  # FOMM's keypoint head: no padding, the output shrinks
    (5, 2, (3, 5), (2, 1), 9, 11),     # rectangular kernel, padding wider than half the kernel
    (4, 2, (5, 5), (1, 0), 4, 8),      # kernel taller than the input with its padding on one side
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cin, cout, kernel, padding, height, width", CASES)
def test_row_split_equals_the_direct_convolution(cin, cout, kernel, padding, height, width, channels_last):
    """In float64 the two orders of summation agree to rounding (1e-12), shape and layout included."""
    generator = torch.Generator().manual_seed(cin * 100 + cout)
    x = torch.randn(2, cin, height, width, dtype=torch.float64, generator=generator)
    weight = torch.randn(cout, cin, *kernel, dtype=torch.float64, generator=generator)
    bias = torch.randn(cout, dtype=torch.float64, generator=generator)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = F.conv2d(x, weight, bias, padding=padding)
    got = row_split_conv2d(x, weight, bias, padding)
    assert got.shape == expected.shape and got.dtype == torch.float64
    assert (got - expected).abs().max() < 1e-12
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    no_bias = row_split_conv2d(x, weight, None, padding)
    assert (no_bias - F.conv2d(x, weight, None, padding=padding)).abs().max() < 1e-12


def test_float32_row_split_is_as_accurate_as_the_direct_convolution():
    """Against a float64 ground truth the float32 row split is no worse than oneDNN's direct kernel."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 3, 7, padding=3)
    x = torch.rand(2, 64, 32, 32)
    with torch.no_grad():
        truth = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=3)
        direct = (conv(x).double() - truth).abs().max()
        split = (RowSplitConv2d.from_conv(conv)(x).double() - truth).abs().max()
    assert split <= 2 * direct + 1e-7


def test_under_bf16_autocast_the_output_has_the_convolution_dtype():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 3, 7, padding=3)
    x = torch.rand(1, 16, 16, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        direct, split = conv(x), RowSplitConv2d.from_conv(conv)(x)
    assert split.dtype == direct.dtype == torch.bfloat16
    assert (split.float() - conv(x.float()).float()).abs().max() < 0.05 * direct.float().abs().max()


def test_split_replaces_only_narrow_convolutions_and_keeps_the_state_dict(reference):
    """On the reference networks (small widths): the convolutions with fewer than 16 outputs — the
    final one and the occlusion head among them — become row-split, sharing their parameters; every
    other convolution stays; state-dict names and values unchanged;
    the generator's output is the same."""
    kp_detector, generator, _ = build_networks(reference["model_params"])
    load_networks(reference["checkpoint"], {"kp_detector": kp_detector, "generator": generator})
    generator.eval()
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    final_weight = generator.final.weight
    source = reference["source_image"].permute(2, 0, 1)[None]
    with torch.no_grad():
        kp_source = kp_detector.eval()(source, reference["prior_kp_source"][None])
        kp_driving = kp_detector(reference["driving_image"].permute(2, 0, 1)[None], reference["prior_kp_driving"][None])
        expected = generator(source, kp_driving, kp_source)["prediction"]

    narrow = sorted(name for name, m in generator.named_modules()
                    if isinstance(m, torch.nn.Conv2d) and m.out_channels < 16 and m.kernel_size[0] > 1)
    replaced = split_narrow_convolutions(generator)

    assert sorted(replaced) == narrow and {"final", "dense_motion_network.occlusion"} <= set(replaced)
    assert isinstance(generator.final, RowSplitConv2d) and generator.final.weight is final_weight
    assert all(type(m) is torch.nn.Conv2d for name, m in generator.named_modules()
               if isinstance(m, torch.nn.Conv2d) and name not in replaced)
    after = generator.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    with torch.no_grad():
        got = generator(source, kp_driving, kp_source)["prediction"]
    assert (got - expected).abs().max() <= 1e-5
    # The prior-mode keypoint head has 18 outputs and stays direct.
    assert "kp" not in split_narrow_convolutions(kp_detector) and type(kp_detector.kp) is torch.nn.Conv2d
