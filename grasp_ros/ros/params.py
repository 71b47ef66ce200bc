"""grasp_controller's parameters, each declared once in ``PARAMETERS``.

The same table gives the ROS ParameterDescriptors (type, range, read-only flag, the kind as
text in ``additional_constraints``), validates values (at configure and in the set-parameters
callback, with a reason), and writes (``param_docs.py``) the README's markdown table and the
documented YAML file (``config/grasp_controller.yaml``)::

    python -m grasp_ros.ros.param_docs --yaml > config/grasp_controller.yaml
    python -m grasp_ros.ros.param_docs --markdown

Three kinds of parameters:

* read-only: set at start-up only (launch file, ``-p``, parameter overrides, parameter file);
  rclpy refuses every later change. The model sources and ``allow_python_models`` are
  read-only: whoever can reach the node over DDS must not choose which code it loads.
* static: read at configure. Changes are refused while the node is configured (inactive or
  active): deactivate, cleanup, set them, configure again.
* dynamic: applied from the next control cycle, in any state.

A planner knob ``planner.*`` whose default is unset leaves the chosen planner's own default.
Only knobs the chosen planner has can be set at run time. The ``cost.*`` parameters make every
planner's ``costs`` setting together (``costs_for``; ``grasp_ros.planning.costs``).

From the values come the control loop's ``ControlConfig`` (``control_config``), the planner's
settings (``knobs_for``) and the model to load (``model_spec_of``); how the node meets the robot
and whether the model fits it are ``wiring.py``'s.
"""
from __future__ import annotations

import array
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import yaml

from ..control import ON_STALE_CHOICES, TIMING_CHOICES, ControlConfig
from ..control.replayed import KINDS as REPLAYED_KINDS, ReplayedCycles, parameter as replayed_parameter
from ..models import model_spec, parse_options
from ..models.novelty import DEFAULT_NOVELTY_THRESHOLD
from ..models.preprocess import CROPS
from ..models.spec import MAX_OPTIONS_CHARS
from ..models.text import quote, shorten
from ..planning import PLANNERS
from ..planning.adjoint import ADJOINT_MAX_LATENT
from ..planning.grasp import INIT_ACTIONS, SYNC_GRADIENTS, WARM_STATES
from ..planning.costs import check_spec as check_cost_spec, joint_goal_scales_problem

NODE_NAME = "grasp_controller"
KNOB_PREFIX = "planner."
COST_PREFIX = "cost."


@dataclass(frozen=True)
class Param:
    """One parameter: its name, type, default (None: unset), meaning and constraints."""

    name: str
    type: str
    default: Any
    description: str
    range: Optional[tuple[float, float]] = None
    choices: Optional[tuple[str, ...]] = None
    dynamic: bool = False
    read_only: bool = False
    """Set at start-up only (never dynamic)."""
    check: Optional[Callable[[Any], Optional[str]]] = None
    """Extra check: the reason a value is bad, or None."""
    legacy: Any = None
    """The value that repeats the controller as it was before this parameter existed (None: the
    default does): a replay sets it when the bag's recorded parameters lack the name."""

    @property
    def full_description(self) -> str:
        """The description, with the value a replay of an older bag sets (``legacy``): what the
        descriptor and the documentation show."""
        if self.legacy is None:
            return self.description
        return f"{self.description} A replay of a bag recorded before this parameter uses {self.legacy}."

    @property
    def knob(self) -> Optional[str]:
        """The planner setting this parameter sets (``costs`` for every cost.*), or None."""
        if self.name.startswith(COST_PREFIX):
            return "costs"
        return self.name[len(KNOB_PREFIX):] if self.name.startswith(KNOB_PREFIX) else None

    def constraints(self) -> str:
        """Range or choices in words ("" if none)."""
        parts = []
        if self.range is not None:
            parts.append(f"in [{_number(self.range[0])}, {_number(self.range[1])}]")
        if self.choices is not None:
            parts.append("one of " + ", ".join(self.choices))
        return "; ".join(parts)

    @property
    def kind(self) -> str:
        return "read-only" if self.read_only else "dynamic" if self.dynamic else "static"

    def validate(self, value: Any) -> Optional[str]:
        """The reason ``value`` is refused, or None if it is fine."""
        if value is None:
            return None if self.default is None else f"{self.name} must be set"
        if not _has_type(value, self.type):
            article = "an" if self.type[0] in "aeiou" else "a"
            return f"{self.name} must be {article} {self.type}, got {type(value).__name__} {quote(value)}"
        if self.type == "double" and not math.isfinite(value):
            return f"{self.name} must be finite, got {value}"
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            return (f"{self.name} must be in [{_number(self.range[0])}, {_number(self.range[1])}], "
                    f"got {value}")
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, got {quote(value)}"
        return self.check(value) if self.check is not None else None


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e12 else f"{x:g}"


def _has_type(value: Any, type_name: str) -> bool:
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "double":
        return isinstance(value, float)
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "double_array":   # rclpy gives an array.array('d')
        return isinstance(value, (list, tuple, array.array)) and all(isinstance(v, float) for v in value)
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _finite_times(name: str) -> Callable[[Any], Optional[str]]:
    def check(times) -> Optional[str]:
        bad = [t for t in times if not math.isfinite(t)]
        return f"{name} must hold finite times, got {bad[0]}" if bad else None
    return check


def _check_options(text: str) -> Optional[str]:
    try:
        parse_options(text)
    except ValueError as exc:
        return str(exc)
    return None


def _check_device(text: str) -> Optional[str]:
    ok = text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit())
    return None if ok else f"device must be auto, cpu, cuda or cuda:N, got {quote(text)}"


def _check_joint_names(names) -> Optional[str]:
    if any(not n for n in names) or len(set(names)) != len(names):
        return f"joint_names must be distinct non-empty names, got {quote(list(names))}"
    return None


def _check_cost_terms(targets) -> Optional[str]:
    try:
        check_cost_spec({"terms": list(targets)})
    except ValueError as exc:
        return str(exc)
    return None


def _check_config(**fields: Any) -> Optional[str]:
    """ControlConfig's own check of these field values (the others at their defaults), so that
    the control loop's rule is written once: the reason, or None."""
    try:
        ControlConfig(**fields).validate()
    except ValueError as exc:
        return str(exc)
    return None


def _non_empty(name: str) -> Callable[[str], Optional[str]]:
    return lambda text: None if text.strip() else f"{name} must not be empty"


MAX_PATH_CHARS = 4096
"""Longest model or weights path (Linux's PATH_MAX)."""


def _path(name: str, empty_ok: bool = False) -> Callable[[str], Optional[str]]:
    def check(text: str) -> Optional[str]:
        if len(text) > MAX_PATH_CHARS:
            return f"{name} is {len(text)} characters long; at most {MAX_PATH_CHARS}"
        return None if empty_ok or text.strip() else f"{name} must not be empty"
    return check


SAFETY = ("max_observation_age", "on_stale", "hold_timeout", "max_stamp_lead", "clock_timeout",
          "timing", "novelty_threshold", "use_sim_time", "control_rate_hz", "period_tolerance")
"""What ``lock_safety`` keeps at its start-up values (use_sim_time: rclpy's, the clock that the
limits are measured on; a peer's /clock would otherwise stretch them; control_rate_hz and
period_tolerance: how long each command stands, against the model's step)."""
ROS_STATIC = ("use_sim_time",)
"""rclpy's own parameters that change only while the node is unconfigured (the clock the
limits are measured on)."""


PARAMETERS: tuple[Param, ...] = (
    Param("model", "string", "learned",
          "World model: a built-in name (learned: the shipped camera model of wall_door; "
          "analytic), a TorchScript file, or package.module:factory (needs allow_python_models).",
          read_only=True, check=_path("model")),
    Param("model_weights", "string", "",
          "State-dict file loaded into a built-in or factory model (empty: none).",
          read_only=True, check=_path("model_weights", empty_ok=True)),
    Param("model_options", "string", "{env: wall_door, horizon: 50}",
          "Keyword options of the built-in or factory model, as a YAML mapping in a string "
          f"(plain YAML: no anchors or aliases, at most {MAX_OPTIONS_CHARS} characters).",
          read_only=True, check=_check_options),
    Param("allow_python_models", "bool", False,
          "Load a package.module:factory model or cost.terms, which import and run that module's "
          "Python code in this process. Off: only built-ins and TorchScript files load.",
          read_only=True),
    Param("lock_safety", "bool", True,
          "Refuse changes of the safety settings (" + ", ".join(SAFETY) + ") after start-up, "
          "whoever asks: a peer on the "
          "domain cannot loosen how a dead sensor or clock stops the robot. false: they can be "
          "set at run time like the others (tuning).",
          read_only=True),
    Param("device", "string", "auto",
          "Torch device: auto (CUDA if available, else CPU with a warning), cpu, cuda or cuda:N.",
          check=_check_device),
    Param("cpu_capability", "string", None,
          "Reported by the node, not chosen here: torch's CPU kernel set in this process "
          "(default, avx2, avx512, ...), which decides the rounding of every plan. Choose it with "
          "the environment variable ATEN_CPU_CAPABILITY before the node starts; grasp-ros record "
          "stores it and a replay starts its controller with the recorded one.",
          read_only=True),
    Param("torch_threads", "int", 1,
          "Torch intra-op threads of this process (0: torch's default). One avoids thread-pool "
          "stalls when small planning batches share the cores with other processes.",
          range=(0, 256)),
    Param("planner", "string", "grasp", "Planner.", choices=tuple(sorted(PLANNERS))),
    Param("horizon", "int", 50, "H: planned actions per cycle.", range=(1, 1000)),
    Param("seed", "int", 0, "Planner random seed (reset rewinds it).", range=(0, 2**31 - 1)),
    Param("control_rate_hz", "double", 10.0,
          "Control cycles per second of the node's clock (sim time with use_sim_time).",
          range=(0.1, 1000.0)),
    Param("solve_budget", "double", 0.0,
          "Wall-clock seconds from a cycle's start to its command; 0: 0.8 x period. A plan not "
          "ready by then is not waited for: the previous plan's action goes out (FALLBACK) and "
          "the late plan warm-starts the next cycle. Unused with timing fixed_iterations. At most "
          "the period, except on sim time (a simulator slower than real time leaves more wall "
          "time a period: 0.5x, twice the period). On sim time the clock runs on meanwhile: a "
          "command whose observation is older than max_observation_age when it is ready is the "
          "stop (FALLBACK), so a simulator faster than real time needs a budget of its period "
          "in wall seconds (10x: 0.1 x period).",
          range=(0.0, 60.0), dynamic=True),
    Param("max_observation_age", "double", 0.5,
          "Seconds (node clock) after which the newest observation is stale.",
          range=(0.001, 3600.0), dynamic=True),
    Param("on_stale", "string", "zero",
          "Command while stale (no or old observation, no goal): hold the last command (for at "
          "most hold_timeout) or zero.",
          choices=ON_STALE_CHOICES, dynamic=True),
    Param("hold_timeout", "double", 0.5,
          "Longest time (s, node clock) on_stale hold keeps the last command standing; then zero "
          "(keep it below any downstream command timeout).",
          range=(0.0, 60.0), dynamic=True),
    Param("max_stamp_lead", "double", 0.05,
          "An observation stamped more than this (s) ahead of the node's clock is refused (ERROR).",
          range=(0.0, 10.0), dynamic=True),
    Param("min_iterations", "int", 1,
          "A cycle whose planner ran fewer iterations reports TRUNCATED instead of OK.",
          range=(0, 100000), dynamic=True),
    Param("timing", "string", "realtime",
          "realtime: plan within the wall-clock solve budget, command by the deadline; "
          "fixed_iterations: every cycle runs planner.iterations, no wall-clock limit "
          "(deterministic: lock-step simulation, replay).",
          choices=TIMING_CHOICES),
    Param("novelty_threshold", "double", DEFAULT_NOVELTY_THRESHOLD,
          "Observation or goal novelty (training spreads from the model's training inputs) above "
          "which a cycle is NOVEL with a zero command; 0 disables.",
          range=(0.0, 1e6), dynamic=True),
    Param("clock_timeout", "double", 1.0,
          "Wall seconds without a control cycle (the node's clock stalled, e.g. /clock under "
          "use_sim_time, or a long callback held up the executor) before a zero command and "
          "CLOCK status, repeated while it lasts. "
          "Longer than the control period (1 / control_rate_hz).",
          range=(0.01, 3600.0)),
    Param("image_transport", "string", "raw",
          "How camera images arrive: raw (sensor_msgs/Image on image) or compressed "
          "(sensor_msgs/CompressedImage, jpeg, png or tiff, on image/compressed: image_transport's "
          "convention, so a remap of image moves it too).",
          choices=("raw", "compressed")),
    Param("image_crop", "string", "",
          "How a camera frame of any size and aspect becomes the model's S x S input, as the "
          "rosbag importer makes it: center (the largest centred square, resized) or stretch "
          "(the whole frame resized); empty: the model card's.",
          choices=("",) + tuple(CROPS)),
    Param("joint_names", "string_array", None,
          "The robot's joints (unset: the model card's). The model's joints must be among them; "
          "with command_interface joint_trajectory they are the trajectory's joints instead, one "
          "per action (the model may encode others too): the card's action joints, in any order, "
          "each sent its own velocity by name, or names for actions the card does not name.",
          check=_check_joint_names),
    Param("pair_tolerance", "double", 0.05,
          "For a model that encodes camera and joints: the joint_states sample used with a frame "
          "is the one nearest in stamp, at most this far (s) from it (the cycle takes the newest "
          "fresh frame that has one); a goal image pairs with the "
          "goal state this close in stamp.",
          range=(0.0, 10.0), dynamic=True),
    Param("plan_ahead", "int", 0,
          "Control periods the plan starts ahead of the observation: 1 plans from the model's "
          "prediction of the next step under the command the robot holds now, for a loop whose "
          "command takes effect a period late (sent most of a period after the observation, to a "
          "robot or simulator that takes it at its next control step: grasp_sim in real time); "
          "0 plans from the observation (a command that acts at once, e.g. lock step).",
          range=(0, 1), dynamic=True, legacy=0),
    Param("goal_tolerance", "double_array", None,
          "Goal checker: the robot is at a joint goal when every goal joint's position is within "
          "this of the goal's (the joints' units: m, rad; one value for every goal joint, or one "
          "per goal joint in the card's order, as grasp-ros info lists them): ARRIVED, the stop "
          "instead of a plan, until a joint is twice as far or the goal changes (Nav2's "
          "xy_goal_tolerance; unset or []: no checker, it plans for ever). Measured from "
          "joint_states, or the model's decode_state where it observes no positions of the goal "
          "joints.",
          check=lambda values: _check_config(goal_tolerance=tuple(values))),
    Param("replay.late_cycles", "double_array", None,
          "Set by grasp-ros replay (timing fixed_iterations): the recorded run's late cycles, as "
          "their times (s, node clock). Each plans, sends the previous plan's action (FALLBACK) "
          "and warm-starts the next cycle, as the late plan did (unset: none).",
          check=_finite_times("replay.late_cycles")),
    Param("replay.busy_cycles", "double_array", None,
          "Set by grasp-ros replay (timing fixed_iterations): the cycles at which the recorded "
          "run's planner was still on a late plan; each sends the previous plan's action without "
          "planning (FALLBACK) (unset: none).",
          check=_finite_times("replay.busy_cycles")),
    Param("replay.overdue_cycles", "double_array", None,
          "Set by grasp-ros replay (timing fixed_iterations): the cycles whose command was overdue "
          "in the recorded run (the process held up: the stop went out instead); each runs as it "
          "did, then sends the stop (FALLBACK) (unset: none).",
          check=_finite_times("replay.overdue_cycles")),
    Param("period_tolerance", "double", 0.25,
          "Configure refuses a control period (1 / control_rate_hz) further than this fraction "
          "from the model card's period (a model trained at 10 Hz predicts 0.1 s steps).",
          range=(0.0, 100.0)),
    Param("command_interface", "string", "forward_command",
          "Output, in the robot units of the model card: forward_command (std_msgs/"
          "Float64MultiArray on command, for a forward_command_controller); joint_trajectory "
          "(trajectory_msgs/JointTrajectory on joint_trajectory: the plan's velocities for "
          "max_observation_age + one period, then at rest, and positions integrated from the "
          "joint_states measured at the cycle, each step by the mean of its two points' "
          "velocities); twist or twist_stamped "
          "(geometry_msgs on cmd_vel, Nav2's convention; the card names the Twist fields).",
          choices=("forward_command", "joint_trajectory", "twist", "twist_stamped")),
    Param("frame_id", "string", "world",
          "Frame of ~/predicted_path (the coordinates of the model's position()).",
          check=_non_empty("frame_id")),
    Param("command_frame_id", "string", "base_link",
          "Frame of the command's header with command_interface twist_stamped: the robot's base "
          "frame, as Nav2 stamps cmd_vel (the velocities are the base's own).",
          check=_non_empty("command_frame_id")),
    Param("autostart", "bool", False,
          "Configure and activate on start, without a lifecycle manager."),
    Param("planner.iterations", "int", None,
          "Iteration cap per cycle, every planner (the solve budget usually stops it first). 0: no "
          "optimisation, the initial plans (warm start, fresh samples or chains) ranked by their "
          "rollouts, what a cycle whose budget ran out at once plans (a replay repeats those).",
          range=(0, 100000), dynamic=True),
    Param("planner.max_syncs", "int", None,
          "GRASP: syncs per cycle at most (unset: no cap). A replay of a run recorded under a "
          "wall-clock budget sets each cycle's recorded count (PlanDiagnostics.syncs).",
          range=(0, 100000), dynamic=True),
    Param("planner.sync_every", "int", None,
          "GRASP: iterations between syncs, gradient steps on the actions through the full "
          "rollout (0: none; unset: the planner's default, 10). Through a learned model with "
          "momentum the full-rollout step exploits the model's errors: config/arm_controller.yaml "
          "turns it off for the arm.",
          range=(0, 100000), dynamic=True),
    Param("planner.running_weight", "double", 0.1,
          "Weight of the mean running goal distance in the task cost, every planner (the terminal "
          "distance has weight 1). Closed loop needs it: with the terminal distance alone, every "
          "plan that arrives within H steps is as good, so the first action need not head anywhere; too "
          "high, and waiting at a wall near the goal beats the detour through a door.",
          range=(0.0, 1000.0), dynamic=True),
    Param("planner.chains", "int", 12,
          "Parallel chains C (GRASP). Fewer than the open-loop default (48): replanning every "
          "cycle, more iterations per chain reach the goal more often than more chains at equal "
          "compute (docs/notes/planner_experiments.md).",
          range=(1, 4096), dynamic=True),
    Param("planner.init_actions", "string", None,
          "GRASP's fresh chains start with the actions that follow their routes under the "
          "model's local linear response (inverse, its default) or with zero actions (zero).",
          choices=INIT_ACTIONS, dynamic=True),
    Param("planner.rank_every", "int", 0,
          "GRASP: rank the chains' true rollouts before iteration 0 and every this many iterations "
          "(the planner's own default 5; 0 here: a cycle ranks every chain at its end anyway, and "
          "each ranking costs a serial rollout of the few milliseconds a busy cycle has).",
          range=(0, 100000), dynamic=True),
    Param("planner.arrivals", "int", None,
          "GRASP: paces of the fresh chains' routes; chain c reaches the goal at step "
          "H / 2^(c mod arrivals) and holds there (1, its default: every route takes the whole "
          "horizon).",
          range=(1, 16), dynamic=True),
    Param("planner.route_spread", "double", 2.0,
          "GRASP: width of the widest fresh route, in horizon reaches (H one-step "
          "displacements); three quarters of the fresh chains start on routes from nearly "
          "straight to this wide, out of a dead end and round an obstacle (0: every fresh route "
          "nearly straight; config/arm_controller.yaml sets 0).",
          range=(0.0, 10.0), dynamic=True, legacy=0.0),
    Param("planner.sync_search", "int", 4,
          "GRASP: step sizes each sync tries (sync_lr x 4^k, k < sync_search, one batched "
          "rollout), each chain keeping the one whose true rollout costs least (0: one plain step).",
          range=(0, 16), dynamic=True, legacy=0),
    Param("planner.sync_gradient", "string", "auto",
          "GRASP: how a sync gets the gradient through the full rollout: backprop, adjoint "
          "(the rollout without a gradient, every step's Jacobian in one batched call, the "
          f"adjoint recurrence), or auto: the adjoint for a latent of at most {ADJOINT_MAX_LATENT} values, where it is "
          "the faster (the two agree to float rounding).",
          choices=SYNC_GRADIENTS, dynamic=True, legacy="backprop"),
    Param("planner.start_samples", "int", None,
          "GRASP: random action sequences drawn around the warm start every cycle and ranked "
          "by their true rollouts; the best start fresh chains (planner.start_chains of them) "
          "(0, its default: none; config/arm_controller.yaml sets 300).",
          range=(0, 100000), dynamic=True),
    Param("planner.max_start_samples", "int", None,
          "GRASP: start samples per cycle at most (unset: no cap). Under a wall-clock budget a "
          "cycle draws only as many as fit before the warm start's rollout, one iteration and its "
          "final ranking; a replay of such a run sets each cycle's recorded count "
          "(PlanDiagnostics.start_samples).",
          range=(0, 100000), dynamic=True),
    Param("planner.start_chains", "double", None,
          "GRASP: fraction of the fresh chains that start from the best of planner.start_samples "
          "(its default 0.5).",
          range=(0.0, 1.0), dynamic=True),
    Param("planner.start_std", "double", None,
          "GRASP: std of those samples, in half action ranges (its default 0.5).",
          range=(0.0, 10.0), dynamic=True),
    Param("planner.start_colour", "double", None,
          "GRASP: colour of those samples' noise over time, power spectrum ~ 1/f^start_colour "
          "(its default 0: white; 2: red, slowly varying sequences that carry the robot "
          "somewhere; config/arm_controller.yaml sets 2).",
          range=(0.0, 10.0), dynamic=True),
    Param("planner.start_std_spread", "double", None,
          "GRASP: those samples' std runs log-evenly from planner.start_std down to "
          "planner.start_std / start_std_spread over the samples: wide ones find other routes, "
          "near ones refine the warm start by true rollout (its default 1: all at start_std).",
          range=(1.0, 1000.0), dynamic=True),
    Param("planner.warm_states", "string", None,
          "GRASP: where the warm chains' virtual states start each cycle: rollout, the true "
          "rollout of the warm start's actions (one rollout); virtual, the previous plan's "
          "optimised virtual states, shifted, which drift from what the actions do when no sync "
          "pulls them back; reset, the chains on those, the unchanged warm start competing with "
          "(and, winning, carrying) its true rollout (config/arm_controller.yaml: with the 1-4 "
          "iterations a slow CPU leaves, chains on the rollout reached fewer goals); auto (its "
          "default): rollout where planner.sync_every is 0, else virtual.",
          choices=WARM_STATES, dynamic=True, legacy="virtual"),
    Param("planner.lr_actions", "double", None, "Learning rate of the actions (GRASP).",
          range=(0.0, 100.0), dynamic=True),
    Param("planner.lr_states", "double", None, "Learning rate of the virtual states (GRASP).",
          range=(0.0, 100.0), dynamic=True),
    Param("planner.state_noise", "double", None,
          "Std of the noise added to the virtual states each iteration (GRASP).",
          range=(0.0, 10.0), dynamic=True),
    Param("planner.goal_weight", "double", None, "Weight of the dense goal term (GRASP).",
          range=(0.0, 1e6), dynamic=True),
    Param("planner.noise_colour", "double", None,
          "CEM and MPPI: colour of the sampling noise over time, power ~ 1/f^noise_colour (its "
          "default 0: white, the plain methods; 2: red, iCEM's).",
          range=(0.0, 10.0), dynamic=True),
    Param("planner.action_weight", "double", None,
          "Weight of the mean squared action (effort) in the task cost, every planner.",
          range=(0.0, 1e6), dynamic=True),
    Param("cost.smoothness", "double", 0.0,
          "Weight of the mean squared change between consecutive actions (the first from the "
          "action executed before) in the task cost, every planner.",
          range=(0.0, 1e6), dynamic=True),
    Param("cost.joint_goal_weight", "double", 1.0,
          "Weight of the joint-space goal distance (through the model's decode_state), when the "
          "goal is given as joint positions; terminal and running like the latent goal's. 0: a "
          "goal of joint positions alone is refused (ERROR, the stop: nothing to plan towards).",
          range=(0.0, 1e6), dynamic=True),
    Param("cost.joint_goal_scales", "double_array", None,
          "Units of the joint-space goal distance, one per value the model's decode_state gives "
          "(the order of cost.joint_limits_low): each value's error is divided by its unit before "
          "squaring, so that joints in different units count alike (a gripper in m beside joints "
          "in rad: 0.01 for it weighs a centimetre as a radian) (unset: every value in its own unit); "
          "each in [1e-06, 1e+06].",
          dynamic=True, check=lambda values: joint_goal_scales_problem(values, "cost.joint_goal_scales")),
    Param("cost.joint_limit_weight", "double", 0.0,
          "Weight of the joint-limit barrier: mean squared excess of the decoded joints (the "
          "model's decode_state) beyond cost.joint_limits_low/high; 0 disables.",
          range=(0.0, 1e6), dynamic=True),
    Param("cost.joint_limits_low", "double_array", None,
          "Lower joint limits of the barrier, one per value the model's decode_state gives: "
          "each joint's fields in the card's order (shoulder.position, shoulder.velocity, ... for a "
          "model of positions and velocities; grasp-ros info lists them) (unset: none). Their "
          "positions also bound a joint_trajectory's: a joint stops at its limit, its velocity cut. "
          "A goal beyond them is refused (ERROR, the stop)."),
    Param("cost.joint_limits_high", "double_array", None,
          "Upper joint limits of the barrier, one per value the model's decode_state gives: "
          "each joint's fields in the card's order (shoulder.position, shoulder.velocity, ... for a "
          "model of positions and velocities; grasp-ros info lists them) (unset: none). Their "
          "positions also bound a joint_trajectory's: a joint stops at its limit, its velocity cut. "
          "A goal beyond them is refused (ERROR, the stop)."),
    Param("cost.terms", "string_array", None,
          "User cost terms package.module:function, each called as function(states, actions, "
          "goal, context) -> one cost per trajectory and added with weight 1 (unset: none). "
          "Imports and runs that code: needs allow_python_models.",
          read_only=True, check=_check_cost_terms),
)

BY_NAME: dict[str, Param] = {p.name: p for p in PARAMETERS}

REPLAY_CYCLES = tuple(replayed_parameter(kind) for kind in REPLAYED_KINDS)
"""The parameters a replay sets from a bag's FALLBACK cycles (``control.replayed``)."""

KINDS = {
    "read-only": "read-only: set at start-up (launch, -p, parameter file); restart to change",
    "static": "static: read at configure; change while unconfigured (cleanup, set, configure)",
    "dynamic": "dynamic: applies from the next control cycle",
}
"""What each kind of parameter means, in the descriptors and the parameter file."""


# -- checks across parameters -----------------------------------------------------------------

def validate_all(values: dict[str, Any]) -> list[str]:
    """Every reason the set of values is refused (empty: all good)."""
    problems = [reason for p in PARAMETERS if (reason := p.validate(values.get(p.name)))]
    if not problems:
        reason = check_consistency(values) or _check_joint_limits(values)
        if reason:
            problems.append(reason)
    return problems


def check_consistency(values: dict[str, Any]) -> Optional[str]:
    """Checks across parameters (values: name -> value for every parameter); reason or None."""
    period = 1.0 / values["control_rate_hz"]
    # On sim time the period is in sim seconds and the budget in wall seconds: a simulator
    # slower than real time leaves more wall time a period than the period.
    if values["solve_budget"] > period and not values.get("use_sim_time"):
        return (f"solve_budget {values['solve_budget']:g} s exceeds the control period "
                f"{period:g} s (1 / control_rate_hz); use 0 for 0.8 x period")
    if values["clock_timeout"] <= period:
        return (f"clock_timeout {values['clock_timeout']:g} s is not longer than the control period "
                f"{period:g} s: the clock watchdog would report a stalled clock between cycles")
    return _check_config(timing=values["timing"], replayed=replayed_cycles(values))


def _check_joint_limits(values: dict[str, Any]) -> Optional[str]:
    """The joint limits as a whole, by their parameters' names (at configure only: set one at a
    time, low and high differ in between)."""
    low, high = values.get("cost.joint_limits_low") or [], values.get("cost.joint_limits_high") or []
    if len(low) != len(high):
        return (f"cost.joint_limits_low has {len(low)} values and cost.joint_limits_high {len(high)}: "
                "give one of each per value of the model's decode_state")
    if any(not lo <= hi for lo, hi in zip(low, high)):
        return f"cost.joint_limits_low must be <= cost.joint_limits_high, got {list(low)} / {list(high)}"
    if values.get("cost.joint_limit_weight", 0.0) > 0 and not low:
        return "cost.joint_limit_weight > 0 needs cost.joint_limits_low and cost.joint_limits_high"
    return None


def locked(name: str, values: dict[str, Any]) -> Optional[str]:
    """Why ``name`` cannot be changed at run time under ``lock_safety``, or None."""
    if name in SAFETY and values.get("lock_safety"):
        return (f"{name} is a safety setting and lock_safety is true: set at start-up only "
                "(launch file, parameter file, -p), so that no peer can loosen it")
    return None


# -- text -> value ----------------------------------------------------------------------------

def typed_value(name: str, value: Any) -> Any:
    """``value`` (text, or as YAML/JSON gave it) as parameter ``name``'s type, checked by the
    table; ValueError with the reason."""
    spec = BY_NAME.get(name)
    if spec is None:
        raise ValueError(f"unknown controller parameter {name!r} (see config/grasp_controller.yaml)")
    if isinstance(value, str) and spec.type != "string":
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"{name}: cannot read {value!r} ({exc})") from exc
    if spec.type == "double" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if spec.type == "double_array" and isinstance(value, (list, tuple)):
        value = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    if spec.type == "string" and not isinstance(value, str):
        value = str(value)
    reason = spec.validate(value)
    if reason:
        raise ValueError(reason)
    return value


def parse_assignment(text: str, typed: Callable[[str, Any], Any] = typed_value) -> tuple[str, Any]:
    """``name:=value`` (as ``ros2 run ... -p``) or ``name=value`` as (name, ``typed`` value)."""
    name, sep, value = text.partition(":=")
    if not sep:
        name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ValueError(f"parameter {text!r}: expected NAME:=VALUE or NAME=VALUE")
    return name, typed(name, value)


# -- what the parameters make: the ControlConfig, planner settings, model spec ----------------

CONTROL_CONFIG = tuple(f.name for f in dataclasses.fields(ControlConfig) if f.name in BY_NAME)
"""Parameters that set the ``ControlConfig`` field of the same name (the period comes from
control_rate_hz, the replayed cycles from ``REPLAY_CYCLES``)."""


def replayed_cycles(values: dict[str, Any]) -> ReplayedCycles:
    """A replay's named cycles from the ``REPLAY_CYCLES`` parameters."""
    return ReplayedCycles(**{kind: tuple(values.get(replayed_parameter(kind)) or ())
                             for kind in REPLAYED_KINDS})


def control_config(values: dict[str, Any]) -> ControlConfig:
    """The control loop's settings from the parameters (values: name -> value)."""
    return ControlConfig(period=1.0 / values["control_rate_hz"], replayed=replayed_cycles(values),
                         **{name: _config_value(name, values[name]) for name in CONTROL_CONFIG})


def config_change(name: str, value: Any) -> dict[str, Any]:
    """The ``ControlConfig`` change that setting parameter ``name`` (one of ``CONTROL_CONFIG``)
    to ``value`` makes."""
    return {name: _config_value(name, value)}


def _config_value(name: str, value: Any) -> Any:
    # an array parameter is a tuple there (unset: empty)
    return tuple(value or ()) if BY_NAME[name].type.endswith("_array") else value


def knobs_for(planner: str, values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The set planner knobs as planner settings, and the names of the knobs ``planner`` lacks
    that were set to other than their default or legacy values (nobody's choice)."""
    fields = {f.name for f in dataclasses.fields(PLANNERS[planner].Settings)}
    knobs, ignored = {"costs": costs_for(values)}, []
    for p in PARAMETERS:
        if p.knob in (None, "costs") or values.get(p.name) is None:
            continue
        if p.knob in fields:
            knobs[p.knob] = values[p.name]
        elif values[p.name] not in (p.default, p.legacy):
            ignored.append(p.name)
    return knobs, ignored


def costs_for(values: dict[str, Any]) -> dict[str, Any]:
    """The planners' ``costs`` setting from the cost.* parameters (unset: none)."""
    def get(name: str, empty):
        value = values.get(name, BY_NAME[name].default)
        return empty if value is None else value
    return {"joint_goal": get("cost.joint_goal_weight", 1.0),
            "joint_goal_scales": list(get("cost.joint_goal_scales", [])),
            "smoothness": get("cost.smoothness", 0.0),
            "joint_limits": {"weight": get("cost.joint_limit_weight", 0.0),
                             "low": list(get("cost.joint_limits_low", [])),
                             "high": list(get("cost.joint_limits_high", []))},
            "terms": list(get("cost.terms", []))}


def settings_change(p: Param, value: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The planner settings that setting knob ``p`` to ``value`` changes (values: the others)."""
    if p.knob == "costs":
        return {"costs": costs_for({**values, p.name: value})}
    return {p.knob: value}


def model_spec_of(values: dict[str, Any]) -> dict[str, Any]:
    """The ``load_world_model`` spec the model parameters name. The default ``model_options``
    are the default model's: a TorchScript file (which takes no options) gets none unless they
    were changed, so ``-p model:=robot.ts`` alone is enough."""
    options = values["model_options"]
    if options == BY_NAME["model_options"].default and "torchscript" in model_spec(values["model"]):
        options = ""
    return model_spec(values["model"], values["model_weights"], parse_options(options))


# -- ROS: descriptors, declaration, reading ---------------------------------------------------

_ROS_TYPES = {"bool": "BOOL", "int": "INTEGER", "double": "DOUBLE", "string": "STRING",
              "string_array": "STRING_ARRAY", "double_array": "DOUBLE_ARRAY"}


LOCKED = "locked: lock_safety is true, so its start-up value stands (a safety setting)"
"""What a safety setting's descriptor says of it under ``lock_safety``, instead of its kind."""


def descriptor(p: Param, locked_by_safety: bool = False):
    """The rcl_interfaces ParameterDescriptor of ``p``; ``locked_by_safety``: held at its
    start-up value by ``lock_safety`` (``ros2 param describe`` said "dynamic" of such a one, and
    every set was refused: an audit)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.parameter import Parameter

    constraints = "; ".join(filter(None, (p.constraints(), LOCKED if locked_by_safety else KINDS[p.kind])))
    d = ParameterDescriptor(name=p.name, description=p.full_description,
                            additional_constraints=constraints,
                            type=Parameter.Type[_ROS_TYPES[p.type]].value, read_only=p.read_only)
    if p.range is not None and p.type == "int":
        d.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]), step=1)]
    elif p.range is not None and p.type == "double":
        d.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]),
                                                     to_value=float(p.range[1]), step=0.0)]
    return d


def declare_all(node, reported: Optional[dict[str, Any]] = None) -> dict[str, str]:
    """Declare every parameter on ``node``; returns {name: reason} for start-up values refused.
    ``reported``: values the node itself reports (declared as their default; another start-up
    value is refused).

    A refused start-up value (wrong type or out of range in a parameter file or ``-p``) would
    make rclpy raise and the process die; instead the parameter keeps its default and the reason
    is returned, so that configure can fail with it and a corrected value can be set later (a
    read-only parameter's only by a restart).
    """
    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
    from rclpy.parameter import Parameter

    refused: dict[str, str] = {}
    reported = reported or {}
    lock = False        # lock_safety, once declared (it comes before the settings it locks)
    for p in PARAMETERS:
        default = Parameter.Type[_ROS_TYPES[p.type]] if p.default is None else p.default
        default = reported.get(p.name, default)
        described = descriptor(p, lock and p.name in SAFETY)
        try:
            value = node.declare_parameter(p.name, default, described).value
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            node.declare_parameter(p.name, default, described, ignore_override=True)
            refused[p.name] = _start_up_refusal(p, f"start-up value refused: {shorten(exc)}")
            continue
        if p.name == "lock_safety":
            lock = value is True
        reason = p.validate(value)
        if p.name in reported and value != reported[p.name]:
            reason = (f"{p.name} is reported by the node ({reported[p.name]!r} here), not set "
                      f"({value!r} given). {p.description}")
        if reason:
            refused[p.name] = _start_up_refusal(p, reason)
    return refused


def _start_up_refusal(p: Param, reason: str) -> str:
    return reason + (" (read-only: restart the node with a corrected value)" if p.read_only else "")


def read_all(node) -> dict[str, Any]:
    """name -> current value of every parameter (None for an unset planner knob), and rclpy's
    use_sim_time."""
    values = {p.name: node.get_parameter_or(p.name).value for p in PARAMETERS}
    values["use_sim_time"] = bool(node.get_parameter_or("use_sim_time").value)
    return values


def cpu_capability() -> str:
    """torch's CPU kernel set in this process, as ATEN_CPU_CAPABILITY names it (avx2...)."""
    import torch
    return torch.backends.cpu.get_cpu_capability().lower()

