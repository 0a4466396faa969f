"""Mirrors ``dassl.engine.trainer``: ``TrainerBase``, ``SimpleTrainer`` and ``TrainerX``.

Printed lines, checkpoint names and contents, and the order of the hooks follow Dassl 0.6.3,
including ``load_model``'s ``TypeError`` on checkpoints whose ``val_result`` is None.
"""

import datetime
import os.path as osp
import time
from collections import OrderedDict
from typing import Any, Optional, Union

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm
from yacs.config import CfgNode

from dassl.data import DataManager
from dassl.evaluation import build_evaluator
from dassl.utils import (
    AverageMeter,
    MetricMeter,
    load_checkpoint,
    mkdir_if_missing,
    resume_from_checkpoint,
    save_checkpoint,
    tolist_if_not,
)

Names = Union[str, list[str], None]


class TrainerBase:
    """Mirrors Dassl's ``TrainerBase``: named models with their optimizers/schedulers and the epoch loop."""

    def __init__(self) -> None:
        """Create the empty model/optimizer/scheduler registries and no writer."""
        self._models: OrderedDict[str, nn.Module] = OrderedDict()
        self._optims: OrderedDict[str, Optional[torch.optim.Optimizer]] = OrderedDict()
        self._scheds: OrderedDict[str, Any] = OrderedDict()
        self._writer: Any = None

    def register_model(
        self,
        name: str = "model",
        model: Optional[nn.Module] = None,
        optim: Optional[torch.optim.Optimizer] = None,
        sched: Any = None,
    ) -> None:
        """Register ``model`` (checkpointed under ``<OUTPUT_DIR>/<name>/``) with its optimizer and scheduler.

        Raises ``AttributeError`` before ``TrainerBase.__init__`` ran and ``AssertionError`` on a
        duplicate name, as Dassl does.
        """
        for attr, what in (("_models", "model"), ("_optims", "optim"), ("_scheds", "sched")):
            if self.__dict__.get(attr) is None:
                raise AttributeError(f"Cannot assign {what} before super().__init__() call")
        if name in self._models:
            raise AssertionError("Found duplicate model names")
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names: Names = None) -> list[str]:
        """Return ``names`` as a list (each must be registered) or all registered names."""
        registered = list(self._models.keys())
        if names is None:
            return registered
        names = tolist_if_not(names)
        for name in names:
            if name not in registered:
                raise AssertionError(f"Model {name!r} is not registered (registered: {registered})")
        return names

    def save_model(
        self,
        epoch: int,
        directory: str,
        is_best: bool = False,
        val_result: Optional[float] = None,
        model_name: str = "",
    ) -> None:
        """Save every registered model to ``directory/<name>/`` with Dassl's checkpoint dict.

        The dict holds state_dict, epoch (``epoch + 1``: epochs finished), optimizer, scheduler
        (None when not registered) and val_result.
        """
        for name in self.get_model_names():
            optim = self._optims[name]
            sched = self._scheds[name]
            save_checkpoint(
                {
                    "state_dict": self._models[name].state_dict(),
                    "epoch": epoch + 1,
                    "optimizer": None if optim is None else optim.state_dict(),
                    "scheduler": None if sched is None else sched.state_dict(),
                    "val_result": val_result,
                },
                osp.join(directory, name),
                is_best=is_best,
                model_name=model_name,
            )

    def resume_model_if_exist(self, directory: str) -> int:
        """Resume every model from ``directory/<name>/checkpoint`` if all such directories exist.

        Returns the epoch to start from (0, after printing ``No checkpoint found, train from
        scratch``, when any model directory is missing).
        """
        names = self.get_model_names()
        if any(not osp.exists(osp.join(directory, name)) for name in names):
            print("No checkpoint found, train from scratch")
            return 0

        print(f"Found checkpoint at {directory} (will resume training)")
        start_epoch = 0
        for name in names:
            start_epoch = resume_from_checkpoint(
                osp.join(directory, name), self._models[name], self._optims[name], self._scheds[name]
            )
        return start_epoch

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Mirrors Dassl's ``load_model``: load ``model-best.pth.tar`` or ``model.pth.tar-<epoch>``.

        Only the weights are loaded. As in Dassl the message formats ``val_result`` with ``:.1f``,
        so a checkpoint saved without one (every epoch checkpoint) raises ``TypeError``; the file
        is read with Dassl's ``load_checkpoint`` (see its torch>=2.6 behaviour). An empty
        ``directory`` only prints a note; a missing file raises ``FileNotFoundError``.
        """
        if not directory:
            print(
                "Note that load_model() is skipped as no pretrained "
                "model is given (ignore this if it's done on purpose)"
            )
            return

        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            model_path = osp.join(directory, name, model_file)
            if not osp.exists(model_path):
                raise FileNotFoundError(f"No model at {model_path}")

            checkpoint = load_checkpoint(model_path)
            epoch = checkpoint["epoch"]
            val_result = checkpoint["val_result"]
            print(f"Load {model_path} to {name} (epoch={epoch}, val_result={val_result:.1f})")
            self._models[name].load_state_dict(checkpoint["state_dict"])

    def set_model_mode(self, mode: str = "train", names: Names = None) -> None:
        """Call ``train()`` (mode "train") or ``eval()`` (mode "test"/"eval"); other modes raise ``KeyError``."""
        for name in self.get_model_names(names):
            if mode == "train":
                self._models[name].train()
            elif mode in ("test", "eval"):
                self._models[name].eval()
            else:
                raise KeyError(mode)

    def update_lr(self, names: Names = None) -> None:
        """Step the scheduler of each named model that has one."""
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        """Raise ``FloatingPointError`` when ``loss`` has a non-finite value."""
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    def init_writer(self, log_dir: str) -> None:
        """Create a tensorboard ``SummaryWriter`` in ``log_dir`` unless one exists.

        The double imports ``torch.utils.tensorboard`` here rather than at module import as Dassl
        does, so the package imports without tensorboard; training still needs it, as with Dassl.
        """
        if self.__dict__.get("_writer") is None:
            from torch.utils.tensorboard import SummaryWriter

            print(f"Initialize tensorboard (log_dir={log_dir})")
            self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self) -> None:
        """Close the writer if there is one."""
        if self._writer is not None:
            self._writer.close()

    def write_scalar(self, tag: str, scalar_value: Any, global_step: Optional[int] = None) -> None:
        """Log a scalar; a no-op before ``init_writer`` (e.g. in eval-only runs)."""
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    def train(self, start_epoch: int, max_epoch: int) -> None:
        """Run before_train, then before_epoch/run_epoch/after_epoch for each epoch, then after_train."""
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self) -> None:
        """Hook run once before training."""

    def after_train(self) -> None:
        """Hook run once after training."""

    def before_epoch(self) -> None:
        """Hook run before each epoch."""

    def after_epoch(self) -> None:
        """Hook run after each epoch."""

    def run_epoch(self) -> None:
        """Train one epoch (subclasses)."""
        raise NotImplementedError

    def test(self) -> Any:
        """Evaluate (subclasses)."""
        raise NotImplementedError

    def parse_batch_train(self, batch: Any) -> Any:
        """Unpack a training batch (subclasses)."""
        raise NotImplementedError

    def parse_batch_test(self, batch: Any) -> Any:
        """Unpack a test batch (subclasses)."""
        raise NotImplementedError

    def forward_backward(self, batch: Any) -> Any:
        """One optimisation step on ``batch``; returns a dict of loss/metric values (subclasses)."""
        raise NotImplementedError

    def model_inference(self, input: Any) -> Any:
        """Forward pass used at test time (subclasses)."""
        raise NotImplementedError

    def model_zero_grad(self, names: Names = None) -> None:
        """Zero the gradients of each named model's optimizer."""
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        """Check ``loss`` is finite, then backpropagate it."""
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names: Names = None) -> None:
        """Step each named model's optimizer."""
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss: torch.Tensor, names: Names = None) -> None:
        """Zero grads, backpropagate ``loss`` and step the optimizers of ``names`` (all by default)."""
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)


class SimpleTrainer(TrainerBase):
    """Mirrors Dassl's ``SimpleTrainer``: data, model and evaluator from ``cfg``; checkpoints; testing."""

    def __init__(self, cfg: CfgNode) -> None:
        """Mirrors Dassl's construction order.

        ``check_cfg(cfg)``; device (cuda if available and ``USE_CUDA``); ``start_epoch``,
        ``epoch``, ``max_epoch``, ``output_dir``, ``cfg``; ``build_data_loader()``;
        ``build_model()``; the evaluator; ``best_result = -inf``.
        """
        super().__init__()
        self.check_cfg(cfg)
        if torch.cuda.is_available() and cfg.USE_CUDA:
            self.device = torch.device("cuda")
        else:
            self.device = torch.device("cpu")

        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf

    def check_cfg(self, cfg: CfgNode) -> None:
        """Hook to validate ``cfg`` before anything is built (runs before ``self.cfg`` is set)."""

    def build_data_loader(self) -> None:
        """Build a ``DataManager`` and set dm, the four loaders, num_classes, num_source_domains, lab2cname."""
        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self) -> None:
        """Dassl builds a backbone + head ``SimpleNet`` here; the double has no backbones."""
        raise NotImplementedError(
            "The Dassl test double has no backbones (SimpleNet); override build_model() "
            "and register your model with register_model()"
        )

    def train(self) -> None:  # type: ignore[override]
        """Train from ``self.start_epoch`` to ``self.max_epoch`` (the start may change on resume)."""
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        """Resume from ``cfg.RESUME`` (else ``OUTPUT_DIR``) if possible, open the writer, start the clock."""
        directory = self.cfg.RESUME if self.cfg.RESUME else self.cfg.OUTPUT_DIR
        self.start_epoch = self.resume_model_if_exist(directory)

        writer_dir = osp.join(self.output_dir, "tensorboard")
        mkdir_if_missing(writer_dir)
        self.init_writer(writer_dir)
        self.time_start = time.time()

    def after_train(self) -> None:
        """Print ``Finish training``, test the last or best-val model (unless NO_TEST), print ``Elapsed``."""
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()

        elapsed = str(datetime.timedelta(seconds=round(time.time() - self.time_start)))
        print(f"Elapsed: {elapsed}")
        self.close_writer()

    def after_epoch(self) -> None:
        """Mirrors Dassl's saving rule.

        With ``TEST.FINAL_MODEL == "best_val"`` (and testing on), evaluate on val every epoch and
        save ``model-best.pth.tar`` with its ``val_result`` on improvement; then save
        ``model.pth.tar-<epoch+1>`` when ``CHECKPOINT_FREQ > 0`` divides ``epoch + 1`` or on the
        last epoch.
        """
        last_epoch = (self.epoch + 1) == self.max_epoch
        do_test = not self.cfg.TEST.NO_TEST
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = freq > 0 and (self.epoch + 1) % freq == 0

        if do_test and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(
                    self.epoch, self.output_dir, val_result=curr_result, model_name="model-best.pth.tar"
                )

        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)

    @torch.no_grad()
    def test(self, split: Optional[str] = None) -> Any:
        """Evaluate on ``split`` (default ``TEST.SPLIT``; val falls back to test without a val loader).

        Prints ``Evaluate on the *<split>* set`` and the evaluator's block, logs each metric as
        ``<split>/<name>`` and returns the first one (accuracy).
        """
        self.set_model_mode("eval")
        self.evaluator.reset()

        if split is None:
            split = self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"
            data_loader = self.test_loader
        print(f"Evaluate on the *{split}* set")

        for batch in tqdm(data_loader):
            input, label = self.parse_batch_test(batch)
            output = self.model_inference(input)
            self.evaluator.process(output, label)

        results = self.evaluator.evaluate()
        for key, value in results.items():
            self.write_scalar(f"{split}/{key}", value, self.epoch)
        return list(results.values())[0]

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        """Return ``self.model(input)``."""
        return self.model(input)

    def parse_batch_test(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(img, label)`` moved to ``self.device``."""
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names: Names = None) -> float:
        """Learning rate of the first parameter group of the first named model's optimizer."""
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]


class TrainerX(SimpleTrainer):
    """Mirrors Dassl's ``TrainerX``: trains on the labelled loader ``train_loader_x`` only."""

    def run_epoch(self) -> None:
        """One pass over ``train_loader_x`` calling ``forward_backward(batch)``.

        Every ``TRAIN.PRINT_FREQ`` batches (every batch when an epoch has fewer) prints Dassl's
        ``epoch [e/E] batch [b/B] time .. data .. <losses> lr .. eta ..`` line; losses and lr
        are logged to tensorboard after every batch.
        """
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        print_freq = self.cfg.TRAIN.PRINT_FREQ

        end = time.time()
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)

            meet_freq = (self.batch_idx + 1) % print_freq == 0
            only_few_batches = self.num_batches < print_freq
            if meet_freq or only_few_batches:
                nb_remain = (self.num_batches - self.batch_idx - 1) + (
                    self.max_epoch - self.epoch - 1
                ) * self.num_batches
                eta = str(datetime.timedelta(seconds=int(batch_time.avg * nb_remain)))
                print(
                    " ".join(
                        [
                            f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                            f"batch [{self.batch_idx + 1}/{self.num_batches}]",
                            f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                            f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                            f"{losses}",
                            f"lr {self.get_current_lr():.4e}",
                            f"eta {eta}",
                        ]
                    )
                )

            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()

    def parse_batch_train(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(img, label, domain)`` moved to ``self.device``."""
        return (
            batch["img"].to(self.device),
            batch["label"].to(self.device),
            batch["domain"].to(self.device),
        )
