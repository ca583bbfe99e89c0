"""The cosine curriculum between item- and feature-level alignment (paper eq. 11)."""

from __future__ import annotations

import math
from typing import Tuple

from recbole_faerec.settings import SettingError


class CosineCurriculum:
    r"""Eq. (11): :math:`w_{item}(e) = w_{min} + (w_{max} - w_{min}) \frac{1 + \cos(2\pi e / P)}{2}`,
    :math:`w_{feat}(e) = 1 - w_{item}(e)`, with ``e`` the 0-based training epoch.

    ``w_item`` starts at ``w_max`` (item level first), falls to ``w_min`` at ``e = P/2`` and repeats
    every ``P`` epochs. With ``enabled=False`` (the "w/o curriculum" ablation) the weights stay at
    ``fixed`` (item weight) and ``1 - fixed``.
    """

    def __init__(self, w_min: float, w_max: float, period: float, enabled: bool = True,
                 fixed: float = 0.5):
        if not 0 <= w_min <= w_max <= 1:
            raise SettingError(f"curriculum needs 0 <= w_min <= w_max <= 1, got {w_min}, {w_max}")
        if period <= 0:
            raise SettingError(f"curriculum period must be positive, got {period}")
        self.w_min, self.w_max, self.period = w_min, w_max, period
        self.enabled, self.fixed = enabled, fixed

    def weights(self, epoch: int) -> Tuple[float, float]:
        if not self.enabled:
            return self.fixed, 1.0 - self.fixed
        w_item = self.w_min + (self.w_max - self.w_min) * (1 + math.cos(2 * math.pi * epoch / self.period)) / 2
        return w_item, 1.0 - w_item
