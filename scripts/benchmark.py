#!/usr/bin/env python
"""Time and peak memory of DPL's search, training and evaluation against the naive way.

Builds a randomly initialised CLIP of ViT-B/16 dimensions (``--tiny``: the tiny CLIP of the
demo and the tests, ``trainers/dpl_core/tiny_clip.py``; fp32, eval mode, frozen; nothing is
downloaded) and measures, for every class count:

search step
    forward + backward of both towers, cross-entropy over the logits of ``--batch`` images,
    gradients to the prompts and the architecture weights (t = ``--max-length``):
    ``supernet`` (the one-pass supernet on truncated text), ``supernet-77`` (the same on the
    full 77-token text: isolates the one-pass attention from the text truncation), ``naive``
    (``scripts/reference_supernet.py``: one attention call per candidate, full 77 tokens) and
    ``fixed-t`` (the fixed architecture with t prompts in every block of both towers: the
    cost of one prompted pass, the floor of a supernet step) and ``tokens`` (the token search's
    supernet, ``TRAINER.DPLSEARCH.SPACE tokens``: counts 0..t per block, lifetimes
    1..``--max-lifetime`` and to the end; gradients to its prompts and both kinds of weights).
training step
    the same step for a fixed architecture of searched size (lengths drawn from 0..t):
    ``searched``, ``all-zero`` (the same model with every length 0) and ``naive`` (the
    reference on the full 77-token text).
evaluation pass
    ``--eval-images`` images in batches of ``--eval-batch`` for the searched architecture:
    ``once`` (text features once, image batches streamed against them) and ``naive`` (the
    reference re-encoding the full 77-token text for every test batch).

The fast rows encode the class prompts in chunks of ``--chunk-size`` (default: the trainers'
automatic size, recomputed in backward above ``--recompute-above`` classes), as the trainers
do. Above ``--large-above`` classes only the fast search and training steps run (their
comparisons are made at the smaller class counts), with ``--large-repeats`` timed steps.

Every row runs in a fresh process (forked from a server that has imported torch), so one row's
allocations never leak into another's peak. Peak memory on CPU is the kernel's peak resident
set size of that process, reset just before the warm-up, minus its resident size at that
moment (model and inputs excluded; intermediate tensors, allocator slack and oneDNN scratch
included); on CUDA it is ``torch.cuda.max_memory_allocated`` above the allocation at that moment.
Time is the median (and the best) of ``--repeats`` steps after one warm-up step; ``--rounds``
runs the whole plan several times and pools the steps, so that other processes on a shared
machine slow all rows alike. The naive rows also give the largest difference between the fast
and the naive outputs (logits, and for the steps the gradients of every learned tensor) on
identical weights and inputs.

The naive reference holds ``t + 1`` attention graphs of the full 77-token text per block: at
100 classes and 12 blocks it needs about 16 GB. Above ``--reduce-above`` classes the naive
comparison therefore runs on ``--reduced-blocks`` blocks of both towers (the fast rows are
repeated at that depth, so each ratio compares equal models; time and memory grow linearly
with depth; the fast rows' last block computes only the pooled position, which saves a
larger share at reduced depth, so those ratios slightly favour the fast way). Above
``--skip-naive-above`` classes the naive search and training steps are not run. A watchdog
kills a row whose process exceeds ``--memory-limit-gib``. Evaluation rows run at full depth
unless ``--eval-blocks`` says otherwise (a 256-image pass takes about two minutes on 2 cores).
The report ends with what the run shows, comparison by comparison (speed-ups, memory savings,
largest output differences), and for evaluation the bound that no text saving can pass: the
naive pass's time over its time without the text encoding.

Examples::

    python scripts/benchmark.py                      # the full benchmark (about 25 minutes on 2 idle cores)
    python scripts/benchmark.py --quick              # 2 blocks, a few minutes
    python scripts/benchmark.py --rounds 3 --statistic min --json bench.json   # on a busy machine
    python scripts/benchmark.py --classes 100 --stages eval --rounds 3 --statistic min
    python scripts/benchmark.py --device cuda --reduce-above 100
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from tabulate import tabulate
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the core package and the naive reference, from any cwd
    sys.path.insert(0, str(ROOT))

from scripts import reference_supernet  # noqa: E402
from trainers.dpl_core.architecture import PromptArchitecture  # noqa: E402
from trainers.dpl_core.prompted_clip import (  # noqa: E402
    AUTO_CLASS_CHUNK,
    RECOMPUTE_ABOVE_CLASSES,
    PromptedCLIP,
    class_chunks,
    tower_depths,
    truncate_tokens,
)
from trainers.dpl_core.tiny_clip import TINY_CONFIG  # noqa: E402
from trainers.dpl_core.token_search import TokenSearchSpace  # noqa: E402

import clip  # noqa: E402  (after trainers.dpl_core, which silences clip's pkg_resources warning)

logger = logging.getLogger("benchmark")


# clip.model.CLIP(embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
#                 context_length, vocab_size, transformer_width, transformer_heads, transformer_layers)
VIT_B16 = dict(
    embed_dim=512,
    image_resolution=224,
    vision_layers=12,
    vision_width=768,
    vision_patch_size=16,
    context_length=77,
    vocab_size=49408,
    transformer_width=512,
    transformer_heads=8,
    transformer_layers=12,
)

# Stage -> ways, the first one the fast way every ratio of the stage is quoted against.
WAYS = {
    "search": ("supernet", "supernet-77", "naive", "fixed-t", "tokens"),
    "train": ("searched", "all-zero", "naive"),
    "eval": ("once", "naive"),
}
WAY_NOTES = {
    ("search", "supernet"): "one-pass supernet, truncated text",
    ("search", "supernet-77"): "one-pass supernet, 77-token text",
    ("search", "naive"): "reference: t+1 attention calls, 77-token text",
    ("search", "fixed-t"): "fixed, t prompts in every block",
    ("search", "tokens"): "token search: counts 0..t, lifetimes",
    ("train", "searched"): "fixed, lengths drawn from 0..t",
    ("train", "all-zero"): "every length 0, grads to pos. embeddings",
    ("train", "naive"): "reference, searched lengths, 77-token text",
    ("eval", "once"): "text once, image batches streamed",
    ("eval", "naive"): "reference, 77-token text per test batch",
}
# Fast ways whose outputs must equal the naive way's (same weights, inputs and mixture).
EQUIVALENT = {"search": ("supernet", "supernet-77"), "train": ("searched",), "eval": ("once",)}

_NAMES_HEAD = (
    "red", "black-throated", "spotted", "greater", "common", "snowy", "striped", "giant", "northern", "dwarf",
    "golden", "long-tailed", "white-crowned", "marbled", "lesser", "royal", "wild", "Siberian", "Egyptian", "Bengal",
)
_NAMES_TAIL = (
    "warbler", "salamander", "retriever", "orchid", "sparrow", "beetle", "tabby cat", "mountain bike",
    "espresso machine", "sea anemone", "pickup truck", "terrier", "water lily", "moth", "heron", "toucan",
    "jellyfish", "snow leopard", "sailboat", "fire engine", "grand piano", "cathedral", "lighthouse", "iris",
    "hummingbird", "tree frog", "lobster", "tortoise", "sunflower", "mushroom", "kingfisher", "owl", "gecko",
    "cactus", "dragonfly", "woodpecker", "crab", "ladybird", "pelican", "fern", "wren", "scorpion", "poppy",
    "falcon", "catfish", "magnolia", "parrot", "shrew", "thistle", "lynx",
)
_CAR_MAKERS = ("Aston Martin", "Rolls-Royce", "Chevrolet", "Mercedes-Benz", "Hyundai", "Lamborghini", "Volkswagen")
_CAR_MODELS = ("V8 Vantage", "Phantom Drophead", "Silverado 2500HD Regular Cab", "SL-Class", "Veloster", "Gallardo LP 570-4 Superleggera", "Golf")
_CAR_BODIES = ("Convertible", "Coupe", "Hatchback", "Sedan", "Wagon")


def class_names(count: int) -> list[str]:
    """``count`` distinct, made-up but realistic class names of varying length.

    Mostly ``"<modifier> <animal/plant/object>"`` (2-6 tokens); every tenth is a car-style
    fine-grained name (up to ~15 tokens) as in Stanford Cars, so the longest class prompt has
    the length a real fine-grained dataset gives.
    """
    if count > len(_NAMES_HEAD) * len(_NAMES_TAIL):
        raise ValueError(f"at most {len(_NAMES_HEAD) * len(_NAMES_TAIL)} classes are available, asked for {count}")
    names = []
    for index in range(count):
        if index % 10 == 9:
            rank = index // 10
            # (maker, model) repeats every 49 ranks, the body style then differs: all distinct.
            maker = _CAR_MAKERS[rank % len(_CAR_MAKERS)]
            model = _CAR_MODELS[(rank // len(_CAR_MAKERS)) % len(_CAR_MODELS)]
            body = _CAR_BODIES[rank % len(_CAR_BODIES)]
            names.append(f"{maker} {model} {body} {2000 + rank % 13}")
        else:
            names.append(f"{_NAMES_HEAD[index % len(_NAMES_HEAD)]} {_NAMES_TAIL[index // len(_NAMES_HEAD)]}")
    return names


@dataclass(frozen=True)
class Settings:
    """What every row of one benchmark run shares."""

    tiny: bool
    batch: int
    max_length: int
    max_lifetime: int
    device: str
    threads: int
    seed: int
    eval_images: int
    eval_batch: int

    @property
    def clip_config(self) -> dict[str, int]:
        return TINY_CONFIG if self.tiny else VIT_B16


@dataclass(frozen=True)
class Measurement:
    """One row: a stage, a way of computing it, a class count and a depth.

    ``chunk_size``, ``recompute_chunks`` and ``checkpointing`` apply to the fast ways only (the
    reference has none of them); see :meth:`PromptedCLIP.encode_text_embeddings`.
    """

    stage: str
    way: str
    classes: int
    blocks: int  # of each tower; a tower with fewer (the tiny CLIP's image tower) keeps its own
    repeats: int
    chunk_size: int = 0
    recompute_chunks: bool = False
    checkpointing: bool = False


# ---------------------------------------------------------------------------------------
# Memory


class MemoryMeter:
    """Peak memory of a section of code, above the memory in use when it starts.

    CUDA: ``torch.cuda.max_memory_allocated`` minus the allocated bytes at the start.
    CPU: the kernel's peak resident set size (``VmHWM``), reset through
    ``/proc/self/clear_refs`` at the start, minus the resident size at the start. This sees
    every allocation (tensors, oneDNN scratch, allocator slack) at no sampling cost; without
    ``clear_refs`` the process-lifetime peak is used instead, which may include model building.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.method = ""
        self.baseline = 0.0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device) / 2**20
            self.method = "cuda max_memory_allocated - allocated at start"
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # 5 = reset the peak RSS (Linux >= 4.0)
            self.method = "VmHWM (reset at start) - VmRSS at start"
        except OSError:
            self.method = "VmHWM (process lifetime) - VmRSS at start"
        self.baseline = _proc_status_mib("VmRSS")

    def peak(self) -> float:
        """MiB above the baseline at the highest point since :meth:`start`."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20 - self.baseline
        return _proc_status_mib("VmHWM") - self.baseline


def _proc_status_mib(field: str, pid: int | str = "self") -> float:
    """A ``kB`` field of ``/proc/<pid>/status`` in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no {field} field; CPU memory figures need Linux")


# ---------------------------------------------------------------------------------------
# Workloads


def build_clip(settings: Settings, blocks: int) -> nn.Module:
    """Random frozen fp32 CLIP with at most ``blocks`` blocks in each tower; the same weights for the same seed."""
    config = settings.clip_config
    config = dict(config, vision_layers=min(blocks, config["vision_layers"]),
                  transformer_layers=min(blocks, config["transformer_layers"]))
    torch.manual_seed(settings.seed)
    model = clip.model.CLIP(**config)
    return model.eval().requires_grad_(False).to(settings.device)


def searched_architecture(settings: Settings, text_depth: int, image_depth: int) -> PromptArchitecture:
    """A fixed architecture of searched size: per block a length drawn uniformly from 0..t."""
    rng = random.Random(settings.seed)
    candidates = tuple(range(settings.max_length + 1))
    return PromptArchitecture(
        tuple(rng.choice(candidates) for _ in range(text_depth)),
        tuple(rng.choice(candidates) for _ in range(image_depth)),
        candidates=candidates,
    )


def _fixed_lists(model: PromptedCLIP, tower: str) -> tuple[list[list[Tensor]], list[list[float]]]:
    """The reference's ``prompts[block][candidate]`` and ``weights`` for a fixed architecture."""
    prompts = model.text_prompts if tower == "text" else model.image_prompts
    return [[p] for p in prompts.prompts], [[1.0] for _ in prompts.prompts]


def _candidate_lists(model: PromptedCLIP, tower: str) -> tuple[list[list[Tensor]], Tensor]:
    """The reference's ``prompts[block][candidate]`` (views of the supernet's prompts) and mixture."""
    prompts = model.text_prompts if tower == "text" else model.image_prompts
    views = [[prompts.candidate(b, i) for i in range(len(prompts.candidates))] for b in range(len(prompts.prompts))]
    return views, model.arch_weights.mixture(tower)


def naive_features(model: PromptedCLIP, images: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
    """``(image, text)`` features of the reference implementation, with ``model``'s prompts and mixture."""
    lists = _candidate_lists if model.arch_weights is not None else _fixed_lists
    image = reference_supernet.naive_encode_image(model.clip_model, images, *lists(model, "image"))
    text = reference_supernet.naive_encode_text(model.clip_model, tokens, *lists(model, "text"))
    return image, text


@dataclass
class Workload:
    """A built model, its inputs, and the step to time (returns the outputs to compare)."""

    model: PromptedCLIP
    step: Callable[[], Tensor]
    warm_up: Callable[[], Tensor]
    text_length: int
    mean_text_length: float
    text_seconds: list[float]


def build_workload(settings: Settings, m: Measurement) -> Workload:
    """Model and inputs of one row, built from the seed alone (equal across processes)."""
    device = torch.device(settings.device)
    clip_model = build_clip(settings, m.blocks)
    torch.manual_seed(settings.seed + 1)
    if m.way == "tokens":
        space = TokenSearchSpace(settings.max_length, tuple(range(1, settings.max_lifetime + 1)) + (None,))
        model = PromptedCLIP.token_supernet(clip_model, space)
        with torch.no_grad():  # weights away from uniform, as the other search rows
            for weights in model.token_weights.parameters():
                weights.normal_()
    elif m.stage == "search" and m.way != "fixed-t":
        model = PromptedCLIP.supernet(clip_model, range(settings.max_length + 1))
        with torch.no_grad():  # a non-uniform mixture makes the equality check meaningful
            model.arch_weights.text.normal_()
            model.arch_weights.image.normal_()
    else:
        text_depth, image_depth = tower_depths(clip_model)
        if m.way == "fixed-t":
            t = settings.max_length
            arch = PromptArchitecture((t,) * text_depth, (t,) * image_depth, candidates=tuple(range(t + 1)))
        elif m.way == "all-zero":
            arch = PromptArchitecture((0,) * text_depth, (0,) * image_depth, candidates=(0,))
        else:
            arch = searched_architecture(settings, text_depth, image_depth)
        model = PromptedCLIP.fixed(clip_model, arch)
    if m.way == "all-zero":
        # Nothing to train, yet a training step must back-propagate through every block as a
        # prompted model does: let the gradient reach both positional embeddings instead.
        clip_model.positional_embedding.requires_grad_(True)
        clip_model.visual.positional_embedding.requires_grad_(True)
    model.activation_checkpointing = m.checkpointing
    model.to(device)

    generator = torch.Generator().manual_seed(settings.seed + 2)
    resolution = settings.clip_config["image_resolution"]
    full_tokens = clip.tokenize([f"a photo of a {name}." for name in class_names(m.classes)]).to(device)
    short_tokens = truncate_tokens(full_tokens)
    naive = m.way == "naive"
    tokens = full_tokens if naive or m.way == "supernet-77" else short_tokens
    chunk = 0 if naive else m.chunk_size
    text_seconds: list[float] = []

    if m.stage in ("search", "train"):
        images = torch.randn(settings.batch, 3, resolution, resolution, generator=generator).to(device)
        labels = torch.arange(settings.batch, device=device) % m.classes

        def step() -> Tensor:
            for parameter in model.parameters():
                parameter.grad = None
            if naive:
                logits = model.logits(*naive_features(model, images, tokens))
            else:
                logits = model.logits(model.encode_image(images), model.encode_text(tokens, m.chunk_size, m.recompute_chunks))
            F.cross_entropy(logits, labels).backward()
            return logits.detach()

        return Workload(model, step, step, tokens.shape[1], mean_text_length(tokens, chunk), text_seconds)

    images = torch.randn(settings.eval_images, 3, resolution, resolution, generator=generator).to(device)

    def timed_text(encode: Callable[[], Tensor]) -> Tensor:
        start = _now(device)
        features = encode()
        text_seconds.append(_now(device) - start)
        return features

    @torch.no_grad()
    def evaluate(batches: Sequence[Tensor]) -> Tensor:
        text_seconds.clear()
        if naive:
            logits = []
            for batch in batches:
                text = timed_text(lambda: reference_supernet.naive_encode_text(clip_model, tokens, *_fixed_lists(model, "text")))
                image = reference_supernet.naive_encode_image(clip_model, batch, *_fixed_lists(model, "image"))
                logits.append(model.logits(image, text))
            return torch.cat(logits)
        text = timed_text(lambda: model.encode_text(tokens, m.chunk_size))
        return torch.cat([model.logits(model.encode_image(batch), text) for batch in batches])

    return Workload(
        model,
        lambda: evaluate(images.split(settings.eval_batch)),
        lambda: evaluate([images[:2]]),  # warm-up: the text and two images, not a whole pass
        tokens.shape[1],
        mean_text_length(tokens, chunk),
        text_seconds,
    )


def mean_text_length(tokens: Tensor, chunk_size: int) -> float:
    """Text positions encoded per class: chunks of length-sorted prompts are each cut after their
    own longest prompt (see :meth:`PromptedCLIP.encode_text_embeddings`); without chunks every
    class pays for ``tokens.shape[1]``."""
    if not 0 < chunk_size < tokens.shape[0]:
        return float(tokens.shape[1])
    chunks = class_chunks(tokens.argmax(dim=-1), chunk_size)
    return sum(len(index) * length for index, length in chunks) / tokens.shape[0]


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def measure(settings: Settings, m: Measurement, outputs_path: str | None = None) -> dict[str, Any]:
    """Run one row in this process: build, warm up, time ``m.repeats`` steps, record the peak.

    Returns the row's figures; when ``outputs_path`` is given, saves the last step's logits and
    gradients there (``torch.save``) for the comparison with the naive row. The caller's thread
    count and CPU random state are left as they were.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            return _measure_here(settings, m, outputs_path)
    finally:
        torch.set_num_threads(previous_threads)


def _measure_here(settings: Settings, m: Measurement, outputs_path: str | None) -> dict[str, Any]:
    device = torch.device(settings.device)
    work = build_workload(settings, m)
    meter = MemoryMeter(device)
    meter.start()
    work.warm_up()
    times = []
    for _ in range(m.repeats):
        start = _now(device)
        logits = work.step()
        times.append(_now(device) - start)
    row = dict(
        asdict(m),
        status="ok",
        seconds=statistics.median(times),
        best_seconds=min(times),
        all_seconds=times,
        peak_mib=meter.peak(),
        memory_method=meter.method,
        text_length=work.text_length,
        mean_text_length=work.mean_text_length,
    )
    if work.text_seconds:  # of the last step
        row["text_seconds"] = sum(work.text_seconds)
        row["text_share"] = row["text_seconds"] / times[-1]
    if outputs_path:
        # The reference also gives empty gradients to length-0 prompts, which the fast way never touches.
        grads = {name: p.grad.cpu() for name, p in work.model.named_parameters() if p.grad is not None and p.numel()}
        torch.save({"logits": logits.cpu(), "grads": grads}, outputs_path)
    return row


# ---------------------------------------------------------------------------------------
# One process per row


def _child(settings: dict[str, Any], measurement: dict[str, Any], result_path: str, outputs_path: str) -> None:
    """Entry point of a row's process: measure and write the figures as JSON."""
    logging.basicConfig(level=logging.WARNING)
    row = measure(Settings(**settings), Measurement(**measurement), outputs_path)
    with open(result_path, "w") as f:
        json.dump(row, f)


def _context() -> multiprocessing.context.BaseContext:
    """A fork server that has imported torch and clip once; rows fork from it in milliseconds.

    The server never runs a torch operation, so forking it is safe (no OpenMP pool exists yet).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["__main__", "torch", "clip", "trainers.dpl_core.prompted_clip"])
    return context


def measure_isolated(
    settings: Settings, m: Measurement, workdir: str, memory_limit_gib: float, name: str
) -> tuple[dict[str, Any], str | None]:
    """Run one row in a fresh process; kill it if its resident memory exceeds the limit.

    ``name`` names the row's files in ``workdir``. Returns the row (``status`` says ``ok``,
    ``killed`` or ``failed``) and the path of its saved outputs (None unless ok).
    """
    result_path = os.path.join(workdir, f"{name}.json")
    outputs_path = os.path.join(workdir, f"{name}.pt")
    process = _context().Process(target=_child, args=(asdict(settings), asdict(m), result_path, outputs_path))
    process.start()
    highest = 0.0
    while process.is_alive():
        try:
            highest = max(highest, _proc_status_mib("VmRSS", process.pid))
        except (OSError, RuntimeError):
            pass  # the process ended between the check and the read
        if highest > memory_limit_gib * 1024:
            process.kill()
            process.join()
            logger.warning("%s: killed at %.1f GiB resident (limit %.1f GiB)", _label(m), highest / 1024, memory_limit_gib)
            return dict(asdict(m), status="killed", note=f"> {memory_limit_gib:g} GiB, killed"), None
        process.join(0.2)
    if process.exitcode != 0 or not os.path.exists(result_path):
        logger.error("%s: the row's process failed (exit code %s)", _label(m), process.exitcode)
        return dict(asdict(m), status="failed", note=f"exit code {process.exitcode}"), None
    with open(result_path) as f:
        return json.load(f), outputs_path


def _label(m: Measurement) -> str:
    return f"{m.stage}/{m.way} {m.classes} classes, {m.blocks} blocks"


# ---------------------------------------------------------------------------------------
# Plan, comparisons, claims


def plan(args: argparse.Namespace, depth: int) -> list[Measurement]:
    """The rows of a run, in order (``args`` as normalised by :func:`resolve_arguments`)."""
    rows = []
    for classes in args.classes:
        run_naive = classes <= args.skip_naive_above
        naive_blocks = min(args.reduced_blocks, depth) if classes > args.reduce_above else depth
        large = classes > args.large_above
        repeats = args.large_repeats if large else args.repeats
        fast = {"chunk_size": args.chunk_size, "recompute_chunks": classes > args.recompute_above,
                "checkpointing": args.checkpointing}
        for stage in [stage for stage in ("search", "train") if stage in args.stages]:
            # many classes: the fast way, and for the search also the token search (its memory bound)
            for way in (WAYS[stage][:1] + ("tokens",) * (stage == "search")) if large else WAYS[stage]:
                if way == "naive" or (way == "supernet-77" and not (run_naive and naive_blocks == depth)):
                    continue  # supernet-77 only serves the comparison with the naive way
                rows.append(_step_row(stage, way, classes, depth, repeats, fast))
            if run_naive:
                if naive_blocks != depth:  # the fast rows a ratio needs, at the depth the naive way can afford
                    ways = ("supernet", "supernet-77") if stage == "search" else ("searched",)
                    rows += [_step_row(stage, way, classes, naive_blocks, repeats, fast) for way in ways]
                rows.append(_step_row(stage, "naive", classes, naive_blocks, repeats, fast))
        if "eval" in args.stages:
            rows.append(Measurement("eval", "once", classes, args.eval_blocks, args.eval_repeats, chunk_size=args.chunk_size))
            rows.append(Measurement("eval", "naive", classes, args.eval_blocks, args.eval_repeats))
    return rows


def _step_row(stage: str, way: str, classes: int, blocks: int, repeats: int, fast: dict[str, Any]) -> Measurement:
    """A search or training row; ``fast`` holds the text-chunking options of the fast ways."""
    if way == "naive":
        return Measurement(stage, way, classes, blocks, repeats)
    if way == "supernet-77":  # all 77 positions of every prompt: no length-sorted chunks
        return Measurement(stage, way, classes, blocks, repeats, **dict(fast, chunk_size=0))
    return Measurement(stage, way, classes, blocks, repeats, **fast)


def differences(fast: dict[str, Any], naive: dict[str, Any]) -> dict[str, float]:
    """Max abs and relative (to the naive maximum magnitude) differences of logits and gradients."""
    result = {}
    diff = (fast["logits"] - naive["logits"]).abs().max().item()
    result["logits_abs"] = diff
    result["logits_rel"] = diff / max(naive["logits"].abs().max().item(), 1e-30)
    if naive["grads"]:
        if set(fast["grads"]) != set(naive["grads"]):
            raise RuntimeError("the fast and naive rows produced gradients for different tensors")
        worst = 0.0
        for name, reference in naive["grads"].items():
            scale = max(reference.abs().max().item(), 1e-30)
            worst = max(worst, (fast["grads"][name] - reference).abs().max().item() / scale)
        result["grads_rel"] = worst
    return result


def _find(rows: Sequence[dict[str, Any]], stage: str, way: str, classes: int, blocks: int | None = None) -> dict | None:
    for row in rows:
        same = (row["stage"], row["way"], row["classes"]) == (stage, way, classes)
        if same and row["status"] == "ok" and (blocks is None or row["blocks"] == blocks):
            return row
    return None


def _ratio(numerator: dict | None, denominator: dict | None, key: str) -> float | None:
    if numerator is None or denominator is None or not denominator.get(key):
        return None
    return numerator[key] / denominator[key]


def claims(
    rows: Sequence[dict[str, Any]], comparisons: Sequence[dict[str, Any]], depth: int, time_key: str
) -> list[dict[str, Any]]:
    """What the measured rows show, one entry per comparison they allow; times compared by ``time_key``.

    Each entry holds ``claim`` (a stable name), ``what`` (the comparison in words), ``classes``,
    ``blocks``, ``figures`` and ``text`` (the figures in words). Figures: ``speedup`` (the other
    way's time / the fast way's), ``memory_saving`` (the other way's peak / the fast way's),
    ``time_ratio`` (the fast way's time / the other way's), ``logits_rel`` and ``grads_rel`` (as
    in :func:`differences`), ``text_share`` and ``text_bound`` (as in :func:`evaluation_bounds`),
    ``peak_gib``. A figure whose rows are missing (killed, not planned) is left out, and so is
    a ratio with a zero on either side (on CPU a small row's peak can stay below what the meter
    sees), and an entry without figures.
    """
    found = []
    compared = {(c["stage"], c["way"], c["classes"], c["blocks"]): c for c in comparisons}
    bounds = {(b["classes"], b["blocks"]): b for b in evaluation_bounds(rows)}

    def ratio(numerator: dict | None, denominator: dict | None, key: str) -> float | None:
        """:func:`_ratio`, or None in place of a zero."""
        return _ratio(numerator, denominator, key) or None

    def add(claim: str, what: str, classes: int, blocks: int, figures: dict[str, float | None]) -> None:
        figures = {name: value for name, value in figures.items() if value is not None}
        if figures:
            found.append(dict(claim=claim, what=what, classes=classes, blocks=blocks, figures=figures,
                              text=_in_words(figures)))

    def against(stage: str, fast_way: str, other_way: str, classes: int, blocks: int | None) -> dict[str, float | None]:
        """Speed-up and memory saving of ``fast_way`` over ``other_way``, and their output differences."""
        other = _find(rows, stage, other_way, classes, blocks)
        fast = other and _find(rows, stage, fast_way, classes, other["blocks"])
        match = fast and compared.get((stage, fast_way, classes, fast["blocks"]))
        return dict(speedup=ratio(other, fast, time_key), memory_saving=ratio(other, fast, "peak_mib"),
                    logits_rel=match and match["logits_rel"], grads_rel=match and match.get("grads_rel"))

    for classes in sorted({row["classes"] for row in rows}):
        naive = _find(rows, "search", "naive", classes)
        if naive is not None:
            add("search_vs_naive", "search step vs the naive way (an attention call per candidate, 77-token text)",
                classes, naive["blocks"], against("search", "supernet", "naive", classes, naive["blocks"]))
            one_pass = against("search", "supernet-77", "naive", classes, naive["blocks"])
            add("one_pass_vs_per_candidate", "search step, one pass vs an attention call per candidate (both 77-token text)",
                classes, naive["blocks"], dict(speedup=one_pass["speedup"], memory_saving=one_pass["memory_saving"]))
        add("supernet_vs_fixed_t", "search step vs a fixed architecture with t prompts in every block", classes, depth,
            dict(time_ratio=ratio(_find(rows, "search", "supernet", classes, depth),
                                   _find(rows, "search", "fixed-t", classes, depth), time_key)))
        add("training_vs_all_zero", "training step (searched lengths) vs the same model with every length 0", classes,
            depth, dict(time_ratio=ratio(_find(rows, "train", "searched", classes, depth),
                                          _find(rows, "train", "all-zero", classes, depth), time_key)))
        naive = _find(rows, "train", "naive", classes)
        if naive is not None:
            add("training_vs_naive", "training step vs the naive way (77-token text)", classes, naive["blocks"],
                against("train", "searched", "naive", classes, naive["blocks"]))
        naive = _find(rows, "eval", "naive", classes)
        if naive is not None:
            bound = bounds.get((classes, naive["blocks"]), {})
            figures = against("eval", "once", "naive", classes, naive["blocks"])
            add("evaluation_vs_naive", "evaluation pass vs the naive way (text re-encoded per test batch)", classes,
                naive["blocks"], dict(speedup=figures["speedup"], text_bound=bound.get("bound"),
                                      text_share=bound.get("text_share"), logits_rel=figures["logits_rel"]))
    for classes in sorted({row["classes"] for row in rows}):
        tokens, lengths = _find(rows, "search", "tokens", classes, depth), _find(rows, "search", "supernet", classes, depth)
        add("token_search_vs_length_search", "token search step vs the length search step (same batch)", classes, depth,
            dict(time_ratio=ratio(tokens, lengths, time_key), memory_ratio=ratio(tokens, lengths, "peak_mib")))
    for way, claim, what in (("supernet", "search_peak_memory", "search step peak memory"),
                             ("tokens", "token_search_peak_memory", "token search step peak memory")):  # fmt: skip
        largest = max((row for row in rows if (row["stage"], row["way"], row["blocks"], row["status"])
                       == ("search", way, depth, "ok")), key=lambda row: row["classes"], default=None)
        if largest is not None:
            add(claim, what, largest["classes"], depth, dict(peak_gib=largest["peak_mib"] / 1024))
    return found


def _in_words(figures: dict[str, float]) -> str:
    """The figures of a claim as the report prints them."""
    words = []
    if "speedup" in figures:
        speedup = figures["speedup"]
        words.append(f"{speedup:.2f}x faster" if speedup >= 1 else f"{1 / speedup:.2f}x slower")
    if "memory_saving" in figures:
        saving = figures["memory_saving"]
        words.append(f"{saving:.2f}x less peak memory" if saving >= 1 else f"{1 / saving:.2f}x more peak memory")
    if "time_ratio" in figures:
        words.append(f"{figures['time_ratio']:.2f}x its time")
    if "memory_ratio" in figures:
        words.append(f"{figures['memory_ratio']:.2f}x its peak memory")
    if "text_bound" in figures:
        words.append(f"no text saving can pass {figures['text_bound']:.2f}x here (text is "
                     f"{figures['text_share']:.0%} of the naive pass)")
    if "logits_rel" in figures:
        gradients = f", {figures['grads_rel']:.1e} (gradients)" if "grads_rel" in figures else ""
        words.append(f"outputs equal up to {figures['logits_rel']:.1e} (logits){gradients} relative")
    if "peak_gib" in figures:
        words.append(f"{figures['peak_gib']:.2f} GiB")
    return "; ".join(words)


def evaluation_bounds(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per class count, the most any saving on text can speed up an evaluation pass.

    The naive pass minus its text encoding is the image tower alone; no text shortcut can beat
    ``naive time / (naive time - naive text time)``.
    """
    bounds = []
    for row in rows:
        if (row["stage"], row["way"], row["status"]) == ("eval", "naive", "ok") and "text_share" in row:
            share = row["text_share"]
            bound = 1 / (1 - share) if share < 1 else float("inf")
            bounds.append(dict(classes=row["classes"], blocks=row["blocks"], text_share=share, bound=bound))
    return bounds


# ---------------------------------------------------------------------------------------
# Report


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _what(row: dict[str, Any]) -> str:
    """The row's description with the options that change its cost."""
    notes = [WAY_NOTES[row["stage"], row["way"]]]
    if 0 < row.get("chunk_size", 0) < row["classes"]:
        notes.append(f"chunks of {row['chunk_size']}" + (", recomputed" if row.get("recompute_chunks") else ""))
    if row.get("checkpointing"):
        notes.append("ckpt")
    return ", ".join(notes)


def report(
    rows: Sequence[dict[str, Any]],
    comparisons: Sequence[dict[str, Any]],
    claimed: Sequence[dict[str, Any]],
    time_key: str,
) -> str:
    """The tables printed at the end of a run: every row, then what the rows show (:func:`claims`)."""
    table = []
    for row in rows:
        ok = row["status"] == "ok"
        first = next((r for r in rows if r["status"] == "ok" and r["way"] == WAYS[row["stage"]][0]
                      and (r["stage"], r["classes"], r["blocks"]) == (row["stage"], row["classes"], row["blocks"])), None)
        match = next((c for c in comparisons if (c["stage"], c["way"], c["classes"], c["blocks"])
                      == (row["stage"], row["way"], row["classes"], row["blocks"])), None)
        table.append([
            row["stage"], row["classes"], row["blocks"], row["way"], _what(row),
            f"{row['mean_text_length']:.1f}/{row['text_length']}" if ok else "",
            _fmt(row.get("seconds"), ".2f") if ok else row.get("note", row["status"]),
            _fmt(row.get("best_seconds"), ".2f"),
            _fmt(row.get("text_seconds"), ".2f"),
            _fmt(_ratio(row, first, time_key) if ok else None, ".2f"),
            _fmt(row.get("peak_mib"), ".0f"),
            _fmt(_ratio(row, first, "peak_mib") if ok else None, ".2f"),
            _fmt(match and match["logits_rel"], ".1e"),
            _fmt(match and match.get("grads_rel"), ".1e"),
        ])
    headers = ["stage", "classes", "blocks", "way", "what", "text len", "median s", "best s", "text s", "time x",
               "peak MiB", "mem x", "logits rel", "grads rel"]
    lines = [
        tabulate(table, headers=headers, disable_numparse=True),
        (
            "text len: text positions encoded per class (mean over classes / longest). text s: time spent encoding "
            "text in an evaluation pass. time x, mem x: this row / the first row of its group (same stage, classes, "
            "blocks). logits rel, grads rel: max |fast - naive| / max |naive| against the naive row of the group "
            "(grads: worst learned tensor)."
        ),
    ]
    if claimed:
        lines.append("")
        lines.append(tabulate([[f"{c['classes']} classes, {c['blocks']} blocks", c["what"], c["text"]] for c in claimed],
                              headers=["where", "comparison", "measured"], disable_numparse=True))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000], help="class counts to measure")
    parser.add_argument("--stages", nargs="+", choices=tuple(WAYS), default=list(WAYS), help="stages to measure")
    parser.add_argument("--blocks", type=int, default=None,
                        help="blocks of each tower (default: all of the model; a tower with fewer keeps its own)")
    parser.add_argument("--batch", type=int, default=4, help="images per search/training step")
    parser.add_argument("--max-length", type=int, default=6, help="t: candidate prompt lengths 0..t (token search: counts 0..t)")
    parser.add_argument("--max-lifetime", type=int, default=3, help="token search: lifetimes 1..L and to the end")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per row, after one warm-up step")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the whole plan this many times and pool each row's steps (spreads the load of "
                        "other processes over all rows instead of a few)")
    parser.add_argument("--statistic", choices=("median", "min"), default="median",
                        help="time of a row used for ratios and claims: median of the repeats, or the best one "
                        "(on a shared machine other processes only ever slow a step down)")
    parser.add_argument("--large-above", type=int, default=100,
                        help="above this many classes only the fast search and training steps run (and evaluation), "
                        "with --large-repeats timed steps")
    parser.add_argument("--large-repeats", type=int, default=1, help="timed steps per row above --large-above")
    parser.add_argument("--chunk-size", type=int, default=AUTO_CLASS_CHUNK,
                        help="class prompts per text chunk in the fast rows; 0 = all at once "
                        f"(default: {AUTO_CLASS_CHUNK}, the trainers' automatic TRAINER.DPL.CLASS_CHUNK_SIZE)")
    parser.add_argument("--recompute-above", type=int, default=RECOMPUTE_ABOVE_CLASSES,
                        help="above this many classes the fast steps recompute each text chunk in backward instead of "
                        f"keeping its activations (default: {RECOMPUTE_ABOVE_CLASSES}, as the trainers)")
    parser.add_argument("--checkpointing", action="store_true",
                        help="activation checkpointing in every block of the fast rows (TRAINER.DPL.ACTIVATION_CHECKPOINTING)")
    parser.add_argument("--eval-images", type=int, default=256, help="images of one evaluation pass")
    parser.add_argument("--eval-batch", type=int, default=100, help="images per test batch")
    parser.add_argument("--eval-blocks", type=int, default=None,
                        help="blocks of the evaluation rows (default: all, --quick 1; 256 ViT-B/16 images take "
                        "~2 min at 12 blocks)")
    parser.add_argument("--eval-repeats", type=int, default=1, help="timed evaluation passes per row")
    parser.add_argument("--reduce-above", type=int, default=10,
                        help="above this many classes the naive comparison runs on --reduced-blocks blocks")
    parser.add_argument("--reduced-blocks", type=int, default=4, help="depth of the naive comparison above --reduce-above")
    parser.add_argument("--skip-naive-above", type=int, default=100,
                        help="above this many classes the naive search and training steps are not run")
    parser.add_argument("--memory-limit-gib", type=float, default=16.0, help="kill a row whose process exceeds this")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in every row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true",
                        help="the tiny random CLIP of the demo and the tests (seconds; for testing the script)")
    parser.add_argument("--quick", action="store_true",
                        help="a few minutes: 2 blocks (1 for evaluation), the naive comparison at that depth")
    parser.add_argument("--in-process", action="store_true",
                        help="run every row in this process (quicker; a peak then includes earlier rows' allocator slack)")
    parser.add_argument("--json", metavar="PATH", help="write every figure to this JSON file")
    return parser


def resolve_arguments(args: argparse.Namespace) -> int:
    """Apply ``--quick`` and the depth defaults to ``args`` in place, check them; return the depth."""
    config = TINY_CONFIG if args.tiny else VIT_B16
    depth = max(config["transformer_layers"], config["vision_layers"])
    if args.quick:
        depth, args.reduced_blocks = 2, 2
        args.eval_blocks = args.eval_blocks or 1
    depth = args.blocks or depth
    args.eval_blocks = min(args.eval_blocks or depth, depth)
    positive = ("blocks", "batch", "max_length", "max_lifetime", "repeats", "rounds", "large_repeats", "eval_images", "eval_batch",
                "eval_blocks", "eval_repeats", "reduced_blocks", "threads")
    for name in positive:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if min(args.classes) < 1 or args.chunk_size < 0:
        raise SystemExit(f"--classes must be >= 1 and --chunk-size >= 0, got {args.classes} and {args.chunk_size}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available")
    return depth


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    depth = resolve_arguments(args)
    settings = Settings(
        tiny=args.tiny, batch=args.batch, max_length=args.max_length, max_lifetime=args.max_lifetime, device=args.device,
        threads=args.threads,
        seed=args.seed, eval_images=args.eval_images, eval_batch=args.eval_batch,
    )
    measurements = plan(args, depth)
    header = dict(settings=asdict(settings), depth=depth, arguments=vars(args), time_statistic=args.statistic)
    results: dict[Measurement, list[dict[str, Any]]] = {m: [] for m in measurements}
    outputs: dict[tuple, str] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dpl-bench-") as workdir:
        for round_index in range(args.rounds):
            for index, m in enumerate(measurements):
                logger.info("[round %d/%d, row %d/%d] %s", round_index + 1, args.rounds, index + 1, len(measurements),
                            _label(m))
                name = f"row{round_index}-{index}"
                if args.in_process:
                    path = os.path.join(workdir, f"{name}.pt")
                    row = measure(settings, m, path)
                else:
                    row, path = measure_isolated(settings, m, workdir, args.memory_limit_gib, name)
                results[m].append(row)
                if path:
                    outputs[m.stage, m.way, m.classes, m.blocks] = path
                if row["status"] == "ok":
                    logger.info("    median %.2f s, best %.2f s, peak %.0f MiB",
                                row["seconds"], row["best_seconds"], row["peak_mib"])
                if args.json:  # a long run that is cut off keeps the rows it finished
                    _write_json(args.json, dict(header, complete=False, rows=[r for rs in results.values() for r in rs]))
        rows = [merge_rounds(results[m]) for m in measurements]

        comparisons = []
        for (stage, way, classes, blocks), path in outputs.items():
            naive_path = outputs.get((stage, "naive", classes, blocks))
            if way in EQUIVALENT[stage] and naive_path:
                figures = differences(torch.load(path), torch.load(naive_path))
                comparisons.append(dict(stage=stage, way=way, classes=classes, blocks=blocks, **figures))

    time_key = "seconds" if args.statistic == "median" else "best_seconds"
    claimed = claims(rows, comparisons, depth, time_key)
    print(report(rows, comparisons, claimed, time_key))
    memory_method = next((row["memory_method"] for row in rows if row["status"] == "ok"), "")
    print(f"\nCLIP {'tiny' if args.tiny else 'ViT-B/16'} dimensions, random weights, fp32, {args.device}, "
          f"{args.threads} threads, batch {args.batch}, t = {args.max_length}, text chunks of {args.chunk_size or 'all'} "
          f"classes (recomputed above {args.recompute_above}){', activation checkpointing' if args.checkpointing else ''} in the fast rows; evaluation: "
          f"{args.eval_images} images in batches of {args.eval_batch}. Ratios use the {args.statistic} time. "
          f"Peak memory: {memory_method}, {'all rows in one process' if args.in_process else 'a fresh process per row'}. "
          f"Total {time.perf_counter() - started:.0f} s.")
    if args.json:
        _write_json(args.json, dict(header, complete=True, memory_method=memory_method, rows=rows,
                                    comparisons=comparisons, claims=claimed))
    return 0


def merge_rounds(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One row from the same row measured in several rounds: times pooled, the highest peak.

    A row that failed or was killed in any round is reported as such.
    """
    bad = next((row for row in rounds if row["status"] != "ok"), None)
    if bad is not None:
        return bad
    times = [t for row in rounds for t in row["all_seconds"]]
    merged = dict(rounds[-1], rounds=len(rounds), all_seconds=times, seconds=statistics.median(times),
                  best_seconds=min(times), peak_mib=max(row["peak_mib"] for row in rounds))
    for key in ("text_seconds", "text_share"):
        if key in merged:
            merged[key] = statistics.median(row[key] for row in rounds)
    return merged


def _write_json(path: str, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically."""
    with open(f"{path}.tmp", "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    os.replace(f"{path}.tmp", path)


if __name__ == "__main__":
    sys.exit(main())
