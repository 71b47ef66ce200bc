"""SIGINT and SIGTERM for the nodes' ``main()``: the first one stops the node, later ones are ignored.

rclpy's own handlers shut the context down from inside the signal handler, racing whatever the
main thread does with it (an executor building its wait set then raises RCLError), and before a
node can send its last messages (the controller's zero command). Instead the first SIGINT or
SIGTERM raises ``KeyboardInterrupt`` in the main thread (``interrupt_once``: a main thread that
only waits for the executor's), or sets a flag (``flag_once``: one that spins the executor
itself), and every later one is ignored, so that a terminal's second Ctrl-C or launch's SIGTERM
after its SIGINT cannot cut the orderly shutdown short (launch still ends a process that hangs
with SIGKILL). Handlers are set explicitly: a shell
starts background jobs with SIGINT ignored. Use with ``rclpy.init(...,
signal_handler_options=SignalHandlerOptions.NO)``.
"""
from __future__ import annotations

import signal
from typing import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def interrupt_once() -> None:
    """From now on the first SIGINT or SIGTERM raises KeyboardInterrupt; later ones are ignored."""
    for signum in SIGNALS:
        signal.signal(signum, _interrupt)


def flag_once() -> Callable[[], bool]:
    """From now on the first SIGINT or SIGTERM only sets a flag, and later ones are ignored;
    returns the question "has one come?". For a main thread that spins the executor itself: an
    exception raised at an arbitrary bytecode can land inside rclpy's own objects half made (a
    Task whose ``__del__`` then prints a traceback)."""
    came: list[int] = []

    def _flag(signum, frame) -> None:
        ignore()
        came.append(signum)
    for signum in SIGNALS:
        signal.signal(signum, _flag)
    return lambda: bool(came)


def ignore() -> None:
    """Ignore SIGINT and SIGTERM (while shutting down)."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _interrupt(signum, frame) -> None:
    ignore()
    raise KeyboardInterrupt(signal.Signals(signum).name)
