"""Mirrors ``dassl.data.samplers``: ``build_sampler`` by sampler name."""

from typing import Optional, Sized

from torch.utils.data.sampler import RandomSampler, Sampler, SequentialSampler
from yacs.config import CfgNode

# Dassl's own batch samplers, which the double does not implement.
_NOT_MIRRORED = ("RandomDomainSampler", "SeqDomainSampler", "RandomClassSampler")


def build_sampler(
    sampler_type: str,
    cfg: Optional[CfgNode] = None,
    data_source: Optional[Sized] = None,
    batch_size: int = 32,
    n_domain: int = 0,
    n_ins: int = 16,
) -> Sampler:
    """Return torch's ``RandomSampler``/``SequentialSampler`` over ``data_source``, as Dassl does.

    Unknown names raise ``ValueError`` as in Dassl; Dassl's domain/class samplers raise
    ``NotImplementedError`` in the double.
    """
    if sampler_type == "RandomSampler":
        return RandomSampler(data_source)
    if sampler_type == "SequentialSampler":
        return SequentialSampler(data_source)
    if sampler_type in _NOT_MIRRORED:
        raise NotImplementedError(f"The Dassl test double does not implement {sampler_type}")
    raise ValueError(f"Unknown sampler type: {sampler_type}")
