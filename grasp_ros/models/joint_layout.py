"""The joint vector's layout: name-major, every field of the first joint, then the next:
[name0.field0, name0.field1, ..., name1.field0, ...]. The model card, the datasets, the trainer
and the controller node all lay joint values out this way."""
from __future__ import annotations

from typing import Optional, Sequence


def position_columns(names: Sequence, fields: Sequence[str],
                     subset: Optional[Sequence] = None) -> list[int]:
    """Columns of the joint vector of ``names`` x ``fields`` that hold positions: every joint's
    in order, or those of ``subset`` in its order (names not among ``names`` left out); none
    when ``fields`` has no "position"."""
    if "position" not in fields:
        return []
    names = list(names)
    at, width = list(fields).index("position"), len(fields)
    if subset is None:
        return [i * width + at for i in range(len(names))]
    return [names.index(n) * width + at for n in subset if n in names]


def column_labels(names: Sequence[str], fields: Sequence[str]) -> list[str]:
    """A label for each column of the joint vector: "joint.field" ("elbow.velocity")."""
    return [f"{n}.{f}" for n in names for f in fields]
