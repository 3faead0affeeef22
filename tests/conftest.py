"""Shared fixtures. Test-specific helpers live beside their tests, not here."""
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_PATH = ROOT.parent / "shared" / "reference" / "reference-a.pt"


@pytest.fixture(scope="session")
def reference():
    """Tensors recorded from the published implementation (../shared/reference/README.md)."""
    if not REFERENCE_PATH.is_file():
        pytest.fail(f"reference fixture missing: {REFERENCE_PATH} (shared/ must sit beside the clone)")
    return torch.load(REFERENCE_PATH, weights_only=True)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # Two cores here; more threads than that only add scheduling noise to the timings of the suite.
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield
