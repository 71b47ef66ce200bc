"""The parameter documentation, written from ``params.PARAMETERS``: the README's markdown table
and the documented parameter file ``config/grasp_controller.yaml`` (tests check both). ``main``
is the command ``python -m grasp_ros.ros.param_docs --yaml`` or ``--markdown``."""
from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Any, Optional

from ..process_exit import leave
from .params import KINDS, PARAMETERS, Param


def _yaml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return '""' if value == "" else f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    return str(value)


def _default_text(p: Param) -> str:
    return "unset" if p.default is None else _yaml_value(p.default)


def markdown_table() -> str:
    rows = ["| Parameter | Type | Default | Kind | Constraints | Description |",
            "|---|---|---|---|---|---|"]
    for p in PARAMETERS:
        rows.append(f"| `{p.name}` | {p.type} | `{_default_text(p)}` | {p.kind} | "
                    f"{p.constraints() or '-'} | {p.full_description} |")
    return "\n".join(rows) + "\n"


def yaml_text() -> str:
    """The documented parameter file: every parameter with its default and meaning."""
    lines = [
        "# grasp_controller parameters (generated from grasp_ros/ros/params.py by",
        "#   python -m grasp_ros.ros.param_docs --yaml > config/grasp_controller.yaml",
        "# and checked against it by the tests: edit the table, not this file).",
        "#",
        *(f"# {text}." for text in KINDS.values()),
        "# Parameters shown commented out are unset by default (planner knobs: the planner's own default holds); uncomment to set.",
        "# cost.* parameters make the task cost of every planner (grasp_ros/planning/costs.py).",
        "/**:",
        "  ros__parameters:",
    ]
    for p in PARAMETERS:
        about = f"{p.full_description} ({'; '.join(filter(None, (p.type, p.constraints(), p.kind)))})"
        lines.extend(textwrap.wrap(about, width=96, initial_indent="    # ",
                                   subsequent_indent="    #   ", break_on_hyphens=False))
        if p.default is None:
            lines.append(f"    # {p.name}: <{p.type}>")
        else:
            lines.append(f"    {p.name}: {_yaml_value(p.default)}")
    lines.extend(QOS_OVERRIDES_EXAMPLE)
    return "\n".join(lines) + "\n"


QOS_OVERRIDES_EXAMPLE = [
    "    # rclpy's QoS overrides of the inputs (history, depth, reliability; read-only), by the",
    "    #   topic fully resolved as remapped. A raw camera of 1280x720 or more from a driver that",
    "    #   publishes reliably is read reliably: a best-effort reader loses most such frames (the",
    "    #   node says so; README, \"Large raw frames need a reliable reader\").",
    "    # qos_overrides:",
    "    #   /camera/image_raw:",
    "    #     subscription:",
    "    #       reliability: reliable",
]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Print grasp_controller's parameter documentation.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--yaml", action="store_true", help="the documented parameter file")
    group.add_argument("--markdown", action="store_true", help="the README's parameter table")
    args = parser.parse_args(argv)
    sys.stdout.write(yaml_text() if args.yaml else markdown_table())
    return 0


if __name__ == "__main__":
    leave(main())
