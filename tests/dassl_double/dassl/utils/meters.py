"""Mirrors ``dassl.utils.meters``: running averages of losses and metrics."""

from collections import defaultdict
from typing import Any, Optional

import torch

__all__ = ["AverageMeter", "MetricMeter"]


class AverageMeter:
    """Mirrors Dassl's ``AverageMeter``: last value, sum, count and (optionally EMA) average."""

    def __init__(self, ema: bool = False) -> None:
        """Create a meter; ``ema`` replaces the mean by an exponential moving average (0.9/0.1)."""
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        """Zero every statistic."""
        self.val: float = 0
        self.avg: float = 0
        self.sum: float = 0
        self.count: int = 0

    def update(self, val: Any, n: int = 1) -> None:
        """Record ``val`` (a number or one-element tensor) observed ``n`` times."""
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        if self.ema:
            self.avg = 0.9 * self.avg + 0.1 * self.val
        else:
            self.avg = self.sum / self.count


class MetricMeter:
    """Mirrors Dassl's ``MetricMeter``: one ``AverageMeter`` per key, printed as ``name val (avg)``."""

    def __init__(self, delimiter: str = " ") -> None:
        """Create an empty meter set joined by ``delimiter`` when printed."""
        self.meters: defaultdict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict: Optional[dict[str, Any]]) -> None:
        """Update from a dict of numbers/tensors; None is ignored and non-dicts raise ``TypeError``."""
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("Input to MetricMeter.update() must be a dictionary")
        for key, value in input_dict.items():
            if isinstance(value, torch.Tensor):
                value = value.item()
            self.meters[key].update(value)

    def __str__(self) -> str:
        """Format as ``name val (avg)`` with 4 decimals per meter, as Dassl's training line shows."""
        return self.delimiter.join(
            f"{name} {meter.val:.4f} ({meter.avg:.4f})" for name, meter in self.meters.items()
        )
