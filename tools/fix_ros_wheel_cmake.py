#!/usr/bin/env python3
"""Point the ROS 2 wheels' exported CMake include paths at this interpreter's own folders.

The ros-kilted-* wheels ship CMake export files (``<venv>/share/*/cmake/*.cmake``) whose
INTERFACE_INCLUDE_DIRECTORIES name two folders of the machine the wheels were built on::

    /opt/python/cp311-cp311/include/python3.11
    /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include

CMake's generate step fails for any package that runs rosidl_generate_interfaces against
those targets until the folders exist. This script rewrites them, in the venv's own copies,
to the running Python's include folder and numpy's include folder. It is idempotent: it
only rewrites the build machine's prefix, so a second run changes nothing.

Run it with the venv's interpreter: ``.venv/bin/python tools/fix_ros_wheel_cmake.py``.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import sysconfig
from pathlib import Path

# Any /opt/python/cpXY-cpXY prefix (the manylinux build image layout).
_PY_INCLUDE = re.compile(r"/opt/python/cp\d+-cp\d+t?/include/python\d+\.\d+t?")
_NP_INCLUDE = re.compile(
    r"/opt/python/cp\d+-cp\d+t?/lib/python\d+\.\d+t?/site-packages/numpy/(?:_core|core)/include"
)


def python_include_dir() -> str:
    """This interpreter's include folder holding Python.h (a venv's may not have it)."""
    candidates = [
        sysconfig.get_paths()["include"],
        sysconfig.get_config_var("INCLUDEPY") or "",
        os.path.join(sys.base_prefix, "include", f"python{sysconfig.get_python_version()}"),
    ]
    for cand in candidates:
        if cand and os.path.isfile(os.path.join(cand, "Python.h")):
            return cand
    raise SystemExit(f"Python.h not found in any of {candidates}: install the Python dev headers")


def numpy_include_dir() -> str:
    import numpy  # noqa: PLC0415 (only needed here)

    return numpy.get_include()


def fix(prefix: Path, dry_run: bool = False) -> list[Path]:
    py_inc = python_include_dir()
    np_inc = numpy_include_dir()
    changed: list[Path] = []
    for path in sorted(prefix.glob("share/*/cmake/*.cmake")):
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        if "/opt/python/" not in text:
            continue
        new = _NP_INCLUDE.sub(np_inc, text)
        new = _PY_INCLUDE.sub(py_inc, new)
        if new != text:
            changed.append(path)
            if not dry_run:
                path.write_text(new)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, default=Path(sys.prefix),
                        help="environment whose share/*/cmake files to fix (default: sys.prefix)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    changed = fix(args.prefix, args.dry_run)
    verb = "would rewrite" if args.dry_run else "rewrote"
    print(f"fix_ros_wheel_cmake: {verb} {len(changed)} file(s) under {args.prefix}/share")
    return 0


if __name__ == "__main__":
    sys.exit(main())
