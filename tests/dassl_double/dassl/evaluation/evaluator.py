"""Mirrors ``dassl.evaluation.evaluator``: the ``Classification`` evaluator and its printed block."""

import os.path as osp
from collections import OrderedDict, defaultdict
from typing import Any, Optional

import numpy as np
import torch
from yacs.config import CfgNode

from .build import EVALUATOR_REGISTRY


def _macro_f1(y_true: list[int], y_pred: list[int]) -> float:
    """Macro F1 over the labels present in ``y_true``, as ``sklearn.metrics.f1_score(average="macro")``.

    Uses scikit-learn (as Dassl does) when importable, else the same formula in numpy: per label
    ``2*tp / (2*tp + fp + fn)``, 0 when that is 0/0 (sklearn's zero-division default); a
    python float like current scikit-learn returns.
    """
    labels = np.unique(y_true)
    try:
        from sklearn.metrics import f1_score
    except ImportError:
        true = np.asarray(y_true)
        pred = np.asarray(y_pred)
        scores = []
        for label in labels:
            tp = np.sum((pred == label) & (true == label))
            denom = np.sum(pred == label) + np.sum(true == label)  # = 2*tp + fp + fn
            scores.append(2.0 * tp / denom if denom > 0 else 0.0)
        return float(np.mean(scores))
    return f1_score(y_true, y_pred, average="macro", labels=labels)


def _confusion_matrix_normalized(y_true: list[int], y_pred: list[int]) -> np.ndarray:
    """Row-normalised confusion matrix, as ``sklearn.metrics.confusion_matrix(normalize="true")``."""
    try:
        from sklearn.metrics import confusion_matrix
    except ImportError:
        labels = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]))
        index = {label: i for i, label in enumerate(labels)}
        cmat = np.zeros((len(labels), len(labels)), dtype=np.float64)
        for t, p in zip(y_true, y_pred):
            cmat[index[t], index[p]] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            cmat = cmat / cmat.sum(axis=1, keepdims=True)
        return np.nan_to_num(cmat)
    return confusion_matrix(y_true, y_pred, normalize="true")


class EvaluatorBase:
    """Mirrors Dassl's ``EvaluatorBase``: reset / process / evaluate interface."""

    def __init__(self, cfg: CfgNode) -> None:
        """Keep the config."""
        self.cfg = cfg

    def reset(self) -> None:
        """Clear the accumulated state."""
        raise NotImplementedError

    def process(self, mo: Any, gt: Any) -> None:
        """Accumulate one batch of model outputs and ground truth."""
        raise NotImplementedError

    def evaluate(self) -> "OrderedDict[str, float]":
        """Compute, print and return the results."""
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Mirrors Dassl's ``Classification`` evaluator (accuracy, error rate, macro F1, per-class, cmat)."""

    def __init__(self, cfg: CfgNode, lab2cname: Optional[dict[int, str]] = None, **kwargs: Any) -> None:
        """Start empty; ``TEST.PER_CLASS_RESULT`` requires ``lab2cname`` (an assertion in Dassl)."""
        super().__init__(cfg)
        self._lab2cname = lab2cname
        self._per_class_res: Optional[defaultdict[int, list[int]]] = None
        if cfg.TEST.PER_CLASS_RESULT:
            if lab2cname is None:
                raise AssertionError("TEST.PER_CLASS_RESULT needs lab2cname")
            self._per_class_res = defaultdict(list)
        self.reset()

    def reset(self) -> None:
        """Clear counts, predictions and per-class records."""
        self._correct = 0
        self._total = 0
        self._y_true: list[int] = []
        self._y_pred: list[int] = []
        if self._per_class_res is not None:
            self._per_class_res = defaultdict(list)

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """Accumulate logits ``mo`` [batch, num_classes] against labels ``gt`` [batch] (argmax prediction)."""
        pred = mo.max(1)[1]
        matches = pred.eq(gt).float()
        self._correct += int(matches.sum().item())
        self._total += gt.shape[0]
        self._y_true.extend(gt.data.cpu().numpy().tolist())
        self._y_pred.extend(pred.data.cpu().numpy().tolist())
        if self._per_class_res is not None:
            for label, match in zip(gt.tolist(), matches.tolist()):
                self._per_class_res[label].append(int(match))

    def evaluate(self) -> "OrderedDict[str, Any]":
        """Print Dassl's ``=> result`` block and return accuracy, error_rate, macro_f1 (percent).

        ``accuracy`` comes first: trainers return the first value from ``test()``. With
        ``TEST.PER_CLASS_RESULT`` a per-class block and ``perclass_accuracy`` are added; with
        ``TEST.COMPUTE_CMAT`` the normalised confusion matrix is saved to ``OUTPUT_DIR/cmat.pt``.
        """
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        macro_f1 = 100.0 * _macro_f1(self._y_true, self._y_pred)
        results: OrderedDict[str, Any] = OrderedDict()
        results["accuracy"] = acc
        results["error_rate"] = err
        results["macro_f1"] = macro_f1

        print(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {macro_f1:.1f}%"
        )

        if self._per_class_res is not None:
            print("=> per-class result")
            accs = []
            for label in sorted(self._per_class_res):
                res = self._per_class_res[label]
                correct, total = sum(res), len(res)
                class_acc = 100.0 * correct / total
                accs.append(class_acc)
                print(
                    f"* class: {label} ({self._lab2cname[label]})\t"
                    f"total: {total:,}\t"
                    f"correct: {correct:,}\t"
                    f"acc: {class_acc:.1f}%"
                )
            mean_acc = np.mean(accs)
            print(f"* average: {mean_acc:.1f}%")
            results["perclass_accuracy"] = mean_acc

        if self.cfg.TEST.COMPUTE_CMAT:
            save_path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            torch.save(_confusion_matrix_normalized(self._y_true, self._y_pred), save_path)
            print(f"Confusion matrix is saved to {save_path}")

        return results
