"""Import MuJoCo with an OpenGL backend that can render here.

MuJoCo picks its backend from ``MUJOCO_GL`` once, when it is first imported. Its default (GLFW)
needs a display; a machine without one renders with EGL where a GPU is present and with OSMesa
(software, ``libosmesa6``) otherwise. A ``MUJOCO_GL`` set by the user is left alone.
"""
from __future__ import annotations

import glob
import os
import sys
import warnings


def choose_backend(environ=os.environ) -> str:
    """The MUJOCO_GL value to use: the user's, "" (GLFW) with a display, else egl or osmesa."""
    if "MUJOCO_GL" in environ:
        return environ["MUJOCO_GL"]
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return ""
    gpu = glob.glob("/dev/dri/renderD*") or glob.glob("/dev/nvidia[0-9]*")
    return "egl" if gpu else "osmesa"


def import_mujoco():
    """``mujoco``, imported after ``MUJOCO_GL`` is set (a warning if it was imported before)."""
    backend = choose_backend()
    if backend and "MUJOCO_GL" not in os.environ:
        if "mujoco" in sys.modules:
            warnings.warn(f"mujoco was imported before grasp_ros chose MUJOCO_GL={backend}: "
                          "rendering may fail; set MUJOCO_GL or import grasp_ros.sim.arm first",
                          stacklevel=2)
        os.environ["MUJOCO_GL"] = backend
    try:
        import mujoco
    except ImportError as exc:
        raise ImportError(f"the arm simulator needs MuJoCo: pip install mujoco ({exc})") from exc
    return mujoco
