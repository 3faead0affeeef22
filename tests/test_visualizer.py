"""Pictures of training: sample sheet layout and loss curves, drawn without matplotlib."""
import numpy as np
import torch

import visualizer


def _generated(b=3, k=4, size=32, low=8):
    torch.manual_seed(0)
    kp = lambda: {"value": torch.rand(b, k, 2) * 1.6 - 0.8, "jacobian": torch.eye(2).repeat(b, k, 1, 1)}  # noqa: E731
    return {
        "kp_source": kp(), "kp_driving": kp(), "transformed_kp": kp(),
        "prediction": torch.rand(b, 3, size, size), "deformed": torch.rand(b, 3, size, size),
        "transformed_frame": torch.rand(b, 3, size, size), "region_mask": torch.rand(b, 1, low, low),
        "mask": torch.softmax(torch.rand(b, k + 1, low, low), dim=1),
        "sparse_deformed": torch.rand(b, k + 1, 3, low, low), "occlusion_map": torch.rand(b, 1, low, low),
    }


def test_sample_sheet_has_a_row_per_sample_and_a_column_per_stage():
    batch = {"source": torch.rand(3, 3, 32, 32), "driving": torch.rand(3, 3, 32, 32)}
    sheet = visualizer.sample_sheet(batch, _generated(), kp_size=2, max_rows=2)
    columns = 10  # source, driving, region mask, transformed, heatmaps, sparse, masks, deformed, occlusion, prediction
    border = 2
    assert sheet.dtype == np.uint8 and sheet.shape[2] == 3
    assert sheet.shape[1] == columns * (32 + border) + border
    assert sheet.shape[0] == 14 + 2 * (32 + border) + border


def test_sheet_without_optional_maps_and_gray_frames():
    generated = _generated(b=1)
    for key in ("region_mask", "transformed_frame", "mask", "sparse_deformed", "occlusion_map", "deformed"):
        generated.pop(key)
    batch = {"source": torch.rand(1, 1, 32, 32), "driving": torch.rand(1, 1, 32, 32)}
    generated["prediction"] = torch.rand(1, 1, 32, 32)
    sheet = visualizer.sample_sheet(batch, generated, draw_border=False)
    assert sheet.shape == (14 + 32, 4 * 32, 3)


def test_keypoints_are_drawn_where_they_are():
    image = np.zeros((21, 21, 3), np.uint8)
    drawn = visualizer.draw_keypoints(image, torch.tensor([[0.0, 0.0]]), visualizer.colors(1), radius=1)
    assert drawn[10, 10].any() and not drawn[0, 0].any()


def test_colors_are_distinct():
    palette = visualizer.colors(18)
    assert palette.shape == (18, 3)
    assert len({tuple(np.round(c, 3)) for c in palette}) == 18
    assert len({tuple(np.round(c, 3)) for c in visualizer.colors(6, "hsv")}) == 6


def test_loss_curves_draw_every_loss_and_survive_odd_values():
    history = {"perceptual": [(i, 10.0 / (i + 1)) for i in range(5000)],
               "gen_gan": [(1, 0.5)],
               "equivariance_value": [(1, float("nan")), (2, 1e-7), (3, 2e-7)],
               "empty": []}
    image = visualizer.loss_curves(history, panel_size=(100, 160), columns=2)
    assert image.shape == (2 * 100, 2 * 160, 3)
    assert (image != 255).any()
    assert visualizer.loss_curves({}).shape[2] == 3
