"""The command line: train, reconstruct or animate with one config (FOMM's run.py, same flags).

    python run.py --config config/your_dataset_train.yaml                      # train
    python run.py --config ... --checkpoint log/<run>/00000009-checkpoint.pth.tar   # resume
    torchrun --standalone --nproc_per_node 4 run.py --config ...                # 4 GPUs (DDP)
    python run.py --config ... --mode animate --checkpoint ckpt.pth.tar         # animate the pairs

Each mode lives in its own module (train.py, reconstruction.py, animate.py), which defines
``add_cli_arguments(parser)`` for its own flags and ``run(config, args)`` (an int return value is the
exit code). The method (FP-FOMM, FOMM, ...) comes from the config (``model_params.method``, see
methods.py); every mode runs every method. Exit codes (errors.py): 0 done, 1 the work failed
(NaN/inf, a checkpoint could not be written), 2 unusable input (config, checkpoint, device, data,
flags) with a one-line message and no traceback, 128+signal after Ctrl-C / SIGTERM (training: checkpoint
saved; animate / reconstruction: finished outputs kept, a re-run continues).
"""
import argparse
import logging
import os
import sys

import animate
import reconstruction
import train
from cli_args import OneLineParser
from configuration import load_config
from errors import InputError, RunError, report
from outputs import exit_code
from runtime import DeviceError, tune_allocator
from stop_requests import Interrupted

MODES = {"train": train, "train_avd": train, "reconstruction": reconstruction, "animate": animate}

DESCRIPTION = """\
Micro-expression generation with every method of the field from one YAML config (FOMM's layout):
train the networks, reconstruct the test clips, or animate the test pairs. The config names the
method (model_params.method: fp-fomm, fomm, fpb-fomm, ...; published configs without the key are
recognised by their shape), and every mode below runs every method.

train           trains into a new folder <log_dir>/<config name>_<date>_<time> (config copied in):
                log.txt, TensorBoard (tensorboard --logdir <log_dir>), per-epoch pictures in
                train-vis/, loss-curves.png, NNNNNNNN-checkpoint.pth.tar every checkpoint_freq
                epochs and at the end. Ctrl-C or SIGTERM stops after the current step and writes
                interrupted-checkpoint.pth.tar. --checkpoint with one of these checkpoints resumes
                exactly where it stopped, in its folder; with a published training checkpoint
                (optimiser states and epoch) it continues that run after its epoch, in its folder;
                with weights only it fine-tunes from epoch 0. Several GPUs, or machines: start
                run.py with torchrun (torchrun --standalone --nproc_per_node N run.py --config ...).
train_avd       the second stage of MRAA and TPSMM: trains the AVD network on the frozen model of
                --checkpoint (train_avd_params), in that checkpoint's folder (avd-NNNNNNNN-checkpoint.pth.tar).
reconstruction  drives each test clip with itself and scores the result (needs --checkpoint).
animate         makes each target face of the pairs list perform each driving clip (needs --checkpoint).
"""
EPILOG = """\
exit codes: 0 done; 1 the work failed (NaN/inf loss or gradient, checkpoint not written);
2 unusable input (config, checkpoint, device, dataset, flags, output paths); 128+N after signal N
(130 Ctrl-C, 143 SIGTERM: training saves a checkpoint, animate / reconstruction keep finished outputs).
Set FPFOMM_DEFAULT_MALLOC=1 to keep glibc's default memory allocator settings.
"""


class UsageError(InputError, ValueError):
    """A combination of flags that cannot work."""


class Parser(OneLineParser):
    """argparse with one-line errors (exit 2), like every other input error of run.py."""


def _device_ids(text):
    try:
        ids = [int(part) for part in text.split(",") if part.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--device_ids wants GPU numbers separated by commas, got {text!r}")
    if not ids or min(ids) < 0:
        raise argparse.ArgumentTypeError(f"--device_ids wants GPU numbers separated by commas, got {text!r}")
    return ids


def build_parser(modes=MODES):
    """The parser with the common flags and the flags of ``modes``."""
    parser = Parser(prog="run.py", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    common = parser.add_argument_group("common options")
    common.add_argument("--config", required=True, help="path to the YAML config (e.g. config/your_dataset_train.yaml)")
    common.add_argument("--mode", default="train", choices=MODES, help="what to do (default: train)")
    common.add_argument("--checkpoint", default=None,
                        help="train: resume from (or fine-tune from a published) checkpoint; "
                             "reconstruction/animate: the model to use")
    common.add_argument("--device", default=None,
                        help="auto (default: first GPU if any, else CPU), cpu, cuda or cuda:N; under torchrun "
                             "each process takes cuda:LOCAL_RANK")
    common.add_argument("--device_ids", type=_device_ids, default=None, metavar="IDS",
                        help="FOMM's flag, still accepted: one GPU number means --device cuda:N (the CPU when "
                             "there is no GPU); several GPUs train through torchrun instead")
    common.add_argument("--cpu", action="store_true", help="same as --device cpu")
    common.add_argument("--seed", type=int, default=None,
                        help="random seed (default: 0; when resuming, the checkpoint's)")
    common.add_argument("--verbose", action="store_true", help="more detail on the console")
    # Groups by what a flag applies to; flags that two modes share get one group of their own.
    # --log_dir is accepted in every mode (FOMM's scripts pass it to all); only training uses it.
    training = parser.add_argument_group("train and train_avd options")
    training.add_argument("--log_dir", default="log",
                          help="where training makes its run folder (default: log); ignored when resuming, "
                               "which continues in the checkpoint's folder")
    if {"animate", "reconstruction"} & set(modes):
        import inference

        inference.add_run_arguments(parser.add_argument_group("animate and reconstruction options"))
    for mode in modes:
        MODES[mode].add_cli_arguments(parser.add_argument_group(f"{mode} options"))
    return parser


def parse_args(argv):
    """Two passes: the mode first, then a parser with that mode's flags (all modes' for --help)."""
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--mode", default="train")
    known, _ = probe.parse_known_args(argv)
    wants_help = any(arg in ("-h", "--help") for arg in argv)
    mode_given = any(arg == "--mode" or arg.startswith("--mode=") for arg in argv)
    if wants_help and not mode_given:
        modes = MODES
    else:
        modes = (known.mode,) if known.mode in MODES else ()
    return build_parser(modes).parse_args(argv)


def device_request(args, environ=None):
    """The --device value after FOMM's --device_ids and --cpu. Notes go to the log; conflicts raise DeviceError."""
    environ = os.environ if environ is None else environ
    under_torchrun = "WORLD_SIZE" in environ and "LOCAL_RANK" in environ
    given = [flag for flag, value in (("--device", args.device), ("--device_ids", args.device_ids),
                                      ("--cpu", args.cpu or None)) if value is not None]
    if len(given) > 1:
        raise DeviceError(f"{' and '.join(given)} both choose the device: give one of them")
    if args.cpu:
        return "cpu"
    if args.device_ids is None:
        return args.device or "auto"
    ids = args.device_ids
    if under_torchrun:
        logging.getLogger("fpfomm").info("--device_ids is ignored under torchrun: each process uses cuda:LOCAL_RANK")
        return "auto"
    if len(ids) > 1:
        raise DeviceError(f"--device_ids {','.join(map(str, ids))}: several GPUs train through torchrun "
                          f"(DDP), not one process: torchrun --standalone --nproc_per_node {len(ids)} run.py "
                          "--config ... (CUDA_VISIBLE_DEVICES picks which GPUs)")
    import torch

    if not torch.cuda.is_available():
        logging.getLogger("fpfomm").info("--device_ids %d: no CUDA device on this machine, using the CPU", ids[0])
        return "cpu"
    return f"cuda:{ids[0]}"


def _configure_logging(verbose, main_process):
    # --verbose opens up this project's loggers only; libraries (PIL, tensorboard) stay at INFO.
    level = logging.DEBUG if verbose else logging.INFO
    if not main_process:
        level = logging.WARNING  # one voice on the console under torchrun
    logging.basicConfig(level=max(level, logging.INFO), format="%(message)s", stream=sys.stderr)
    logging.getLogger("fpfomm").setLevel(level)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    main_process = os.environ.get("RANK", "0") == "0"
    _configure_logging(args.verbose, main_process)

    tune_allocator()  # a no-op when FPFOMM_DEFAULT_MALLOC=1
    try:
        from checkpoint import CheckpointError

        config = load_config(args.config)
        if args.checkpoint is not None and not os.path.isfile(args.checkpoint):
            raise CheckpointError(f"{args.checkpoint}: checkpoint not found")
        args.device = device_request(args)
        if "WORLD_SIZE" in os.environ and args.mode != "train":
            raise UsageError(f"--mode {args.mode} runs in one process; only training runs under torchrun")
        code = MODES[args.mode].run(config, args)
        return code if isinstance(code, int) else exit_code(code if isinstance(code, list) else [])
    except Interrupted as stop:  # animate / reconstruction (training returns its own code)
        print(f"run.py: interrupted ({stop.signal_name}): finished outputs are kept, unfinished ones removed; "
              "run the same command again to continue", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("run.py: interrupted", file=sys.stderr)
        return 130
    except (InputError, RunError) as error:  # anything else is a bug and keeps its traceback
        return report("run.py", error, failed="training failed" if args.mode == "train" else "failed")


if __name__ == "__main__":
    sys.exit(main())
