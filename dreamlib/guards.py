"""Non-finite guards: a diverged run stops with a message that says where and why, never a table of NaNs.

Every long loop (dreaming, distillation, teacher training) calls :func:`check_loss` on its
loss before the update, and the runners check the weights they save. The error names the
step, the quantity and the settings that usually cause it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["NonFiniteError", "check_loss", "check_weights", "check_setting", "check_positive_int"]


class NonFiniteError(FloatingPointError):
    """A loss, an output or a weight became NaN or Inf."""


def _finite(value) -> bool:
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all())
    return math.isfinite(float(value))


def check_loss(value, *, what: str, step: int, hint: str) -> None:
    """Raise :class:`NonFiniteError` if ``value`` (a float or tensor) is NaN/Inf."""
    if not _finite(value):
        raise NonFiniteError(f"{what} became non-finite at step {step}; {hint}")


def check_weights(model: nn.Module, *, what: str, step: int | None = None, hint: str = "") -> None:
    """Raise :class:`NonFiniteError` naming the first parameters of ``model`` that hold NaN/Inf."""
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
    if bad:
        at = f" at step {step}" if step is not None else ""
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise NonFiniteError(f"{what} has non-finite weights{at} ({', '.join(bad[:3])}{more})"
                             + (f"; {hint}" if hint else ""))


def check_setting(name: str, value, *, positive: bool = False) -> float:
    """``float(value)`` if it is a finite number (> 0 with ``positive``, else >= 0); a ValueError naming it otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return v


def check_positive_int(name: str, value) -> int:
    """``value`` if it is an integer >= 1 (not a bool); a ValueError naming it otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
