"""The replayed controller's parameters: the recorded controller's, then the user's changes.

Precedence, lowest first: the controller's defaults (for a parameter newer than the recording:
its ``legacy`` value, which repeats the controller as it was); the parameters the bag's recorder stored
(``Recording.parameters``); a ROS parameter file (``--params-file``); ``-p name:=value`` /
``--param name=value``. Then what replay itself needs: ``use_sim_time`` (the replay owns
/clock), no autostart (the replay drives the lifecycle), ``timing: fixed_iterations`` (no
wall-clock budget) and a ``clock_timeout`` long enough that the watchdog never fires between
two replayed cycles. Values are typed and checked by the controller's own parameter table
(``grasp_ros.ros.params``), so a bad one is refused here with its reason. A bag never allows
Python code (``NOT_FROM_BAG``): a replay that would import and run code the bag names is refused
unless its own command line or file allows it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from ..ros import params

FORCED = {"use_sim_time": True, "autostart": False, "timing": "fixed_iterations", "clock_timeout": 3600.0}
"""What every replay sets, whatever was recorded or asked."""
FROM_BAG = params.REPLAY_CYCLES
"""What the replay sets from the bag's FALLBACK cycles (``schedule.ReplayCycle.fallback``)."""
REPORTED = ("cpu_capability",)
"""What the controller reports of itself: the replay runs its controller with the recorded CPU
kernel set through the environment (``ATEN_CPU_CAPABILITY``), not as a parameter."""
ITERATION_MODES = ("auto", "recorded", "parameter")
RCLPY_OWN = ("start_type_description_service",)
RCLPY_OWN_PREFIXES = ("qos_overrides.",)
"""Parameters rclpy declares on every node, which ``ros2 param dump`` writes with the
controller's: a robot's file of them is read without them (the replay sets its own QoS)."""
NOT_FROM_BAG = ("allow_python_models",)
"""What a bag never sets: a bag is data from anyone, and with it the bag would have the replaying
machine import and run the Python code it names (a model ``os:system``, a cost term). Only the
replay's own command line or parameter file allows that."""


def parse_assignment(text: str) -> tuple[str, Any]:
    """``name:=value`` or ``name=value`` as (name, typed value); ValueError with the reason."""
    return params.parse_assignment(text, typed)


def typed(name: str, value: Any) -> Any:
    """``value`` as parameter ``name``'s type, checked; what the replay sets itself is refused."""
    if name in FORCED:
        raise ValueError(f"{name} is set by the replay itself ({name}: {FORCED[name]!r})")
    if name in FROM_BAG:
        raise ValueError(f"{name} is set by the replay itself, from the bag's late plans")
    if name in REPORTED:
        raise ValueError(f"{name} is reported by the controller; the replay starts it with the "
                         "recorded one (or set ATEN_CPU_CAPABILITY in the environment)")
    return params.typed_value(name, value)


def read_params_file(path) -> dict[str, Any]:
    """A ROS 2 parameter file's values for the controller (``/**`` and ``grasp_controller``
    sections; nested names joined with dots, as rcl reads them)."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"parameter file {str(path)!r}: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError(f"parameter file {str(path)!r}: not a mapping of node names")
    values: dict[str, Any] = {}
    for node in ("/**", params.NODE_NAME, "/" + params.NODE_NAME):
        section = document.get(node) or {}
        flat = _flatten((section.get("ros__parameters") or {}) if isinstance(section, dict) else {})
        values.update({name: typed(name, value) for name, value in flat.items()
                       if name not in (*FORCED, *FROM_BAG, *REPORTED, *RCLPY_OWN)
                       and not name.startswith(RCLPY_OWN_PREFIXES)})
    return values


def _flatten(mapping: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def controller_values(recorded: Optional[dict[str, Any]], file_values: dict[str, Any],
                      overrides: dict[str, Any], image_transport: Optional[str],
                      unset: Optional[Sequence[str]] = None) -> tuple[dict, dict]:
    """(the replayed controller's parameter values, where each came from: recorded, file,
    command line, bag, replay). Recorded values the controller no longer has are dropped; a
    parameter newer than the recording gets its ``legacy`` value, which repeats the controller
    that recorded it. ``unset``: the recorded controller's parameters declared without a value
    (None: not known, a bag from before the recorder listed them): those it had, at their
    defaults, not newer than it."""
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for name, value in (recorded or {}).items():
        if name in params.BY_NAME and name not in (*FORCED, *FROM_BAG, *REPORTED, *NOT_FROM_BAG):
            try:
                values[name], source[name] = typed(name, value), "recorded"
            except ValueError as exc:     # the bag's, not the command line's: say so
                raise ValueError(f"the bag's recorded controller parameters: {exc}") from exc
    had = set(recorded or ()) | set(unset or ())
    for p in params.PARAMETERS if recorded is not None else ():   # newer than the recorder:
        if p.legacy is not None and p.name not in had:                 # the controller as it was
            values[p.name], source[p.name] = p.legacy, "recorded (before the parameter existed)"
    if image_transport and "image_transport" not in {**file_values, **overrides}:
        values["image_transport"], source["image_transport"] = image_transport, "bag"
    for given, label in ((file_values, "params file"), (overrides, "command line")):
        for name, value in given.items():
            values[name], source[name] = value, label
    for name, value in FORCED.items():
        values[name], source[name] = value, "replay"
    every = {**{p.name: p.default for p in params.PARAMETERS}, **values}
    problem = params.check_consistency(every) or _python_not_allowed(every)
    if problem:
        raise ValueError(problem)
    return values, source


def _python_not_allowed(values: dict[str, Any]) -> Optional[str]:
    """Why the replay refuses: the values name Python code to run (a model factory, cost terms)
    and the replay's own command line or file did not allow it; None when fine."""
    if values["allow_python_models"]:
        return None
    code = [f"model {values['model']!r}"] if "factory" in params.model_spec_of(values) else []
    code += [f"cost term {term!r}" for term in values["cost.terms"] or ()]
    if not code:
        return None
    return (f"the replayed controller would import and run Python code ({', '.join(code)}), which a "
            "replay allows only with its own -p allow_python_models:=true, never a bag's: add it if "
            "you trust that code, or replace it (-p model:=...)")


def changed_values(recorded: Optional[dict[str, Any]], given: dict[str, Any]) -> list[str]:
    """The names in ``given`` whose value is not the recorded one (a robot's own parameter file
    given again changes nothing)."""
    recorded = recorded or {}
    return [name for name, value in given.items()
            if name not in recorded or typed(name, recorded[name]) != value]


def iteration_mode(mode: str, recorded: Optional[dict[str, Any]], changed: Sequence[str]) -> str:
    """"recorded" (each cycle plans the iterations its recording reports) or "parameter"
    (``planner.iterations`` every cycle). ``auto``: parameter when the recorded controller ran
    fixed iterations itself, or the planner or its iteration count is changed (``changed``:
    names given another value than the recorded one); else recorded."""
    if mode not in ITERATION_MODES:
        raise ValueError(f"iterations must be one of {', '.join(ITERATION_MODES)}, got {mode!r}")
    if mode != "auto":
        return mode
    fixed = (recorded or {}).get("timing") == "fixed_iterations"
    return "parameter" if fixed or {"planner", "planner.iterations"} & set(changed) else "recorded"


def params_file_text(values: dict[str, Any]) -> str:
    """The values as a ROS 2 parameter file for the controller (any node name)."""
    plain = {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in sorted(values.items())}
    return yaml.safe_dump({"/**": {"ros__parameters": plain}}, sort_keys=True, width=1000)
