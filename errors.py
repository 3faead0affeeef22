"""The one family of "this input cannot be used" errors, and the exit codes every tool shares.

Every tool (run.py, preprocess.py, kpmaker.py, aumaker.py, evaluate.py, demo.py, ...) reports an
``InputError`` as one line on stderr, ``<tool>: error: <message>``, with no traceback, and exits with
``EXIT_INPUT``. The message names the file or key and says what to do. Each module raises its own
subclass (ConfigError, CheckpointError, DatasetError, ...) so callers can still tell them apart.
"""
import sys

EXIT_OK = 0
EXIT_FAILED = 1   # the work started but could not finish (NaN loss, some clips failed, disk full)
EXIT_INPUT = 2    # unusable input: config, checkpoint, data, flags, device


class InputError(Exception):
    """An input that cannot be used as it is; the message names it and says what to do."""


class RunError(RuntimeError):
    """Work that started and could not go on (reported in one line, exit EXIT_FAILED)."""


def report(tool, error, stream=None, failed="failed"):
    """Print ``error`` as the one line a tool shows for it; return the exit code it stands for.
    ``failed``: the words before a RunError's message (e.g. 'training failed')."""
    stream = stream or sys.stderr
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if isinstance(error, InputError):
        print(f"{tool}: error: {first}", file=stream)
        return EXIT_INPUT
    print(f"{tool}: {failed}: {first}", file=stream)
    return EXIT_FAILED
