"""``DPL``: trains CLIP's prompts with a fixed architecture.

The architecture comes from an ``arch.json`` (``TRAINER.DPL.ARCH_FILE``): a search's, or one of
the hand-designed presets in ``configs/architectures/`` (CoOp, VPT-deep, IVLP, MaPLe as token
groups), or from explicit per-block key/value prompt lengths (``TRAINER.DPL.TEXT_LENGTHS`` /
``IMAGE_LENGTHS``).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy

from trainers.dpl_common import DPLTrainerBase
from trainers.dpl_core.architecture import PromptArchitecture
from trainers.dpl_core.config import ConfigError
from trainers.dpl_core.prompted_clip import PromptedCLIP, tower_depths
from trainers.dpl_core.run_folder import sha256_file
from trainers.gram.meta import MetaInitError, apply_meta_init, load_meta_init


def architecture_from_cfg(cfg) -> PromptArchitecture:
    """The training-stage architecture: ``ARCH_FILE`` xor the two explicit length lists."""
    node = cfg.TRAINER.DPL
    has_lists = bool(node.TEXT_LENGTHS) or bool(node.IMAGE_LENGTHS)
    if bool(node.ARCH_FILE) == has_lists:
        raise ConfigError(
            "DPL needs exactly one architecture: TRAINER.DPL.ARCH_FILE (an arch.json from DPLSearch) "
            "or both TRAINER.DPL.TEXT_LENGTHS and TRAINER.DPL.IMAGE_LENGTHS"
            + (", not both" if has_lists else "")
        )
    if node.ARCH_FILE:
        return PromptArchitecture.load(node.ARCH_FILE)
    lengths = sorted(set(node.TEXT_LENGTHS) | set(node.IMAGE_LENGTHS) | {0})
    return PromptArchitecture(tuple(node.TEXT_LENGTHS), tuple(node.IMAGE_LENGTHS), candidates=tuple(lengths))


@TRAINER_REGISTRY.register()
class DPL(DPLTrainerBase):
    """Training stage of DPL: prompts of the given lengths in every block of both towers."""

    @classmethod
    def record_architecture(cls, cfg) -> dict:
        return architecture_from_cfg(cfg).to_dict()

    @classmethod
    def run_record(cls, cfg, evaluates=None) -> dict:
        """The base record, plus the SHA-256 of the GRAM meta-initialisation when one is used."""
        record = super().run_record(cfg, evaluates)
        path = cfg.TRAINER.DPL.GRAM_FILE
        if path:
            if not os.path.isfile(path):
                raise ConfigError(f"TRAINER.DPL.GRAM_FILE: {path} not found (expected a file written by GRAM meta-training)")
            record["gram_sha256"] = sha256_file(path)
        return record

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        self.prompt_architecture = architecture_from_cfg(cfg)
        if self.prompt_architecture.text_groups and cfg.TRAINER.DPL.TEXT_INPUT != "templates":
            raise ConfigError(
                f"{cfg.TRAINER.DPL.ARCH_FILE}: text token groups sit among the class prompt's tokens, so "
                f"TRAINER.DPL.TEXT_INPUT must be 'templates', got '{cfg.TRAINER.DPL.TEXT_INPUT}'"
            )

    def build_model(self) -> None:
        cfg = self.cfg
        clip_model = self.build_clip()
        architecture = self.prompt_architecture
        source = cfg.TRAINER.DPL.ARCH_FILE or "TRAINER.DPL.TEXT_LENGTHS/IMAGE_LENGTHS"
        try:
            architecture.check_fits(*tower_depths(clip_model), backbone=cfg.MODEL.BACKBONE.NAME, model=self.model_shape)
        except ValueError as error:
            raise ConfigError(f"{source}: {error}") from None
        print(f"Architecture ({source}): {architecture.summary()}")
        try:
            model = PromptedCLIP.fixed(
                clip_model,
                architecture,
                init_std=cfg.TRAINER.DPL.PROMPT_INIT_STD,
                num_classes=len(self.dm.dataset.classnames),
                identical_coupling_init=cfg.TRAINER.DPL.COUPLING_INIT == "copies",
                activation_checkpointing=cfg.TRAINER.DPL.ACTIVATION_CHECKPOINTING,
            )
        except ValueError as error:  # e.g. init words shorter than their group
            raise ConfigError(f"{source}: {error}") from None
        self.setup_model(model)
        if cfg.TRAINER.DPL.GRAM_FILE:
            self.use_meta_init(cfg.TRAINER.DPL.GRAM_FILE)
        self.teacher_text_features = None
        if cfg.TRAINER.DPL.KD_WEIGHT > 0:
            self.build_teacher(clip_model)

    def use_meta_init(self, path: str) -> None:
        """Start the prompts from a GRAM meta-initialisation and regulate every prompt gradient
        with its frozen regulator (a resumed run then loads its checkpoint over the start)."""
        try:
            meta = load_meta_init(path)
            self.regulated_tensors = apply_meta_init(self.model, meta)
        except MetaInitError as error:
            raise ConfigError(f"TRAINER.DPL.GRAM_FILE: {error}") from None
        self.gradient_regulator = meta.regulator.to(self.device)
        print(f"GRAM: prompts start from {path}; their gradients pass its {meta.regulator.form} regulator")

    def build_teacher(self, clip_model: torch.nn.Module) -> None:
        """Zero-shot CLIP (the same frozen weights without prompts) and its class features."""
        text_depth, image_depth = tower_depths(clip_model)
        zero = PromptArchitecture((0,) * text_depth, (0,) * image_depth, candidates=(0,))
        self.teacher = PromptedCLIP.fixed(clip_model, zero).to(self.device)
        with torch.no_grad(), self.autocast():
            self.teacher_text_features = self.encode_classes(self.teacher)

    def forward_backward(self, batch: dict) -> dict:
        images, labels = self.parse_batch_train(batch)
        logits = self.class_logits(images)
        loss = F.cross_entropy(logits, labels)
        summary = {"acc": compute_accuracy(logits, labels)[0].item()}
        if self.teacher_text_features is not None:
            temperature = self.cfg.TRAINER.DPL.KD_TEMPERATURE
            with torch.no_grad(), self.autocast():
                teacher = self.teacher.logits(self.teacher.encode_image(images), self.teacher_text_features)
            kd = F.kl_div(
                F.log_softmax(logits / temperature, dim=-1), F.softmax(teacher / temperature, dim=-1), reduction="batchmean"
            ) * temperature**2
            summary["kd_loss"] = kd.item()
            loss = loss + self.cfg.TRAINER.DPL.KD_WEIGHT * kd
        self.backward_and_update(loss, "prompt_learner")
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        summary["loss"] = loss.item()
        return summary
