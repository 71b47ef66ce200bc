"""SIGINT and SIGTERM for the nodes' ``main()``: the first one stops the node, later ones are ignored.

rclpy's own handlers shut the context down from inside the signal handler, racing whatever the
main thread does with it (an executor building its wait set then raises RCLError), and before a
node can send its last messages (the controller's zero command). Instead the first SIGINT or
SIGTERM raises ``KeyboardInterrupt`` in the main thread, and every later one is ignored, so that
a terminal's second Ctrl-C or launch's SIGTERM after its SIGINT cannot cut the orderly shutdown
short (launch still ends a process that hangs with SIGKILL). Handlers are set explicitly: a shell
starts background jobs with SIGINT ignored. Use with ``rclpy.init(...,
signal_handler_options=SignalHandlerOptions.NO)``.
"""
from __future__ import annotations

import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def interrupt_once() -> None:
    """From now on the first SIGINT or SIGTERM raises KeyboardInterrupt; later ones are ignored."""
    for signum in SIGNALS:
        signal.signal(signum, _interrupt)


def ignore() -> None:
    """Ignore SIGINT and SIGTERM (while shutting down)."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _interrupt(signum, frame) -> None:
    ignore()
    raise KeyboardInterrupt(signal.Signals(signum).name)
