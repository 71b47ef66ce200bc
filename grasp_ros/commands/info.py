"""``grasp-ros info MODEL``: print a model's card (what it needs and gives) and contract facts.

    grasp-ros info learned                                # the shipped camera model
    grasp-ros info '{name: learned, checkpoint: arm.pt}'  # a checkpoint of yours
    grasp-ros info model.ts --json                        # a TorchScript export, as JSON

MODEL is what the controller's ``model`` parameter takes, or a YAML mapping with ``name`` /
``torchscript`` / ``checkpoint`` and options. Python factories are not loaded here.
"""
from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="built-in name, TorchScript file, checkpoint (.pt), or a YAML "
                                      "mapping such as '{name: learned, checkpoint: model.pt}'")
    parser.add_argument("--json", action="store_true", help="print the card as JSON")


def run(args: argparse.Namespace) -> int:
    from ..models import WorldModelError, load_world_model, model_spec, parse_options
    from ..models.card import card_for

    try:
        spec = _spec(args.model, model_spec, parse_options)
        model = load_world_model(spec)
        card = card_for(model)
    except (WorldModelError, ValueError) as exc:
        print(f"grasp-ros info: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(card.to_shown_dict(), indent=2))
        return 0
    print(f"model {args.model}")
    print(f"latent: {int(model.latent_dim)} values; actions (model units): {int(model.action_dim)} in "
          f"[{model.action_low.tolist()}, {model.action_high.tolist()}]")
    print(card.describe())
    print(f"novelty statistics: {'yes' if getattr(model, 'input_statistics', None) else 'none'}")
    ranges = _joint_ranges(model, card)
    if ranges:
        print(f"joint goals accepted (their training ranges, widened by a tenth of each on both sides; "
              f"beyond: NOVEL): {ranges}")
    return 0


def _joint_ranges(model, card) -> str:
    """The joints' training ranges, "" where the statistics keep none (made before they did).
    A goal further than ``novelty.RANGE_MARGIN`` of a range outside it is NOVEL."""
    from ..models.card import value_labels
    from ..models.novelty import RANGE_MARGIN, novelty_for

    statistics = novelty_for(model)
    joints = card.goal_joint_input
    if statistics is None or joints is None or "joints" not in statistics.ranges:
        return ""
    low, high = statistics.ranges["joints"]
    labels = value_labels(joints, low.numel())
    return ", ".join(f"{n} [{lo - RANGE_MARGIN * (hi - lo):.3g}, {hi + RANGE_MARGIN * (hi - lo):.3g}] "
                     f"(trained [{lo:.3g}, {hi:.3g}])" for n, lo, hi in zip(labels, low.tolist(), high.tolist()))


def _spec(text: str, model_spec, parse_options) -> dict:
    """A model spec from the command line: a mapping, a learned checkpoint path, or what the
    controller's ``model`` parameter takes."""
    stripped = text.strip()
    if stripped.startswith("{"):
        mapping = parse_options(stripped)
        if "checkpoint" in mapping and "name" not in mapping:
            mapping["name"] = "learned"
        return mapping
    if stripped.endswith(".pt"):
        return {"name": "learned", "checkpoint": stripped}
    return model_spec(stripped)
