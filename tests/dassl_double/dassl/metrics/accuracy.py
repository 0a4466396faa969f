"""Mirrors ``dassl.metrics.accuracy``."""

from typing import Sequence, Union

import torch


def compute_accuracy(
    output: Union[torch.Tensor, Sequence[torch.Tensor]], target: torch.Tensor, topk: Sequence[int] = (1,)
) -> list[torch.Tensor]:
    """Mirrors Dassl's ``compute_accuracy``: top-k accuracies in percent, each a 1-element tensor.

    Like Dassl it flattens the transposed match matrix with ``view``, which raises
    ``RuntimeError`` for k > 1 on a batch larger than one; only top-1 works on stock Dassl.

    Args:
        output: logits ``[batch, num_classes]``, or a tuple/list whose first item is.
        target: labels ``[batch]``.
        topk: the k values.
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    batch_size = target.size(0)
    _, pred = output.topk(max(topk), 1, True, True)  # [batch, maxk]
    pred = pred.t()  # [maxk, batch], not contiguous
    correct = pred.eq(target.view(1, -1).expand_as(pred))  # [maxk, batch]
    return [correct[:k].view(-1).float().sum(0, keepdim=True).mul_(100.0 / batch_size) for k in topk]
