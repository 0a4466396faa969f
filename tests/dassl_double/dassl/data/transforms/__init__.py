"""Mirrors ``dassl.data.transforms``: the transform builder and interpolation names."""

from .transforms import INTERPOLATION_MODES, build_transform

__all__ = ["INTERPOLATION_MODES", "build_transform"]
