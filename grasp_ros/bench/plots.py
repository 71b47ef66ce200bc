"""Figures of the benchmarks: success vs horizon and vs iterations per cycle, GRASP's example plans."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from ..sim import LAYOUTS  # noqa: E402


def save_figure(fig, path: Path, dpi: int = 120) -> Path:
    """Lay out, write and close ``fig``; the path written."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def success_vs_horizon(rows: list[dict], path: Path) -> Path:
    envs = sorted({r["env"] for r in rows})
    fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for planner in sorted({r["planner"] for r in rows if r["env"] == env}):
            pts = sorted((r["horizon"], r["success_rate"]) for r in rows
                         if r["env"] == env and r["planner"] == planner)
            ax.plot([h for h, _ in pts], [100 * s for _, s in pts], "o-", label=planner,
                    lw=2.5 if planner == "grasp" else 1.2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["horizon"] for r in rows}), labels=[str(h) for h in sorted({r["horizon"] for r in rows})])
        ax.set(title=env, xlabel="horizon H (steps)", ylabel="success (%)", ylim=(-3, 103))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    return save_figure(fig, path, dpi=120)


def success_vs_effort(rows: list[dict], path: Path) -> Path:
    """Closed-loop success against planner iterations per cycle, one line per variant (and
    controller ``plan_ahead``, where the rows differ in it)."""
    several = len({r.get("plan_ahead", 0) for r in rows}) > 1

    def line(r: dict) -> str:
        return r["variant"] + (f", plan ahead {r.get('plan_ahead', 0)}" if several else "")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label in dict.fromkeys(map(line, rows)):
        pts = sorted((r["iterations_per_cycle"], r["success_rate"]) for r in rows if line(r) == label)
        ax.plot([n for n, _ in pts], [100 * s for _, s in pts], "o-", label=label)
    ax.set(xlabel="planner iterations per control cycle", ylabel="episodes reaching the goal (%)",
           ylim=(-3, 103))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path, dpi=120)


def example_plans_figure(examples: dict[str, list[dict]], path: Path) -> Path:
    """examples: env name -> list of ``bench.planners.example_plans`` entries."""
    rows, cols = len(examples), max(len(v) for v in examples.values())
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for r, (env, items) in enumerate(examples.items()):
        for c, ex in enumerate(items):
            ax = axes[r][c]
            draw_walls(ax, env)
            vs = ex["virtual_states"]
            ax.plot(vs[:, 0], vs[:, 1], ".", ms=4, color="tab:orange", label="virtual states")
            ax.plot(ex["path"][:, 0], ex["path"][:, 1], "-", lw=1.8, color="tab:blue", label="executed path")
            ax.plot(*ex["start"], "o", color="tab:blue")
            ax.plot(*ex["goal"], "*", ms=14, color="tab:green")
            ax.set_title(f"{env} seed {ex['seed']}: {'success' if ex['success'] else 'miss'}", fontsize=9)
    axes[0][0].legend(fontsize=7, loc="lower left")
    return save_figure(fig, path, dpi=110)


def draw_walls(ax, env: str) -> None:
    """The layout's walls in world coordinates on a [-1, 1]^2 axis."""
    for x0, y0, x1, y1 in LAYOUTS[env].walls:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, color="0.25"))
    ax.set(xlim=(-1, 1), ylim=(-1, 1), aspect="equal", xticks=[], yticks=[])
