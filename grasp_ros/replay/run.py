"""One replay from bag to report: read and check the bag, settle the controller's parameters,
drive the controller, compare, write the outputs.

``prepare`` does everything that can refuse the request (a bad bag: ``BagError``; a bad option
or parameter: ``ValueError``) before any process starts or any file is written. ``replay`` then
runs it and writes ``replay.md``, ``replay.json``, ``replay.png``, ``cycles.csv`` and
``controller.log`` into the output folder, each only once complete (written beside, then renamed).
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..bench.load import load_average
from ..control import Status
from ..control.replayed import KINDS as REPLAYED_KINDS, parameter as replayed_parameter
from ..ros.params import BY_NAME
from ..ros.processes import launch_available
from ..timebase import NS
from .bag import CANDIDATES, BagError, Recording, check_fed, read_recording
from .compare import Comparison, Tolerances, compare
from .driver import CONTROLLER_LAUNCH_FILE, Replayer, ReplayRun
from .report import ReplayInfo, bench_row, markdown, plot, write_csv
from .schedule import ReplayCycle, activation_clock, replay_cycles
from .settings import changed_values, controller_values, iteration_mode, read_params_file

CONTROLLER_LATE_PLANS = CANDIDATES["late_plans"][0]

__all__ = ["BagError", "ReplayOptions", "Prepared", "ReplayOutcome", "prepare", "replay"]


@dataclass
class ReplayOptions:
    """What ``grasp-ros replay`` asks for."""

    bag: Path
    out: Path = Path("replay_out")
    json: Optional[Path] = None
    """The benchmark JSON (default: ``out``/replay.json)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Controller parameters to change (typed: ``settings.parse_assignment``)."""
    params_files: Sequence[Path] = ()
    """ROS 2 parameter files, in order (a later one's values win), over the recorded parameters."""
    iterations: str = "auto"
    """auto, recorded (each cycle's recorded count) or parameter (planner.iterations)."""
    start: float = 0.0
    """Seconds from the bag's first cycle: the window replayed."""
    end: float = math.inf
    speed: float = 0.0
    """At most this many times real time (0: as fast as the controller goes)."""
    tolerances: Tolerances = field(default_factory=Tolerances)
    topics: dict[str, str] = field(default_factory=dict)
    """Bag topics by role where the defaults do not fit (``bag.CANDIDATES``)."""
    cycle_timeout: float = 600.0
    call_timeout: float = 60.0
    timeout: float = 0.0
    """Wall seconds for the whole replay (0: ``default_timeout`` of the window): a bag whose
    cycles ask for 100,000 iterations each must not hold CI for hours."""
    launch: bool = False
    """Start the controller with ``ros2 launch grasp_ros grasp_controller.launch.py``."""


@dataclass
class Prepared:
    """A checked request: the recording, the controller's parameters and what to replay."""

    options: ReplayOptions
    recording: Recording
    values: dict[str, Any]
    sources: dict[str, str]
    iterations: str
    period: float
    activation: int
    """The clock (ns) at which the controller is activated (``schedule.activation_clock``)."""


@dataclass
class ReplayOutcome:
    """A finished replay: the comparison, what was replayed, the run, the files written."""

    comparison: Comparison
    info: ReplayInfo
    run: ReplayRun
    files: dict[str, Path]
    """md, json, png, csv, log: where each output went."""


TIMEOUT_BASE_S = 600.0
TIMEOUT_PER_SECOND = 10.0
"""The default whole-replay timeout: the controller's start plus ten wall seconds a recorded
second (a lock-step bag replays at 0.3-2x real time on a 2-core CPU)."""


def default_timeout(window_seconds: float) -> float:
    return TIMEOUT_BASE_S + TIMEOUT_PER_SECOND * window_seconds


def prepare(options: ReplayOptions) -> Prepared:
    """Read and check everything; raises BagError (the bag) or ValueError (options, parameters)."""
    _check_writable(Path(options.out), "--out")
    if options.json is not None:
        if Path(options.json).is_dir():
            raise ValueError(f"--json {str(options.json)!r} is a folder, not a file")
        _check_writable(Path(options.json).parent, "--json's folder")
    for name, value in (("--cycle-timeout", options.cycle_timeout), ("call timeout", options.call_timeout)):
        if not (math.isfinite(value) and value > 0):    # NaN: no deadline ever (an audit: a hang)
            raise ValueError(f"{name} must be a number of seconds > 0, got {value}")
    if options.timeout < 0 or not math.isfinite(options.timeout):
        raise ValueError(f"--timeout must be >= 0 s (0: {TIMEOUT_PER_SECOND:g} x the window + "
                         f"{TIMEOUT_BASE_S:g} s), got {options.timeout}")
    if options.speed < 0 or not math.isfinite(options.speed):
        raise ValueError(f"--speed must be >= 0 (0: as fast as possible), got {options.speed}")
    if not 0 <= options.start <= options.end:
        raise ValueError(f"the window must have 0 <= start <= end, got {options.start:g} to {options.end:g}")
    if options.launch and not launch_available(CONTROLLER_LAUNCH_FILE):
        raise ValueError(f"--launch starts the controller with `ros2 launch grasp_ros "
                         f"{CONTROLLER_LAUNCH_FILE}`, which needs ROS 2 (ros2, launch, launch_ros) "
                         f"and grasp_ros built into it (its share/ folder): not found here")
    options.tolerances.validate()
    file_values = {name: value for path in options.params_files for name, value in read_params_file(path).items()}
    recording = read_recording(options.bag, options.topics)
    values, sources = controller_values(recording.parameters, file_values, options.overrides,
                                        recording.image_transport, recording.parameters_unset)
    if recording.image_transport and _value(values, "image_transport") != recording.image_transport:
        raise ValueError(f"image_transport {values['image_transport']!r} does not fit the bag, whose "
                         f"camera ({recording.topics['image'][0]}) is {recording.image_transport}")
    mode = iteration_mode(options.iterations, recording.parameters,
                          changed_values(recording.parameters, {**file_values, **options.overrides}))
    period = 1.0 / float(_value(values, "control_rate_hz"))
    window = replay_cycles(recording, (), mode, options.start, options.end)
    activation = activation_clock([s.clock for s in window], period)
    for kind in REPLAYED_KINDS:
        times = [s.clock / NS for s in window if s.replayed_as(kind)]
        if times:
            values[replayed_parameter(kind)], sources[replayed_parameter(kind)] = times, "replay"
    prepared = Prepared(options, recording, values, sources, mode, period, activation)
    seconds = _window_seconds(prepared)
    timeout = options.timeout or default_timeout(seconds)
    if options.speed > 0 and seconds / options.speed > timeout:    # said now, not at the timeout
        raise ValueError(f"at --speed {options.speed:g} the window's {seconds:.1f} s take "
                         f"{seconds / options.speed:.0f} s, more than the {timeout:.0f} s timeout "
                         f"(--timeout): a higher --speed, or a longer --timeout")
    return prepared


def _check_writable(folder: Path, what: str) -> None:
    """ValueError unless ``folder`` is, or can be made, a folder this process writes in: every
    part of it that exists a folder, the deepest one writable (an audit: a traceback, exit 1,
    after the replay had run, and its outputs half moved)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == folder else f": {str(existing)!r}"
        raise ValueError(f"{what} {str(folder)!r}{where} is a file, not a folder")
    try:    # made, not asked: os.access says yes to root everywhere (/proc, /sys: exit 3 after the run)
        os.rmdir(tempfile.mkdtemp(prefix=".replay-probe-", dir=existing))
    except OSError as exc:
        raise ValueError(f"{what} {str(folder)!r}: cannot write in {str(existing)!r} "
                         f"({exc.strerror or exc})") from exc


def replay(prepared: Prepared, progress: Callable[[str], None] = print) -> ReplayOutcome:
    """Run a prepared replay and write its outputs (see the module docstring)."""
    from ..bench.results import machine_info

    options, recording = prepared.options, prepared.recording
    machine = machine_info()
    out = Path(options.out)
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    scratch = out / f".replay-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        chosen: list[ReplayCycle] = []

        def make_cycles(subscribed: list[str]) -> list[ReplayCycle]:
            check_fed(recording, subscribed)
            # The cycle's observation: the camera's frame when the controller takes the camera
            # (a camera + joints model pairs joints to frames), else joint_states.
            observed = ("image",) if "image" in subscribed else ("joints",)
            chosen[:] = replay_cycles(recording, observed, prepared.iterations, options.start, options.end)
            return chosen

        replayer = Replayer(recording, prepared.values, scratch, options.call_timeout,
                            options.cycle_timeout, options.speed, progress, options.launch,
                            options.timeout or default_timeout(_window_seconds(prepared)))
        bad_bag = False
        try:
            run = replayer.run(make_cycles, prepared.activation)
        except BagError:     # known once the controller said what it reads: nothing written
            bad_bag = True
            raise
        finally:
            if bad_bag and made:
                shutil.rmtree(out, ignore_errors=True)
            elif not bad_bag and (scratch / "controller.log").exists():
                os.replace(scratch / "controller.log", out / "controller.log")
        steps = chosen
        same_model = not {"model", "model_options", "model_weights", "image_crop"} & set(_changed(prepared))
        comparison = compare(recording.cycles, [s.index for s in steps], run.replayed,
                             options.tolerances, extra=len(run.extra),
                             same_model=recording.parameters is not None and same_model)
        info = _info(prepared, steps, run, machine)
        files = {"md": out / "replay.md", "json": Path(options.json) if options.json else out / "replay.json",
                 "png": out / "replay.png", "csv": out / "cycles.csv"}
        _write_outputs(comparison, info, machine, scratch, files)
        files["log"] = out / "controller.log"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return ReplayOutcome(comparison, info, run, files)


def _window_seconds(prepared: Prepared) -> float:
    """The recorded seconds the replay's window spans (``default_timeout`` scales with it)."""
    options, cycles = prepared.options, prepared.recording.cycles
    span = (cycles[-1].time - cycles[0].time) / NS
    return max(0.0, min(options.end, span) - options.start) + prepared.period


def _write_outputs(comparison: Comparison, info: ReplayInfo, machine: dict[str, Any], scratch: Path,
                   files: dict[str, Path]) -> None:
    """Write the report, CSV, plot and benchmark JSON into ``scratch``, then move each to its
    place in ``files`` (md, csv, png, json): none is seen half written."""
    from ..bench.results import write_bench_json

    (scratch / "replay.md").write_text(markdown(comparison, info), encoding="utf-8")
    write_csv(comparison, scratch / "cycles.csv")
    plot(comparison, scratch / "replay.png", _title(comparison, info))
    write_bench_json(scratch / "replay.json", [bench_row(comparison, info)], machine)
    for key, name in (("json", "replay.json"), ("md", "replay.md"), ("csv", "cycles.csv"), ("png", "replay.png")):
        files[key].parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(scratch / name), str(files[key]))


def _given(prepared: Prepared) -> list[str]:
    """The parameters --params-file or -p gave."""
    return sorted(k for k, v in prepared.sources.items() if v in ("params file", "command line"))


def _without_recorded(prepared: Prepared) -> str:
    """Where a bag without recorded parameters got its controller's."""
    given = _given(prepared)
    return (f"none in the bag: {len(given)} from --params-file / -p, the controller's defaults for the rest"
            if given else "none in the bag: the controller's defaults")


def _changed(prepared: Prepared) -> dict[str, Any]:
    """The values a file or the command line gave other than the recorded ones."""
    given = {k: prepared.values[k] for k in _given(prepared)}
    return {k: given[k] for k in changed_values(prepared.recording.parameters, given)}


def _value(values: dict[str, Any], name: str) -> Any:
    """The replayed controller's ``name``: as settled, else the parameter's default."""
    return values.get(name, BY_NAME[name].default)


def _info(prepared: Prepared, steps: list[ReplayCycle], run: ReplayRun, machine: dict[str, Any]) -> ReplayInfo:
    options, recording = prepared.options, prepared.recording
    span = (steps[-1].clock - steps[0].clock) / NS + prepared.period
    recorded = recording.parameters
    capability = {"recorded": (recorded or {}).get("cpu_capability"), "replayed": run.cpu_capability}
    return ReplayInfo(
        bag=str(recording.path), storage=recording.storage, compression=recording.compression,
        checksums=recording.checksums,
        image_transport=recording.image_transport,
        topics={role: topic for role, (topic, _) in recording.topics.items()},
        window=[options.start, options.end] if steps[0].index > 0 or math.isfinite(options.end) else None,
        bag_sim_s=span, replay_wall_s=run.wall_s, startup_s=run.startup_s,
        controller_solve_s=sum(r.solve_time for r in run.replayed.values()),
        speed_vs_real_time=span / run.wall_s if run.wall_s > 0 else math.inf,
        iterations=("recorded (each cycle's PlanDiagnostics.iterations and, for GRASP, syncs and "
                    "start_samples: set as planner.iterations, planner.max_syncs and "
                    "planner.max_start_samples; a late cycle's from its late plan's "
                    "report, and planned late again: the previous plan's action sent)"
                    if prepared.iterations == "recorded" else
                    f"planner.iterations = {prepared.values.get('planner.iterations', 'the planner default')}"),
        iteration_mode=prepared.iterations,
        parameters_from=(f"recorded in the bag ({len(recorded)} values of {recording.parameters_node})"
                         if recorded is not None else _without_recorded(prepared)),
        changed=_changed(prepared), settings=prepared.values,
        model=_value(prepared.values, "model"), planner=_value(prepared.values, "planner"),
        messages_delivered=run.messages_delivered, subscribed=run.subscribed,
        cpu_capability=capability,
        late_cycles=sum(s.replayed_as("late") for s in steps),
        busy_cycles=sum(s.replayed_as("busy") for s in steps),
        overdue_cycles=sum(s.replayed_as("overdue") for s in steps),
        notes=_notes(prepared, steps, capability),
        loadavg_start=machine.get("load_average"), loadavg_end=load_average(),
    )


def _notes(prepared: Prepared, steps: list[ReplayCycle], capability: dict[str, Optional[str]]) -> list[str]:
    """Where the replay cannot repeat the recording: a warm start it lacks, other CPU kernels
    (``capability``: recorded, replayed), late plans the bag does not report, FALLBACK cycles
    planned in time, no recorded parameters."""
    recording, recorded = prepared.recording, prepared.recording.parameters
    notes = []
    if steps[0].index > 0:
        notes.append(f"the replay starts at cycle {steps[0].index}: the controller starts there without "
                     "the warm start it had then, so the first cycles can differ")
    elif recording.cycles[0].warm_started:
        notes.append("the recording began mid-run (its first cycle was warm started from an earlier, "
                     "unrecorded one): the replayed controller starts without that warm start, so the "
                     "first cycles can differ")
    if capability["recorded"] and capability["recorded"] != capability["replayed"]:
        notes.append(f"recorded with torch's {capability['recorded']} CPU kernels, replayed with "
                     f"{capability['replayed'] or 'unknown'} (this CPU or ATEN_CPU_CAPABILITY): "
                     "floating-point rounding differs, and planning can amplify it")
    elif not capability["recorded"]:
        notes.append("the bag does not say which CPU kernels the recording ran (torch's "
                     "cpu_capability): on another kind of CPU, rounding can differ")
    unknown = sum(s.fallback == "unknown" for s in steps)
    if unknown:
        notes.append(f"{unknown} FALLBACK cycle(s) have no late plan report in the bag (no "
                     f"{CONTROLLER_LATE_PLANS} topic, or the plan never finished): they were planned "
                     "in time instead, so they and the cycles after them can differ")
    if prepared.iterations != "recorded" and any(c.status == Status.FALLBACK for c in recording.cycles):
        notes.append("the recording's FALLBACK cycles (late plans) were planned in time: only "
                     "--iterations recorded repeats them")
    if recorded is None:
        notes.append("the bag holds no controller parameters (record with grasp-ros record, or give "
                     f"them with --params-file / -p); {_without_recorded(prepared)}")
    return notes


def _title(comparison: Comparison, info: ReplayInfo) -> str:
    s = comparison.summary
    verdict = "passed" if comparison.passed else "FAILED"
    return (f"replay of {Path(info.bag).name} ({info.planner}, {info.model}): {verdict}, "
            f"max |diff| {s['max_command_diff']:.3g}, {s['status_changes']} status changes (open loop)")
