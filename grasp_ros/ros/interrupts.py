"""SIGINT and SIGTERM for the nodes' ``main()``: the first one stops the node, later ones are ignored.

rclpy's own handlers shut the context down from inside the signal handler, racing whatever the
main thread does with it (an executor building its wait set then raises RCLError), and before a
node can send its last messages (the controller's zero command). Instead the first SIGINT or
SIGTERM raises ``KeyboardInterrupt`` in the main thread (``interrupt_once``: a main thread that
only waits for the executor's), or sets a flag (``flag_once``: one that spins the executor
itself, or one still starting: a configure is not cut half-way), and every later one is
ignored, so that a terminal's second Ctrl-C or launch's SIGTERM after its SIGINT cannot cut the
orderly shutdown short (launch still ends a process that hangs with SIGKILL). The two share one
record (``stop_requested``): a signal flagged while the node started is not lost when the main
thread then waits with ``interrupt_once``. Handlers are set explicitly: a shell
starts background jobs with SIGINT ignored. Use with ``rclpy.init(...,
signal_handler_options=SignalHandlerOptions.NO)``. Before ``main()`` takes the signals over, while
the process still imports, one ends it at once (``end_at_once_on_stop_signals``).

``exit_with_parent``: a node started by this package's harness (a demo, a replay) also gets
SIGTERM when the harness dies, however it dies (SIGKILL from a CI timeout included), so that no
controller or sim (and its /clock) is left running on the domain after it; a node that ``ros2
launch`` started under the harness watches the harness itself (launch can hang in its own
shutdown, after two SIGINTs). A node started by this package's launch files
(``GRASP_ROS_EXIT_WITH_PARENT``) gets SIGTERM when ``ros2 launch`` dies: launch stops its nodes
on SIGINT, but SIGTERM or SIGKILL end it at once, and its controller would go on commanding.
``ending_with_parent`` does the same for a program that is not one of this package's nodes
(``ros2 launch``): the kernel sends it SIGINT, launch's orderly shutdown of the nodes it started.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)

PARENT_ENV = "GRASP_ROS_PARENT_PID"
"""Set by a harness in its children's environment: its own process id."""
WITH_PARENT_ENV = "GRASP_ROS_EXIT_WITH_PARENT"
"""Set by the launch files: ``ros2 launch``'s process id; the node stops (SIGTERM) when that
process dies. 1: when the parent dies, whoever it is."""
HARNESS_POLL_S = 0.5
"""Seconds between a launched node's checks that the harness above its launch still runs."""

_PR_SET_PDEATHSIG = 1


def parent_environment() -> dict[str, str]:
    """The variable a harness gives the nodes it starts (``exit_with_parent``)."""
    return {PARENT_ENV: str(os.getpid())}


def exit_with_parent(signum: int = signal.SIGTERM) -> bool:
    """Linux: ``signum`` when the parent ends, if it is the harness named by
    ``GRASP_ROS_PARENT_PID`` or the ``ros2 launch`` named by ``GRASP_ROS_EXIT_WITH_PARENT`` (1:
    the parent, whoever it is); when a named one is a further ancestor (``ros2 launch`` between
    the harness and the node), when it ends (a thread watches it); at once when a named one has
    ended already (launch, stopped as it started its nodes, exited before this process got
    here, which then ran on, an orphan: an audit). A node started otherwise is left alone. Call
    it after the handlers are set: the signal then takes the orderly way out (the controller's
    last zero command). Returns whether it was armed. The kernel sends it when the parent's
    *thread* that started this process ends: a harness starts its nodes from a thread that
    outlives them."""
    parent, named = os.getppid(), _named_parents()
    if os.path.isdir("/proc/self") and not all(_running(pid) for pid in named):
        os.kill(os.getpid(), signum)
        return True
    armed = False
    if parent in named or os.environ.get(WITH_PARENT_ENV) == "1":
        armed = _on_parent_death(signum, parent)
    ancestors = _ancestors()
    for pid in named:
        if pid != parent and pid in ancestors:
            threading.Thread(target=_stop_after, args=(pid, signum), name="grasp-parent-watch",
                             daemon=True).start()
            armed = True
    return armed


def _named_parents() -> list[int]:
    """The harness and the ``ros2 launch`` this process's environment names (a launch of 1
    names none: that is the parent, whoever it is)."""
    found = []
    for name in (PARENT_ENV, WITH_PARENT_ENV):
        try:
            pid = int(os.environ.get(name, ""))
        except ValueError:
            continue
        if pid > 1 or (name == PARENT_ENV and pid == 1):
            found.append(pid)
    return found


def _on_parent_death(signum: int, parent: int) -> bool:
    try:
        if ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signum)) != 0:
            return False
    except (OSError, AttributeError):    # not Linux
        return False
    if os.getppid() != parent:           # the parent died before the request: act on it now
        os.kill(os.getpid(), signum)
    return True


def _stop_after(pid: int, signum: int) -> None:
    while _running(pid):
        time.sleep(HARNESS_POLL_S)
    os.kill(os.getpid(), signum)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _ancestors() -> set[int]:
    """This process's ancestors' ids (Linux /proc; empty elsewhere)."""
    found, pid = set(), os.getppid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
                pid = int(stat.read().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return found


# An ignored signal stays ignored across exec, and a shell starts a background job (a harness
# run with `&` from a script or CI step) with SIGINT ignored: the program gets both stop signals
# back at their defaults, or neither the kernel's SIGINT nor the harness's own would stop it.
_ARM_AND_EXEC = """
import ctypes, os, signal, sys
signum, parent = int(sys.argv[1]), int(os.environ[sys.argv[2]])
for stop in (signal.SIGINT, signal.SIGTERM):
    signal.signal(stop, signal.SIG_DFL)
ctypes.CDLL(None, use_errno=True).prctl(%d, signum)
if os.getppid() != parent:
    sys.exit(128 + signum)
os.execvp(sys.argv[3], sys.argv[3:])
""" % _PR_SET_PDEATHSIG


def ending_with_parent(command: list[str], signum: int = signal.SIGINT) -> list[str]:
    """``command`` started so that it gets ``signum`` when the process that starts it dies: a
    small Python asks the kernel for it (the request survives ``exec``) and then becomes
    ``command``, keeping the process id. For programs that cannot call ``exit_with_parent``
    themselves; the starter must put ``parent_environment()`` in their environment. Linux only:
    elsewhere ``command`` as it is."""
    if not sys.platform.startswith("linux"):
        return list(command)
    return [sys.executable, "-c", _ARM_AND_EXEC, str(int(signum)), PARENT_ENV, *command]


def end_at_once_on_stop_signals() -> None:
    """Until the node's main takes them over, SIGINT and SIGTERM end the process at once, status 0.

    For a node's process while it imports torch and rclpy: seconds on a loaded machine, and a
    launch or harness stopped just after it started signals its nodes then. Nothing is made yet
    that a stop must undo; a KeyboardInterrupt raised inside an extension module's import comes
    out as an ImportError with a traceback, and a flag would leave the process importing on until
    launch escalates to SIGTERM. The scripts in ``scripts/`` do the same in their first lines,
    before this package is imported."""
    for signum in SIGNALS:
        signal.signal(signum, _end_at_once)


def _end_at_once(signum, frame) -> None:
    os._exit(0)


_came: list[int] = []
"""The stop signals this process's handlers took (one: later ones are ignored)."""


def stop_requested() -> bool:
    """Has a SIGINT or SIGTERM come since ``flag_once`` or ``interrupt_once``?"""
    return bool(_came)


def interrupt_once() -> None:
    """From now on the first SIGINT or SIGTERM raises KeyboardInterrupt; later ones are ignored.
    If one came already (flagged while starting), it is raised now."""
    if _came:
        ignore()
        raise KeyboardInterrupt(signal.Signals(_came[0]).name)
    for signum in SIGNALS:
        signal.signal(signum, _interrupt)


def flag_once() -> Callable[[], bool]:
    """From now on the first SIGINT or SIGTERM only sets a flag, and later ones are ignored;
    returns ``stop_requested``. For a main thread that spins the executor itself, or one still
    starting the node: an exception raised at an arbitrary bytecode can land inside rclpy's own
    objects half made (a Task whose ``__del__`` then prints a traceback), or in a configure
    half done."""
    if not _came:
        for signum in SIGNALS:
            signal.signal(signum, _flag)
    return stop_requested


def ignore() -> None:
    """Ignore SIGINT and SIGTERM from here to the process's end (shutting down). Not from a
    handler: see ``_flag``."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _ignored(signum, frame) -> None:
    pass


def _flag(signum, frame) -> None:
    # Later signals go to a handler that does nothing, not to SIG_IGN: SIGINT and SIGTERM sent
    # together can both be pending when this runs (taken in one check while rcl waits), and
    # Python then runs the second's handler as it stands: SIG_IGN set meanwhile raises "OSError:
    # Signal 15 ignored due to race condition" wherever the main thread is. (The shutdown sets
    # SIG_IGN, ``ignore``, from the main flow, where ``signal.signal`` first runs what is pending;
    # a Python handler would be reset to the default as the interpreter finalises.)
    for number in SIGNALS:
        signal.signal(number, _ignored)
    _came.append(signum)


def _interrupt(signum, frame) -> None:
    _flag(signum, frame)
    raise KeyboardInterrupt(signal.Signals(signum).name)
