"""``DPLSearch``: differentiable search over per-block prompt lengths (first-order DARTS), or
with ``TRAINER.DPLSEARCH.SPACE tokens`` over how many prompt tokens enter each block and how
long each lives (``trainers/dpl_core/token_search.py``).

Every iteration takes an alpha step on a validation batch (Adam or SGD on the architecture
weights only), then a prompt step on the training batch (Dassl's optimizer and schedule on the
candidate prompts only). Validation batches come from an endless shuffled sequence with its
own generator whose position is checkpointed, so a resumed search draws what an uninterrupted
one would. After each epoch the decoded architecture and per-block mixture
entropies are logged and the raw alphas appended to ``alpha_history.jsonl``; at the end the
architecture is written to ``arch.json`` in the output folder.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import os.path as osp
import random
import time
from collections import defaultdict

from typing import Any, Iterator

import torch
import torch.nn.functional as F
from dassl.data.data_manager import build_data_loader
from dassl.data.transforms import build_transform
from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy

from trainers.dpl_common import DPLTrainerBase, NamedImageErrors
from trainers.dpl_core.architecture import ARCH_FILE, HISTORY_FILE, PromptArchitecture, decode, default_candidates
from trainers.dpl_core.config import ConfigError
from trainers.dpl_core.prompted_clip import TOWERS, PromptedCLIP, tower_depths
from trainers.dpl_core.token_search import TokenSearchSpace, decode_tokens


def token_space(search) -> TokenSearchSpace:
    """The token search's space from ``TRAINER.DPLSEARCH``."""
    lifetimes = tuple(range(1, search.MAX_LIFETIME + 1)) + ((None,) if search.LIFETIME_TO_END else ())
    return TokenSearchSpace(search.MAX_TOKENS, lifetimes)


def split_holdout(items: list, fraction: float, seed: int) -> tuple[list, list]:
    """Hold out ``ceil(fraction * n)`` items of every class (at least one stays for training).

    Returns:
        ``(train_items, held_out_items)``, chosen reproducibly from ``seed``.
    """
    by_label = defaultdict(list)
    for item in items:
        by_label[item.label].append(item)
    rng = random.Random(seed)
    train, held_out = [], []
    for label in sorted(by_label):
        group = sorted(by_label[label], key=lambda item: item.impath)
        if len(group) < 2:
            raise ConfigError(
                f"class {label} has {len(group)} training image(s); holding out validation images for the "
                "alpha step needs at least 2 per class (use more shots or a dataset with a val split)"
            )
        count = min(len(group) - 1, max(1, math.ceil(fraction * len(group))))
        chosen = set(rng.sample(range(len(group)), count))
        for index, item in enumerate(group):
            (held_out if index in chosen else train).append(item)
    return train, held_out


class EndlessShuffledBatches(torch.utils.data.Sampler):
    """Batches of indices into ``size`` items, without end, resumable at any batch.

    Pass ``p`` is a permutation drawn from a generator seeded with ``seed + p`` and cut into
    ``ceil(size / batch_size)`` batches (the last may be smaller), so every pass visits every
    item once and batch ``k`` is the same whatever happened before it: a sampler started at
    ``start = k`` continues the sequence of one started at 0 after ``k`` batches.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start: int = 0) -> None:
        self.size, self.batch_size, self.seed, self.start = size, batch_size, seed, start
        self.batches_per_pass = math.ceil(size / batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        index = self.start
        order, order_pass = None, None
        while True:
            pass_index, batch = divmod(index, self.batches_per_pass)
            if pass_index != order_pass:
                generator = torch.Generator().manual_seed(self.seed + pass_index)
                order, order_pass = torch.randperm(self.size, generator=generator).tolist(), pass_index
            yield order[batch * self.batch_size : (batch + 1) * self.batch_size]
            index += 1


def build_alpha_optimizer(weights: torch.nn.Module, search) -> torch.optim.Optimizer:
    """The alphas' optimizer from ``TRAINER.DPLSEARCH`` (no schedule): Adam, as the reference
    implementation, or SGD, as the paper's text says."""
    if search.ALPHA_OPTIMIZER == "sgd":
        return torch.optim.SGD(
            weights.parameters(), lr=search.ALPHA_LR, momentum=search.ALPHA_MOMENTUM, weight_decay=search.ALPHA_WEIGHT_DECAY
        )
    return torch.optim.Adam(
        weights.parameters(), lr=search.ALPHA_LR, betas=tuple(search.ALPHA_BETAS), weight_decay=search.ALPHA_WEIGHT_DECAY
    )


@TRAINER_REGISTRY.register()
class DPLSearch(DPLTrainerBase):
    """Search stage of DPL: learns candidate prompts and architecture weights of both towers."""

    def build_data_loader(self) -> None:
        """Dassl's loaders plus an endless, shuffled loader of validation batches for the alpha step."""
        super().build_data_loader()
        cfg = self.cfg
        dataset = self.dm.dataset
        val = list(dataset.val or [])
        test_paths = {item.impath for item in dataset.test or []}
        separate_val = bool(val) and not any(item.impath in test_paths for item in val)
        source = cfg.TRAINER.DPLSEARCH.VAL_SOURCE
        if source == "val" and not separate_val:
            raise ConfigError(
                f"{cfg.DATASET.NAME} has no validation split separate from its test split, so alphas would be "
                "tuned on test images; set TRAINER.DPLSEARCH.VAL_SOURCE holdout (or auto)"
            )
        batch_size = cfg.DATALOADER.TRAIN_X.BATCH_SIZE
        if source == "holdout" or not separate_val:
            train, val = split_holdout(list(dataset.train_x), cfg.TRAINER.DPLSEARCH.HOLDOUT_FRACTION, cfg.SEED)
            print(
                f"Alpha step data: {len(val)} images held out of the few-shot training set "
                f"({cfg.DATASET.NAME} has {'no separate' if not separate_val else 'a'} validation split); "
                f"prompts train on the other {len(train)}"
            )
            self.train_loader_x = build_data_loader(
                cfg,
                sampler_type=cfg.DATALOADER.TRAIN_X.SAMPLER,
                data_source=train,
                batch_size=batch_size,
                tfm=build_transform(cfg, is_train=True),
                is_train=True,
                dataset_wrapper=NamedImageErrors,
            )
        else:
            print(f"Alpha step data: the validation split ({len(val)} images)")
        self.arch_data = val
        # Its own generators, so drawing validation batches leaves the global random state (and
        # so the training batches and crops) as it is; the seed itself comes from that state.
        self.arch_batch_seed = int(torch.randint(2**62, ()).item())
        self.arch_batches_drawn = 0
        self._arch_batches = None

    def next_arch_batch(self) -> dict:
        """The next validation batch of the alpha step (see :class:`EndlessShuffledBatches`)."""
        if self._arch_batches is None:
            cfg = self.cfg
            batch_size = cfg.TRAINER.DPLSEARCH.ALPHA_BATCH_SIZE or cfg.DATALOADER.TRAIN_X.BATCH_SIZE
            sampler = EndlessShuffledBatches(len(self.arch_data), batch_size, self.arch_batch_seed, self.arch_batches_drawn)
            loader = torch.utils.data.DataLoader(
                NamedImageErrors(cfg, self.arch_data, transform=build_transform(cfg, is_train=False), is_train=False),
                batch_sampler=sampler,
                num_workers=cfg.DATALOADER.NUM_WORKERS,
                pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
                generator=torch.Generator().manual_seed(self.arch_batch_seed),
            )
            self._arch_batches = iter(loader)
        self.arch_batches_drawn += 1
        return next(self._arch_batches)

    def run_state(self) -> dict[str, Any]:
        return {**super().run_state(), "arch_batch_seed": self.arch_batch_seed, "arch_batches_drawn": self.arch_batches_drawn}

    def load_run_state(self, state: dict[str, Any]) -> None:
        super().load_run_state(state)
        self.arch_batch_seed = state["arch_batch_seed"]
        self.arch_batches_drawn = state["arch_batches_drawn"]
        self._arch_batches = None  # restarts at the restored position on the next draw

    def build_model(self) -> None:
        cfg = self.cfg
        search = cfg.TRAINER.DPLSEARCH
        self.candidates = default_candidates(search.MAX_LENGTH)
        self.token_space = token_space(search) if search.SPACE == "tokens" else None
        build = PromptedCLIP.token_supernet if self.token_space else PromptedCLIP.supernet
        model = build(
            self.build_clip(),
            self.token_space or self.candidates,
            init_std=cfg.TRAINER.DPL.PROMPT_INIT_STD,
            alpha_init_std=search.ALPHA_INIT_STD,
            temperature=search.TEMPERATURE,
            activation_checkpointing=cfg.TRAINER.DPL.ACTIVATION_CHECKPOINTING,
        )
        self.setup_model(model)
        weights = model.token_weights if self.token_space else model.arch_weights
        self.register_model("arch_weights", weights, build_alpha_optimizer(weights, search), None)

    def forward_backward(self, batch: dict) -> dict:
        arch_batch = self.next_arch_batch()
        arch_images, arch_labels = self.parse_batch_train(arch_batch)
        arch_loss = F.cross_entropy(self.class_logits(arch_images), arch_labels)
        self.backward_and_update(arch_loss, "arch_weights")

        images, labels = self.parse_batch_train(batch)
        logits = self.class_logits(images)
        loss = F.cross_entropy(logits, labels)
        self.backward_and_update(loss, "prompt_learner")

        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(logits, labels)[0].item(), "val_loss": arch_loss.item()}

    def architecture(self) -> PromptArchitecture:
        """The architecture the current alphas select (ties to the shorter length, fewer tokens,
        shorter lives)."""
        if self.token_space:
            weights = self.model.token_weights
            groups = {tower: decode_tokens(self.token_space, tower, *[a.tolist() for a in weights.alphas(tower)])
                      for tower in TOWERS}  # fmt: skip
            text_depth, image_depth = tower_depths(self.model.clip_model)
            return PromptArchitecture(
                (0,) * text_depth, (0,) * image_depth, candidates=(0,), backbone=self.cfg.MODEL.BACKBONE.NAME,
                model=self.model_shape, text_groups=groups["text"], image_groups=groups["image"],
            )  # fmt: skip
        weights = self.model.arch_weights
        return decode(
            weights.alpha("text").tolist(), weights.alpha("image").tolist(), self.candidates,
            self.cfg.MODEL.BACKBONE.NAME, self.model_shape,
        )  # fmt: skip

    def after_epoch(self) -> None:
        """Log the decoded architecture and entropies and append the alphas to the history, then
        Dassl's checkpointing: a resume from this epoch's checkpoint finds its history line."""
        architecture = self.architecture()
        print(f"epoch [{self.epoch + 1}/{self.max_epoch}] architecture {architecture.summary()}")
        for tower in TOWERS:
            if self.token_space:
                counts, lives = (e.tolist() for e in self.model.token_weights.entropies(tower))
                entropy = counts
                print(f"  {tower} count entropy per block: " + " ".join(f"{e:.3f}" for e in counts))
                print(f"  {tower} mean lifetime entropy per block: " + " ".join(f"{sum(e) / len(e):.3f}" for e in lives))
                chosen = [sum(g.count for g in architecture.groups(tower) if g.block == b) for b in range(len(counts))]
            else:
                entropy = self.model.arch_weights.entropy(tower).tolist()
                print(f"  {tower} mixture entropy per block: " + " ".join(f"{e:.3f}" for e in entropy))
                chosen = architecture.lengths(tower)
            self.write_scalar(f"search/{tower}_mean_entropy", sum(entropy) / len(entropy), self.epoch + 1)
            for block, length in enumerate(chosen):
                self.write_scalar(f"search/{tower}_length/block{block}", length, self.epoch + 1)
        self.append_history()
        super().after_epoch()

    def append_history(self) -> None:
        """Add this epoch's raw alphas; lines of later epochs (from a cut-off run) are dropped."""
        path = osp.join(self.output_dir, HISTORY_FILE)
        epoch = self.epoch + 1
        lines = []
        if osp.exists(path):
            with open(path) as f:
                lines = [line for line in f if line.strip() and json.loads(line)["epoch"] < epoch]
        if self.token_space:
            weights = self.model.token_weights
            record = {
                "epoch": epoch,
                "space": "tokens",
                "max_tokens": self.token_space.max_tokens,
                "lifetimes": list(self.token_space.lifetimes),
                "temperature": weights.temperature,
                **{tower: dict(zip(("counts", "lifetimes"), (a.tolist() for a in weights.alphas(tower)))) for tower in TOWERS},
            }
        else:
            weights = self.model.arch_weights
            record = {
                "epoch": epoch,
                "candidates": list(self.candidates),
                "temperature": weights.temperature,
                "text": weights.alpha("text").tolist(),
                "image": weights.alpha("image").tolist(),
            }
        lines.append(json.dumps(record) + "\n")
        with open(path + ".tmp", "w") as f:
            f.writelines(lines)
        os.replace(path + ".tmp", path)

    result_kind = "search"

    def after_train(self) -> None:
        """Write ``arch.json``; then Dassl's end with a test of the supernet if asked for; the
        ``result.json`` that finishes the run comes last either way."""
        path = osp.join(self.output_dir, ARCH_FILE)
        architecture = self.architecture()
        architecture.save(path)
        print(f"Searched architecture: {architecture.summary()}")
        print(f"Saved to {path}")
        if self.cfg.TRAINER.DPLSEARCH.TEST_SUPERNET:
            super().after_train()
            return
        print("Finish training")
        print("Supernet not tested (set TRAINER.DPLSEARCH.TEST_SUPERNET True to test it)")
        print(f"Elapsed: {datetime.timedelta(seconds=round(time.time() - self.time_start))}")
        self.close_writer()
        self.write_result(None)

    def write_result(self, accuracy: float | None, **extra: Any) -> None:
        super().write_result(accuracy, architecture=ARCH_FILE, **extra)
