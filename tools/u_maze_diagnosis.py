"""Why GRASP's open-loop plans stay in the U-maze, and what gets them out: one figure.

For a few u_maze episodes (H=100, the analytic model) it plans twice, with the nearly straight
fresh routes and the plain sync (``route_spread=0, sync_search=0``) and with the planner's
defaults, and draws per episode: the chains' initial routes, the executed plan, and the traced
loss terms (task cost of the predictions, dynamics residual) over the iterations. Writes docs/notes/u_maze_routes.png (or --out).

    .venv/bin/python tools/u_maze_diagnosis.py --seeds 0 3 6
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from grasp_ros.bench.plots import draw_walls, save_figure  # noqa: E402
from grasp_ros.bench.settings import early_exit_tolerance  # noqa: E402
from grasp_ros.models import load_world_model  # noqa: E402
from grasp_ros.planning import GraspPlanner, GraspSettings  # noqa: E402
from grasp_ros.sim import make_env  # noqa: E402

VARIANTS = {"straight routes, plain sync": {"route_spread": 0.0, "sync_search": 0},
            "defaults (wide routes, searched sync)": {}}
H = 100


class _Watched(GraspPlanner):
    """GRASP that keeps its chains' initial routes."""

    def _initial_iterates(self, *args):
        actions, states = super()._initial_iterates(*args)
        self.routes = states.detach().clone()
        return actions, states


def plan(env, model, seed: int, overrides: dict):
    episode = env.sample_episode(seed)
    # the benchmark's early exit: a plan that ends within half the success radius
    settings = GraspSettings(trace=True, tolerance=early_exit_tolerance(env.success_radius), **overrides)
    planner = _Watched(model, H, settings=settings, seed=seed)
    z0, goal = (torch.tensor(p, dtype=torch.float32) for p in (episode.start, episode.goal))
    result = planner.plan(z0, goal)
    env.reset(episode)
    path = env.execute(result.actions.numpy())
    return {"episode": episode, "routes": planner.routes.numpy(), "path": path,
            "trace": result.trace, "success": env.success(path[-1]),
            "error": env.distance_to_goal(path[-1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 3, 6])
    parser.add_argument("--out", type=Path, default=Path("docs/notes/u_maze_routes.png"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = make_env("u_maze", H)
    model = load_world_model({"name": "analytic", "env": "u_maze", "horizon": H})
    fig, axes = plt.subplots(len(args.seeds), 3, figsize=(11, 3.5 * len(args.seeds)), squeeze=False)
    for row, seed in enumerate(args.seeds):
        for col, (name, overrides) in enumerate(VARIANTS.items()):
            out = plan(env, model, seed, overrides)
            ax = axes[row][col]
            draw_walls(ax, "u_maze")
            for route in out["routes"]:
                ax.plot(route[:, 0], route[:, 1], "-", lw=0.6, color="tab:orange", alpha=0.5)
            ax.plot(out["path"][:, 0], out["path"][:, 1], "-", lw=2, color="tab:blue")
            ax.plot(*out["episode"].start, "o", color="tab:blue")
            ax.plot(*out["episode"].goal, "*", ms=14, color="tab:green")
            ax.set_title(f"seed {seed}, {name}:\n{'success' if out['success'] else 'miss'}, "
                         f"final error {out['error']:.2f} m", fontsize=8)
            trace = out["trace"]
            its = [r["iteration"] for r in trace]
            colour = ("tab:red", "tab:purple")[col]
            axes[row][2].semilogy(its, [r["task_loss"] for r in trace], "-", color=colour,
                                  label=f"{name}: task cost of the predictions (mean over chains)")
            axes[row][2].semilogy(its, [r["residual"] for r in trace], ":", color=colour,
                                  label=f"{name}: dynamics residual")
            print(f"seed {seed} {name}: success {out['success']}, final error {out['error']:.3f} m "
                  f"after {len(out['trace'])} iterations")
        axes[row][2].set(xlabel="iteration", title=f"seed {seed}: loss terms")
        axes[row][2].legend(fontsize=6)
    fig.suptitle("u_maze, H=100, analytic model: initial routes (orange) and executed plan (blue)")
    save_figure(fig, args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
