#!/usr/bin/env python
"""Time the baseline presets (CoOp, VPT-deep, IVLP, MaPLe, MPL) on the engine against their literal form.

Builds a randomly initialised CLIP of ViT-B/16 dimensions (fp32, frozen; nothing is
downloaded), the preset's architecture from ``configs/architectures/``, and measures per class
count:

train step
    forward + backward of the cross-entropy over the logits of ``--batch`` images, gradients to
    every learned tensor. ``engine``: the DPL trainer's path (class prompts cut after their
    EOT and encoded in chunks, the last block computes the pooled positions only, prompt
    tokens in their last block are keys/values only). ``literal``: the methods' own form
    (``scripts/literal_prompting.py``): the 77-token class prompts with the context slots,
    deep prompts overwriting the slots block after block (MPL: image tokens dropped from the
    tail and appended block after block), every position through every block.
evaluation pass
    ``--eval-images`` images in test batches of ``--eval-batch``. ``engine``: class features once
    (as the trainers cache them), image batches against them. ``literal``: the 77-token text
    re-encoded for every test batch, as the originals' ``model_inference`` does.

Each row also reports the largest relative difference between the two ways' logits on
identical weights and prompts. Time is the median of ``--repeats`` runs after one warm-up.

Examples::

    python scripts/benchmark_presets.py                            # every preset, 100 and 1000 classes
    python scripts/benchmark_presets.py --presets maple_2ctx_depth9 --classes 100 --stages train
    python scripts/benchmark_presets.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from tabulate import tabulate
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts import literal_prompting as literal  # noqa: E402
from scripts.benchmark import VIT_B16, class_names  # noqa: E402
from trainers.dpl_core.architecture import PromptArchitecture  # noqa: E402
from trainers.dpl_core.prompted_clip import AUTO_CLASS_CHUNK, RECOMPUTE_ABOVE_CLASSES, PromptedCLIP, truncate_tokens  # noqa: E402

import clip  # noqa: E402  (after trainers.dpl_core, which silences clip's pkg_resources warning)

# Preset -> (engine template, the original's class prompt before the name, MPL's N_RM_OP or None).
PRESETS = {
    "coop_16ctx": ("{}.", " ".join(["X"] * 16), None),
    "vpt_deep_8ctx_depth12": ("a photo of a {}.", "a photo of a", None),
    "ivlp_2+2ctx_depth12": ("of a {}.", "a photo of a", None),
    "maple_2ctx_depth9": ("of a {}.", "a photo of a", None),
    "mpl_c1_add2_rm1_depth9": ("a photo of a {}.", "X a photo of a", 1),
}


def literal_parts(model: PromptedCLIP) -> tuple[Tensor | None, list[Tensor], Tensor | None, list[Tensor]]:
    """The preset's prompts as the literal form takes them: text (shallow, deep), image (shallow, deep)."""
    text = model.text_tokens.values(model.image_tokens, model.couplings["text"])
    image = model.image_tokens.values(model.text_tokens, model.couplings["image"])
    return (text[0] if text else None), text[1:], (image[0] if image else None), image[1:]


def literal_text(model: PromptedCLIP, tokenized: Tensor) -> Tensor:
    ctx, deep, _, _ = literal_parts(model)
    if ctx is None:  # VPT: CLIP's own text encoder on the fixed prompt
        return model.clip_model.encode_text(tokenized)
    return literal.slotted_text_features(model.clip_model, tokenized, ctx, deep)


def literal_image(model: PromptedCLIP, images: Tensor, n_rm: int | None) -> Tensor:
    _, _, shallow, deep = literal_parts(model)
    if n_rm is None:
        return literal.deep_image_features(model.clip_model, images, shallow, deep)
    # MPL: the tokens added at each block, map after map
    groups = model.image_tokens.groups[1:]
    added = [torch.cat([t for t, g in zip(deep, groups) if g.block == block]) for block in sorted({g.block for g in groups})]
    return literal.modular_image_features(model.clip_model, images, shallow, added, n_rm)


def timed(step: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, object]:
    """Median seconds of ``repeats`` calls after one warm-up call, and the last call's result."""
    result = step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        result = step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def relative_difference(a: Tensor, b: Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def measure(preset: str, classes: int, stages: Sequence[str], args: argparse.Namespace, device: torch.device) -> list[dict]:
    torch.manual_seed(args.seed)
    clip_model = clip.model.CLIP(**VIT_B16).float().eval().to(device)
    arch = PromptArchitecture.load(ROOT / "configs" / "architectures" / f"{preset}.json")
    model = PromptedCLIP.fixed(clip_model, arch, num_classes=classes).to(device)
    with torch.no_grad():
        for param in model.prompt_parameters():
            param.add_(torch.randn_like(param) * 0.02)
    template, prefix, n_rm = PRESETS[preset]
    names = class_names(classes)
    engine_tokens = truncate_tokens(clip.tokenize([template.format(n) for n in names])).to(device)
    literal_tokens = clip.tokenize([f"{prefix} {n}." for n in names]).to(device)
    chunk = args.chunk_size
    recompute = classes > RECOMPUTE_ABOVE_CLASSES
    learned = [p for p in model.prompt_parameters() if p.numel()]
    rows = []

    if "train" in stages:
        images = torch.randn(args.batch, 3, 224, 224, device=device)
        labels = torch.arange(args.batch, device=device) % classes

        def engine_step():
            logits = model.logits(model.encode_image(images), model.encode_text(engine_tokens, chunk, recompute))
            torch.autograd.grad(F.cross_entropy(logits, labels), learned)
            return logits.detach()

        def literal_step():
            logits = literal.logits(clip_model, literal_image(model, images, n_rm), literal_text(model, literal_tokens))
            torch.autograd.grad(F.cross_entropy(logits, labels), learned)
            return logits.detach()

        fast, fast_logits = timed(engine_step, args.repeats, device)
        slow, slow_logits = timed(literal_step, args.repeats, device)
        rows.append(dict(preset=preset, stage="train step", classes=classes, engine_s=fast, literal_s=slow,
                         speedup=slow / fast, rel_diff=relative_difference(fast_logits, slow_logits)))  # fmt: skip

    if "eval" in stages:
        batches = [torch.randn(args.eval_batch, 3, 224, 224, device=device)
                   for _ in range(max(1, args.eval_images // args.eval_batch))]  # fmt: skip

        @torch.no_grad()
        def engine_pass():
            text = model.encode_text(engine_tokens, chunk)
            return torch.cat([model.logits(model.encode_image(b), text) for b in batches])

        @torch.no_grad()
        def literal_pass():
            return torch.cat([literal.logits(clip_model, literal_image(model, b, n_rm), literal_text(model, literal_tokens))
                              for b in batches])  # fmt: skip

        fast, fast_logits = timed(engine_pass, args.eval_repeats, device)
        slow, slow_logits = timed(literal_pass, args.eval_repeats, device)
        rows.append(dict(preset=preset, stage="evaluation pass", classes=classes, engine_s=fast, literal_s=slow,
                         speedup=slow / fast, rel_diff=relative_difference(fast_logits, slow_logits)))  # fmt: skip
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", choices=tuple(PRESETS), default=list(PRESETS))
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--stages", nargs="+", choices=("train", "eval"), default=["train", "eval"])
    parser.add_argument("--train-classes-max", type=int, default=100,
                        help="train steps only up to this many classes (the literal step at 1000 needs ~50 GB)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=4, help="images per train step")
    parser.add_argument("--repeats", type=int, default=2, help="timed train steps per row, after one warm-up")
    parser.add_argument("--eval-images", type=int, default=200, help="images of one evaluation pass")
    parser.add_argument("--eval-batch", type=int, default=100, help="images per test batch")
    parser.add_argument("--eval-repeats", type=int, default=1, help="timed evaluation passes per row")
    parser.add_argument("--chunk-size", type=int, default=AUTO_CLASS_CHUNK, help="class prompts per chunk (the trainers')")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="write the rows to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for preset in args.presets:
        for classes in args.classes:
            stages = [s for s in args.stages if s != "train" or classes <= args.train_classes_max]
            measured = measure(preset, classes, stages, args, device)
            rows += measured
            print(tabulate(measured, headers="keys", floatfmt=".3g"), flush=True)
    print(f"\nViT-B/16 dimensions, random weights, fp32, {device}, {args.threads} threads; "
          f"train step = {args.batch} images fwd+bwd; evaluation pass = {args.eval_images} images in batches of {args.eval_batch}")  # fmt: skip
    print(tabulate(rows, headers="keys", floatfmt=".3g"))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
