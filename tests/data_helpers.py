"""Helpers for the data-pipeline tests: real faces from face_assets and small raw dataset trees."""
import pytest

import face_assets


@pytest.fixture(scope="session")
def face_cache():
    """The face_assets cache folder with every asset fetched and verified (downloads once)."""
    try:
        face_assets.all_face_assets()
    except face_assets.FaceAssetError as error:
        pytest.fail(f"real test faces unavailable: {error}")
    return face_assets.cache_dir()
