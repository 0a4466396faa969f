"""Test double of Dassl.pytorch 0.6.3: the subset of its API used by CoOp/MaPLe-style trainers."""

__version__ = "0.6.3"
