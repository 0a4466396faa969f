#!/usr/bin/env python
"""Time GRAM's meta-step and its downstream overhead on a random CLIP (nothing downloaded).

Rows:

meta-step
    one task of the meta-objective (support and query sets of ``--pairs`` image-caption pairs,
    one regulated inner step, backward to prompts and regulator) for CoOp-shaped prompts
    (``coop_16ctx``: text only, cached image features) and VPT-shaped prompts
    (``vpt_deep_8ctx_depth12``: the image tower runs on the images).
downstream step
    a training step of the preset (``--batch`` images against ``--classes`` class prompts,
    forward + backward + SGD step) without and with the frozen regulator applied to every prompt
    gradient before the step; the overhead is their ratio.

Examples::

    python scripts/gram/benchmark.py                 # ViT-B/16 dimensions
    python scripts/gram/benchmark.py --tiny --pairs 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trainers.dpl_core.architecture import PromptArchitecture  # noqa: E402  (first: quiets clip)

import clip  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tabulate import tabulate  # noqa: E402

from scripts.benchmark import VIT_B16, class_names  # noqa: E402
from trainers.dpl_core.architecture import context_group, deep_prompt_groups  # noqa: E402
from trainers.dpl_core.prompted_clip import PromptedCLIP, tower_depths, truncate_tokens  # noqa: E402
from trainers.dpl_core.tiny_clip import TINY_CONFIG  # noqa: E402
from trainers.gram.meta import learned_tensors, meta_inputs, meta_loss  # noqa: E402
from trainers.gram.regulator import GradientRegulator  # noqa: E402


def median_seconds(step: Callable[[], None], repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tiny CLIP of the tests instead of ViT-B/16 dimensions")
    parser.add_argument("--pairs", type=int, default=32, help="pairs per support and per query set")
    parser.add_argument("--classes", type=int, default=100, help="class prompts of the downstream step")
    parser.add_argument("--batch", type=int, default=32, help="images per downstream step")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = TINY_CONFIG if args.tiny else VIT_B16
    clip_model = clip.model.CLIP(**config).float().eval()
    text_depth, image_depth = tower_depths(clip_model)
    resolution = config["image_resolution"]
    zeros = dict(text_lengths=(0,) * text_depth, image_lengths=(0,) * image_depth, candidates=(0,))
    presets = {"coop_16ctx": PromptArchitecture(**zeros, text_groups=context_group(16)),
               "vpt_deep_8ctx_depth12": PromptArchitecture(**zeros, image_groups=deep_prompt_groups(8, image_depth))}  # fmt: skip
    captions = truncate_tokens(clip.tokenize([f"a photo of a {name} on a sunny day" for name in class_names(2 * args.pairs)]))
    images = torch.randn(2 * args.pairs, 3, resolution, resolution)
    rows = []
    for name, arch in presets.items():
        model = PromptedCLIP.fixed(clip_model, arch)
        theta = learned_tensors(model)
        regulator = GradientRegulator({n: tuple(p.shape) for n, p in theta.items()})
        uses_images = bool(arch.image_groups)
        inputs = images
        if not uses_images:  # cached image features: the frozen image tower's output, computed once
            with torch.no_grad():
                inputs = clip_model.encode_image(images)
        support, query = (inputs[: args.pairs], captions[: args.pairs]), (inputs[args.pairs :], captions[args.pairs :])
        head, params, renamed = meta_inputs(model, theta, regulator, cached_image_features=not uses_images)

        def meta_step() -> None:
            meta_loss(head, params, renamed, support, query, inner_lr=0.1).loss.backward()

        meta = median_seconds(meta_step, args.repeats)

        tokens = truncate_tokens(clip.tokenize([f"{name}." for name in class_names(args.classes)]))
        batch = torch.randn(args.batch, 3, resolution, resolution)
        labels = torch.arange(args.batch) % args.classes
        optimizer = torch.optim.SGD(theta.values(), lr=1e-3, momentum=0.9)

        def downstream(regulate: bool) -> Callable[[], None]:
            def step() -> None:
                optimizer.zero_grad()
                F.cross_entropy(model(batch, tokens), labels).backward()
                if regulate:
                    regulator.apply_to_grads(theta)
                optimizer.step()

            return step

        plain, regulated = median_seconds(downstream(False), args.repeats), median_seconds(downstream(True), args.repeats)
        rows.append(dict(prompts=name, meta_step_s=meta, downstream_s=plain, with_regulator_s=regulated,
                         overhead=f"{100 * (regulated / plain - 1):+.1f}%"))  # fmt: skip
    print(f"{'tiny CLIP' if args.tiny else 'ViT-B/16 dimensions'}, random weights, fp32, CPU, {args.threads} threads; "
          f"meta-step: support and query of {args.pairs} pairs each; downstream: {args.batch} images, {args.classes} classes")  # fmt: skip
    print(tabulate(rows, headers="keys", floatfmt=".3g"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
