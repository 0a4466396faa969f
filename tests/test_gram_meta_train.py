"""scripts/gram/meta_train.py end to end on synthetic pairs and the tiny CLIP: the output file,
exact resume after a cut, refusal of a folder made by other settings, image prompts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from datasets.image_captions import read_image_captions, write_synthetic_manifest
from trainers.dpl_core.architecture import PromptArchitecture, context_group, deep_prompt_groups
from trainers.dpl_core.clip_loader import load_clip
from trainers.dpl_core.prompted_clip import PromptedCLIP
from trainers.dpl_core.run_folder import sha256_file
from trainers.dpl_core.tiny_clip import write_tiny_checkpoint
from trainers.gram.features import cache_features, index_sha256, load_features
from trainers.gram.hierarchy import HierarchyConfig, build_hierarchy
from trainers.gram.meta import apply_meta_init, learned_tensors, load_meta_init

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gram_meta_train", REPO / "scripts" / "gram" / "meta_train.py")
meta_train = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = meta_train
spec.loader.exec_module(meta_train)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Synthetic pairs, the tiny CLIP, its feature cache and a hierarchy; and two prompt configurations."""
    root = tmp_path_factory.mktemp("gram")
    manifest = write_synthetic_manifest(root / "pairs", pairs=96, seed=0)
    checkpoint = write_tiny_checkpoint(root / "tiny.pt")
    pairs = read_image_captions(manifest)
    model = load_clip("ViT-B/16", str(checkpoint), None).eval()
    features = root / "features"
    cache_features(features, pairs.paths, pairs.captions, model, manifest_sha256=pairs.sha256(),
                   clip_sha256=sha256_file(checkpoint), batch_size=32, shard_size=32, progress=False)  # fmt: skip
    image, text = load_features(features)
    hierarchy = build_hierarchy(image, text, HierarchyConfig(topics=3, modes=2, min_leaf=8, held_out=0.3, seed=0,
                                                             features_sha256=index_sha256(features)))  # fmt: skip
    hierarchy.save(root / "hierarchy.json")
    coop = root / "coop.json"
    PromptArchitecture((0, 0, 0), (0, 0), candidates=(0,), text_groups=context_group(4)).save(coop)
    vpt = root / "vpt.json"
    PromptArchitecture((0, 0, 0), (0, 0), candidates=(0,), image_groups=deep_prompt_groups(2, 2)).save(vpt)
    return dict(root=root, manifest=manifest, checkpoint=checkpoint, features=features, hierarchy=root / "hierarchy.json",
                coop=coop, vpt=vpt)  # fmt: skip


def argv(inputs, output, arch="coop", *extra):
    return ["--manifest", str(inputs["manifest"]), "--features", str(inputs["features"]), "--hierarchy",
            str(inputs["hierarchy"]), "--arch-file", str(inputs[arch]), "--output", str(output), "--clip-checkpoint",
            str(inputs["checkpoint"]), "--steps", "4", "--tasks", "2", "--support", "4", "--query", "4",
            "--inner-lr", "1.0", "--val-every", "2", "--val-tasks", "2", "--checkpoint-every", "1", "--device", "cpu",
            *extra]  # fmt: skip


def test_meta_training_writes_a_meta_init_that_a_model_of_its_prompts_starts_from(inputs, tmp_path):
    out = tmp_path / "coop"
    assert meta_train.main(argv(inputs, out)) == 0
    meta = load_meta_init(out / "gram_meta_init.pt")
    assert set(meta.prompts) == {"text_tokens.tokens.0"} and meta.regulator.form == "elementwise"
    weights = next(iter(meta.regulator.parameters()))
    assert not torch.equal(weights, torch.ones_like(weights)), "the regulator was meta-trained"
    assert meta.config["settings"]["steps"] == 4 and len(meta.config["inputs"]["clip_sha256"]) == 64
    assert (out / "tensorboard").is_dir() and any((out / "tensorboard").iterdir())
    model = PromptedCLIP.fixed(load_clip("ViT-B/16", str(inputs["checkpoint"]), None),
                               PromptArchitecture.load(inputs["coop"]))  # fmt: skip
    apply_meta_init(model, meta)
    assert torch.equal(learned_tensors(model)["text_tokens.tokens.0"], meta.prompts["text_tokens.tokens.0"])
    # the same command again finds the finished run and changes nothing
    before = (out / "gram_meta_init.pt").read_bytes()
    assert meta_train.main(argv(inputs, out)) == 0
    assert (out / "gram_meta_init.pt").read_bytes() == before


def test_a_cut_run_continues_to_what_an_uninterrupted_run_gives(inputs, tmp_path):
    whole = tmp_path / "whole"
    meta_train.meta_train(meta_train.build_parser().parse_args(argv(inputs, whole)))

    cut = tmp_path / "cut"
    args = meta_train.build_parser().parse_args(argv(inputs, cut))

    def stop(step: int) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        meta_train.meta_train(args, on_step=stop)
    assert not (cut / "gram_meta_init.pt").exists() and (cut / "checkpoint.pt").exists()
    meta_train.meta_train(args)
    a, b = load_meta_init(whole / "gram_meta_init.pt"), load_meta_init(cut / "gram_meta_init.pt")
    assert all(torch.equal(a.prompts[n], b.prompts[n]) for n in a.prompts)
    assert all(torch.equal(x, y) for x, y in zip(a.regulator.state_dict().values(), b.regulator.state_dict().values()))


def test_a_folder_made_with_other_settings_is_refused_untouched(inputs, tmp_path, capsys):
    out = tmp_path / "run"
    assert meta_train.main(argv(inputs, out)) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert meta_train.main([*argv(inputs, out)[:-2], "--inner-lr", "0.5", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "settings.inner_lr: 1.0 -> 0.5" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_image_prompts_meta_train_on_the_images(inputs, tmp_path):
    out = tmp_path / "vpt"
    assert meta_train.main([*argv(inputs, out, "vpt"), "--regulator", "lowrank", "--rank", "8"]) == 0
    meta = load_meta_init(out / "gram_meta_init.pt")
    assert set(meta.prompts) == {"image_tokens.tokens.0", "image_tokens.tokens.1"} and meta.regulator.form == "lowrank"


def test_bad_inputs_are_one_error_line(inputs, tmp_path, capsys):
    assert meta_train.main([*argv(inputs, tmp_path / "x"), "--steps", "0"]) == 2
    assert "error: --steps must be >= 1, got 0" in capsys.readouterr().err
    args = argv(inputs, tmp_path / "y")
    args[args.index("--hierarchy") + 1] = str(tmp_path / "missing.json")
    assert meta_train.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.json" in err and len(err.strip().splitlines()) == 1
