"""One target face, one driving clip, one result video.

    python demo.py --config config/your_dataset_test.yaml --checkpoint CKPT \\
        --source_image face.jpg --driving_video clip.mp4 [--result_video result.mp4] [--crop]

--driving_video is a video file (mp4, avi, mov, gif, …) or a folder of frames. ``--crop`` detects the
face and crops it the way preprocess.py does (target: its own box; driving clip: the first frame's box
for every frame); without it both are only resized to the model's frame size, so the faces must
already fill the frame. Motion is relative (the config's normalisation) unless ``--absolute``;
``--best_frame N`` / ``--find_best_frame`` start the relative motion from driving frame N / from the
frame whose landmarks best match the target's. The result is the generated clip (``--side_by_side``:
driving | target | generated) as mp4 or gif, by the extension of --result_video.

AU-driven methods (ULME-GAN, GANimation: model_params.method ulme-gan / ganimation) are driven by action
units instead: the driving video's AUs are measured on the fly (au_estimator.py, MediaPipe), or
``--driving_aus TABLE`` gives them directly, as an aumaker CSV or OpenFace's FeatureExtraction CSV (a
row per frame; write the AUxx_r intensities 0–5 you want and AUxx_c 1 where an AU is on), with no
video needed. The config's animate_params (re_code, fitting, factor) shape the sequence.
"""
import itertools
import os
import sys
from dataclasses import replace

import numpy as np
from scipy.spatial import ConvexHull
from tqdm import tqdm

import inference
from clip_priors import LazyLandmarker, image_prior, scale_prior
from cli_args import OneLineParser, non_negative_int, positive_float, positive_int, ranged
from errors import InputError, RunError, report
from fileio import check_output_file, disk_full_error, is_disk_full
from inference import AnimationError, Normalization
from session import decide_gray
from preprocess import recorded_margin
from video_io import VideoWriter, iter_clip, read_image, resize_frame, side_by_side

# dlib sees at least this many pixels per side when the model's frames are smaller (tiny configs).
MEASURE_SIZE = 256


def build_parser():
    parser = OneLineParser(prog="demo.py", description="Animate one target face with one driving clip.")
    parser.add_argument("--config", required=True, help="the YAML config the checkpoint was trained with")
    parser.add_argument("--checkpoint", required=True, help="trained checkpoint (.pth.tar)")
    parser.add_argument("--source_image", required=True, help="the target face (an image file)")
    parser.add_argument("--driving_video", default=None, help="driving clip: a video file or a folder of frames")
    parser.add_argument("--driving_aus", default=None,
                        help="AU-driven methods only: the AU table that drives the face (aumaker or OpenFace "
                             "FeatureExtraction CSV), instead of AUs measured on --driving_video")
    parser.add_argument("--result_video", default="result.mp4", help="output, .mp4 or .gif (default: result.mp4)")
    parser.add_argument("--crop", action="store_true", help="detect and crop the faces as preprocess.py does")
    parser.add_argument("--margin", type=ranged(float, low=0, high=2), default=None,
                        help="with --crop: grow the face box by this fraction per side (preprocess.py's --margin; "
                             "default: the margin the config's training clips were cropped with, else 0)")
    motion = parser.add_mutually_exclusive_group()
    motion.add_argument("--relative", dest="relative", action="store_true", default=None,
                        help="relative motion transfer (default: the config's normalization_params)")
    motion.add_argument("--absolute", dest="relative", action="store_false",
                        help="absolute: the driving keypoints as they are")
    parser.add_argument("--adapt_scale", action="store_true", default=None,
                        help="scale the motion by the faces' size ratio (convex hull of the keypoints)")
    best = parser.add_mutually_exclusive_group()
    best.add_argument("--best_frame", type=non_negative_int, default=None, help="driving frame the relative motion starts from")
    best.add_argument("--find_best_frame", action="store_true",
                      help="start from the driving frame whose landmarks best match the target's")
    parser.add_argument("--side_by_side", action="store_true", help="write driving | target | generated")
    device = parser.add_mutually_exclusive_group()
    device.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    device.add_argument("--cpu", action="store_true", help="same as --device cpu")
    parser.add_argument("--fps", type=positive_float, default=None, help="playback rate (default: animate_params.fps, 25)")
    parser.add_argument("--batch_frames", type=positive_int, default=None, help="driving frames per forward pass")
    parser.add_argument("--precision", choices=inference.PRECISIONS, default="fp32", help="fp32 (default) or bf16")
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks first")
    parser.add_argument("--grayscale", choices=("auto", "gray", "color"), default=None,
                        help="gray output (default: animate_params.grayscale, auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace --result_video if it exists")
    return parser


class Framing:
    """How raw frames become model input: an optional square crop, then a resize.

    ``measure(raw)`` is what dlib sees: the same crop at ≥ MEASURE_SIZE pixels, so priors are measured
    at a useful resolution even for 64-pixel models.
    """

    def __init__(self, frame_size, square=None):
        self.frame_size = tuple(frame_size)
        self.square = square

    def _crop(self, raw, size):
        from preprocess import crop_resize

        return crop_resize(raw, self.square, size)

    def model(self, raw):
        if self.square is None:
            return resize_frame(raw, self.frame_size)
        return self._crop(raw, self.frame_size[0])

    def measure(self, raw):
        if self.square is None:
            return raw
        return self._crop(raw, max(MEASURE_SIZE, self.frame_size[0]))


def face_square(landmarker, frames, margin, what, limit=50):
    """preprocess.py's square crop around the first face among the first ``limit`` frames."""
    from preprocess import square_box

    for raw in itertools.islice(frames, limit):
        box = landmarker.detect(raw)
        if box is not None:
            return square_box(box, margin)
    raise AnimationError(f"{what}: dlib finds no face to crop (looked at {limit} frame(s)); "
                         "crop it by hand or drop --crop")


def normalized_landmarks(landmarks):
    """Landmarks centred and divided by the square root of their hull area (pose- and size-free
    comparison for --find_best_frame). (68, 2) → (68, 2)."""
    centred = landmarks - landmarks.mean(axis=0)
    return centred / np.sqrt(ConvexHull(landmarks).volume)


def find_best_frame(landmarker, target, frames):
    """Index of the driving frame whose normalised landmarks are closest to the target's (0 if no face)."""
    target_marks = landmarker.landmarks(target)
    if target_marks is None:
        return 0
    reference = normalized_landmarks(target_marks.astype(np.float64))
    best, best_distance = 0, np.inf
    for index, frame in enumerate(frames):
        marks = landmarker.landmarks(frame)
        if marks is None:
            continue
        distance = float(((normalized_landmarks(marks.astype(np.float64)) - reference) ** 2).sum())
        if distance < best_distance:
            best, best_distance = index, distance
    return best


def _frames(path):
    return (frame for _, frame in iter_clip(path))


def run_au_demo(config, checkpoint, source_image, driving_video, result_video, driving_aus=None, crop=False,
                margin=0.0, show_side_by_side=False, device="cpu", fps=None, batch_frames=None, precision="fp32",
                grayscale=None, overwrite=False, estimator=None):
    """The demo of an AU-driven method: the photo driven by ``driving_aus`` (a table file) or by the AUs
    measured on ``driving_video`` (``estimator(image) → (intensity, presence) | None``; default
    au_estimator's MediaPipe estimator, opened once and closed). → {'frames', 'reference_frame', 'path'}."""
    from modules.ganimation.driver import measure_table, read_driving_aus

    if os.path.exists(result_video) and not overwrite:
        raise AnimationError(f"{result_video} exists already; pass --overwrite to replace it")
    if os.path.splitext(result_video)[1].lower() not in (".mp4", ".gif"):
        raise AnimationError(f"--result_video {result_video}: must end in .mp4 or .gif")
    if (driving_video is None) == (driving_aus is None):
        raise AnimationError("give one of --driving_video (AUs measured on it) or --driving_aus (an AU table)")
    driver, checkpoint_dict = inference.open_driver(config, checkpoint, device, precision, False, batch_frames)
    frame_size = tuple(config["dataset_params"]["frame_shape"][:2])
    target_raw = read_image(source_image)
    framing = Framing(frame_size)
    landmarker = LazyLandmarker(None)
    if crop:
        framing.square = face_square(landmarker(), [target_raw], margin, source_image, limit=1)
    target = framing.model(target_raw)
    frames = None
    if driving_aus is not None:
        table = read_driving_aus(driving_aus)
    else:
        driving_framing = Framing(frame_size)
        if crop:
            driving_framing.square = face_square(landmarker(), _frames(driving_video), margin, driving_video)
        frames = [driving_framing.model(raw) for raw in _frames(driving_video)]
        if not frames:
            raise AnimationError(f"{driving_video}: no frames")
        table = measure_table([driving_framing.measure(raw) for raw in _frames(driving_video)],
                              estimator or _au_estimator())
    gray = decide_gray(grayscale or config["animate_params"]["grayscale"], driver.num_channels, checkpoint_dict,
                       target, frames[0] if frames else target)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = driver.start(target, clip=driving_aus or driving_video, target_name=source_image, table=table,
                            gray=gray)
    for warning in caught:
        print(f"demo.py: {warning.message}", file=sys.stderr)
    count = len(table.frames)
    with VideoWriter(result_video, fps or config["animate_params"]["fps"]) as writer:
        for start in range(0, count, driver.batch_frames):
            batch = list(range(start, min(count, start + driver.batch_frames)))
            for index, generated in zip(batch, driver.generate(pair, batch, None, gray)):
                shown = side_by_side(frames[index], target, generated) if show_side_by_side and frames else generated
                writer.write(shown)
    return {"frames": count, "reference_frame": 0, "path": result_video}


def _au_estimator():
    """A callable measuring one frame's AUs with MediaPipe (au_estimator.py); the landmarker is closed at exit."""
    import atexit

    import au_estimator

    try:
        model_path, _ = au_estimator.default_model()
        estimator = au_estimator.BlendshapeAUEstimator(model_path)
    except au_estimator.AUEstimatorError as error:
        raise AnimationError(f"cannot measure the driving video's AUs: {error}; give --driving_aus instead") from None
    atexit.register(estimator.close)
    return estimator.estimate


def run_demo(config, checkpoint, source_image, driving_video, result_video, crop=False, margin=0.0,
             relative=None, adapt_scale=None, best_frame=None, find_best=False, show_side_by_side=False,
             device="cpu", fps=None, batch_frames=None, precision="fp32", compile=False, grayscale=None,
             overwrite=False, landmarker=None):
    """Write ``result_video``; returns {'frames', 'reference_frame', 'path'}. Raises the project's
    one-line errors (AnimationError, MediaError, CheckpointError, PriorError, …)."""
    if os.path.exists(result_video) and not overwrite:
        raise AnimationError(f"{result_video} exists already; pass --overwrite to replace it")
    if os.path.splitext(result_video)[1].lower() not in (".mp4", ".gif"):
        raise AnimationError(f"--result_video {result_video}: must end in .mp4 or .gif")
    if driving_video is None:
        raise AnimationError("--driving_video is needed (--driving_aus instead works for AU-driven methods only)")
    # The checkpoint first: a wrong one is reported before faces are cropped and frames searched.
    driver, checkpoint_dict = inference.open_driver(config, checkpoint, device, precision, compile, batch_frames)
    params = config["animate_params"]
    frame_size = tuple(config["dataset_params"]["frame_shape"][:2])
    target_raw = read_image(source_image)
    first_raw = next(_frames(driving_video), None)
    if first_raw is None:
        raise AnimationError(f"{driving_video}: no frames")
    landmarker = LazyLandmarker(landmarker)
    target_framing, driving_framing = Framing(frame_size), Framing(frame_size)
    if crop:
        target_framing.square = face_square(landmarker(), [target_raw], margin, source_image, limit=1)
        driving_framing.square = face_square(landmarker(), _frames(driving_video), margin, driving_video)
    normalization = Normalization.from_config(config)
    if relative is not None:
        normalization = replace(normalization, use_relative_movement=relative, use_relative_jacobian=relative)
    if adapt_scale is not None:
        normalization = replace(normalization, adapt_movement_scale=adapt_scale)

    target = target_framing.model(target_raw)
    if find_best:
        best_frame = find_best_frame(landmarker(), target_framing.measure(target_raw),
                                     (driving_framing.measure(f) for f in _frames(driving_video)))
    reference = best_frame or 0
    if reference < 0:
        raise AnimationError(f"--best_frame {reference}: must be 0 or more")
    reference_raw = next(itertools.islice(_frames(driving_video), reference, None), None)
    if reference_raw is None:
        raise AnimationError(f"--best_frame {reference}: the driving clip has fewer frames")

    gray = decide_gray(grayscale or params["grayscale"], driver.num_channels, checkpoint_dict,
                       target, driving_framing.model(first_raw))
    per_frame = config["dataset_params"]["prior_mode"] == "per_frame"
    strict = config["dataset_params"]["strict_prior"]
    fallbacks = []

    def prior(framing, raw, what):
        if not driver.uses_prior:
            return None
        measured = framing.measure(raw)
        value, found = image_prior(landmarker(), measured, strict, what)
        if not found:
            fallbacks.append(what)
        return scale_prior(value, measured.shape[:2], frame_size)

    reference_prior = prior(driving_framing, reference_raw, f"driving frame {reference}")
    pair = driver.start(target, driving_framing.model(reference_raw),
                        target_prior=prior(target_framing, target_raw, source_image), first_prior=reference_prior,
                        normalization=normalization, gray=gray, clip=driving_video, target_name=source_image)

    def driving():
        for index, raw in enumerate(_frames(driving_video)):
            value = prior(driving_framing, raw, f"driving frame {index}") if per_frame else reference_prior
            yield index, driving_framing.model(raw), value

    count = 0
    with VideoWriter(result_video, fps or params["fps"]) as writer:
        for _, driving_frame, generated in tqdm(inference.stream(driver, pair, driving(), gray), desc="demo.py",
                                                 unit="frame", file=sys.stderr, disable=None):
            writer.write(side_by_side(driving_frame, target, generated) if show_side_by_side else generated)
            count += 1
    inference.warn_fallback("demo", fallbacks)
    return {"frames": count, "reference_frame": reference, "path": result_video}


def main(argv=None):
    args = build_parser().parse_args(argv)
    from configuration import load_config
    from runtime import select_device, tune_allocator

    tune_allocator()
    try:
        config = load_config(args.config)
        check_output_file(args.result_video, "--result_video")   # before any work
        margin = args.margin if args.margin is not None else recorded_margin(config["dataset_params"]["root_dir"])
        device = select_device("cpu" if args.cpu else args.device)
        import methods

        if getattr(methods.get(config["model_params"]["method"]), "driven_by_aus", False):
            result = run_au_demo(config, args.checkpoint, args.source_image, args.driving_video, args.result_video,
                                 driving_aus=args.driving_aus, crop=args.crop, margin=margin,
                                 show_side_by_side=args.side_by_side, device=device, fps=args.fps,
                                 batch_frames=args.batch_frames, precision=args.precision, grayscale=args.grayscale,
                                 overwrite=args.overwrite)
            print(f"{result['path']}: {result['frames']} frames")
            return 0
        if args.driving_aus is not None:
            raise AnimationError(f"--driving_aus drives AU-driven methods (ulme-gan, ganimation), not "
                                 f"{config['model_params']['method']}; give --driving_video")
        result = run_demo(config, args.checkpoint, args.source_image, args.driving_video, args.result_video,
                          crop=args.crop, margin=margin, relative=args.relative, adapt_scale=args.adapt_scale,
                          best_frame=args.best_frame, find_best=args.find_best_frame,
                          show_side_by_side=args.side_by_side, device=device, fps=args.fps,
                          batch_frames=args.batch_frames, precision=args.precision, compile=args.compile,
                          grayscale=args.grayscale, overwrite=args.overwrite)
    except (InputError, RunError) as error:
        return report("demo.py", error)
    except (OSError, RuntimeError) as error:
        if not is_disk_full(error):
            raise
        return report("demo.py", disk_full_error(args.result_video, "no partial file is left"))
    print(f"{result['path']}: {result['frames']} frames (motion from driving frame {result['reference_frame']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
