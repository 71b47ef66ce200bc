"""What every benchmark writes: the machine block, the JSON file, the Markdown table.

The file format is docs/benchmarks/FORMAT.md: one JSON object ``{"machine": {...}, "rows": [...]}``
per run, next to a Markdown table for people. Non-finite numbers are written as ``null`` (JSON has
no NaN).
"""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

Column = Union[str, tuple]   # "key", (key, header) or (key, header, format spec)


def machine_info() -> dict[str, Any]:
    """``{"cpu", "cores", "gpu", "torch", "python", "date"}`` of this machine, as docs/benchmarks/FORMAT.md says.

    ``cores`` counts the cores this process may run on (its CPU affinity), which is what a
    benchmark gets; ``gpu`` is the first CUDA device's name, or None. ``load_average`` (1, 5 and
    15 minutes, where the OS tells it) says how busy the machine was with other work: call this
    when the measurement starts.
    """
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        cores = os.cpu_count() or 1
    return {
        "cpu": _cpu_name(),
        "cores": cores,
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def write_bench_json(path: Union[str, os.PathLike], rows: Sequence[Mapping[str, Any]],
                     machine: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``{"machine": ..., "rows": ...}`` to ``path`` (folders made as needed); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": dict(machine) if machine is not None else machine_info(),
                "rows": [dict(r) for r in rows]}
    path.write_text(json.dumps(_finite(document), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def write_bench_files(path: Union[str, os.PathLike], rows: Sequence[Mapping[str, Any]],
                      machine: Mapping[str, Any], title: str, columns: Sequence[Column]) -> Path:
    """The JSON file at ``path`` and, beside it (``.md``), ``title``, the machine and the table of
    ``rows``; the table printed, and where both went."""
    table = markdown_table(rows, columns)
    print(table)
    path = write_bench_json(path, rows, machine)
    path.with_suffix(".md").write_text(
        f"# {title}\n\n{machine['cpu']}, {machine['cores']} cores, load average "
        f"{machine['load_average']}\n\n{table}\n", encoding="utf-8")
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return path


def _finite(value):
    """The same structure with NaN/Inf replaced by None, and numpy/torch scalars made plain."""
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if hasattr(value, "item") and callable(value.item):   # numpy / torch scalar
        return _finite(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def markdown_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """A Markdown table of ``rows`` with one column per entry of ``columns``.

    A column is a row key, or ``(key, header)``, or ``(key, header, spec)`` with a format spec
    such as ``".1f"``. Floats default to 4 significant digits, booleans read yes/no, a missing or
    non-finite value reads ``-``.
    """
    specs = [_column(c) for c in columns]
    lines = ["| " + " | ".join(header for _, header, _ in specs) + " |",
             "|" + "|".join("---" for _ in specs) + "|"]
    for row in rows:
        cells = [_cell(row.get(key), spec) for key, _, spec in specs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _column(column: Column) -> tuple[str, str, Optional[str]]:
    if isinstance(column, str):
        return column, column, None
    key, header, *rest = column
    return key, header, rest[0] if rest else None


def _cell(value, spec: Optional[str]) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if spec is not None:
        text = format(value, spec)
    elif isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = str(value)
    return text.replace("|", "\\|")
