"""Reconstruction of the test clips (``run.py --mode reconstruction``) and its scores.

Each clip of the test split (folders of two or more frames; one-image folders are target faces) is
driven from its own first frame by its own frames, with absolute keypoints as published. Written to
``<checkpoint folder>/reconstruction`` (or --out): ``<clip>/`` PNG frames named like the real ones and
``<clip><format>``; then evaluate.py scores the PNG frames against the real ones (L1, SSIM, PSNR, AKD,
MKR, AED) into ``reconstruction_metrics.csv`` and ``reconstruction_metrics.json``.
"""
import os

import inference
from cli_args import positive_int
from frame_io import clip_folders, list_frames
from inference import ABSOLUTE, AnimationError
from errors import EXIT_FAILED, EXIT_OK
from outputs import prepare_output_folder, run_resumable, summary_lines
from session import Session
from video_io import FrameFolderWriter, VideoWriter

VIDEO_FORMATS = (".mp4", ".gif")


def add_cli_arguments(parser):
    """Flags of reconstruction (run.py adds --config, --mode, --checkpoint, --device, …)."""
    inference.add_run_arguments(parser)
    inference.add_argument_once(parser, "--num_videos", type=positive_int, default=None,
                                help="reconstruct only the first N clips (default: config's num_videos, else all)")
    inference.add_argument_once(parser, "--no_eval", action="store_true",
                                help="write the reconstructions only; score them later with evaluate.py")


def clips_to_reconstruct(test_dir):
    """Clip folders of a test split that have at least two frames, in natural order."""
    return [folder for folder in clip_folders(test_dir) if len(list_frames(folder)) > 1]


def reconstruct_dataset(config, checkpoint_path, out_dir=None, device="cpu", precision="fp32", compile=False,
                        batch_frames=None, fps=None, overwrite=False, num_videos=None, evaluate=True,
                        log=print, landmarker=None, measurer=None, failed=None):
    """Reconstruct the test clips and (``evaluate``) score them. → (rows, summary); (results, None)
    without evaluation. Clips reconstructed earlier are kept and skipped (``overwrite`` redoes them);
    a clip that cannot be read fails alone, is left out of the scores and appended to ``failed`` (a
    list) when given. Raises AnimationError / CheckpointError / OutputPathError / DiskFullError /
    stop_requests.Interrupted with one-line messages."""
    dataset = config["dataset_params"]
    params = config["reconstruction_params"]
    test_dir = os.path.join(dataset["root_dir"], "test")
    clips = clips_to_reconstruct(test_dir)
    num_videos = num_videos if num_videos is not None else params["num_videos"]
    clips = clips[:num_videos] if num_videos else clips
    if not clips:
        raise AnimationError(f"{test_dir}: no test clips to reconstruct (folders of two or more frames)")
    video_format = params["format"]
    if video_format not in VIDEO_FORMATS:
        raise AnimationError(f"reconstruction_params.format must be one of {', '.join(VIDEO_FORMATS)}, "
                             f"got {video_format!r}")
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), "reconstruction")

    def outputs_of(name):
        return {"frames": os.path.join(out_dir, name), "video": os.path.join(out_dir, name + video_format)}

    prepare_output_folder(out_dir, outputs_of(clips[0].name))
    fps = fps or params["fps"]
    session = Session.open(config, checkpoint_path, device, precision, compile, batch_frames, None, landmarker)

    def work(clip, outputs, stop):
        files = list_frames(clip, dataset["frame_order"])
        job = session.prepare(clip.name, files[0], clip.name, files, ABSOLUTE)
        frames_writer = FrameFolderWriter(outputs["frames"])
        video_writer = VideoWriter(outputs["video"], fps)
        try:
            for name, _, generated in inference.stream(session.driver, job.pair, job.driving(), job.gray):
                frames_writer.write(generated, name)
                video_writer.write(generated)
                stop.check()
            video_writer.close()
            frames_writer.close()   # last: the frame folder is what evaluate.py reads
        except BaseException:
            frames_writer.abort()
            video_writer.abort()
            raise
        job.warn_fallbacks()
        return len(files)

    done = run_resumable([(clip.name, clip) for clip in clips], outputs_of, work, out_dir, overwrite, log, "clip")
    results = [{"clip": r["name"], **{k: v for k, v in r.items() if k != "name"}} for r in done]
    for line in summary_lines(done, "clip"):
        log(line)
    if failed is not None:
        failed.extend(r for r in results if r["status"] == "failed")
    names = [r["clip"] for r in results if r["status"] != "failed"]
    if not evaluate:
        return results, None
    from evaluate import evaluate_reconstruction

    if not names:
        raise AnimationError(f"{test_dir}: no clip could be reconstructed (see the lines above)")
    rows, summary = evaluate_reconstruction(out_dir, test_dir, out_dir, measurer=measurer, log=log, names=names)
    return rows, summary


def run(config, args):
    """run.py --mode reconstruction."""
    if not getattr(args, "checkpoint", None):
        raise AnimationError("reconstruction needs --checkpoint (the trained model to reconstruct with)")
    import logging

    from runtime import select_device

    failed = []
    reconstruct_dataset(config, args.checkpoint, out_dir=args.out, device=select_device(args.device),
                        precision=args.precision, compile=args.compile, batch_frames=args.batch_frames,
                        fps=args.fps, overwrite=args.overwrite, num_videos=args.num_videos,
                        evaluate=not getattr(args, "no_eval", False), log=logging.getLogger("fpfomm").info,
                        failed=failed)
    return EXIT_FAILED if failed else EXIT_OK
