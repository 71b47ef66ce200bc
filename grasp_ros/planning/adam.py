"""Adam (Kingma & Ba, arXiv:1412.6980) for a planner's few tensors.

The arithmetic is that of ``torch.optim.Adam``'s single-tensor path with its defaults, op for op,
so a plan is the same to the bit (a replay of a bag recorded with ``torch.optim.Adam`` stays
exact). What it leaves out is the optimiser's per-step bookkeeping (parameter groups, state
dicts, option checks): on a planner's small tensors that cost more than the update itself.
"""
from __future__ import annotations

import torch


class Adam:
    """Adam over ``groups``: (tensor, learning rate) pairs. ``step`` uses each tensor's ``.grad``
    and skips a tensor without one, as torch's does."""

    def __init__(self, groups, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        self._groups = [(p, float(lr), torch.zeros_like(p), torch.zeros_like(p), [0]) for p, lr in groups]

    def zero_grad(self) -> None:
        for p, *_ in self._groups:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.beta1, self.beta2
        for p, lr, m, v, count in self._groups:
            grad = p.grad
            if grad is None:
                continue
            count[0] += 1
            step = float(count[0])
            m.lerp_(grad, 1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            step_size = lr / (1 - b1 ** step)
            denominator = (v.sqrt() / (1 - b2 ** step) ** 0.5).add_(self.eps)
            p.addcdiv_(m, denominator, value=-step_size)
