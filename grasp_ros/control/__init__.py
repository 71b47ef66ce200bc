"""The receding-horizon control loop, free of ROS: warm starts, deadlines, fallbacks, safety guard."""
from .build import build_control_loop, resolve_device
from .cycle import ON_STALE_CHOICES, TIMING_CHOICES, ControlConfig, ControlLoop, CycleResult, Status
from .observations import lead_hint, time_base_hint
from .runner import CycleRunner
from .stats import CycleStats, StatusLog

__all__ = ["ON_STALE_CHOICES", "TIMING_CHOICES", "ControlConfig", "ControlLoop", "CycleResult",
           "CycleRunner", "CycleStats", "Status", "StatusLog", "build_control_loop", "lead_hint",
           "resolve_device", "time_base_hint"]
