"""``grasp-ros`` command line: thin subcommands over the library's rooms.

Each subcommand lives in ``grasp_ros/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; they are imported only when chosen, so ``grasp-ros bench`` never loads rclpy.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from typing import NoReturn

from .process_exit import leave

COMMANDS = {
    "demo": ("demo", "closed-loop demo: sim node + controller over real DDS"),
    "plan-demo": ("plan_demo", "plan once on a simulator and save a figure (no ROS)"),
    "bench": ("bench", "open-loop planner benchmark (success, solve time, model calls)"),
    "bench-loop": ("bench_loop", "closed-loop control benchmark through the ROS nodes"),
    "bench-effort": ("bench_effort", "closed-loop success against planning iterations per cycle (lock step, no ROS)"),
    "bench-model": ("bench_model", "world-model accuracy vs rollout length"),
    "soak": ("soak", "long closed-loop run through ROS: memory growth, crashes, bad commands"),
    "record": ("record", "record topics (camera, joints, commands, plans) into a rosbag2"),
    "replay": ("replay", "replay a rosbag2 into the controller and diff its commands against the recording"),
    "collect": ("collect", "record a dataset from the simulators or from a rosbag2"),
    "train": ("train", "train the latent world model from camera images"),
    "info": ("info", "print a model's card: inputs, actions, period, provenance, metrics"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grasp-ros", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    module = _import_command(COMMANDS[args.command][0])
    tool_parser = argparse.ArgumentParser(prog=f"grasp-ros {args.command}",
                                          description=COMMANDS[args.command][1])
    module.add_arguments(tool_parser)
    try:
        return int(module.run(tool_parser.parse_args(rest)) or 0)
    except BrokenPipeError:     # the reader went away (grasp-ros info ... | head): not an error
        # stdout's buffer cannot be flushed any more: point it at nothing, so exit stays quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:   # Ctrl-C where the command does not report it itself
        print(f"grasp-ros {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED


INTERRUPTED = 130   # 128 + SIGINT, as a shell reports a program Ctrl-C ended


def _import_command(name: str):
    """The command's module. Ctrl-C while it imports (torch, rclpy: seconds on a busy machine)
    ends the process there, status 130, without a traceback: a KeyboardInterrupt raised inside
    an extension module's import comes out as an ImportError. Nothing has started yet. A SIGINT
    this process was started ignoring (a background job) stays ignored."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_importing)
    try:
        return importlib.import_module(f"grasp_ros.commands.{name}")
    finally:
        if previous is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous)


def _interrupted_while_importing(signum, frame) -> None:
    os.write(sys.stderr.fileno(), b"grasp-ros: interrupted\n")
    os._exit(INTERRUPTED)


def console() -> NoReturn:
    """The ``grasp-ros`` program: ``main`` with this process's arguments, then its exit."""
    leave(main())


if __name__ == "__main__":
    console()
