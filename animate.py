"""Animation of the test pairs (``run.py --mode animate``): each target face performs each driving clip.

Per pair, named ``<driving>-<target>`` in the output folder (default ``<checkpoint folder>/animation``):

    <name>/                 PNG frames, same count and names as the driving clip (the MEGC submission form)
    <name>.mp4, <name>.gif  the generated clip at ``fps`` (default 25: ME clips are 100–200 fps slow motion)
    png/<name>.png          strip: driving frames over generated frames, up to ``strip_frames`` columns
    side_by_side/<name><format>   driving | target | generated, for looking at

The target face is encoded once per pair and the driving frames stream through in batches; nothing
holds a whole clip. Pairs finished earlier are kept and skipped (``--overwrite`` redoes them), so a
run stopped by Ctrl-C, SIGTERM or a kill continues where it stopped (outputs.run_resumable).
"""
import os

import inference
from cli_args import positive_int
from frame_io import list_frames
from inference import AnimationError, Normalization
from outputs import pair_outputs, prepare_output_folder, run_resumable, summary_lines
from pairs import check_pairs, default_pairs, read_pairs
from session import Session
from video_io import FrameFolderWriter, StripWriter, VideoWriter, side_by_side, strip_indices

SIDE_FORMATS = (".mp4", ".gif")


def add_cli_arguments(parser):
    """Flags of animate (run.py adds --config, --mode, --checkpoint, --device, …)."""
    inference.add_run_arguments(parser)
    _add = inference.add_argument_once
    _add(parser, "--num_pairs", type=positive_int, default=None, help="animate only the first N pairs (default: config's num_pairs, else all)")
    _add(parser, "--grayscale", choices=("auto", "gray", "color"), default=None,
         help="gray output: auto (default) = when the model has one channel or target and driving clip are gray")


def write_pair(driver, job, outputs, fps, strip_frames=12, stop=None):
    """Generate one pair (a session.Job) and write all its outputs, streaming. Returns the frame
    count. Nothing is published unless every output is complete; ``stop`` (StopRequests) is checked
    after every frame, and an interrupt drops the pair's temporary files."""
    writers = {"frames": FrameFolderWriter(outputs["frames"]),
               "mp4": VideoWriter(outputs["mp4"], fps),
               "gif": VideoWriter(outputs["gif"], fps),
               "strip": StripWriter(outputs["strip"], strip_indices(job.num_frames, strip_frames), rows=2),
               "side_by_side": VideoWriter(outputs["side_by_side"], fps)}
    try:
        count = 0
        for index, (name, driving_frame, generated) in enumerate(
                inference.stream(driver, job.pair, job.driving(), job.gray)):
            writers["frames"].write(generated, name)
            writers["mp4"].write(generated)
            writers["gif"].write(generated)
            writers["strip"].write(index, driving_frame, generated)
            writers["side_by_side"].write(side_by_side(driving_frame, job.target, generated))
            count += 1
            if stop is not None:
                stop.check()
        # The frame folder last: its presence is what a reader (evaluate.py) takes as the pair's output.
        for key in ("mp4", "gif", "strip", "side_by_side", "frames"):
            writers[key].close()
        return count
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise


def _target_image(test_dir, face):
    files = list_frames(os.path.join(test_dir, face))
    if not files:
        raise AnimationError(f"{os.path.join(test_dir, face)}: no target face image in this folder")
    return files[0]


def animate_dataset(config, checkpoint_path, out_dir=None, device="cpu", precision="fp32", compile=False,
                    batch_frames=None, fps=None, overwrite=False, pairs=None, num_pairs=None, grayscale=None,
                    log=print, landmarker=None):
    """Animate the pairs of ``config`` (pairs_list, else every clip × every target face of test/).

    Pairs whose outputs all exist are kept and skipped (``overwrite`` redoes them); a pair whose clip
    or face cannot be read fails alone. Returns a list of {'pair', 'status' ('written', 'done',
    'failed'), 'frames', 'outputs': {...paths}, 'reason'} in order. Raises AnimationError,
    CheckpointError, OutputPathError, DiskFullError or stop_requests.Interrupted with one-line messages.
    """
    dataset = config["dataset_params"]
    params = config["animate_params"]
    test_dir = os.path.join(dataset["root_dir"], "test")
    if not os.path.isdir(test_dir):
        raise AnimationError(f"{test_dir}: no test split (dataset_params.root_dir/test)")
    if pairs is None:
        pairs = read_pairs(dataset["pairs_list"]) if dataset.get("pairs_list") else default_pairs(test_dir)
    num_pairs = num_pairs if num_pairs is not None else params["num_pairs"]
    pairs = pairs[:num_pairs] if num_pairs else pairs
    if not pairs:
        raise AnimationError(f"{test_dir}: no pairs to animate (no clips or no target faces)")
    check_pairs(test_dir, pairs)
    side_format = params["format"]
    if side_format not in SIDE_FORMATS:
        raise AnimationError(f"animate_params.format must be one of {', '.join(SIDE_FORMATS)}, got {side_format!r}")
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), "animation")
    outputs_of = lambda name: pair_outputs(out_dir, name, side_format)  # noqa: E731
    prepare_output_folder(out_dir, outputs_of(pairs[0].name))
    fps = fps or params["fps"]
    session = Session.open(config, checkpoint_path, device, precision, compile, batch_frames, grayscale, landmarker)
    normalization = Normalization.from_config(config)

    def work(pair, outputs, stop):
        job = session.prepare(pair.target, _target_image(test_dir, pair.target), pair.driving,
                              list_frames(os.path.join(test_dir, pair.driving), dataset["frame_order"]), normalization)
        count = write_pair(session.driver, job, outputs, fps, params["strip_frames"], stop)
        job.warn_fallbacks()
        return count

    done = run_resumable([(pair.name, pair) for pair in pairs], outputs_of, work, out_dir, overwrite, log, "pair")
    return [{"pair": r["name"], **{k: v for k, v in r.items() if k != "name"}} for r in done]


def run(config, args):
    """run.py --mode animate."""
    if not getattr(args, "checkpoint", None):
        raise AnimationError("animate needs --checkpoint (the trained model to animate with)")
    import logging

    from runtime import select_device

    log = logging.getLogger("fpfomm").info
    results = animate_dataset(config, args.checkpoint, out_dir=args.out, device=select_device(args.device),
                              precision=args.precision, compile=args.compile, batch_frames=args.batch_frames,
                              fps=args.fps, overwrite=args.overwrite, num_pairs=args.num_pairs,
                              grayscale=args.grayscale, log=log)
    for line in summary_lines([dict(r, name=r["pair"]) for r in results], "pair"):
        log(line)
    return results   # run.py exits with outputs.exit_code(results): 1 when a pair failed
