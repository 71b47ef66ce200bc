"""A harmless user cost term for the cost tests (``cost_term_marker:last_x_from_half``).

Not a test module (pytest does not collect it); the tests check by ``sys.modules`` whether it
was imported.
"""


def last_x_from_half(states, actions, goal, context):
    """(x_H - 0.5)^2 of trajectories [..., H+1, D] -> [...]."""
    return (states[..., -1, 0] - 0.5).pow(2)


def wrong_shape(states, actions, goal, context):
    """Per-step values instead of one per trajectory: refused."""
    return states[..., 0]
