"""Trainer code shared by ``DPLSearch`` and ``DPL``: the Dassl side of the project.

Both trainers load CLIP, build the text tower's class input once, run in the configured precision,
compute text features once per evaluation, and save only learned tensors. Two defects of
stock Dassl 0.6.3 on torch 2.x are avoided here without patching Dassl, so other trainers
of a host checkout behave as before:

* Dassl's warm-up schedulers pass ``verbose`` positionally to torch's ``LRScheduler``
  (a TypeError on current torch): :func:`build_lr_scheduler` builds the same schedule as a
  ``LambdaLR``, whose state dict holds only numbers.
* ``TrainerBase.load_model`` formats ``val_result`` that is None for epoch checkpoints:
  :meth:`DPLTrainerBase.load_model` handles it. Checkpoints hold only tensors and numbers, so
  Dassl's ``torch.load`` (``weights_only`` by default on torch >= 2.6) reads them for resume.

Every number a run folder reports is the run it claims to be (see ``dpl_core/run_folder.py``):
a run claims its folder with a record of its config before training or evaluating; checkpoints
are written atomically with the random generators' states, so a run killed at any moment and
started again ends exactly where an uninterrupted one ends; ``result.json`` is written last.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os.path as osp
import random
import sys
from typing import Any

import clip
import dassl.config
import numpy as np
import torch
import torch.nn.functional as F
from dassl.data import DataManager
from dassl.data.data_manager import DatasetWrapper
from dassl.engine import TrainerX
from dassl.optim import build_optimizer
from torch import Tensor, nn

from trainers.dpl_core.clip_loader import CLIPLoadError, check_vit_backbone, load_clip, model_shape, resolve_checkpoint
from trainers.dpl_core.config import ConfigError, add_dpl_config, validate
from trainers.dpl_core.run_folder import (
    POINTER,
    RUN_STATE,
    RunFolderError,
    atomic_write,
    claim,
    committed_epoch,
    config_record,
    evaluation_of,
    make_record,
    saved_epochs,
    sha256_file,
    write_result,
)
from trainers.dpl_core.prompted_clip import (
    AUTO_CLASS_CHUNK,
    RECOMPUTE_ABOVE_CLASSES,
    PromptedCLIP,
    averaged_template_embeddings,
    truncate_tokens,
)
from trainers.dpl_core.templates import AVERAGED_EMBEDDING_TEMPLATES

# Our keys join Dassl's defaults on import, so a host checkout's train.py can merge our yaml
# files without editing its extend_cfg; keys the host defines are left untouched.
add_dpl_config(dassl.config.cfg_default)


class _CurrentStdout(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is when a record is emitted: Dassl's ``setup_logger``
    replaces it with a tee into ``log.txt`` after our modules are imported."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):  # noqa: D102
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # the base class assigns it; the current stdout is always used
        pass


def show_library_logs(*names: str) -> None:
    """Route INFO and above of our loggers to the current stdout, so they reach the terminal and
    ``log.txt`` in our ``train.py`` and in a host checkout's alike.

    Importing Dassl runs ``logging.disable(logging.WARNING)`` (its WILDS reader module does so at
    import), which silences every logger of the process; that is undone here.
    """
    if logging.root.manager.disable == logging.WARNING:
        logging.disable(logging.NOTSET)
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(h, _CurrentStdout) for h in logger.handlers):
            handler = _CurrentStdout()
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


show_library_logs("trainers", "datasets")

DASSL_INPUT_SIZE = (224, 224)  # Dassl's default INPUT.SIZE, taken as "not set by the user"


def lr_factor(epoch: int, optim_cfg) -> float:
    """Learning-rate multiplier at ``epoch`` (0-based), as Dassl's schedulers define it.

    Warm-up (``WARMUP_EPOCH`` epochs) holds ``WARMUP_CONS_LR`` (constant) or, linear, starts at
    ``WARMUP_MIN_LR`` and then takes ``LR * epoch / WARMUP_EPOCH`` (Dassl's ramp); afterwards the main schedule runs, counted from the end of the
    warm-up when ``WARMUP_RECOUNT`` is set.
    """
    base_lr = optim_cfg.LR
    warmup = optim_cfg.WARMUP_EPOCH
    if warmup > 0 and epoch < warmup:
        if optim_cfg.WARMUP_TYPE == "constant":
            return optim_cfg.WARMUP_CONS_LR / base_lr
        return optim_cfg.WARMUP_MIN_LR / base_lr if epoch == 0 else epoch / warmup
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
    """Dassl's epoch-wise schedule (with warm-up) as a ``LambdaLR`` that runs on torch 2.x
    (``config.validate`` has checked the schedule's name and warm-up type)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(epoch, optim_cfg))


def use_model_input_size(cfg, resolution: int) -> None:
    """Make ``cfg.INPUT.SIZE`` the CLIP's input resolution: CLIP's positional embedding takes
    exactly that many patches. Dassl's default (224, 224) counts as unset and is replaced;
    a different explicit size is refused.

    Raises:
        ConfigError: ``INPUT.SIZE`` was set to another size than the model's.
    """
    size, wanted = tuple(cfg.INPUT.SIZE), (resolution, resolution)
    if size == wanted:
        return
    if size != DASSL_INPUT_SIZE:
        raise ConfigError(
            f"INPUT.SIZE {size} does not match the input resolution of the loaded CLIP ({resolution}x{resolution}); "
            f"set INPUT.SIZE ({resolution}, {resolution}), or leave Dassl's default {DASSL_INPUT_SIZE} to take it "
            "from the model"
        )
    frozen = cfg.is_frozen()
    cfg.defrost()
    cfg.INPUT.SIZE = wanted
    if frozen:
        cfg.freeze()
    print(f"INPUT.SIZE set to {wanted}, the input resolution of the loaded CLIP")


def capture_rng() -> dict[str, Any]:
    """The states of every random generator a run draws from: python, numpy, torch, CUDA.

    Numpy's and python's states are stored as tensors and numbers so that the checkpoint loads
    with ``torch.load(weights_only=True)``.
    """
    version, internal, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set every random generator to a state from :func:`capture_rng`."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss_next"]))
    numpy = state["numpy"]
    np.random.set_state(
        (numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        for device, device_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, device)


class ImageReadError(OSError):
    """An image of the dataset cannot be read; the message names the file."""

    def __str__(self) -> str:
        text = super().__str__()
        # Raised in a DataLoader worker, it arrives re-raised with the worker's traceback as its
        # message; the last line is the original one.
        last = text.strip().splitlines()[-1] if text.strip() else text
        marker = f"{type(self).__name__}: "  # "<module>.ImageReadError: <original message>"
        return last.split(marker, 1)[1] if marker in last else text


class NamedImageErrors(DatasetWrapper):
    """Dassl's ``DatasetWrapper``, whose read errors say which image could not be read."""

    def __getitem__(self, index: int) -> dict:
        try:
            return super().__getitem__(index)
        except (OSError, SyntaxError, ValueError) as error:  # what PIL raises for broken files
            raise ImageReadError(f"cannot read image {self.data_source[index].impath}: {error}") from error


def save_file(obj: Any, path: str) -> None:
    """``torch.save`` through a temporary file renamed into place (no truncated checkpoints)."""
    atomic_write(path, lambda handle: torch.save(obj, handle), binary=True)


class DPLTrainerBase(TrainerX):
    """CLIP with deep prompts on Dassl's ``TrainerX`` loop. Subclasses build ``self.model``."""

    def check_cfg(self, cfg) -> None:
        """Before any data is read: every key at once (``config.validate``), then CLIP, loaded
        here (CPU, fp32) because the input size of the data comes from it."""
        validate(cfg)
        try:
            check_vit_backbone(cfg.MODEL.BACKBONE.NAME)
        except CLIPLoadError as error:
            raise ConfigError(f"MODEL.BACKBONE.NAME: {error}") from None
        node = cfg.TRAINER.DPL
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        self.loaded_clip = load_clip(cfg.MODEL.BACKBONE.NAME, node.CLIP_CHECKPOINT, node.CLIP_CACHE_DIR or None)
        self.model_shape = model_shape(self.loaded_clip)
        use_model_input_size(cfg, self.model_shape.resolution)

    def build_data_loader(self) -> None:
        """Dassl's data and loaders (as ``SimpleTrainer`` builds them), whose images name
        themselves when they cannot be read."""
        dm = DataManager(self.cfg, dataset_wrapper=NamedImageErrors)
        self.train_loader_x, self.train_loader_u = dm.train_loader_x, dm.train_loader_u
        self.val_loader, self.test_loader = dm.val_loader, dm.test_loader
        self.num_classes, self.num_source_domains, self.lab2cname = dm.num_classes, dm.num_source_domains, dm.lab2cname
        self.dm = dm

    # ----- model -----------------------------------------------------------------------------

    def build_clip(self) -> nn.Module:
        """The frozen CLIP in the run's precision on the run's device."""
        cfg = self.cfg.TRAINER.DPL
        clip_model, self.loaded_clip = self.loaded_clip, None  # the one check_cfg loaded
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
                # torch.amp.GradScaler exists from torch 2.3; torch.cuda.amp's before.
                self.scaler = torch.amp.GradScaler("cuda") if hasattr(torch.amp, "GradScaler") else torch.cuda.amp.GradScaler()
        return clip_model.to(self.device)

    def build_class_inputs(self) -> None:
        """What the text tower reads for every class, built once (``TRAINER.DPL.TEXT_INPUT``).

        * ``templates``: ``self.class_tokens``, ``[templates, classes, n]`` token ids of the
          ``TEXT_TEMPLATES`` prompts, cut after the last EOT.
        * ``averaged_template_embeddings``: ``self.class_embeddings``, ``[classes, n, width]``, the
          token embeddings of the 60 templates of ``dpl_core/templates.py`` averaged position by
          position, and ``self.class_pooled``, ``[classes]``, the last template's EOT positions,
          where the features are pooled (the reference implementation's training-stage input).
        """
        names = [name.replace("_", " ") for name in self.dm.dataset.classnames]
        self.class_tokens = self.class_embeddings = self.class_pooled = None
        if self.cfg.TRAINER.DPL.TEXT_INPUT == "averaged_template_embeddings":
            token_embedding = self.model.clip_model.token_embedding
            with torch.no_grad():
                self.class_embeddings, self.class_pooled = averaged_template_embeddings(
                    token_embedding,
                    (clip.tokenize([t.format(name) for name in names]).to(self.device) for t in AVERAGED_EMBEDDING_TEMPLATES),
                )
            print(f"Text input: the token embeddings of {len(AVERAGED_EMBEDDING_TEMPLATES)} templates averaged per class, "
                  "pooled at the last template's end of text (TRAINER.DPL.TEXT_INPUT averaged_template_embeddings)")  # fmt: skip
            return
        templates = list(self.cfg.TRAINER.DPL.TEXT_TEMPLATES)
        tokens = torch.stack([clip.tokenize([t.format(name) for name in names]) for t in templates])
        length = truncate_tokens(tokens.flatten(0, 1)).shape[1]
        inserted = self.model.schedules["text"][0].positional  # prompt tokens that take positions after SOT
        context = self.model.clip_model.positional_embedding.shape[0]
        if length + inserted > context:
            longest = int(tokens.argmax(dim=-1).flatten().argmax())
            template, name = templates[longest // len(names)], names[longest % len(names)]
            raise ConfigError(
                f"the class prompt '{template.format(name)}' is {length} tokens; with the architecture's {inserted} "
                f"prompt tokens after SOT it exceeds CLIP's context of {context} (TRAINER.DPL.TEXT_TEMPLATES)"
            )
        self.class_tokens = tokens[:, :, :length].to(self.device)

    def setup_model(self, model: PromptedCLIP) -> None:
        """Place the model, build the classes' text input, pick the class chunk size, and register the
        prompts of both towers as ``prompt_learner`` with Dassl's optimizer and our schedule."""
        self.model = model.to(self.device)
        self.gradient_regulator = None  # GRAM's frozen regulator of the prompt gradients (DPL, GRAM_FILE)
        prompts = nn.ModuleDict({"text": model.text_prompts, "image": model.image_prompts})
        if model.text_tokens.groups or model.image_tokens.groups:  # absent otherwise: DPL's checkpoints keep their keys
            prompts.update({"text_tokens": model.text_tokens, "image_tokens": model.image_tokens})
        self.register_model("prompt_learner", prompts, *self.build_optim_sched(prompts))
        self.build_class_inputs()
        chunk = self.cfg.TRAINER.DPL.CLASS_CHUNK_SIZE
        self.class_chunk_size = chunk if chunk > 0 else AUTO_CLASS_CHUNK
        self.recompute_chunks = len(self.dm.dataset.classnames) > RECOMPUTE_ABOVE_CLASSES
        self._eval_text_features = None
        self.training_run = False  # set by before_train; load_model and test tell evaluations by it
        learned = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"# learned parameters: {learned:,} (CLIP frozen, precision {self.precision})")

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast for ``amp`` runs, a no-op otherwise."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def encode_classes(self, model: PromptedCLIP | None = None) -> Tensor:
        """``[classes, embed_dim]`` class features of :meth:`build_class_inputs`' input; several
        templates are averaged after normalising."""
        model = model or self.model
        if self.class_embeddings is not None:
            return model.encode_text_embeddings(
                self.class_embeddings, self.class_pooled, self.class_chunk_size, self.recompute_chunks
            )
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
        regulate = self.gradient_regulator is not None and name == "prompt_learner"
        if self.scaler is not None:
            self.scaler.scale(loss).backward(inputs=params)
            if regulate:  # the regulator sees true gradients: unscale first (step() then skips it)
                self.scaler.unscale_(optim)
                self.gradient_regulator.apply_to_grads(self.regulated_tensors)
            self.scaler.step(optim)
            self.scaler.update()
        else:
            loss.backward(inputs=params)
            if regulate:
                self.gradient_regulator.apply_to_grads(self.regulated_tensors)
            optim.step()

    def parse_batch_train(self, batch: dict) -> tuple[Tensor, Tensor]:
        non_blocking = self.device.type == "cuda"
        return batch["img"].to(self.device, non_blocking=non_blocking), batch["label"].to(self.device, non_blocking=non_blocking)

    # ----- the run folder --------------------------------------------------------------------

    @classmethod
    def record_architecture(cls, cfg) -> dict[str, Any] | None:
        """The prompt architecture the run trains, for its record (None: it searches one)."""
        return None

    @classmethod
    def run_record(cls, cfg, evaluates: dict[str, Any] | None = None) -> dict[str, Any]:
        """What defines this run's result (see ``run_folder.make_record``); finds the CLIP file
        (downloading it if needed) to record its SHA-256."""
        node = cfg.TRAINER.DPL
        clip_file = resolve_checkpoint(cfg.MODEL.BACKBONE.NAME, node.CLIP_CHECKPOINT, node.CLIP_CACHE_DIR or None)
        return make_record(cfg, sha256_file(clip_file), cls.record_architecture(cfg), evaluates)

    @classmethod
    def claim_output_dir(cls, cfg, evaluates: dict[str, Any] | None = None) -> None:
        """Claim ``cfg.OUTPUT_DIR`` for this run (``run_folder.claim``). A key that a later
        version added and an older record lacks counts as unchanged while it holds its default."""
        defaults = dassl.config.get_cfg_default()
        add_dpl_config(defaults)
        defaults.TRAINER.NAME = cfg.TRAINER.NAME
        claim(cfg.OUTPUT_DIR, cls.run_record(cfg, evaluates), config_record(defaults))

    def before_train(self) -> None:
        """Claim the output folder for this config (refusing another run's or a finished one),
        then Dassl's start: resume from the last complete checkpoint, open the writer."""
        self.training_run = True
        self.claim_output_dir(self.cfg)
        super().before_train()

    def after_train(self) -> None:
        """Dassl's end ('Finish training', the final test, which writes ``result.json``); a run
        without a test still ends with its ``result.json``."""
        super().after_train()
        if self.cfg.TEST.NO_TEST:
            self.write_result(None)

    def write_result(self, accuracy: float | None, **extra: Any) -> None:
        """``result.json``, the last file of a run: what was measured, on which split, of which model."""
        if self.training_run:
            kind = self.result_kind
            model = "model-best.pth.tar" if self.cfg.TEST.FINAL_MODEL == "best_val" else f"epoch {self.max_epoch}"
        else:
            kind, model = "eval", self.loaded_model
        write_result(
            self.output_dir,
            {"kind": kind, "trainer": type(self).__name__, "split": self.cfg.TEST.SPLIT, "accuracy": accuracy,
             "model": model, **extra},
        )  # fmt: skip

    result_kind = "train"  # what a finished training run of this trainer is, in result.json

    # ----- evaluation ------------------------------------------------------------------------

    @torch.no_grad()
    def test(self, split: str | None = None) -> float:
        """Dassl's evaluation, with the class features encoded once for the whole pass.

        The final test (no ``split`` given, as Dassl's ``after_train`` and ``--eval-only`` call
        it) writes the run's ``result.json``; per-epoch validation does not.
        """
        self.set_model_mode("eval")
        with self.autocast():
            self._eval_text_features = self.encode_classes()
        try:
            result = super().test(split)
        finally:
            self._eval_text_features = None
        if split is None:
            self.write_result(float(result))
        return result

    def model_inference(self, images: Tensor) -> Tensor:
        return self.class_logits(images, self._eval_text_features)

    # ----- checkpoints -----------------------------------------------------------------------

    def run_state(self) -> dict[str, Any]:
        """What a resumed run needs besides models and optimizers to continue exactly."""
        state = {"rng": capture_rng(), "best_result": float(self.best_result)}
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_run_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`run_state` saved."""
        restore_rng(state["rng"])
        self.best_result = state["best_result"]
        if self.scaler is not None and "grad_scaler" in state:
            self.scaler.load_state_dict(state["grad_scaler"])

    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result=None, model_name: str = "") -> None:
        """Dassl's checkpoint files and contents, written so that a kill at any moment leaves a
        folder that resumes exactly.

        Every file is written atomically. For an epoch checkpoint, the models' files come first,
        then ``run_state/model.pth.tar-<E>`` (:meth:`run_state`), then the models' ``checkpoint``
        pointers and last the run state's pointer, which commits the epoch. A named copy
        (``model-best.pth.tar``) moves no pointer, so a resume continues from the last epoch.
        """
        file_name = model_name or f"model.pth.tar-{epoch + 1}"
        names = self.get_model_names()
        for name in names:
            optim, sched = self._optims[name], self._scheds[name]
            path = osp.join(directory, name, file_name)
            save_file(
                {"state_dict": self._models[name].state_dict(), "epoch": epoch + 1,
                 "optimizer": None if optim is None else optim.state_dict(),
                 "scheduler": None if sched is None else sched.state_dict(), "val_result": val_result},
                path,
            )  # fmt: skip
            print(f"Checkpoint saved to {path}")
            if is_best:
                save_file(torch.load(path, weights_only=True), osp.join(directory, name, "model-best.pth.tar"))
        if model_name:
            return
        save_file(self.run_state(), osp.join(directory, RUN_STATE, file_name))
        for name in [*names, RUN_STATE]:
            atomic_write(osp.join(directory, name, POINTER), lambda handle: handle.write(file_name + "\n"))

    def resume_model_if_exist(self, directory: str) -> int:
        """Resume from the last committed epoch (every model, optimizer, scheduler, random
        generator and data position as saved); returns the epoch to start from."""
        epoch = committed_epoch(directory)
        if epoch is None:
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        file_name = f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            path = osp.join(directory, name, file_name)
            print(f"Loading checkpoint from {path}")
            checkpoint = torch.load(path, map_location=self.device, weights_only=True)
            self._models[name].load_state_dict(checkpoint["state_dict"])
            if self._optims[name] is not None:
                self._optims[name].load_state_dict(checkpoint["optimizer"])
            if self._scheds[name] is not None:
                self._scheds[name].load_state_dict(checkpoint["scheduler"])
        self.load_run_state(torch.load(osp.join(directory, RUN_STATE, file_name), weights_only=True))
        print(f"Previous epoch: {epoch}")
        return epoch

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load saved learned tensors: for ``--eval-only`` (``epoch`` None: the last saved
        epoch, named by the run's checkpoint pointer), or Dassl's best-val deployment.

        An evaluation claims its own output folder with a record of the checkpoints it reads.
        """
        if not self.training_run:
            evaluates = evaluation_of(directory, self.output_dir, epoch)
            if epoch is None:
                epoch = evaluates["epoch"]
                print(f"Evaluating epoch {epoch}, the last saved in {directory} (saved epochs: "
                      f"{', '.join(map(str, saved_epochs(directory)))}; choose with --load-epoch)")  # fmt: skip
            self.claim_output_dir(self.cfg, evaluates)
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        self.loaded_model = osp.join(directory, "<model>", model_file)
        for name in self.get_model_names():
            path = osp.join(directory, name, model_file)
            if not osp.exists(path):
                epochs = ", ".join(map(str, saved_epochs(directory))) or "none"
                raise RunFolderError(
                    f"No model at {path}: expected a checkpoint of a {type(self).__name__} run "
                    f"({'model-best.pth.tar' if epoch is None else f'epoch {epoch}'}) in {directory} (saved epochs: {epochs})"
                )
            checkpoint = torch.load(path, map_location=self.device, weights_only=True)
            try:
                self._models[name].load_state_dict(checkpoint["state_dict"])
            except RuntimeError as error:
                raise RunFolderError(
                    f"{path} does not fit this model (a different architecture or backbone?): {error}"
                ) from None
            val_result = checkpoint.get("val_result")
            shown = "n/a" if val_result is None else f"{val_result:.1f}"
            print(f"Load {path} to {name} (epoch={checkpoint['epoch']}, val_result={shown})")
