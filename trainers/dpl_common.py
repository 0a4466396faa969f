"""Trainer code shared by ``DPLSearch`` and ``DPL``: the Dassl side of the project.

Both trainers load CLIP, tokenise the class prompts once, run in the configured precision,
compute text features once per evaluation, and save only learned tensors. Two defects of
stock Dassl 0.6.3 on torch 2.x are avoided here without patching Dassl, so other trainers
of a host checkout behave as before:

* Dassl's warm-up schedulers pass ``verbose`` positionally to torch's ``LRScheduler``
  (a TypeError on current torch): :func:`build_lr_scheduler` builds the same schedule as a
  ``LambdaLR``, whose state dict holds only numbers.
* ``TrainerBase.load_model`` formats ``val_result`` that is None for epoch checkpoints:
  :meth:`DPLTrainerBase.load_model` handles it. Checkpoints hold only tensors and numbers, so
  Dassl's ``torch.load`` (``weights_only`` by default on torch >= 2.6) reads them for resume.
"""

from __future__ import annotations

import contextlib
import math
import os.path as osp
from typing import Iterator

import clip
import dassl.config
import torch
import torch.nn.functional as F
from dassl.engine import TrainerX
from dassl.optim import build_optimizer
from torch import Tensor, nn

from trainers.dpl_core.clip_loader import CLIPLoadError, check_vit_backbone, load_clip
from trainers.dpl_core.config import PRECISIONS, add_dpl_config
from trainers.dpl_core.prompted_clip import (
    AUTO_CLASS_CHUNK,
    RECOMPUTE_ABOVE_CLASSES,
    PromptedCLIP,
    truncate_tokens,
)

# Our keys join Dassl's defaults on import, so a host checkout's train.py can merge our yaml
# files without editing its extend_cfg; keys the host defines are left untouched.
add_dpl_config(dassl.config.cfg_default)

SCHEDULERS = ("cosine", "single_step", "multi_step")
WARMUP_TYPES = ("constant", "linear")


def lr_factor(epoch: int, optim_cfg) -> float:
    """Learning-rate multiplier at ``epoch`` (0-based), as Dassl's schedulers define it.

    Warm-up (``WARMUP_EPOCH`` epochs) holds ``WARMUP_CONS_LR`` (constant) or ramps linearly
    from ``WARMUP_MIN_LR``; afterwards the main schedule runs, counted from the end of the
    warm-up when ``WARMUP_RECOUNT`` is set.
    """
    base_lr = optim_cfg.LR
    warmup = optim_cfg.WARMUP_EPOCH
    if warmup > 0 and epoch < warmup:
        if optim_cfg.WARMUP_TYPE == "constant":
            return optim_cfg.WARMUP_CONS_LR / base_lr
        return (optim_cfg.WARMUP_MIN_LR + (base_lr - optim_cfg.WARMUP_MIN_LR) * epoch / warmup) / base_lr
    if warmup > 0 and optim_cfg.WARMUP_RECOUNT:
        epoch -= warmup
    name = optim_cfg.LR_SCHEDULER
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / optim_cfg.MAX_EPOCH))
    stepsize = optim_cfg.STEPSIZE
    if name == "single_step":
        step = stepsize[0] if isinstance(stepsize, (list, tuple)) else stepsize
        return optim_cfg.GAMMA ** (epoch // step if step > 0 else 0)
    return optim_cfg.GAMMA ** sum(epoch >= milestone for milestone in stepsize)


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg) -> torch.optim.lr_scheduler.LambdaLR:
    """Dassl's epoch-wise schedule (with warm-up) as a ``LambdaLR`` that runs on torch 2.x."""
    if optim_cfg.LR_SCHEDULER not in SCHEDULERS:
        raise ValueError(f"OPTIM.LR_SCHEDULER must be one of {SCHEDULERS}, got {optim_cfg.LR_SCHEDULER!r}")
    if optim_cfg.WARMUP_EPOCH > 0 and optim_cfg.WARMUP_TYPE not in WARMUP_TYPES:
        raise ValueError(f"OPTIM.WARMUP_TYPE must be one of {WARMUP_TYPES}, got {optim_cfg.WARMUP_TYPE!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(epoch, optim_cfg))


def cycle(loader: torch.utils.data.DataLoader) -> Iterator[dict]:
    """Endless batches: every pass visits the whole loader (reshuffled if its sampler shuffles)."""
    while True:
        yield from loader


class DPLTrainerBase(TrainerX):
    """CLIP with deep prompts on Dassl's ``TrainerX`` loop. Subclasses build ``self.model``."""

    def check_cfg(self, cfg) -> None:
        prec = cfg.TRAINER.DPL.PREC
        if prec not in PRECISIONS:
            raise ValueError(f"TRAINER.DPL.PREC must be one of {PRECISIONS}, got {prec!r}")
        try:  # here, before the datasets are read, not only when CLIP is loaded
            check_vit_backbone(cfg.MODEL.BACKBONE.NAME)
        except CLIPLoadError as error:
            raise ValueError(f"MODEL.BACKBONE.NAME: {error}") from None

    # ----- model -----------------------------------------------------------------------------

    def build_clip(self) -> nn.Module:
        """The frozen CLIP in the run's precision on the run's device."""
        cfg = self.cfg.TRAINER.DPL
        print(f"Loading CLIP (backbone: {self.cfg.MODEL.BACKBONE.NAME})")
        clip_model = load_clip(self.cfg.MODEL.BACKBONE.NAME, cfg.CLIP_CHECKPOINT, cfg.CLIP_CACHE_DIR or None)
        self.precision = cfg.PREC
        if self.device.type == "cpu" and self.precision != "fp32":
            print(f"TRAINER.DPL.PREC={self.precision} is for GPUs; running in fp32 on the CPU")
            self.precision = "fp32"
        if self.precision == "fp16":
            clip.model.convert_weights(clip_model)  # CLIP's own fp16 layout (LayerNorms stay fp32)
        self.scaler = None
        self.autocast_dtype = None
        if self.precision == "amp":
            self.autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            if self.autocast_dtype == torch.float16:
                self.scaler = torch.amp.GradScaler("cuda")
        return clip_model.to(self.device)

    def build_class_tokens(self) -> Tensor:
        """``[templates, classes, n]`` token ids of the class prompts, cut after the last EOT."""
        names = [name.replace("_", " ") for name in self.dm.dataset.classnames]
        templates = list(self.cfg.TRAINER.DPL.TEXT_TEMPLATES)
        if not templates or any("{}" not in t for t in templates):
            raise ValueError(f"TRAINER.DPL.TEXT_TEMPLATES must be templates with a '{{}}' slot, got {templates}")
        tokens = torch.stack([clip.tokenize([t.format(name) for name in names]) for t in templates])
        length = truncate_tokens(tokens.flatten(0, 1)).shape[1]
        return tokens[:, :, :length].to(self.device)

    def setup_model(self, model: PromptedCLIP) -> None:
        """Place the model, tokenise the classes, pick the class chunk size, and register the
        prompts of both towers as ``prompt_learner`` with Dassl's optimizer and our schedule."""
        self.model = model.to(self.device)
        prompts = nn.ModuleDict({"text": model.text_prompts, "image": model.image_prompts})
        self.register_model("prompt_learner", prompts, *self.build_optim_sched(prompts))
        self.class_tokens = self.build_class_tokens()
        chunk = self.cfg.TRAINER.DPL.CLASS_CHUNK_SIZE
        self.class_chunk_size = chunk if chunk > 0 else AUTO_CLASS_CHUNK
        self.recompute_chunks = self.class_tokens.shape[1] > RECOMPUTE_ABOVE_CLASSES
        self._eval_text_features = None
        learned = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"# learned parameters: {learned:,} (CLIP frozen, precision {self.precision})")

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for ``amp`` runs, a no-op otherwise."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def encode_classes(self, model: PromptedCLIP | None = None) -> Tensor:
        """``[classes, embed_dim]`` class features; several templates are averaged after normalising."""
        model = model or self.model
        features = [
            model.encode_text(tokens, self.class_chunk_size, self.recompute_chunks) for tokens in self.class_tokens
        ]
        if len(features) == 1:
            return features[0]
        return torch.stack([F.normalize(f.float(), dim=-1) for f in features]).mean(0)

    def class_logits(self, images: Tensor, text_features: Tensor | None = None) -> Tensor:
        """``[batch, classes]`` logits; text features are encoded unless given."""
        with self.autocast():
            if text_features is None:
                text_features = self.encode_classes()
            return self.model.logits(self.model.encode_image(images), text_features)

    # ----- optimisation ----------------------------------------------------------------------

    def build_optim_sched(self, module: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        """Dassl's optimizer from ``cfg.OPTIM`` and its schedule (with warm-up) for ``module``."""
        optim = build_optimizer(module, self.cfg.OPTIM)
        return optim, build_lr_scheduler(optim, self.cfg.OPTIM)

    def backward_and_update(self, loss: Tensor, name: str) -> None:
        """Gradients for the parameters of registered model ``name`` only, then its optimizer step."""
        self.detect_anomaly(loss)
        self.model_zero_grad(name)
        params = [p for p in self._models[name].parameters() if p.requires_grad]
        optim = self._optims[name]
        if self.scaler is not None:
            self.scaler.scale(loss).backward(inputs=params)
            self.scaler.step(optim)
            self.scaler.update()
        else:
            loss.backward(inputs=params)
            optim.step()

    def parse_batch_train(self, batch: dict) -> tuple[Tensor, Tensor]:
        non_blocking = self.device.type == "cuda"
        return batch["img"].to(self.device, non_blocking=non_blocking), batch["label"].to(self.device, non_blocking=non_blocking)

    # ----- evaluation ------------------------------------------------------------------------

    @torch.no_grad()
    def test(self, split: str | None = None) -> float:
        """Dassl's evaluation, with the class features encoded once for the whole pass."""
        self.set_model_mode("eval")
        with self.autocast():
            self._eval_text_features = self.encode_classes()
        try:
            return super().test(split)
        finally:
            self._eval_text_features = None

    def model_inference(self, images: Tensor) -> Tensor:
        return self.class_logits(images, self._eval_text_features)

    # ----- checkpoints -----------------------------------------------------------------------

    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result=None, model_name: str = "") -> None:
        """Dassl's saving, but a named copy (``model-best.pth.tar``) does not move the resume pointer.

        Dassl rewrites each model's ``checkpoint`` file on every save, so after a best-val copy
        a resume would restart from the best epoch instead of the last saved one.
        """
        pointers = {}
        if model_name:
            for name in self.get_model_names():
                pointer = osp.join(directory, name, "checkpoint")
                if osp.exists(pointer):
                    with open(pointer) as f:
                        pointers[pointer] = f.read()
        super().save_model(epoch, directory, is_best=is_best, val_result=val_result, model_name=model_name)
        for pointer, content in pointers.items():
            with open(pointer, "w") as f:
                f.write(content)

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load learned tensors saved by :meth:`save_model` (Dassl's file names and messages)."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            path = osp.join(directory, name, model_file)
            if not osp.exists(path):
                raise FileNotFoundError(
                    f"No model at {path}: expected a checkpoint of a {type(self).__name__} run "
                    f"({'model-best.pth.tar' if epoch is None else f'epoch {epoch}'}) in {directory}"
                )
            checkpoint = torch.load(path, map_location=self.device, weights_only=True)
            try:
                self._models[name].load_state_dict(checkpoint["state_dict"])
            except RuntimeError as error:
                raise RuntimeError(
                    f"{path} does not fit this model (a different architecture or backbone?): {error}"
                ) from None
            val_result = checkpoint.get("val_result")
            shown = "n/a" if val_result is None else f"{val_result:.1f}"
            print(f"Load {path} to {name} (epoch={checkpoint['epoch']}, val_result={shown})")
