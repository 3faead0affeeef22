"""Ctrl-C and SIGTERM (a scheduler's stop) as a request to stop at the next safe point, for every long mode.

Training stops after the current step and saves a checkpoint; animation and reconstruction stop
after the current frame, drop the unfinished pair's temporary files and keep every finished one.
"""
import logging
import signal
import threading

log = logging.getLogger("fpfomm")


class Interrupted(Exception):
    """Raised at a safe point after a stop request; ``signal_name`` is 'SIGINT' or 'SIGTERM'."""

    def __init__(self, signal_name):
        super().__init__(signal_name)
        self.signal_name = signal_name

    @property
    def exit_code(self):
        """128 + the signal number, the shell's convention (130 for Ctrl-C, 143 for SIGTERM)."""
        return 128 + getattr(signal, self.signal_name, signal.SIGINT)


class StopRequests:
    """Turns Ctrl-C / SIGTERM into a request to stop at the next safe point.

    A second Ctrl-C aborts at once (KeyboardInterrupt). Handlers are installed only from the main
    thread (signals cannot be handled elsewhere) and restored on exit. ``message`` is logged once,
    after the signal's name, when the first request arrives.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, message="stopping after this step and saving a checkpoint (Ctrl-C again aborts "
                               "without saving)"):
        self.reason = None
        self.message = message
        self._previous = {}

    def request(self, reason):
        if self.reason is None:
            self.reason = reason

    def check(self):
        """Raise Interrupted when a stop was requested (call it at safe points)."""
        if self.reason in ("SIGINT", "SIGTERM"):
            raise Interrupted(self.reason)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.reason is None:
            log.warning("%s: %s", name, self.message)
        self.request(name)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
