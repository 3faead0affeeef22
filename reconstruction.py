"""Reconstruction of the test clips (``run.py --mode reconstruction``) and its scores.

Each clip of the test split (folders of two or more frames; one-image folders are target faces) is
driven from its own first frame by its own frames, with absolute keypoints as published. Written to
``<checkpoint folder>/reconstruction`` (or --out): ``<clip>/`` PNG frames named like the real ones and
``<clip><format>``; then evaluate.py scores the PNG frames against the real ones (L1, SSIM, PSNR, AKD,
MKR, AED) into ``reconstruction_metrics.csv`` and ``reconstruction_metrics.json``.
"""
import os

import inference
from frame_io import clip_folders, list_frames
from inference import ABSOLUTE, AnimationError
from outputs import refuse_overwrite
from session import Session
from video_io import FrameFolderWriter, VideoWriter

VIDEO_FORMATS = (".mp4", ".gif")


def add_cli_arguments(parser):
    """Flags of reconstruction (run.py adds --config, --mode, --checkpoint, --device, …)."""
    inference.add_run_arguments(parser)
    inference.add_argument_once(parser, "--num_videos", type=int, default=None,
                                help="reconstruct only the first N clips (default: config's num_videos, else all)")
    inference.add_argument_once(parser, "--no_eval", action="store_true",
                                help="write the reconstructions only; score them later with evaluate.py")


def clips_to_reconstruct(test_dir):
    """Clip folders of a test split that have at least two frames, in natural order."""
    return [folder for folder in clip_folders(test_dir) if len(list_frames(folder)) > 1]


def reconstruct_dataset(config, checkpoint_path, out_dir=None, device="cpu", precision="fp32", compile=False,
                        batch_frames=None, fps=None, overwrite=False, num_videos=None, evaluate=True,
                        log=print, landmarker=None, measurer=None):
    """Reconstruct the test clips and (``evaluate``) score them. → (rows, summary); (results, None)
    without evaluation. Raises AnimationError / CheckpointError / MediaError with one-line messages."""
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
    if not overwrite:
        refuse_overwrite([p for clip in clips for p in (os.path.join(out_dir, clip.name),
                                                        os.path.join(out_dir, clip.name + video_format))
                          if os.path.exists(p)], f"reconstructions in {out_dir}")
    fps = fps or params["fps"]
    session = Session.open(config, checkpoint_path, device, precision, compile, batch_frames, None, landmarker)
    results = []
    for number, clip in enumerate(clips, 1):
        files = list_frames(clip, dataset["frame_order"])
        job = session.prepare(clip.name, files[0], clip.name, files, ABSOLUTE)
        frames_writer = FrameFolderWriter(os.path.join(out_dir, clip.name))
        video_writer = VideoWriter(os.path.join(out_dir, clip.name + video_format), fps)
        try:
            for name, _, generated in inference.stream(session.driver, job.pair, job.driving(), job.gray):
                frames_writer.write(generated, name)
                video_writer.write(generated)
            frames_writer.close()
            video_writer.close()
        except BaseException:
            frames_writer.abort()
            video_writer.abort()
            raise
        job.warn_fallbacks()
        log(f"[{number}/{len(clips)}] {clip.name}: {len(files)} frames → {os.path.join(out_dir, clip.name)}")
        results.append({"clip": clip.name, "frames": len(files)})
    if not evaluate:
        return results, None
    from evaluate import evaluate_reconstruction

    return evaluate_reconstruction(out_dir, test_dir, out_dir, measurer=measurer, log=log,
                                   names=[r["clip"] for r in results])


def run(config, args):
    """run.py --mode reconstruction."""
    if not getattr(args, "checkpoint", None):
        raise AnimationError("reconstruction needs --checkpoint (the trained model to reconstruct with)")
    import logging

    from runtime import select_device

    return reconstruct_dataset(config, args.checkpoint, out_dir=args.out, device=select_device(args.device),
                               precision=args.precision, compile=args.compile, batch_frames=args.batch_frames,
                               fps=args.fps, overwrite=args.overwrite, num_videos=args.num_videos,
                               evaluate=not getattr(args, "no_eval", False),
                               log=logging.getLogger("fpfomm").info)
