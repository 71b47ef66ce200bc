"""The sim room: 2-D navigation simulators that render camera images, their exact model
(``analytic``), the MuJoCo planar arm (``arm``, imported on demand: it needs MuJoCo), the sim
node and the closed-loop harness. Yardsticks for tests, benchmarks, training and demos; the
controller does not import this room.

The names below are imported when first used, not with the package: ``python -m
grasp_ros.sim.node`` imports this file before the node's own first line, which must run before
torch imports (``grasp_ros.ros.interrupts.end_at_once_on_stop_signals``)."""
import importlib

_WHERE = {"PointMassDynamics": "dynamics", "LAYOUTS": "layouts", "Layout": "layouts",
          "ENV_NAMES": "nav", "NOMINAL_HORIZON": "nav", "Episode": "nav", "NavEnv": "nav",
          "make_env": "nav"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
