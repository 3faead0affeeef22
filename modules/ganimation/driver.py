"""GANimation / ULME-GAN's animation driver (inference.py's driver protocol) and its AU sequences.

The target face (the template) is driven frame by frame by the driving clip's AUs, read from the
clip's aumaker table (``<dataset_params.au_dir>/<clip>.csv``), processed as ULME-GAN's test code does
(:func:`driving_sequence`, ``animate_params``):

* re-encoding (``re_code``): an AU counts for the clip only where its presence is on in at least
  ``presence_threshold`` (50 %) of the clip's frames; the others are zeroed;
* fitting (``fitting``): 'linear_fitting' (onset → apex → last frame, straight lines; the published
  ramp that reads the already-ramped frame 1 as "the last frame" is ``published_linear_fitting``),
  'apex_frame' (template's AUs → apex → back towards the template), '1V1' (each frame's own AUs);
  the apex is the frame with the largest sum of (re-encoded) intensities, or ``top_frame``;
* ``factor``: the intensity multiplier.

Reconstruction (the target is the clip's own first frame) drives it by every frame's own AUs as
measured: no re-encoding, no fitting, factor 1. Frames of the driving clip without a measured face
carry the last measured AUs (the first measured ones before it), with one warning per clip.

Speed: the generator's input is the image with the AU vector tiled over it, so the target cannot be
encoded once as a whole; but the first convolution is linear in its input, so it is split: the
image's part is computed once per target, and the AUs' part is a per-position linear map of the
17 AU values, also precomputed once (zero padding makes it position dependent near the border).
Every batch then starts after that convolution. Batches of ``batch_frames`` AU vectors share the
target; fp32 equals the original per-frame forward to about 1e-6; ``precision='bf16'`` autocasts.
"""
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import au_format
from frame_io import sort_names
from inference import PRECISIONS, AnimationError, TorchDriver, frames_to_tensor, tensor_to_frames
from modules.ganimation import au_sequence
from modules.ganimation.model_utils import compose
from modules.ganimation.training import au_dir_of


@dataclass(frozen=True)
class SequenceOptions:
    """ULME-GAN's test-time AU processing (animate_params)."""
    re_code: bool = True
    presence_threshold: float = 0.5
    fitting: str = "linear_fitting"
    published_linear_fitting: bool = False
    end_at_template: bool = False
    factor: float = 1.0
    top_frame: int = None

    @classmethod
    def from_config(cls, config):
        params = config["animate_params"]
        return cls(**{k: params[k] for k in cls.__dataclass_fields__})


RECONSTRUCTION = SequenceOptions(re_code=False, fitting="1V1", factor=1.0)


def fill_missing(table):
    """(intensity (T, 17), presence (T, 17), filled frame names) with frames without a face given the
    last measured frame's values (the first measured one's before it). Raises AnimationError when no
    frame of the table has a face."""
    found = np.asarray(table.found, bool)
    if not found.any():
        raise AnimationError("no frame of the driving clip has measured AUs (found=0 everywhere); check the "
                             "clip or import OpenFace's AUs with aumaker.py --openface")
    intensity, presence = table.intensity.astype(np.float64), table.presence.astype(np.float64)
    source = np.maximum.accumulate(np.where(found, np.arange(len(found)), -1))
    source[source < 0] = int(np.argmax(found))
    filled = [table.frames[i] for i in np.flatnonzero(~found)]
    return intensity[source], presence[source], filled


def driving_sequence(table, options=SequenceOptions(), template_aus=None):
    """The AU vectors (T, 17) float32, on the generator's 0..1 scale, that drive the template.

    table: the driving clip's AUTable (rows in driving order); template_aus: () → (17,) intensities
    0..5 of the template (called only for 'apex_frame'). Returns (sequence, filled frame names)."""
    intensity, presence, filled = fill_missing(table)
    au_r, _, apex = au_sequence.prepare_sequence(intensity, presence, options.re_code, options.presence_threshold)
    top = apex if options.top_frame is None else options.top_frame
    if options.fitting != "1V1" and not 0 <= top < len(au_r):
        raise AnimationError(f"animate_params.top_frame {top}: the driving clip has {len(au_r)} frames")
    src = None
    if options.fitting == "apex_frame":
        src = au_sequence.scale_intensities(template_aus())
    if options.fitting == "linear_fitting" and options.published_linear_fitting and len(au_r) < 2:
        raise AnimationError("published_linear_fitting reads frame 1 of the clip: it needs at least 2 frames")
    fitted = au_sequence.fit_sequence(au_sequence.scale_intensities(au_r), options.fitting, top, src,
                                      options.factor, options.published_linear_fitting, options.end_at_template)
    return au_sequence.to_generator(fitted), filled


def read_clip_table(au_dir, clip, frame_order="natural"):
    """A driving clip's AUTable with its rows in ``frame_order`` (the order its frames are read in)."""
    path = au_format.au_path(au_dir, clip)
    if not path.is_file():
        raise AnimationError(f"{path}: no AU table for driving clip {clip}; run python aumaker.py --root <root_dir> "
                             "(or set dataset_params.au_dir)")
    table = au_format.read_aus(path)
    order = [table.frames.index(name) for name in sort_names(table.frames, frame_order)]
    return au_format.AUTable([table.frames[i] for i in order], table.intensity[order], table.presence[order],
                             table.found[order])


class SplitFirstConv:
    """The generator's first convolution over cat(image, tiled AUs), split into its two linear parts.

    image (1, C, S, S) → ``base`` (1, ngf, S, S) = conv(image) + bias, once; ``basis`` (A, ngf, S, S) =
    the response to AU a set to 1 everywhere (zero padding makes it position dependent). Then
    ``__call__(aus (B, A))`` = base + Σ_a aus[:, a]·basis[a], the first conv's output for each AU vector.
    """

    def __init__(self, conv, image):
        channels = image.shape[1]
        weight = conv.weight
        aus_nc = weight.shape[1] - channels
        self.base = F.conv2d(image, weight[:, :channels], conv.bias, conv.stride, conv.padding)
        ones = torch.ones(1, 1, *image.shape[2:], dtype=image.dtype, device=image.device)
        per_au = weight[:, channels:].transpose(0, 1).reshape(aus_nc * weight.shape[0], 1, *weight.shape[2:])
        self.basis = F.conv2d(ones, per_au, None, conv.stride, conv.padding).reshape(aus_nc, weight.shape[0],
                                                                                   *self.base.shape[2:])

    def __call__(self, aus):
        mixed = torch.einsum("ba,aohw->bohw", aus.to(self.basis.dtype), self.basis)
        return self.base + mixed


@dataclass
class GanimationPair:
    """One target face and the AU sequence driving it; ``cursor``: frames generated so far."""
    image: torch.Tensor          # (1, C, S, S) in [-1, 1]
    first_conv: SplitFirstConv
    sequence: np.ndarray         # (T, 17) float32
    cursor: int = 0


class GanimationDriver(TorchDriver):
    """The driver: ``start`` reads the clip's AUs and prepares the target, ``generate`` the next frames.

    gen: SplitGenerator (eval mode). Output frames are the 128×128 (``image_size``) results resized to
    the dataset's frame size (bilinear, antialiased). ``estimator``: a callable (H, W, 3) uint8 →
    (intensity (17,), presence (17,)) or None, used for a template without an AU table in 'apex_frame'
    mode (default: au_estimator.BlendshapeAUEstimator, opened when first needed, closed after use).
    """

    uses_prior = False

    def __init__(self, gen, config, device="cpu", precision="fp32", batch_frames=8, estimator=None):
        if precision not in PRECISIONS:
            raise AnimationError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if batch_frames < 1:
            raise AnimationError(f"batch_frames must be at least 1, got {batch_frames}")
        self.gen = gen
        self.device = torch.device(device)
        self.precision = precision
        self.batch_frames = int(batch_frames)
        self.num_channels = config["model_params"]["img_nc"]
        self.image_size = config["model_params"]["image_size"]
        dataset = config["dataset_params"]
        self.frame_size = tuple(dataset["frame_shape"][:2])
        self.frame_order = dataset["frame_order"]
        self.au_dir = au_dir_of(dataset)
        self.options = SequenceOptions.from_config(config)
        self.estimator = estimator
        self._template_aus = {}

    def network_image(self, frame, gray=False):
        """(H, W, 3) uint8 → (1, C, S, S) float32 in [-1, 1] on the device (the training transform; gray:
        luma first)."""
        from modules.ganimation.training import to_network_image

        frame = np.asarray(frame)
        if gray or self.num_channels == 1:
            luma = (frames_to_tensor(frame[None], 1, True)[0, 0].numpy() * 255).round().astype(np.uint8)
            frame = np.repeat(luma[..., None], 3, axis=2)
        return to_network_image(frame, self.image_size, self.num_channels)[None].to(self.device)

    def template_aus(self, target_name, target):
        """(17,) intensities 0..5 of the template: its AU table's first measured row when aumaker wrote
        one for its folder, else measured on the image."""
        if target_name in self._template_aus:
            return self._template_aus[target_name]
        path = au_format.au_path(self.au_dir, target_name) if target_name else None
        values = None
        if path is not None and path.is_file():
            table = au_format.read_aus(path)
            if table.found.any():
                values = table.intensity[int(np.argmax(table.found))].astype(np.float64)
        if values is None:
            measured = self._measure(target)
            if measured is None:
                raise AnimationError(f"{target_name}: no face measured on the target face, so the 'apex_frame' "
                                     "fitting has no template AUs; use fitting linear_fitting or write its AU table "
                                     "with aumaker.py")
            values = np.asarray(measured[0], np.float64)
        self._template_aus[target_name] = values
        return values

    def _measure(self, image):
        if self.estimator is not None:
            return self.estimator(image)
        import au_estimator

        try:
            model_path, _ = au_estimator.default_model()
            with au_estimator.BlendshapeAUEstimator(model_path) as estimator:
                return estimator.estimate(image)
        except au_estimator.AUEstimatorError as error:
            raise AnimationError(f"cannot measure the target face's AUs: {error}") from None

    def start(self, target, first=None, target_prior=None, first_prior=None, normalization=None, gray=False,
              clip=None, target_name=None, num_frames=None, table=None):
        """Prepare a pair: the clip's AU table (or ``table``, an AUTable in driving order) → the sequence;
        the target (H, W, 3) uint8 → its image and first-conv parts. → GanimationPair."""
        reconstruction = table is None and clip is not None and clip == target_name
        if table is None:
            if clip is None:
                raise AnimationError("GANimation is driven by AUs: name the driving clip (its AU table) or give one")
            table = read_clip_table(self.au_dir, clip, self.frame_order)
        if num_frames is not None and len(table.frames) != num_frames:
            raise AnimationError(f"{au_format.au_path(self.au_dir, clip)}: {len(table.frames)} rows for {num_frames} "
                                 "frames of the clip; run aumaker.py again")
        options = RECONSTRUCTION if reconstruction else self.options
        sequence, filled = driving_sequence(table, options, lambda: self.template_aus(target_name, target))
        if filled:
            shown = ", ".join(filled[:5]) + (f", … ({len(filled)} in all)" if len(filled) > 5 else "")
            warnings.warn(f"{clip}: no face measured in {shown}; those frames carry the last measured AUs",
                          stacklevel=2)
        image = self.network_image(target, gray)
        with torch.inference_mode(), self._autocast():
            first_conv = SplitFirstConv(self.gen.model[0], image)
        return GanimationPair(image, first_conv, sequence)

    def forward(self, pair, aus):
        """Results for AU vectors ``aus`` (B, 17) → (B, C, S, S) float32 in [-1, 1]."""
        aus = torch.as_tensor(aus, device=self.device)
        with torch.inference_mode(), self._autocast():
            embed = self.gen.model[1:](pair.first_conv(aus))
            color, attention = self.gen.color_top(embed), self.gen.au_top(embed)
            out = compose(pair.image, color, attention)
        return out.float()

    def generate(self, pair, frames, priors=None, gray=False):
        """The next ``len(frames)`` frames of the pair (the pixels of the driving frames are not used:
        the clip's AUs drive) → (B, H, W, 3) uint8 at the dataset's frame size."""
        count = len(frames)
        aus = pair.sequence[pair.cursor:pair.cursor + count]
        if len(aus) < count:
            raise AnimationError(f"the driving clip has more frames than its AU table ({len(pair.sequence)} rows)")
        pair.cursor += count
        out = (self.forward(pair, aus) + 1) / 2
        if tuple(out.shape[2:]) != self.frame_size:
            out = F.interpolate(out, size=self.frame_size, mode="bilinear", align_corners=False, antialias=True)
        return tensor_to_frames(out, gray)


def original_forward(gen, image, aus):
    """The original's test forward, frame by frame: ``fake = A*src + (1-A)*C`` from gen(src, au) with
    batch 1. image (1, C, S, S), aus (T, 17) → (T, C, S, S) float32 (for tests and the benchmark)."""
    outputs = []
    with torch.no_grad():
        for au in torch.as_tensor(aus):
            color, attention, _ = gen(image, au[None])
            outputs.append(compose(image, color, attention))
    return torch.cat(outputs)


def read_driving_aus(path):
    """An AU table given by hand (demo.py --driving_aus): aumaker's CSV (au_format.py) or OpenFace's
    FeatureExtraction CSV (``frame``, ``confidence``, ``success``, ``AUxx_r``, ``AUxx_c``; AU28_c ignored).
    → AUTable, rows in frame order. Raises an InputError naming the file."""
    import csv

    import openface

    try:
        with open(path, newline="") as handle:
            header = next(csv.reader(handle), [])
    except OSError as error:
        raise AnimationError(f"--driving_aus {path}: cannot read it ({error.strerror or error})") from None
    if tuple(cell.strip() for cell in header) == au_format.COLUMNS:
        return au_format.read_aus(path)
    head, rows = openface.read_openface_csv(path)
    if "frame" not in head or not rows:
        raise AnimationError(f"--driving_aus {path}: neither an aumaker AU file nor OpenFace FeatureExtraction "
                             "output (columns frame, confidence, success, AU01_r … AU45_c)")
    count = max(int(row[head.index("frame")]) for row in rows)
    table, _ = openface.import_feature_extraction(path, [f"frame{i + 1}" for i in range(count)])
    return table


def measure_table(frames, estimate):
    """AUs of driving frames measured on the fly: frames [(H, W, 3) uint8], estimate(image) → (intensity,
    presence) or None → AUTable (found=0 where no face)."""
    intensity, presence, found = [], [], []
    for frame in frames:
        measured = estimate(frame)
        found.append(measured is not None)
        intensity.append(measured[0] if measured is not None else au_format.empty_rows(1)[0])
        presence.append(measured[1] if measured is not None else au_format.empty_rows(1)[0])
    return au_format.make_table([f"frame{i + 1}" for i in range(len(frames))], intensity, presence, found)
