"""Mirrors ``dassl.data``: the data manager and the dataset wrapper."""

from .data_manager import DataManager, DatasetWrapper

__all__ = ["DataManager", "DatasetWrapper"]
