"""Prompt tokens with lifetimes: the schedule, the format, and the engine against literal
implementations (tests/literal_prompting.py) of CoOp, VPT-deep, IVLP, MaPLe and of any groups."""

from __future__ import annotations

import json

import clip
import pytest
import torch

from scripts import literal_prompting as literal
from trainers.dpl_core.architecture import (
    ArchitectureError,
    PromptArchitecture,
    TokenGroup,
    alive_tokens,
    context_group,
    deep_prompt_groups,
    modular_groups,
)
from trainers.dpl_core.prompted_clip import PromptedCLIP, tower_depths, truncate_tokens
from trainers.dpl_core.token_prompts import TokenSchedule, TowerTokens

NAMES = ["cat", "golden retriever", "red-winged blackbird"]
RTOL = 1e-5


def architecture(clip_model, text=(), image=(), text_lengths=None, image_lengths=None) -> PromptArchitecture:
    text_depth, image_depth = tower_depths(clip_model)
    lengths = sorted({0, *(text_lengths or ()), *(image_lengths or ())})
    return PromptArchitecture(
        tuple(text_lengths or (0,) * text_depth), tuple(image_lengths or (0,) * image_depth), candidates=tuple(lengths),
        text_groups=tuple(text), image_groups=tuple(image),
    )  # fmt: skip


def randomise(model: PromptedCLIP, seed: int = 5) -> None:
    """Move every learned tensor away from its start, so no test passes on a special value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.prompt_parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)


def engine_tokens(template: str) -> torch.Tensor:
    return truncate_tokens(literal.tokenize([template.format(n) for n in NAMES]))


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=RTOL * expected.abs().max().item())


def compare_with_gradients(model: PromptedCLIP, engine_logits, literal_logits, parameters) -> None:
    """Logits equal, and the gradients of one loss with respect to every learned tensor."""
    assert_close(engine_logits, literal_logits)
    labels = torch.arange(engine_logits.shape[0]) % engine_logits.shape[1]
    grads_engine = torch.autograd.grad(torch.nn.functional.cross_entropy(engine_logits, labels), parameters)
    grads_literal = torch.autograd.grad(torch.nn.functional.cross_entropy(literal_logits, labels), parameters)
    for a, b in zip(grads_engine, grads_literal):
        assert b.abs().max() > 0
        assert_close(a, b)


# ----------------------------------------------------------------------------- schedule and format


def test_schedule_on_a_hand_worked_case():
    groups = [TokenGroup(0, 2, None), TokenGroup(1, 1, 1), TokenGroup(1, 2, 2)]
    text = TokenSchedule(groups, depth=4, kv_only_single_block=False)
    assert [b.enter for b in text.blocks] == [((0, (0, 1)),), ((1, (0,)), (2, (0, 1))), (), ()]
    assert [b.kv_only for b in text.blocks] == [(), (), (), ()]
    assert [b.read for b in text.blocks] == [
        (True, True),
        (True, True, False, True, True),  # group 1 lives one block: keys/values only
        (True, True, False, False),  # group 2 in its last block
        (False, False),  # the tower's last block reads nothing of the prompts
    ]
    image = TokenSchedule(groups, depth=4, kv_only_single_block=True)
    assert image[1].enter == ((2, (0, 1)),) and image[1].kv_only == ((1, (0,)),) and image[1].read == (True,) * 4
    assert [image.area_after(b) for b in range(4)] == [2, 4, 2, 0]


def test_schedule_with_a_lifetime_per_token():
    # one group of three tokens living 1, 3 and to the end (of 4 blocks), entering at block 1
    groups = [TokenGroup(1, 3, (1, 3, None))]
    assert groups[0].last_blocks(4) == (1, 3, 3)
    text = TokenSchedule(groups, depth=4, kv_only_single_block=False)
    assert text[1].enter == ((0, (0, 1, 2)),) and text[1].read == (False, True, True)
    assert text[2].read == (True, True) and text[3].read == (False, False)
    image = TokenSchedule(groups, depth=4, kv_only_single_block=True)
    assert image[1].enter == ((0, (1, 2)),) and image[1].kv_only == ((0, (0,)),) and image[1].read == (True, True)


def test_deep_prompt_groups_and_context_group():
    groups = deep_prompt_groups(2, 3, init="a photo of a")
    assert [(g.block, g.count, g.lifetime, g.init) for g in groups] == [(0, 2, 1, "a photo of a"), (1, 2, 1, ""), (2, 2, None, "")]
    assert context_group(4, per_class=True) == (TokenGroup(0, 4, None, per_class=True),)


def test_format_round_trip_and_older_versions(tmp_path):
    arch = PromptArchitecture(
        (0, 1, 0), (0, 0), candidates=(0, 1),
        text_groups=deep_prompt_groups(2, 2, init="a photo") + (TokenGroup(1, 2, (1, None)),),
        image_groups=deep_prompt_groups(2, 2, source="coupled"),
    )  # fmt: skip
    path = tmp_path / "arch.json"
    arch.save(path)
    data = json.loads(path.read_text())
    assert data["version"] == 3 and data["image_groups"][0]["source"] == "coupled"
    assert data["text_groups"][2]["lifetime"] == [1, None]
    assert PromptArchitecture.load(path) == arch
    for version, extra in ((1, {}), (2, {"model": None})):
        old = {k: data[k] for k in ("format", "backbone", "candidates", "text_lengths", "image_lengths")}
        loaded = PromptArchitecture.from_dict({**old, **extra, "version": version})
        assert loaded.text_groups == () and loaded.text_lengths == (0, 1, 0)
    assert "2@0 (1 block, init 'a photo')" in arch.summary()


@pytest.mark.parametrize(
    "text, image, message",
    [
        ((), (TokenGroup(1, 2, 1, "coupled"),), "no learned group entering at block 1"),
        ((TokenGroup(1, 3, 1),), (TokenGroup(1, 2, 1, "coupled"),), "has 3 tokens, not 2"),
        ((TokenGroup(1, 2, 3),), (), "would live to block 3, past the text tower's last block 2"),
        ((TokenGroup(3, 2, 1),), (), "enters at block 3, but the text tower has 3 blocks"),
        ((), (TokenGroup(0, 2, 1, init="a photo"),), "text tower only"),
    ],
)
def test_format_refuses_what_it_cannot_express(text, image, message):
    with pytest.raises(ArchitectureError, match=message):
        PromptArchitecture((0, 0, 0), (0, 0), candidates=(0,), text_groups=text, image_groups=image)


def test_format_refuses_bad_group_fields():
    for bad, message in (({"block": 0, "count": 0}, "count must be an integer >= 1"),
                         ({"block": 0, "count": 1, "lifetime": 0}, "lifetime must be"),
                         ({"block": 0, "count": 2, "lifetime": [1]}, "one value per token"),
                         ({"block": 0, "count": 2, "lifetime": [1, 0]}, "lifetime must be"),
                         ({"block": 0, "count": 1, "colour": 1}, "keys"),
                         ({"block": 0, "count": 1, "source": "coupled", "init": "a"}, "takes no init")):  # fmt: skip
        data = PromptArchitecture((0,), (0,), candidates=(0,)).to_dict()
        with pytest.raises(ArchitectureError, match=message):
            PromptArchitecture.from_dict({**data, "text_groups": [bad]})


# ----------------------------------------------------------------------------- the methods, exactly


@pytest.mark.parametrize("variant", ["random16", "init4", "class_specific"])
def test_coop_equals_its_definition(clip4, images, variant):
    count, init, per_class = {"random16": (16, "", False), "init4": (4, "a photo of a", False),
                              "class_specific": (8, "", True)}[variant]  # fmt: skip
    model = PromptedCLIP.fixed(clip4, architecture(clip4, text=context_group(count, init, per_class)), num_classes=len(NAMES))
    randomise(model)
    ctx = model.text_tokens.learned(0)
    if init:  # the init words' embeddings start the context, as CoOp's
        start = clip4.token_embedding(literal.tokenize([init]))[0, 1 : 1 + count]
        assert ctx.shape == start.shape
    prefix = init or " ".join(["X"] * count)
    tokenized = literal.tokenize([f"{prefix} {name}." for name in NAMES])
    expected = literal.logits(clip4, clip4.encode_image(images), literal.slotted_text_features(clip4, tokenized, ctx))
    compare_with_gradients(model, model(images, engine_tokens("{}.")), expected, [ctx])


def test_coop_init_words_start_the_context(clip4):
    model = PromptedCLIP.fixed(clip4, architecture(clip4, text=context_group(4, "a photo of a")))
    start = clip4.token_embedding(literal.tokenize(["a photo of a"]))[0, 1:5]
    torch.testing.assert_close(model.text_tokens.learned(0), start, rtol=0, atol=0)


@pytest.mark.parametrize("depth", [4, 2])
def test_vpt_deep_equals_its_definition(clip4, images, depth):
    model = PromptedCLIP.fixed(clip4, architecture(clip4, image=deep_prompt_groups(3, depth)))
    randomise(model)
    prompts = [model.image_tokens.learned(i) for i in range(depth)]
    text = clip4.encode_text(literal.tokenize([f"a photo of a {n}." for n in NAMES]))
    expected = literal.logits(clip4, literal.deep_image_features(clip4, images, prompts[0], prompts[1:]), text)
    compare_with_gradients(model, model(images, engine_tokens("a photo of a {}.")), expected, prompts)


@pytest.mark.parametrize("depth", [4, 3])
def test_ivlp_equals_its_definition(clip4, images, depth):
    arch = architecture(clip4, text=deep_prompt_groups(2, depth, init="a photo of a"), image=deep_prompt_groups(2, depth))
    model = PromptedCLIP.fixed(clip4, arch)
    randomise(model)
    text = [model.text_tokens.learned(i) for i in range(depth)]
    image = [model.image_tokens.learned(i) for i in range(depth)]
    tokenized = literal.tokenize([f"a photo of a {n}." for n in NAMES])  # "a photo" are the 2 slots
    expected = literal.logits(
        clip4, literal.deep_image_features(clip4, images, image[0], image[1:]),
        literal.slotted_text_features(clip4, tokenized, text[0], text[1:]),
    )  # fmt: skip
    compare_with_gradients(model, model(images, engine_tokens("of a {}.")), expected, text + image)


@pytest.mark.parametrize("depth", [3, 1])
def test_maple_equals_its_definition(clip4, images, depth):
    arch = architecture(
        clip4, text=deep_prompt_groups(2, depth, init="a photo of a"), image=deep_prompt_groups(2, depth, source="coupled")
    )
    model = PromptedCLIP.fixed(clip4, arch)
    randomise(model)
    text = [model.text_tokens.learned(i) for i in range(depth)]
    maps = [model.image_tokens.maps[str(i)] for i in range(depth)]
    image = [m(t) for m, t in zip(maps, text)]  # MaPLe: image prompts are maps of the text prompts
    tokenized = literal.tokenize([f"a photo of a {n}." for n in NAMES])
    expected = literal.logits(
        clip4, literal.deep_image_features(clip4, images, image[0], image[1:]),
        literal.slotted_text_features(clip4, tokenized, text[0], text[1:]),
    )  # fmt: skip
    parameters = text + [p for m in maps for p in m.parameters()]
    compare_with_gradients(model, model(images, engine_tokens("of a {}.")), expected, parameters)


def test_maple_deep_maps_start_identical_unless_asked_otherwise(clip4):
    arch = architecture(
        clip4, text=deep_prompt_groups(2, 4, init="a photo of a"), image=deep_prompt_groups(2, 4, source="coupled")
    )
    torch.manual_seed(0)
    maps = PromptedCLIP.fixed(clip4, arch).image_tokens.maps
    assert all(torch.equal(maps["1"].weight, maps[k].weight) for k in ("2", "3"))
    assert not torch.equal(maps["0"].weight, maps["1"].weight)  # block 0 has its own map, as MaPLe's proj
    maps = PromptedCLIP.fixed(clip4, arch, identical_coupling_init=False).image_tokens.maps
    assert not torch.equal(maps["1"].weight, maps["2"].weight)


# ----------------------------------------------------------------------------- any groups


MIXED_TEXT = (TokenGroup(0, 2, (None, 2)), TokenGroup(1, 2, 1), TokenGroup(1, 1, 2), TokenGroup(2, 2, (1, 2), per_class=True))
MIXED_IMAGE = (TokenGroup(0, 1, 2), TokenGroup(1, 2, (1, None), "coupled"), TokenGroup(1, 1, None), TokenGroup(3, 2, 1))


def assert_equals_the_literal_sequence(clip_model, images, text_groups, image_groups) -> None:
    """The engine with these groups equals the literal sequence simulation, values and gradients."""
    model = PromptedCLIP.fixed(clip_model, architecture(clip_model, text_groups, image_groups), num_classes=len(NAMES))
    randomise(model)
    text_values = model.text_tokens.values(model.image_tokens, model.couplings["text"])
    image_values = model.image_tokens.values(model.text_tokens, model.couplings["image"])
    tokenized = literal.tokenize([f"a photo of a {n}." for n in NAMES])
    expected = literal.logits(
        clip_model, literal.literal_groups_image(clip_model, images, image_groups, image_values),
        literal.literal_groups_text(clip_model, tokenized, text_groups, text_values),
    )  # fmt: skip
    learned = [p for p in model.prompt_parameters() if p.numel()]  # DPL's prompts are empty here
    compare_with_gradients(model, model(images, engine_tokens("a photo of a {}.")), expected, learned)


def test_mixed_lifetimes_in_both_towers_equal_the_literal_sequence(clip4, images):
    assert_equals_the_literal_sequence(clip4, images, MIXED_TEXT, MIXED_IMAGE)


def test_chunks_and_checkpointing_leave_groups_exact(clip4, images):
    arch = architecture(clip4, MIXED_TEXT, MIXED_IMAGE)
    model = PromptedCLIP.fixed(clip4, arch, num_classes=len(NAMES))
    randomise(model)
    tokens = engine_tokens("a photo of a {}.")
    reference = model(images, tokens)
    assert_close(model(images, tokens, chunk_size=2), reference)  # rows regrouped: per-class tokens follow them
    model.activation_checkpointing = True
    assert_close(model(images, tokens), reference)


def test_single_block_image_tokens_are_dpl_key_value_prompts(clip4, images):
    """An image group of lifetime 1 entering at block b >= 1 is exactly DPL's prompts of block b."""
    depth = tower_depths(clip4)[1]
    lengths = (0, 3, 0, 2)[:depth]
    grouped = PromptedCLIP.fixed(clip4, architecture(clip4, image=(TokenGroup(1, 3, 1), TokenGroup(3, 2, 1))))
    dpl = PromptedCLIP.fixed(clip4, architecture(clip4, image_lengths=lengths))
    randomise(grouped)
    with torch.no_grad():
        dpl.image_prompts.prompts[1].copy_(grouped.image_tokens.learned(0))
        dpl.image_prompts.prompts[3].copy_(grouped.image_tokens.learned(1))
    torch.testing.assert_close(grouped.encode_image(images), dpl.encode_image(images), rtol=0, atol=0)


def test_no_groups_leaves_the_text_tower_untouched(clip4):
    model = PromptedCLIP.fixed(clip4, architecture(clip4))
    tokens = engine_tokens("a photo of a {}.")
    torch.testing.assert_close(model.encode_text(tokens), clip4.encode_text(literal.tokenize([f"a photo of a {n}." for n in NAMES])),
                               rtol=RTOL, atol=1e-5)  # fmt: skip


def test_too_long_a_class_prompt_is_one_clear_error(clip4):
    model = PromptedCLIP.fixed(clip4, architecture(clip4, text=context_group(16)))
    long_name = " ".join(["word"] * 62)
    tokens = literal.tokenize([f"{long_name}."])
    with pytest.raises(ValueError, match="plus 16 prompt tokens after SOT exceed CLIP's context length 77"):
        model.encode_text(tokens)


def test_learned_parameter_counts_at_vit_b16_widths():
    """The originals' counts at ViT-B/16 (text width 512, image width 768, 12 blocks each)."""

    def count(text, image):
        text_tokens = TowerTokens(text, 512)
        sources = {i: 512 for i, g in enumerate(image) if g.source == "coupled"}
        image_tokens = TowerTokens(image, 768, source_widths=sources)
        return sum(p.numel() for m in (text_tokens, image_tokens) for p in m.parameters())

    assert count(context_group(16), ()) == 8_192  # CoOp, 16 tokens
    assert count(context_group(4, "a photo of a"), ()) == 2_048
    assert count((), deep_prompt_groups(8, 12)) == 73_728  # VPT-deep, 8 tokens x 12 blocks
    assert count(deep_prompt_groups(2, 12, "a photo of a"), deep_prompt_groups(2, 12)) == 30_720  # IVLP 2+2
    assert count(deep_prompt_groups(2, 9, "a photo of a"), deep_prompt_groups(2, 9, source="coupled")) == 3_555_072  # MaPLe


# ----------------------------------------------------------------------------- Modular Prompt Learning


def test_modular_lifetimes_on_hand_worked_cases():
    # MPL's default: each block drops the newest token (the second map's of the block before)
    groups = modular_groups(1, 2, 1, 4, source="coupled")
    assert [(g.block, g.count, g.lifetime) for g in groups] == [
        (0, 1, 1), (1, 1, None), (1, 1, 1), (2, 1, None), (2, 1, 1), (3, 1, None), (3, 1, None),
    ]  # fmt: skip
    # no removal: everything is carried to the end
    assert all(g.lifetime is None for g in modular_groups(2, 1, 0, 3))
    # removal splitting a group: 2 tokens per map, 1 removed per block
    groups = modular_groups(2, 1, 1, 3)
    assert [g.lifetime for g in groups] == [(None, 1), (None, 1), None]
    # two removed per block, two maps of two tokens: block 2 removes the second map's pair of block 1
    assert [g.lifetime for g in modular_groups(2, 2, 2, 3)] == [1, None, 1, None, None]


def test_modular_counts_and_parameters_of_the_repository_config():
    text_depth = image_depth = 12
    image = modular_groups(1, 2, 1, 9, source="coupled")
    assert [len(b) for b in alive_tokens(image, image_depth)] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9]
    assert [len(b) for b in alive_tokens(modular_groups(1, 2, 1, 3, source="coupled"), image_depth)] == [1, 2, 3] + [3] * 9
    text = deep_prompt_groups(1, 9, init="X")
    arch = PromptArchitecture((0,) * text_depth, (0,) * image_depth, candidates=(0,), text_groups=text, image_groups=image)
    sources = {i: 512 for i in range(len(image))}
    assert {arch.coupling_source("image", i) for i, g in enumerate(image) if g.block == 4} == {4}  # both maps read T_4
    count = sum(p.numel() for m in (TowerTokens(text, 512), TowerTokens(image, 768, source_widths=sources)) for p in m.parameters())
    assert count == 6_702_336


@pytest.mark.parametrize("n_ctx, n_add, n_rm, depth", [(1, 2, 1, 5), (1, 2, 1, 3), (2, 2, 0, 3), (2, 2, 2, 3), (2, 1, 1, 4)])
def test_modular_prompt_learning_equals_its_definition(clip4, images, n_ctx, n_add, n_rm, depth):
    depth = min(depth, tower_depths(clip4)[1])
    arch = architecture(clip4, text=deep_prompt_groups(n_ctx, depth, init=" ".join(["X"] * n_ctx)),
                        image=modular_groups(n_ctx, n_add, n_rm, depth, source="coupled"))  # fmt: skip
    model = PromptedCLIP.fixed(clip4, arch)
    randomise(model)
    text = [model.text_tokens.learned(i) for i in range(depth)]
    maps = [model.image_tokens.maps[str(i)] for i in range(len(arch.image_groups))]
    shallow = maps[0](text[0])
    added = [torch.cat([maps[1 + (block - 1) * n_add + k](text[block]) for k in range(n_add)]) for block in range(1, depth)]
    tokenized = literal.tokenize([" ".join(["X"] * n_ctx) + f" a photo of a {n}." for n in NAMES])
    expected = literal.logits(
        clip4, literal.modular_image_features(clip4, images, shallow, added, n_rm),
        literal.slotted_text_features(clip4, tokenized, text[0], text[1:]),
    )  # fmt: skip
    parameters = text + [p for m in maps for p in m.parameters()]
    compare_with_gradients(model, model(images, engine_tokens("a photo of a {}.")), expected, parameters)


@pytest.mark.parametrize(
    "args, message",
    [
        ((1, 2, 2, 9), "block 1 would remove 2 prompt tokens but only 1 are present"),
        ((1, 1, 2, 9), "block 1 would remove 2 prompt tokens but only 1 are present"),
        ((1, 0, 1, 3), "block 2 would remove 1 prompt tokens but only 0 are present"),
        ((0, 2, 1, 9), "N_CTX must be an integer >= 1"),
    ],
)
def test_modular_configurations_that_would_remove_patch_tokens_are_refused(args, message):
    with pytest.raises(ArchitectureError, match=message):
        modular_groups(*args)


def test_shipped_preset_files_are_their_builders_at_vit_b16():
    """configs/architectures/*.json: each file is what the tested builders give for 12 blocks."""
    from pathlib import Path

    words = "a photo of a"
    expected = {
        "coop_16ctx": (context_group(16), ()),
        "coop_4ctx_init": (context_group(4, words), ()),
        "coop_16ctx_csc": (context_group(16, per_class=True), ()),
        "vpt_deep_8ctx_depth12": ((), deep_prompt_groups(8, 12)),
        "ivlp_2+2ctx_depth12": (deep_prompt_groups(2, 12, words), deep_prompt_groups(2, 12)),
        "ivlp_4ctx_text_only_depth12": (deep_prompt_groups(4, 12, words), ()),
        "maple_2ctx_depth9": (deep_prompt_groups(2, 9, words), deep_prompt_groups(2, 9, source="coupled")),
        "maple_2ctx_depth3": (deep_prompt_groups(2, 3, words), deep_prompt_groups(2, 3, source="coupled")),
        "mpl_c1_add2_rm1_depth9": (deep_prompt_groups(1, 9, "X"), modular_groups(1, 2, 1, 9, source="coupled")),
        "mpl_c1_add2_rm1_depth3": (deep_prompt_groups(1, 3, "X"), modular_groups(1, 2, 1, 3, source="coupled")),
        "modular_both_coupled_c1_add2_rm1_depth9": (modular_groups(1, 2, 1, 9, init="X"),
                                                    modular_groups(1, 2, 1, 9, source="coupled")),  # fmt: skip
        "modular_both_independent_c1_add2_rm1_depth9": (modular_groups(1, 2, 1, 9, init="X"), modular_groups(1, 2, 1, 9)),
    }
    folder = Path(__file__).resolve().parents[1] / "configs" / "architectures"
    assert sorted(p.stem for p in folder.glob("*.json")) == sorted(expected)
    for name, (text, image) in expected.items():
        arch = PromptArchitecture.load(folder / f"{name}.json")
        assert (arch.text_groups, arch.image_groups, arch.backbone) == (text, image, "ViT-B/16"), name
        assert arch.text_lengths == arch.image_lengths == (0,) * 12, name


@pytest.mark.parametrize("image_source", ["coupled", "learned"])
def test_modular_rule_in_both_towers_equals_the_literal_sequence(clip4, images, image_source):
    """Our extension: the stack rule in the text tower too (tokens after SOT, causal mask kept)."""
    text_depth, image_depth = tower_depths(clip4)
    assert_equals_the_literal_sequence(clip4, images, modular_groups(1, 2, 1, text_depth, init="X"),
                                       modular_groups(1, 2, 1, image_depth, source=image_source))  # fmt: skip


def test_block0_text_tokens_without_position_keep_the_class_positions(clip4, images):
    """positional=False: block-0 text tokens enter as later ones do, the class tokens keep their positions."""
    groups = (TokenGroup(0, 1, None), TokenGroup(0, 2, (1, None), positional=False), TokenGroup(1, 1, 2))
    model = PromptedCLIP.fixed(clip4, architecture(clip4, text=groups))
    randomise(model)
    values = model.text_tokens.values(model.image_tokens, model.couplings["text"])
    tokenized = literal.tokenize([f"a photo of a {n}." for n in NAMES])
    # literal: the positional token takes position 1, the class tokens 2..; the others get no position
    clip_model, depth = clip4, tower_depths(clip4)[0]
    emb = clip_model.token_embedding(tokenized)
    x = torch.cat([emb[:, :1], values[0].expand(3, -1, -1), emb[:, 1:]], dim=1)[:, :77] + clip_model.positional_embedding
    x = torch.cat([x[:, :2], values[1].expand(3, -1, -1), x[:, 2:]], dim=1)
    live = [depth - 1, 0, depth - 1]
    for b, block in enumerate(clip_model.transformer.resblocks):
        if b:
            keep = [j for j, last in enumerate(live) if last >= b]
            new = [values[2].expand(3, -1, -1)] if b == 1 else []
            x = torch.cat([x[:, :1], x[:, 1 : 1 + len(live)][:, keep], *new, x[:, 1 + len(live) :]], dim=1)
            live = [live[j] for j in keep] + ([2] if b == 1 else [])
        x = literal._run_block(block, x, causal=True)
    x = clip_model.ln_final(x)
    expected = x[torch.arange(3), tokenized.argmax(dim=-1) + len(live)] @ clip_model.text_projection
    assert_close(model.encode_text(engine_tokens("a photo of a {}.")), expected)
    with pytest.raises(ArchitectureError, match="positional ones must come before"):
        architecture(clip4, text=(TokenGroup(0, 1, None, positional=False), TokenGroup(0, 1, None)))
    with pytest.raises(ArchitectureError, match="text tower only"):
        architecture(clip4, image=(TokenGroup(0, 1, None, positional=False),))


@pytest.mark.parametrize("build", ["maple", "token_search"])
def test_half_precision_clip_keeps_group_tokens_maps_and_gates_in_fp32(clip4, images, build):
    """fp16 runs: CLIP in half; tokens, coupling maps and the token search's weights stay fp32."""
    import copy

    from trainers.dpl_core.token_search import TokenSearchSpace

    half = copy.deepcopy(clip4)
    clip.model.convert_weights(half)  # CLIP's own fp16 layout: LayerNorms stay fp32

    def make(model_clip):
        torch.manual_seed(0)
        if build == "token_search":
            return PromptedCLIP.token_supernet(model_clip, TokenSearchSpace(2, (1, None)), alpha_init_std=0.5)
        arch = architecture(model_clip, text=deep_prompt_groups(2, 3, init="a photo of a"),
                            image=deep_prompt_groups(2, 3, source="coupled"))  # fmt: skip
        return PromptedCLIP.fixed(model_clip, arch)

    model, reference = make(half), make(clip4)
    tokens = engine_tokens("of a {}.")
    logits = model(images, tokens)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, reference(images, tokens), rtol=0.05, atol=0.05)
    logits.logsumexp(-1).sum().backward()
    learned = [p for p in model.prompt_parameters() if p.numel()]
    if model.token_weights is not None:
        learned += list(model.token_weights.parameters())
    for param in learned:
        assert param.dtype == torch.float32 and param.grad is not None and param.grad.dtype == torch.float32
