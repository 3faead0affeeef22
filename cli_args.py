"""argparse value types with ranges, shared by every tool: a nonsense number (``--fps 0``,
``--num_pairs -1``, ``--upsample -1``) stops at parsing with the allowed range, exit 2, instead of
crashing deep inside or silently meaning something else (0 "all", -1 "drop the last")."""
import argparse
import math


def _number(kind, text):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def ranged(kind, low=None, high=None, above=None):
    """A type function: ``kind`` (int or float) with ``low <= value <= high`` and ``value > above``."""
    def parse(text):
        value = _number(kind, text)
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be greater than {above:g}, got {text}")
        if (low is not None and value < low) or (high is not None and value > high):
            if high is None:
                raise argparse.ArgumentTypeError(f"must be at least {low:g}, got {text}")
            if low is None:
                raise argparse.ArgumentTypeError(f"must be at most {high:g}, got {text}")
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = ranged(int, low=1)
non_negative_int = ranged(int, low=0)
positive_float = ranged(float, above=0)
UPSAMPLE = ranged(int, low=0, high=4)   # dlib's detector: each step doubles the image; 4 is already ×16


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit 2 (EXIT_INPUT), like every other input error;
    plain argparse prints the whole usage block first."""

    def error(self, message):
        from errors import EXIT_INPUT

        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
