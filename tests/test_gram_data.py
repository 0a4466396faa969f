"""GRAM's meta-training data: manifest reading, the CLIP feature cache, CHC and task sampling."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch
from PIL import Image

from datasets.image_captions import (
    SYNTHETIC_STYLES,
    SYNTHETIC_TOPICS,
    ManifestError,
    read_image_captions,
    synthetic_label,
    write_synthetic_manifest,
)
from trainers.dpl_core.clip_loader import load_clip
from trainers.dpl_core.run_folder import sha256_file
from trainers.dpl_core.tiny_clip import TINY_CONFIG, write_tiny_checkpoint
from trainers.gram import features
from trainers.gram.features import (
    FeatureCacheError,
    cache_features,
    clip_preprocess,
    encode_pairs,
    index_sha256,
    load_features,
    read_index,
)
from trainers.gram.hierarchy import Hierarchy, HierarchyConfig, HierarchyError, Leaf, TaskSampler, build_hierarchy

REPO = Path(__file__).resolve().parents[1]
PAIRS = 96  # 6 topics x 2 styles x 8
BATCH, SHARD = 16, 32  # 3 shards of 2 batches


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"gram_{name}", REPO / "scripts" / "gram" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_image(path: Path, colour: tuple[int, int, int] = (10, 200, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("clip") / "tiny.pt")


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_clip("ViT-B/16", checkpoint)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return read_image_captions(write_synthetic_manifest(tmp_path_factory.mktemp("synthetic"), pairs=PAIRS))


def encode(folder, data, model, checkpoint, **overrides):
    kwargs = dict(
        manifest_sha256=data.sha256(),
        clip_sha256=sha256_file(checkpoint),
        batch_size=BATCH,
        shard_size=SHARD,
        progress=False,
    )
    return cache_features(folder, data.paths, data.captions, model, **{**kwargs, **overrides})


@pytest.fixture(scope="module")
def cache(tmp_path_factory, synthetic, model, checkpoint) -> Path:
    folder = tmp_path_factory.mktemp("cache")
    encode(folder, synthetic, model, checkpoint)
    return folder


# ----------------------------------------------------------------------------- manifests


def test_manifest_resolves_relative_paths_and_skips_comments_and_blank_lines(tmp_path):
    write_image(tmp_path / "data" / "images" / "a.png")
    write_image(tmp_path / "elsewhere" / "b.png")
    manifest = tmp_path / "data" / "pairs.tsv"
    manifest.write_bytes(
        (
            "# image<TAB>caption\n"
            "\n"
            "images/a.png\ta red dog\ton grass \r\n"  # the caption is all after the first tab
            "   \n"
            f"{tmp_path / 'elsewhere' / 'b.png'}\tan absolute path\n"
        ).encode()
    )
    data = read_image_captions(manifest)
    assert data.paths == (str(tmp_path / "data" / "images" / "a.png"), str(tmp_path / "elsewhere" / "b.png"))
    assert data.captions == ("a red dog\ton grass", "an absolute path")
    assert len(data) == 2 and data.root == str(tmp_path / "data")


def test_manifest_hash_names_the_pairs_not_the_file(tmp_path):
    for name in ("a.png", "b.png"):
        write_image(tmp_path / name)
    (tmp_path / "one.tsv").write_text("a.png\tfirst\nb.png\tsecond\n")
    (tmp_path / "commented.tsv").write_text("# header\na.png\t first\n\nb.png\tsecond\n")
    (tmp_path / "changed.tsv").write_text("a.png\tfirst\nb.png\tthird\n")
    (tmp_path / "swapped.tsv").write_text("b.png\tsecond\na.png\tfirst\n")
    sha = {
        name: read_image_captions(tmp_path / f"{name}.tsv").sha256()
        for name in ("one", "commented", "changed", "swapped")
    }
    assert sha["one"] == sha["commented"] == sha256_file(tmp_path / "one.tsv")  # a clean manifest's own hash
    assert len({sha["one"], sha["changed"], sha["swapped"]}) == 3


@pytest.mark.parametrize(
    "lines, expected",
    [
        ("a.png\tok\nb.png caption without tab\n", "line 2: no tab; expected 'path<TAB>caption'"),
        ("a.png\tok\n# comment\na.png\t   \n", "line 3: empty caption for a.png"),
        ("\tcaption\n", "line 1: empty image path"),
        (
            "a.png\tok\ngone.png\tx\nalso_gone.png\ty\n",
            "line 2: image not found: {folder}/gone.png (and 1 more missing)",
        ),
        ("# only a comment\n\n", "no image-caption pairs (expected 'path<TAB>caption' lines"),
    ],
    ids=["no-tab", "empty-caption", "empty-path", "missing-images", "empty-manifest"],
)
def test_manifest_errors_name_file_and_line(tmp_path, lines, expected):
    write_image(tmp_path / "a.png")
    manifest = tmp_path / "pairs.tsv"
    manifest.write_text(lines)
    with pytest.raises(ManifestError) as error:
        read_image_captions(manifest)
    message = str(error.value)
    assert message.startswith(str(manifest)) and expected.format(folder=tmp_path) in message
    assert "\n" not in message and isinstance(error.value, ValueError)


def test_missing_manifest_says_what_was_expected(tmp_path):
    with pytest.raises(
        ManifestError, match=r"manifest not found: .*nope\.tsv \(expected 'path<TAB>caption' lines, or an img2dataset"
    ):
        read_image_captions(tmp_path / "nope.tsv")


def write_img2dataset_sample(folder: Path, shard: str, key: str, caption: str | None) -> None:
    write_image(folder / shard / f"{key}.jpg")
    if caption is not None:
        (folder / shard / f"{key}.txt").write_text(caption)
    (folder / shard / f"{key}.json").write_text(json.dumps({"key": key, "status": "success"}))


def test_img2dataset_files_layout_in_shard_then_key_order(tmp_path):
    folder = tmp_path / "cc3m"
    write_img2dataset_sample(folder, "00001", "000010000", "third\n")
    write_img2dataset_sample(folder, "00000", "000000007", "second")
    write_img2dataset_sample(folder, "00000", "000000003", " first ")
    (folder / "00000.parquet").write_bytes(b"not read")
    (folder / "00000_stats.json").write_text("{}")
    (folder / "logs").mkdir()
    data = read_image_captions(folder)
    assert data.captions == ("first", "second", "third")
    assert data.paths == tuple(
        str(folder / p) for p in ("00000/000000003.jpg", "00000/000000007.jpg", "00001/000010000.jpg")
    )


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no-caption-file", "00000/000000001.jpg: no caption file 000000001.txt beside it"),
        ("empty-caption", "00000/000000001.txt line 1: empty caption"),
        ("caption-without-image", "00000/000000002.txt: image not found: {folder}/00000/000000002.jpg"),
        ("no-shards", "no image-caption pairs (expected shard folders 00000/"),
    ],
)
def test_img2dataset_folder_errors(tmp_path, case, expected):
    folder = tmp_path / "cc3m"
    folder.mkdir()
    if case != "no-shards":
        write_img2dataset_sample(folder, "00000", "000000000", "fine")
        write_img2dataset_sample(
            folder, "00000", "000000001", {"no-caption-file": None, "empty-caption": "  \n"}.get(case, "ok")
        )
    if case == "caption-without-image":
        (folder / "00000" / "000000002.txt").write_text("its image is gone")
    with pytest.raises(ManifestError) as error:
        read_image_captions(folder)
    assert expected.format(folder=folder) in str(error.value)


def test_synthetic_manifest_is_reproducible_and_labelled(tmp_path):
    first = Path(write_synthetic_manifest(tmp_path / "a", pairs=24, seed=3))
    again = Path(write_synthetic_manifest(tmp_path / "b", pairs=24, seed=3))
    other = Path(write_synthetic_manifest(tmp_path / "c", pairs=24, seed=4))
    assert first.read_text() == again.read_text() != other.read_text()
    assert (first.parent / "images" / "00005_guitar_flat.png").read_bytes() == (
        again.parent / "images" / "00005_guitar_flat.png"
    ).read_bytes()
    data = read_image_captions(first)
    labels = [synthetic_label(path) for path in data.paths]
    assert Counter(labels) == {(topic, style): 2 for topic in SYNTHETIC_TOPICS for style in SYNTHETIC_STYLES}
    for (topic, _), caption in zip(labels, data.captions):
        assert set(caption.split()) <= set(SYNTHETIC_TOPICS[topic]) and len(caption.split()) == 3


# ----------------------------------------------------------------------------- feature cache


def test_feature_cache_holds_normalised_fp16_rows_in_manifest_order(cache, synthetic, model, checkpoint):
    image, text = load_features(cache)
    dim = TINY_CONFIG["embed_dim"]
    assert image.shape == text.shape == (PAIRS, dim) and image.dtype == text.dtype == torch.float16
    for features_ in (image, text):
        assert torch.allclose(features_.float().norm(dim=1), torch.ones(PAIRS), atol=2e-3)
    index = read_index(cache)
    assert (index.num_pairs, index.embed_dim, index.batch_size, index.num_shards) == (PAIRS, dim, BATCH, 3)
    assert index.manifest_sha256 == synthetic.sha256() and index.clip_sha256 == sha256_file(checkpoint)
    # Row 37 is pair 37 (encoded alone here: batching may move the last fp16 bit).
    with Image.open(synthetic.paths[37]) as picture:
        alone = clip_preprocess(TINY_CONFIG["image_resolution"])(picture)[None]
    image_37, text_37 = encode_pairs(model, alone, [synthetic.captions[37]])
    assert torch.allclose(image[37].float(), image_37[0].float(), atol=2e-3)
    assert torch.allclose(text[37].float(), text_37[0].float(), atol=2e-3)
    assert not torch.allclose(text[36].float(), text_37[0].float(), atol=2e-3)


def test_cut_off_cache_resumes_to_the_uninterrupted_result(tmp_path, cache, synthetic, model, checkpoint, monkeypatch):
    calls = []
    cut_at = [4]  # the second batch of the second shard; none after the cut

    class Killed(Exception):
        pass

    def encode_until_cut(*args, **kwargs):
        calls.append(1)
        if len(calls) in cut_at:
            raise Killed
        return encode_pairs(*args, **kwargs)

    folder = tmp_path / "cut"
    monkeypatch.setattr(features, "encode_pairs", encode_until_cut)
    with pytest.raises(Killed):
        encode(folder, synthetic, model, checkpoint)
    assert sorted(os.listdir(folder / "features")) == ["shard_00000.pt"]  # whole shards only, no temp files
    (folder / "features" / ".shard_00001.pt.x1y2.tmp").write_bytes(b"half a shard: a SIGKILL leaves it")
    with pytest.raises(FeatureCacheError, match=r"incomplete: 2 of 3 shards missing \(first: shard_00001.pt\)"):
        load_features(folder)

    calls.clear()
    cut_at.clear()
    encode(folder, synthetic, model, checkpoint)
    assert len(calls) == 4  # the two missing shards' batches, nothing more
    assert sorted(os.listdir(folder / "features")) == [f"shard_0000{i}.pt" for i in range(3)]
    for resumed, uninterrupted in zip(load_features(folder), load_features(cache)):
        assert torch.equal(resumed, uninterrupted)
    calls.clear()
    encode(folder, synthetic, model, checkpoint)
    assert calls == []  # complete: nothing to encode


@pytest.mark.parametrize(
    "override, expected",
    [
        (dict(manifest_sha256="0" * 64), "made with another manifest (SHA-256 of its pairs): "),
        (dict(clip_sha256="f" * 64), "made with another CLIP checkpoint (SHA-256): "),
        (dict(batch_size=8), "made with another batch size: 16 there, 8 now"),
    ],
    ids=["manifest", "clip", "batch-size"],
)
def test_cache_of_other_data_is_refused(tmp_path, cache, synthetic, model, checkpoint, override, expected):
    folder = tmp_path / "copy"
    shutil.copytree(cache, folder)
    with pytest.raises(FeatureCacheError, match="use another output folder") as error:
        encode(folder, synthetic, model, checkpoint, **override)
    assert expected in str(error.value)


def test_unreadable_image_is_named(tmp_path, model):
    write_image(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(FeatureCacheError, match=rf"cannot read image {tmp_path}/bad.png: UnidentifiedImageError"):
        cache_features(
            tmp_path / "cache",
            [str(tmp_path / "good.png"), str(tmp_path / "bad.png")],
            ["a", "b"],
            model,
            manifest_sha256="m",
            clip_sha256="c",
            progress=False,
        )


def test_folder_without_index_is_not_a_cache(tmp_path):
    with pytest.raises(FeatureCacheError, match=r"index.json not found: not a feature cache"):
        load_features(tmp_path)


# ----------------------------------------------------------------------------- hierarchy


def purity(groups: list[list[object]]) -> float:
    """Share of items that carry their group's most common label."""
    return sum(Counter(group).most_common(1)[0][1] for group in groups) / sum(map(len, groups))


def test_chc_is_deterministic_for_a_seed_and_finds_the_synthetic_topics_and_styles(tmp_path, cache, synthetic):
    image, text = load_features(cache)
    config = HierarchyConfig(topics=6, modes=2, min_leaf=2, held_out=0, seed=0, features_sha256=index_sha256(cache))
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)  # the clustering pins faiss to one thread whatever the caller set
    build_hierarchy(image, text, config).save(tmp_path / "a.json")
    assert faiss.omp_get_max_threads() == 2  # and restores the caller's setting
    faiss.omp_set_num_threads(threads)
    build_hierarchy(image, text, config).save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()

    # Random tiny CLIP: not always exact (its text features are only loosely grouped by topic),
    # but far from chance (about a third for 6 topics of 16 pairs).
    hierarchy = Hierarchy.load(tmp_path / "a.json", features_sha256=index_sha256(cache))
    labels = [synthetic_label(path) for path in synthetic.paths]
    by_topic: dict[int, list[int]] = {}
    for leaf in hierarchy.leaves:
        by_topic.setdefault(leaf.topic, []).extend(leaf.members.tolist())
    assert purity([[labels[i][0] for i in members] for members in by_topic.values()]) >= 0.8
    assert purity([[labels[i] for i in leaf.members] for leaf in hierarchy.leaves]) >= 0.8


def clustered_features(sizes: dict[tuple[int, int], int], dim: int = 32, seed: int = 0):
    """Features of well-separated (topic, mode) blobs: text by topic, image by (topic, mode).

    Returns ``(image [N, dim], text [N, dim], truth [N] of (topic, mode))``.
    """
    rng = np.random.default_rng(seed)
    topics = sorted({topic for topic, _ in sizes})
    text_centres = {t: rng.normal(size=dim) for t in topics}
    image_centres = {key: rng.normal(size=dim) for key in sizes}
    truth = [key for key, n in sizes.items() for _ in range(n)]
    order = rng.permutation(len(truth))  # interleave, so member indices are not blocks
    truth = [truth[i] for i in order]
    text = np.stack([text_centres[t] + 0.05 * rng.normal(size=dim) for t, _ in truth])
    image = np.stack([image_centres[key] + 0.05 * rng.normal(size=dim) for key in truth])
    return torch.from_numpy(image).half(), torch.from_numpy(text).half(), truth


def test_small_leaves_are_dropped_with_their_pairs():
    sizes = {(0, 0): 12, (0, 1): 12, (1, 0): 12, (1, 1): 3, (2, 0): 4, (2, 1): 4}
    image, text, truth = clustered_features(sizes)
    hierarchy = build_hierarchy(image, text, HierarchyConfig(topics=3, modes=2, min_leaf=5, held_out=0))
    kept = sorted(Counter(truth[i] for i in leaf.members).most_common(1)[0][0] for leaf in hierarchy.leaves)
    assert kept == [(0, 0), (0, 1), (1, 0)]  # (1, 1) is too small; topic 2 has 8 pairs but leaves of 4
    assert all(len(leaf.members) == 12 and len({truth[i] for i in leaf.members}) == 1 for leaf in hierarchy.leaves)
    with pytest.raises(HierarchyError, match="no leaf has min_leaf = 13 pairs"):
        build_hierarchy(image, text, HierarchyConfig(topics=3, modes=2, min_leaf=13))


def ten_topics(held_out: float = 0.2, seed: int = 0) -> Hierarchy:
    sizes = {(topic, mode): 10 + topic for topic in range(10) for mode in range(3)}
    image, text, _ = clustered_features(sizes)
    return build_hierarchy(image, text, HierarchyConfig(topics=10, modes=3, min_leaf=8, held_out=held_out, seed=seed))


def test_held_out_topics_are_whole_disjoint_and_seeded(tmp_path):
    hierarchy = ten_topics(held_out=0.2)
    train, val = hierarchy.split("train"), hierarchy.split("val")
    assert len(hierarchy.leaves) == 30 and len(val) == 6  # 2 whole topics of 3 leaves = 20%
    train_topics = {hierarchy.leaves[i].topic for i in train}
    val_topics = {hierarchy.leaves[i].topic for i in val}
    assert len(val_topics) == 2 and not train_topics & val_topics
    members = [set(hierarchy.leaves[i].members.tolist()) for i in train + val]
    assert sum(map(len, members)) == len(set().union(*members))  # no pair in two leaves
    assert {hierarchy.leaves[i].topic for i in ten_topics(held_out=0.2, seed=1).split("val")} != val_topics
    assert ten_topics(held_out=0).split("val") == []
    with pytest.raises(HierarchyError, match="held_out must be a share in"):
        HierarchyConfig(held_out=1.0)


def test_hierarchy_round_trips_and_refuses_invalid_files(tmp_path):
    hierarchy = ten_topics()
    path = tmp_path / "h.json"
    hierarchy.save(path)
    loaded = Hierarchy.load(path)
    assert loaded.config == hierarchy.config and loaded.num_pairs == hierarchy.num_pairs
    assert [(leaf.topic, leaf.mode, leaf.split, leaf.members.tolist()) for leaf in loaded.leaves] == [
        (leaf.topic, leaf.mode, leaf.split, leaf.members.tolist()) for leaf in hierarchy.leaves
    ]
    data = json.loads(path.read_text())

    def broken(edit) -> str:
        copy = json.loads(json.dumps(data))
        edit(copy)
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(copy))
        with pytest.raises(HierarchyError) as error:
            Hierarchy.load(bad)
        assert str(error.value).startswith(str(bad))
        return str(error.value)

    assert "leaf 2: 5 members, fewer than min_leaf 8" in broken(
        lambda d: d["leaves"][2].update(members=d["leaves"][2]["members"][:5])
    )
    assert "leaf 0: members must be ascending, distinct pair indices in [0, " in broken(
        lambda d: d["leaves"][0]["members"].append(10**6)
    )
    assert "leaf 1 shares pairs with an earlier leaf" in broken(
        lambda d: d["leaves"][1].update(members=d["leaves"][0]["members"])
    )
    assert "topic must be an integer in [0, 10)" in broken(lambda d: d["leaves"][0].update(topic=10))
    assert "has leaves in both splits" in broken(lambda d: d["leaves"][hierarchy.split("val")[0]].update(split="train"))
    assert "min_leaf must be an integer >= 1" in broken(lambda d: d["config"].update(min_leaf=0))
    assert "is not a gram-hierarchy file" in broken(lambda d: d.update(version=2))
    with pytest.raises(HierarchyError, match="clustered from another feature cache"):
        Hierarchy.load(path, features_sha256="abc")


# ----------------------------------------------------------------------------- tasks


def test_task_k_is_a_pure_function_of_seed_and_k():
    hierarchy = ten_topics()
    sampler = TaskSampler(hierarchy, support=4, query=5, far_share=0.3, seed=7)
    forward = [sampler.task(k) for k in range(20)]
    resumed = TaskSampler(hierarchy, support=4, query=5, far_share=0.3, seed=7)
    for k in (13, 2, 19):  # a meta-training resumed at step k, in any order
        support, query = resumed.task(k)
        assert np.array_equal(support, forward[k][0]) and np.array_equal(query, forward[k][1])
    other = TaskSampler(hierarchy, support=4, query=5, far_share=0.3, seed=8)
    assert any(not np.array_equal(other.task(k)[0], forward[k][0]) for k in range(20))
    for support, query in forward:
        assert support.dtype == query.dtype == np.int64 and len(support) == 4 and len(query) == 5
        assert len(set(support.tolist())) == 4 and not set(support.tolist()) & set(query.tolist())


def test_near_tasks_use_sibling_leaves_and_far_tasks_other_topics():
    hierarchy = ten_topics()
    leaves = hierarchy.leaves

    def kinds(far_share: float, split: str = "train") -> Counter:
        sampler = TaskSampler(hierarchy, support=4, query=4, far_share=far_share, seed=0, split=split)
        counts: Counter = Counter()
        for k in range(300):
            a, b = sampler.task_leaves(k)
            support, query = sampler.task(k)
            assert a != b and set(support.tolist()) <= set(leaves[a].members.tolist())
            assert set(query.tolist()) <= set(leaves[b].members.tolist())
            assert leaves[a].split == leaves[b].split == split
            counts["near" if leaves[a].topic == leaves[b].topic else "far"] += 1
        return counts

    assert kinds(0.0) == {"near": 300}
    assert kinds(1.0) == {"far": 300}
    assert 60 <= kinds(0.3)["far"] <= 120  # 90 expected
    assert kinds(0.3, split="val")["far"] > 0


def test_task_sampler_refuses_tasks_it_cannot_draw():
    hierarchy = ten_topics(held_out=0)  # the smallest leaf has 10 pairs
    with pytest.raises(
        HierarchyError, match="leaf has 10 pairs, fewer than support 11 / query 4; cluster with --min-leaf 30"
    ):
        TaskSampler(hierarchy, support=11, query=4)
    one_topic = Hierarchy(hierarchy.config, hierarchy.num_pairs, [leaf for leaf in hierarchy.leaves if leaf.topic == 0])
    with pytest.raises(HierarchyError, match="far tasks \\(far_share > 0\\) need two 'train' topics, found 1"):
        TaskSampler(one_topic, support=4, query=4, far_share=0.3)
    TaskSampler(one_topic, support=4, query=4, far_share=0.0)
    no_siblings = Hierarchy(
        hierarchy.config, hierarchy.num_pairs, [Leaf(0, 0, np.arange(10)), Leaf(1, 0, np.arange(10, 20))]
    )
    with pytest.raises(HierarchyError, match="no 'train' topic has two leaves"):
        TaskSampler(no_siblings, support=4, query=4, far_share=0.5)
    with pytest.raises(HierarchyError, match="far_share must be a probability"):
        TaskSampler(hierarchy, far_share=1.5, support=4, query=4)


# ----------------------------------------------------------------------------- command lines


def test_scripts_make_cache_and_cluster_the_synthetic_demo(tmp_path, checkpoint, capsys):
    assert load_script("make_synthetic").main([str(tmp_path / "syn"), "--pairs", "48"]) == 0
    manifest = capsys.readouterr().out.strip()
    assert manifest == str(tmp_path / "syn" / "manifest.tsv")
    cache_args = [
        manifest,
        "--out",
        str(tmp_path / "features"),
        "--clip-checkpoint",
        checkpoint,
        "--device",
        "cpu",
        "--workers",
        "0",
    ]
    assert load_script("cache_features").main(cache_args) == 0
    cluster_args = [
        str(tmp_path / "features"),
        "--out",
        str(tmp_path / "h.json"),
        "--topics",
        "6",
        "--modes",
        "2",
        "--min-leaf",
        "2",
    ]
    assert load_script("cluster").main([*cluster_args, "--held-out", "0.2"]) == 0
    hierarchy = Hierarchy.load(tmp_path / "h.json", features_sha256=index_sha256(tmp_path / "features"))
    assert hierarchy.num_pairs == 48 and hierarchy.split("val")
    support, query = TaskSampler(hierarchy, support=1, query=1, far_share=0.5).task(0)
    assert len(support) == len(query) == 1


@pytest.mark.parametrize(
    "script, args, expected",
    [
        (
            "cache_features",
            ["{tmp}/missing.tsv", "--out", "{tmp}/f", "--clip-checkpoint", "{ckpt}"],
            "error: image-caption manifest not found: ",
        ),
        (
            "cache_features",
            ["{tmp}/m.tsv", "--out", "{tmp}/f", "--clip-checkpoint", "{tmp}/none.pt"],
            "error: CLIP checkpoint not found: ",
        ),
        ("cluster", ["{tmp}", "--out", "{tmp}/h.json"], "error: {tmp}/index.json not found: not a feature cache"),
    ],
    ids=["no-manifest", "no-checkpoint", "not-a-cache"],
)
def test_scripts_give_one_error_line_and_status_2(tmp_path, checkpoint, capsys, script, args, expected):
    write_image(tmp_path / "a.png")
    (tmp_path / "m.tsv").write_text("a.png\tcaption\n")
    argv = [arg.format(tmp=tmp_path, ckpt=checkpoint) for arg in args]
    assert load_script(script).main([*argv, "--device", "cpu"] if script == "cache_features" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(expected.format(tmp=tmp_path)) and "\n" not in err


def test_cluster_script_rejects_a_bad_held_out_share(tmp_path, cache, capsys):
    assert load_script("cluster").main([str(cache), "--out", str(tmp_path / "h.json"), "--held-out", "1.5"]) == 2
    assert capsys.readouterr().err.strip() == "error: hierarchy config: held_out must be a share in [0, 1), got 1.5"
