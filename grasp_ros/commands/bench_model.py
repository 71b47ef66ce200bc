"""``grasp-ros bench-model``: learned world-model accuracy vs rollout length (table, JSON, plot)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..bench.model_accuracy import measure  # noqa: E402
from ..bench.results import machine_info, markdown_table, write_bench_json  # noqa: E402


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="learned", help="built-in model name (default: %(default)s)")
    parser.add_argument("--env", default="wall_door")
    parser.add_argument("--steps", type=int, default=30, help="longest open-loop rollout")
    parser.add_argument("--episodes", type=int, default=40, help="held-out episodes")
    parser.add_argument("--quick", action="store_true", help="10 episodes")
    parser.add_argument("--out", type=Path, default=Path("bench_out/model"))
    parser.add_argument("--json", type=Path, default=None)


def run(args) -> int:
    torch.set_num_threads(1)
    rows = measure(args.model, args.env, args.steps, 10 if args.quick else args.episodes)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    path = write_bench_json(args.json or args.out / "model_accuracy.json", rows, machine)
    table = markdown_table(rows[::5] + ([rows[-1]] if (len(rows) - 1) % 5 else []), [
        ("rollout_steps", "rollout steps"), ("latent_mse", "latent MSE", ".2e"),
        ("position_err", "position error", ".3f")])
    print(f"{args.model} on {args.env}, {rows[0]['windows']} held-out windows\n\n{table}")
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    k = [r["rollout_steps"] for r in rows]
    a.plot(k, [r["latent_mse"] for r in rows], "o-", ms=3)
    a.set(xlabel="open-loop rollout steps", ylabel="latent MSE (per dim)", title="latent error")
    b.plot(k, [r["position_err"] for r in rows], "o-", ms=3, color="tab:orange")
    b.axhline(0.08, ls=":", color="red", label="success radius")
    b.set(xlabel="open-loop rollout steps", ylabel="decoded position error", title="position error")
    b.legend()
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "model_accuracy.png", dpi=110)
    print(f"wrote {path} and {args.out / 'model_accuracy.png'}")
    return 0
