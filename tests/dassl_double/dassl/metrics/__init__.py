"""Mirrors ``dassl.metrics`` (accuracy only; Dassl's distance helpers are not mirrored)."""

from .accuracy import compute_accuracy

__all__ = ["compute_accuracy"]
