"""Coloured Gaussian noise over time, for sampled action sequences.

White noise (independent per step) averages out over a rollout: a robot driven by it jitters in
place. Noise whose power spectrum falls as 1/f^beta varies slowly for beta > 0 (2: a random walk's
"red" noise), so a sequence keeps pushing one way long enough to carry the robot somewhere (iCEM,
Pinneri et al., arXiv:2008.06389, uses beta 2-4 for sampling-based MPC). Each sequence is scaled
to unit power over time (mean square 1, as white noise's), so beta changes the shape, not the size.
"""
from __future__ import annotations

import torch


def coloured_noise(shape, beta: float, generator: torch.Generator, device=None) -> torch.Tensor:
    """Noise [..., H, A], coloured along H with exponent ``beta`` (0: ``torch.randn``, the same
    draws as before this function)."""
    if beta == 0:
        return torch.randn(*shape, generator=generator, device=device)
    *lead, horizon, dims = shape
    white = torch.randn(*lead, dims, horizon, generator=generator, device=device)
    if horizon < 2:
        return white.transpose(-1, -2)
    frequency = torch.fft.rfftfreq(horizon, device=device)
    frequency[0] = frequency[1]          # the mean gets the lowest frequency's weight, not infinity
    spectrum = torch.fft.rfft(white, dim=-1) * frequency.pow(-beta / 2)
    coloured = torch.fft.irfft(spectrum, n=horizon, dim=-1)
    # unit power per sequence, its mean (the drift that carries the robot) included
    coloured = coloured / coloured.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
    return coloured.transpose(-1, -2).contiguous()
