#!/usr/bin/env python3
"""Let a venv's Python see the source tree and the colcon install of grasp_ros.

Writes ``<site-packages>/grasp_ros_install.pth`` of the running interpreter (run it with the
venv's Python). It does, for every interpreter start of that venv, what sourcing
install/setup.bash would do for the pieces this project needs:

1. sys.path gets the repo root, then install/grasp_ros/lib/python3.X/site-packages, in that
   order: the source tree's grasp_ros is imported (not the install's snapshot of it), and its
   pkgutil.extend_path finds the generated grasp_ros.msg in the install.
2. LD_LIBRARY_PATH gets install/grasp_ros/lib. rosidl's type-support dispatch dlopen()s
   libgrasp_ros__rosidl_typesupport_{fastrtps,introspection}_c.so by bare name, so only the
   loader's search path can find them (an RPATH on our libraries does not help: the caller of
   dlopen is librcutils). The loader reads LD_LIBRARY_PATH once, at process start; it works
   here because site runs .pth files in name order and this one comes before
   ros_wheels_bootstrapper.pth, which re-executes the interpreter with LD_LIBRARY_PATH
   (keeping what is already there). Where the bootstrapper has already run (its guard
   variable is inherited), set LD_LIBRARY_PATH yourself, as the Makefile does.
3. AMENT_PREFIX_PATH gets install/grasp_ros (and the venv, home of the ROS wheels), so that
   ament_index_python finds the package's share/ folder (config/, launch/).

Side effect worth knowing: install/setup.bash runs colcon's helper with this venv's Python,
which then already has these values, so sourcing setup.bash does not add them to the shell
(only the venv's Python, the one with rclpy, needs them).

Idempotent; ``--remove`` deletes the file.
"""
from __future__ import annotations

import argparse
import sys
import sysconfig
from pathlib import Path

PTH_NAME = "grasp_ros_install.pth"


def pth_text(repo: Path, venv: Path) -> str:
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    install = repo / "install" / "grasp_ros"
    site = install / "lib" / pyver / "site-packages"
    lib = install / "lib"
    # A .pth line that starts with "import" is executed; the other lines are sys.path entries
    # (added only when the folder exists).
    env_line = (
        "import os; "
        "_p = lambda k, v: v in os.environ.get(k, '').split(os.pathsep) or "
        "os.environ.__setitem__(k, os.pathsep.join(x for x in (v, os.environ.get(k, '')) if x)); "
        f"_p('LD_LIBRARY_PATH', {str(lib)!r}); "
        f"_p('AMENT_PREFIX_PATH', {str(venv)!r}); "
        f"_p('AMENT_PREFIX_PATH', {str(install)!r}); "
        "del _p"
    )
    return (
        f"{repo}\n"
        f"{site}\n"
        f"{env_line}\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                        help="repository root (default: this script's ../)")
    parser.add_argument("--remove", action="store_true", help="delete the .pth file")
    args = parser.parse_args(argv)

    target = Path(sysconfig.get_paths()["purelib"]) / PTH_NAME
    if args.remove:
        target.unlink(missing_ok=True)
        print(f"write_venv_pth: removed {target}")
        return 0
    text = pth_text(args.repo.resolve(), Path(sys.prefix).resolve())
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
        print(f"write_venv_pth: wrote {target}")
    else:
        print(f"write_venv_pth: {target} up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
