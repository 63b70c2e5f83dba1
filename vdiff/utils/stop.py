"""Stopping long loops promptly on SIGTERM / SIGINT.

Lightning's SIGTERM handler only sets `trainer.received_sigterm`, which its loops read between
batches, so a sample grid of 1000 DDPM steps inside a validation hook used to run to its end first.
`install()` (train.py calls it at start) puts a handler on both signals that records the signal
and then calls the handler it replaced when that is a function (Python's SIGINT handler raises
KeyboardInterrupt); Lightning, registering its own SIGTERM handler at fit start, calls ours after
its own. The sampler loops call `check()` every step, which raises `Stopped` once a signal has
arrived. A second signal of the same kind gets the previous disposition (SIG_DFL ends the process),
so a phase that never calls `check()` can still be ended. While training, `defer(SIGINT)` (the
`StopOnSignal` callback) makes the first SIGINT a request like SIGTERM: the step in progress ends and
training stops after it, rather than a KeyboardInterrupt in the middle of it. Where `install()` was not called
(sample.py), `check()` never raises and the signals act as usual: SIGTERM ends the process at once.
"""

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_received: int | None = None
_deferred: frozenset = frozenset()


class Stopped(SystemExit):
    """Raised by `check` after a stop signal. A SystemExit, so no `except Exception` swallows it; the
    process exits with status 128 + the signal number, as a shell reports a process the signal ended."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def _handler(previous):
    def handle(signum, frame):
        global _received
        repeated = _received == signum
        if repeated and previous is signal.SIG_DFL:
            signal.signal(signum, previous)
            signal.raise_signal(signum)
            return
        _received = signum
        if signum in _deferred and not repeated:
            return
        if callable(previous):
            previous(signum, frame)

    handle.stop_handler = True
    return handle


def install() -> None:
    """Record SIGTERM and SIGINT for `check`; an ignored signal stays ignored. Safe to call twice;
    outside the main thread (where signals cannot be set) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        previous = signal.getsignal(signum)
        if previous is signal.SIG_IGN or getattr(previous, "stop_handler", False):
            continue
        signal.signal(signum, _handler(previous))


def defer(*signums: int) -> None:
    """Only record the first of these signals (no KeyboardInterrupt for SIGINT) until `defer()` is
    called again; the loop that deferred them reads `received()` at a safe point and stops there."""
    global _deferred
    _deferred = frozenset(signums)


def received() -> int | None:
    """The stop signal received so far, or None."""
    return _received


def request(signum: int | None) -> None:
    """Record `signum` as if it had been received (None forgets it): for tests and callers that stop on their own."""
    global _received
    _received = signum


def check() -> None:
    """Raise `Stopped` when a stop signal has been received."""
    if _received is not None:
        raise Stopped(_received)
