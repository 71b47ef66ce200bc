"""``grasp-ros plan-demo``: plan one episode open loop with each planner and save a figure.

No ROS needed: the quickest look at what GRASP's virtual states do next to the baselines.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..bench.planners import run_episode  # noqa: E402
from ..bench.plots import draw_walls  # noqa: E402
from ..sim import ENV_NAMES, make_env  # noqa: E402
from ..models import load_world_model  # noqa: E402
from ..planning import PLANNERS, make_planner  # noqa: E402


def add_arguments(parser) -> None:
    parser.add_argument("--env", default="wall_door", choices=ENV_NAMES)
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--planners", nargs="+", default=list(PLANNERS), choices=list(PLANNERS))
    parser.add_argument("--out", type=Path, default=Path("demo_out/plan_demo.png"),
                        help="the figure (default: demo_out/plan_demo.png)")


def run(args) -> int:
    env = make_env(args.env, args.horizon)
    model = load_world_model({"name": "analytic", "env": args.env, "horizon": args.horizon})
    fig, axes = plt.subplots(1, len(args.planners), figsize=(3.4 * len(args.planners), 3.6), squeeze=False)
    for ax, name in zip(axes[0], args.planners):
        ok, plan, path = run_episode(env, make_planner(name, model, args.horizon), model, args.seed, "cpu")
        draw_walls(ax, args.env)
        if plan.virtual_states is not None:
            ax.plot(*plan.virtual_states.numpy().T, ".", ms=4, color="tab:orange", label="virtual states")
        ax.plot(*path.T, "-", lw=1.8, color="tab:blue", label="executed")
        ax.plot(*path[0], "o", color="tab:blue")
        ax.plot(*env.goal, "*", ms=14, color="tab:green")
        ax.set_title(f"{name}: {'success' if ok else 'miss'} ({plan.solve_time:.2f} s)", fontsize=9)
        print(f"{name:6s} success={ok} solve={plan.solve_time:.3f}s iterations={plan.iterations} "
              f"final error={env.distance_to_goal(path[-1]):.3f}")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0
