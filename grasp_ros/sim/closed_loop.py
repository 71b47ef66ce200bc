"""Run ``grasp_sim`` and ``grasp_controller`` as separate processes and watch the loop over DDS.

What ``grasp-ros demo`` and ``grasp-ros bench-loop`` share. ``run_closed_loop(spec)`` starts both
nodes (with ``ros2 launch grasp_ros sim_demo.launch.py`` where the launch package is installed,
else as two ``python -m`` processes with the same parameters), watches them from a small node in
this process, stops them (SIGINT, then SIGKILL) and returns what it saw as a ``LoopResult``.
Any world of the sim node runs: the point mass, or the arm (``env="arm"``) with a learned camera +
joints model (``LoopSpec.checkpoint``, default grasp_ros/assets/arm_latent.pt); the watcher takes
whatever joints the sim reports, and success from the sim's episode reports.

DDS isolation: unless the environment already says otherwise, a random ``ROS_DOMAIN_ID`` and
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, so a demo never talks to other nodes on the network.

Observation-to-command latency, as measured here: the wall-clock time from the sim *publishing*
the observation a cycle planned from (the DDS source timestamp of that joint_states/image
message) to that cycle's command *arriving* at a subscriber in another process (the DDS
reception timestamp of the command at the watcher, who listens like the sim). Both are taken by
the middleware on this host's system clock, so the watcher's own scheduling does not enter. The
sim publishes an observation stamped t at the moment its sim time reaches t, so at
``rate_factor`` 1 this is also the latency in sim time: the controller's observation age when
its cycle started, plus the cycle (encode, plan, publish), plus transport.
(``LoopWatcher.latencies`` says how a cycle's observation is identified.)
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String

from grasp_ros.msg import PlanDiagnostics

from ..models import model_spec
from ..models.text import shorten
from ..ros import qos
from ..ros.processes import Processes, isolate_dds, launch_available
from ..timebase import NS, stamp_ns
from .world import ARM

SIM_NODE, CONTROLLER_NODE, WATCHER_NODE = "grasp_sim", "grasp_controller", "grasp_loop_watcher"
_COUNT, _NUMBER, _POINT = "count", "number", "point"   # a whole number, any number, a list of numbers
REPORT_FIELDS = {"start": {"episode": _COUNT, "seed": _COUNT, "t": _NUMBER, "start": _POINT, "goal": _POINT},
                 "end": {"episode": _COUNT, "seed": _COUNT, "t": _NUMBER, "success": bool,
                         "time_to_goal": (_NUMBER, None), "duration": _NUMBER, "steps": _COUNT,
                         "final_distance": _NUMBER, "goal": _POINT},
                 "done": {"episodes": _COUNT, "successes": _COUNT, "t": _NUMBER}}
"""What each of the sim's episode reports holds (``grasp_ros.sim.node``), which the commands
read and print: a field missing or of another kind is not the sim's report."""


def report_problem(report) -> bool:
    """Whether ``report`` (parsed JSON) is not one of the sim's episode reports."""
    fields = REPORT_FIELDS.get(report.get("event")) if isinstance(report, dict) and isinstance(
        report.get("event"), str) else None
    if fields is None:
        return True

    def fits(value, kind) -> bool:
        if isinstance(kind, tuple):
            return any(fits(value, k) for k in kind)
        if kind is None or kind is bool:
            return value is kind or (kind is bool and isinstance(value, bool))
        if kind == _POINT:
            return isinstance(value, list) and all(fits(v, _NUMBER) for v in value)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and (kind == _NUMBER or float(value).is_integer())
    return not all(name in report and fits(report[name], kind) for name, kind in fields.items())


EXIT_GRACE_S = 2.0
LAUNCH_FILE = "sim_demo.launch.py"


@dataclass
class LoopSpec:
    """One closed-loop run: which world, which planner, how long."""

    env: str = "wall_door"
    planner: str = "grasp"
    model: str = "learned"
    """World model spec of the controller: the shipped camera model, or e.g. "analytic"."""
    checkpoint: Optional[Path] = None
    """A learned model's checkpoint (``model`` "learned"); None: the shipped one of the world
    (``default_checkpoint``)."""
    observation: str = "image"
    """What the controller encodes: the camera ``image`` (the goal then comes as an image), the
    ``joints``, or ``image+joints`` (a camera + joints model: the goal comes as both)."""
    rate_hz: float = 10.0
    """Control rate; the sim steps physics and takes images at the same rate."""
    horizon: int = 50
    """Planning horizon, and the env's resolution (its max step is reach / horizon)."""
    seed: int = 0
    episodes: int = 1
    """Episodes to run; 0 keeps starting episodes until ``min_cycles`` control cycles ran."""
    min_cycles: int = 0
    """With ``episodes`` 0: stop at the end of the first episode after this many cycles."""
    max_episode_time: float = 60.0
    """Sim seconds before an episode counts as failed."""
    rate_factor: float = 1.0
    """Sim seconds per wall second."""
    start_delay: float = 0.5
    """Wall seconds the controller's command publisher must exist before sim time starts (the
    sim node's ``start_delay``: longer lets ``grasp-ros record`` find every topic first)."""
    clock_period: float = 0.005
    """Sim time quantum of /clock. Coarser than the node's 1 ms default: with the sim waiting for
    the controller, its timer fires on the sensor grid whatever the quantum (a divisor of the
    period), and every /clock message costs each use_sim_time process CPU (about 15% of a core
    at 1 kHz in rclpy)."""
    timeout: float = 180.0
    """Wall seconds for the whole run, startup included."""
    log_dir: Path = Path("demo_out")
    """Where the nodes' logs go (sim.log, controller.log or launch.log)."""
    launch: str = "auto"
    """"auto": ``ros2 launch`` where the launch package is installed; "never": two processes."""
    lockstep: bool = False
    """Step the sim once per controller command, and plan ``planner.iterations`` per cycle
    (``timing: fixed_iterations``) with no wall-clock budget: the run does not depend on how much
    CPU it gets (tests, replay)."""
    controller_params: dict = field(default_factory=dict)
    """Further controller parameters (name -> value), e.g. {"solve_budget": 0.04}."""

    @property
    def model_checkpoint(self) -> Optional[Path]:
        """The checkpoint ``model_options`` names: ``checkpoint``, else the world's shipped one;
        None: the ``learned`` model's own default (or a model that is not "learned")."""
        if self.model != "learned":
            return None
        return self.checkpoint if self.checkpoint is not None else default_checkpoint(self.env)

    @property
    def model_options(self) -> str:
        options = f"env: {self.env}, horizon: {self.horizon}, observe: {self.observation}"
        if self.model_checkpoint is not None:   # JSON quotes: a YAML string whatever the path
            options = f"checkpoint: {json.dumps(str(self.model_checkpoint))}, {options}"
        return "{" + options + "}"


ARM_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "arm_latent.pt"
"""The learned arm model (camera + joints) that ``grasp-ros demo --robot arm`` runs."""


def default_checkpoint(env: str) -> Optional[Path]:
    """The shipped learned model of ``env``: the arm's; None for the point-mass worlds (the
    ``learned`` model's own default, the wall_door camera model)."""
    return ARM_CHECKPOINT if env == ARM else None


@dataclass
class LoopResult:
    """What the watcher saw. Times are sim seconds unless named ``_wall``."""

    ok: bool
    reason: str
    starts: list[dict]                 # the sim's "start" reports, one per episode
    ends: list[dict]                   # its "end" reports
    samples: np.ndarray                # [N, 2 + 2J]: episode, t, J positions, J velocities
                                       # (joint_states; the point mass: episode, t, x, y, vx, vy)
    diagnostics: list[dict]            # one per control cycle the controller reported
    latencies: np.ndarray              # [M] s: observation-to-command latency (see module doc)
    wall_time: float
    logs: dict[str, Path]
    exit_codes: dict[str, int] = field(default_factory=dict)
    """Each node process's exit status (after the stop: -SIGINT or 130 is a clean stop)."""
    joint_names: list[str] = field(default_factory=list)
    """The joints of ``samples``' columns, as the sim's joint_states name them."""
    commands: list[tuple] = field(default_factory=list)
    """The values of every command seen on ``command``, in order."""

    @property
    def cycles(self) -> int:
        return sum(d["status"] != PlanDiagnostics.STATUS_INACTIVE for d in self.diagnostics)

    def solve_times(self) -> np.ndarray:
        """Solve times (s, wall) of the cycles that planned (OK or FALLBACK)."""
        planned = (PlanDiagnostics.STATUS_OK, PlanDiagnostics.STATUS_FALLBACK)
        return np.asarray([d["solve_time"] for d in self.diagnostics if d["status"] in planned])

    @property
    def deadline_misses(self) -> int:
        return sum(bool(d["deadline_missed"]) for d in self.diagnostics)

    @property
    def successes(self) -> int:
        return sum(bool(e["success"]) for e in self.ends)


# --- the nodes and their parameters --------------------------------------------------------

def controller_params_file(name: str = "grasp_controller.yaml") -> Optional[Path]:
    """config/NAME (default grasp_controller.yaml): the source tree's in a checkout, else the
    installed share/'s.

    None if neither exists (for grasp_controller.yaml: the controller's built-in defaults are
    the same values).
    """
    source = Path(__file__).resolve().parents[2] / "config" / name
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
        installed = Path(get_package_share_directory("grasp_ros")) / "config" / name
    except (ImportError, LookupError):
        return None
    return installed if installed.is_file() else None


def world_params_file(env: str) -> Optional[Path]:
    """config/ENV_controller.yaml: a world's controller parameters over grasp_controller.yaml
    (the arm's), None for a world that needs none."""
    return controller_params_file(f"{env}_controller.yaml")


def world_controller_values(env: str) -> dict:
    """The parameters ``world_params_file(env)`` sets (name -> value); {} without one."""
    path = world_params_file(env)
    if path is None:
        return {}
    import yaml
    return dict(yaml.safe_load(path.read_text(encoding="utf-8"))["/**"]["ros__parameters"])


def sim_parameters(spec: LoopSpec) -> dict:
    return {
        "env": spec.env, "horizon": spec.horizon, "seed": spec.seed,
        "episodes": spec.episodes, "exit_when_done": spec.episodes > 0,
        "physics_rate_hz": float(spec.rate_hz), "camera_rate_hz": float(spec.rate_hz),
        "max_episode_time": float(spec.max_episode_time), "rate_factor": float(spec.rate_factor),
        "clock_period": float(spec.clock_period), "lockstep": spec.lockstep,
        "start_delay": float(spec.start_delay),
        # The watcher sees the run from its first step (a lock-step run can be over before slow
        # discovery finds it).
        "wait_for_subscribers": WATCHER_NODE,
    }


def allow_python_models(spec: LoopSpec) -> bool:
    """A module:factory model named on the command line runs: whoever typed it chose that code."""
    return "factory" in model_spec(spec.model)


def controller_parameters(spec: LoopSpec) -> dict:
    return {
        "autostart": True, "use_sim_time": True, "model": spec.model,
        "allow_python_models": allow_python_models(spec),
        "model_options": spec.model_options, "planner": spec.planner, "horizon": spec.horizon,
        "control_rate_hz": float(spec.rate_hz), **(LOCKSTEP_CONTROLLER if spec.lockstep else {}),
        **spec.controller_params,
    }


LOCKSTEP_CONTROLLER = {"timing": "fixed_iterations", "clock_timeout": 60.0, "plan_ahead": 0}
"""Controller parameters of a lock-step run: plan by iteration count, the sim waiting for a
busy controller is not a stalled clock, and a command acts at once (no planning ahead)."""


def _ros_arg(name: str, value) -> list[str]:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value)   # a YAML string even when it looks like a map: "{env: ...}"
    else:
        text = repr(value)
    return ["-p", f"{name}:={text}"]


def node_commands(spec: LoopSpec) -> dict[str, list[str]]:
    """The two ``python -m`` command lines (what sim_demo.launch.py starts)."""
    sim = [sys.executable, "-m", "grasp_ros.sim.node", "--ros-args"]
    for name, value in sim_parameters(spec).items():
        sim += _ros_arg(name, value)
    controller = [sys.executable, "-m", "grasp_ros.ros.controller_node", "--ros-args"]
    for params_file in (controller_params_file(), world_params_file(spec.env)):
        if params_file is not None:
            controller += ["--params-file", str(params_file)]
    for name, value in controller_parameters(spec).items():
        controller += _ros_arg(name, value)
    controller += ["-r", "~/goal_state:=/goal_state", "-r", "~/goal_image:=/goal_image"]
    return {"sim": sim, "controller": controller}


def launch_command(spec: LoopSpec) -> list[str]:
    """``ros2 launch grasp_ros sim_demo.launch.py`` with the same parameters."""
    args = {"env": spec.env, "planner": spec.planner, "model": spec.model,
            "allow_python_models": allow_python_models(spec),
            "observation": spec.observation,
            "rate": spec.rate_hz, "horizon": spec.horizon, "seed": spec.seed,
            "episodes": spec.episodes, "exit_when_done": spec.episodes > 0,
            "max_episode_time": spec.max_episode_time, "rate_factor": spec.rate_factor,
            "clock_period": spec.clock_period, "wait_for_subscribers": WATCHER_NODE}
    params_file = controller_params_file()
    if params_file is not None:
        args["params_file"] = params_file
    text = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in args.items()}
    return ["ros2", "launch", "grasp_ros", LAUNCH_FILE, *(f"{k}:={v}" for k, v in text.items())]


# --- the watcher ---------------------------------------------------------------------------

class LoopWatcher(Node):
    """Listens to the loop from outside: sensors, commands, plan diagnostics, episode reports.

    Wall-clock node (no /clock subscription): it reads sim time from the messages' stamps.
    """

    def __init__(self, context: Context, spec: LoopSpec):
        super().__init__(WATCHER_NODE, context=context)
        self.spec = spec
        # Deep queues: the watcher may be scheduled late on a busy machine; it must not drop.
        reliable = QoSProfile(depth=200, history=HistoryPolicy.KEEP_LAST,
                              reliability=ReliabilityPolicy.RELIABLE)
        reports = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.joint_names: list[str] = []               # of the first joint_states seen
        self.samples: list[tuple] = []                 # (t, J positions, J velocities)
        self.published_at: dict[int, int] = {}         # observation stamp -> DDS source timestamp
        self.commands: list[tuple] = []                # (values, DDS source, reception timestamps)
        self.diagnostics: list[dict] = []
        self.reports: list[dict] = []
        # Who published the reports and the commands: one sim and one controller. A peer on the
        # domain (another demo, a stray sim, anyone) had its fake "success" report printed as
        # the run's, and its own commands drive the robot to a goal the demo called reached (an
        # adversarial audit); a report that is not the sim's JSON ended the run in a traceback.
        self.report_sources: set = set()
        self.command_sources: set = set()
        self.refused_reports: list[str] = []
        self.create_subscription(JointState, "joint_states", self._on_joints, reliable)
        self.create_subscription(Image, "image", self._on_image, qos.SENSOR)
        self.create_subscription(Float64MultiArray, "command", self._on_command, reliable)
        self.create_subscription(PlanDiagnostics, f"/{CONTROLLER_NODE}/plan_diagnostics",
                                 self._on_diagnostics, reliable)
        self.create_subscription(String, f"/{SIM_NODE}/episode", self._on_report, reports)

    def _on_joints(self, msg: JointState, info) -> None:
        t_ns = stamp_ns(msg.header.stamp)
        self.published_at.setdefault(t_ns, info["source_timestamp"])
        self.joint_names = self.joint_names or list(msg.name)
        n = len(self.joint_names)
        if n and len(msg.position) == n:     # the sim's every message; anything else is not a sample
            v = list(msg.velocity) if len(msg.velocity) == n else [np.nan] * n
            self.samples.append((t_ns / NS, *msg.position, *v))

    def _on_image(self, msg: Image, info) -> None:
        self.published_at.setdefault(stamp_ns(msg.header.stamp), info["source_timestamp"])

    def _on_command(self, msg: Float64MultiArray, info) -> None:
        self.command_sources.add(str(info.get("publisher_gid")))
        self.commands.append((tuple(msg.data), info["source_timestamp"], info["received_timestamp"]))

    def _on_diagnostics(self, msg: PlanDiagnostics) -> None:
        self.diagnostics.append({
            "t": stamp_ns(msg.header.stamp) / NS, "status": int(msg.status),
            "status_text": msg.status_text, "solve_time": msg.solve_time,
            "iterations": int(msg.iterations), "plan_cost": msg.plan_cost,
            "observation_age": msg.observation_age, "deadline_missed": bool(msg.deadline_missed),
            "warm_started": bool(msg.warm_started), "goal_distance": msg.goal_distance,
            "command": tuple(msg.command)})

    def _on_report(self, msg: String, info) -> None:
        self.report_sources.add(str(info.get("publisher_gid")))
        try:
            report = json.loads(msg.data)
        except (ValueError, RecursionError):
            report = None
        if report_problem(report):
            self.refused_reports.append(shorten(msg.data, 120))
            return
        self.reports.append(report)

    def disturbed(self) -> str:
        """Why the run's reports or commands cannot be taken for its own sim's and controller's
        ("" when they can): more than one publisher of either, or reports not the sim's."""
        why = []
        if len(self.report_sources) > 1:
            why.append(f"{len(self.report_sources)} publishers of /{SIM_NODE}/episode")
        if len(self.command_sources) > 1:
            why.append(f"{len(self.command_sources)} publishers of commands")
        if self.refused_reports:
            why.append(f"{len(self.refused_reports)} episode report(s) that are not the sim's "
                       f"(the first: {self.refused_reports[0]!r})")
        if not why:
            return ""
        domain = os.environ.get("ROS_DOMAIN_ID", "0")
        return (f"{'; '.join(why)}: another node on ROS_DOMAIN_ID {domain} (another demo or sim, a "
                "peer) took part, so the results are not this run's; run it on a domain of its own")

    def reports_of(self, event: str) -> list[dict]:
        return [r for r in self.reports if r.get("event") == event]

    def latencies(self) -> np.ndarray:
        """Observation-to-command latency (s) of each cycle whose command and observation were seen.

        Which observation a cycle used: the cycle started ``solve_time`` (wall) before its
        command's DDS source timestamp; the sensor messages' (stamp, source timestamp) pairs map
        that wall time to sim time; that minus the cycle's ``observation_age`` is the observation's
        stamp, snapped to the nearest stamp published (within a quarter period, else the cycle is
        left out). Cycles and commands are matched in order by value (a cycle's diagnostics name
        the command it sent); commands that no diagnostics name are skipped.
        """
        stamps = np.asarray(sorted(self.published_at), dtype=np.int64)
        if len(stamps) < 2:
            return np.zeros(0)
        walls = np.asarray([self.published_at[t] for t in stamps], dtype=np.float64)
        tolerance = 0.25 * NS / self.spec.rate_hz
        out, j = [], 0
        for d in self.diagnostics:
            if d["status"] == PlanDiagnostics.STATUS_INACTIVE:
                continue
            k = j
            while k < len(self.commands) and self.commands[k][0] != d["command"]:
                k += 1
            if k == len(self.commands):
                continue                         # that command never arrived
            j = k + 1
            if not np.isfinite(d["observation_age"]):
                continue
            _, sent, received = self.commands[k]
            cycle_start = np.interp(sent - d["solve_time"] * NS, walls, stamps.astype(np.float64))
            observed = cycle_start - d["observation_age"] * NS
            i = int(np.argmin(np.abs(stamps - observed)))
            if abs(stamps[i] - observed) <= tolerance:
                out.append((received - walls[i]) / NS)
        return np.asarray(out)


# --- the run -------------------------------------------------------------------------------

def run_closed_loop(spec: LoopSpec, progress: Optional[Callable[[str], None]] = print,
                    progress_period: float = 2.0,
                    monitor: Optional[Callable[[Processes, LoopWatcher], bool]] = None) -> LoopResult:
    """Start the nodes, watch until the run ends (or fails, or times out), stop them, report.

    ``monitor(processes, watcher)``, if given, is called after every message the watcher takes
    (keep it cheap); returning True ends the run as finished (``grasp-ros soak``: its duration).
    """
    isolate_dds()
    # The launch file takes the demo's arguments and one parameter file only: other settings
    # need the two processes.
    plain = not (spec.lockstep or spec.controller_params or spec.model_checkpoint
                 or world_params_file(spec.env) or spec.start_delay != LoopSpec.start_delay)
    use_launch = spec.launch == "always" or (spec.launch == "auto" and plain and launch_available(LAUNCH_FILE))
    commands = {"launch": launch_command(spec)} if use_launch else node_commands(spec)
    say = progress or (lambda text: None)
    say(f"starting {' and '.join(commands)} (ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}); "
        f"logs in {spec.log_dir}/")

    context = Context()
    rclpy.init(context=context)
    watcher = LoopWatcher(context, spec)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(watcher)
    started = time.monotonic()
    processes = Processes(commands, spec.log_dir)
    ok, reason = False, f"timed out after {spec.timeout:.0f} s"
    exited_at = None
    try:
        next_report = started + progress_period
        while time.monotonic() - started < spec.timeout:
            executor.spin_once(timeout_sec=0.05)
            finished, why = _finished(spec, watcher)
            if finished:
                ok, reason = why == "", why
                break
            if monitor is not None and monitor(processes, watcher):
                ok, reason = True, ""
                break
            exited = processes.exited()
            # A process that ends before the run does is a failure, once its last reports had
            # time to arrive (the sim exits by itself after its last episode).
            exited_at = exited_at or (time.monotonic() if exited else None)
            if exited_at and time.monotonic() - exited_at > EXIT_GRACE_S:
                name, code = next(iter(exited.items()))
                reason = f"{name} exited early with status {code}:\n{processes.tail(name)}"
                break
            if time.monotonic() >= next_report:
                say(_progress_line(spec, watcher))
                next_report += progress_period
        drain_until = time.monotonic() + 0.3      # reports and diagnostics still in flight
        while time.monotonic() < drain_until:
            executor.spin_once(timeout_sec=0.02)
    except KeyboardInterrupt:
        reason = "interrupted"
    finally:
        codes = processes.stop()
        executor.shutdown(timeout_sec=1.0)
        watcher.destroy_node()
        rclpy.try_shutdown(context=context)
    bad = {n: c for n, c in codes.items() if c not in (0, -signal.SIGINT, 130)}
    if ok and bad:
        ok, reason = False, f"processes ended with status {bad}"
    if ok and watcher.disturbed():
        ok, reason = False, watcher.disturbed()
    if ok and spec.episodes and not any(d["status"] != PlanDiagnostics.STATUS_INACTIVE
                                        for d in watcher.diagnostics):
        ok, reason = False, "the episodes ended without a control cycle of the controller"
    return LoopResult(ok=ok, reason=reason if not ok else "ok",
                      starts=watcher.reports_of("start"), ends=watcher.reports_of("end"),
                      samples=_episode_samples(watcher), diagnostics=watcher.diagnostics,
                      latencies=watcher.latencies(), wall_time=time.monotonic() - started,
                      logs=processes.logs, exit_codes=codes, joint_names=watcher.joint_names,
                      commands=[values for values, _, _ in watcher.commands])


def _finished(spec: LoopSpec, watcher: LoopWatcher) -> tuple[bool, str]:
    """(finished?, failure reason or ""): all episodes reported, or enough cycles and an episode end."""
    ends = watcher.reports_of("end")
    if spec.episodes:
        if not watcher.reports_of("done"):
            return False, ""
        failed = [e["episode"] for e in ends if not e["success"]]
        return True, f"episodes {failed} did not reach the goal" if failed else ""
    if len(watcher.diagnostics) < spec.min_cycles:     # cheap: this runs after every message
        return False, ""
    cycles = [d for d in watcher.diagnostics if d["status"] != PlanDiagnostics.STATUS_INACTIVE]
    if len(cycles) < spec.min_cycles:
        return False, ""
    enough_at = cycles[spec.min_cycles - 1]["t"] if spec.min_cycles else 0.0
    return any(e["t"] >= enough_at for e in ends), ""


def _episode_samples(watcher: LoopWatcher) -> np.ndarray:
    """joint_states samples tagged with their episode (episode k: from its start to the next)."""
    if not watcher.samples:
        return np.zeros((0, 2 + 2 * len(watcher.joint_names)))
    samples = np.asarray(sorted(watcher.samples), dtype=np.float64)
    starts = sorted((r["t"], r["episode"]) for r in watcher.reports_of("start"))
    index = np.searchsorted([t for t, _ in starts], samples[:, 0], side="right") - 1
    episode = np.asarray([starts[i][1] if i >= 0 else -1 for i in index], dtype=np.float64) \
        if starts else np.full(len(samples), -1.0)
    return np.column_stack([episode, samples])


def _progress_line(spec: LoopSpec, watcher: LoopWatcher) -> str:
    if not watcher.samples:
        return "waiting for the sim..."
    t, *values = watcher.samples[-1]
    joints = np.asarray(values[:len(values) // 2])
    starts = watcher.reports_of("start")
    line = f"[t={t:6.1f} s]"
    if starts:
        goal = np.asarray(starts[-1]["goal"])
        total = spec.episodes or "-"
        # Joint space: the point mass's metres; the arm's radians (its reports give the end
        # effector's distance when an episode ends).
        line += (f" episode {starts[-1]['episode'] + 1}/{total}: {_vector(joints)} -> "
                 f"{_vector(goal)}, {np.linalg.norm(goal - joints):.2f} to go")
    cycles = [d for d in watcher.diagnostics if d["status"] != PlanDiagnostics.STATUS_INACTIVE]
    if not cycles:
        return line + " | waiting for the controller..."
    solve = np.median([d["solve_time"] for d in cycles[-50:]]) * 1e3
    misses = sum(d["deadline_missed"] for d in cycles)
    return (line + f" | {len(cycles)} cycles, {misses} deadline misses, "
            f"solve {solve:.0f} ms, {cycles[-1]['status_text'] or cycles[-1]['status']}")


def _vector(values) -> str:
    return "(" + ", ".join(f"{v:+.2f}" for v in values) + ")"
