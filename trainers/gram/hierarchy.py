"""Cross-modal hierarchical clustering (CHC) of image-caption pairs, and meta-task sampling.

GRAM draws its meta-training domains from a hierarchy of the pre-training pairs. Ours (GRAM.md
§1.4) has two levels:

1. **topics**: spherical k-means of the pairs' *text* features into K1 clusters (semantics);
2. **visual modes**: inside each topic, spherical k-means of the *image* features into K2
   clusters (appearance). A (topic, mode) cluster is a **leaf**, a meta-training domain; leaves
   with fewer than ``min_leaf`` pairs are dropped, and their pairs are not used.

A share of the leaves is held out for meta-validation. Whole topics are held out, never single
leaves: a held-out task then needs two sibling leaves that are both held out, and no held-out
topic's captions are seen in meta-training.

:class:`TaskSampler` turns the hierarchy into episodes: task ``k`` is a pure function of
``(seed, k)``: a topic, two distinct sibling leaves ``a != b`` (or, with probability
``far_share``, ``b`` under another topic), ``support`` pairs of ``a`` and ``query`` pairs of
``b``. A meta-training resumed at step ``k`` so draws what an uninterrupted one draws.

Clustering runs faiss on one thread, where its result depends only on the seed (for one faiss
build on one kind of CPU); the caller's faiss thread count is restored afterwards.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import faiss
import numpy as np
import torch

from trainers.dpl_core.run_folder import atomic_write

logger = logging.getLogger(__name__)

FORMAT = "gram-hierarchy"
FORMAT_VERSION = 1
SPLITS = ("train", "val")


class HierarchyError(ValueError):
    """A hierarchy cannot be built from these settings, or a hierarchy file is invalid."""


@dataclass(frozen=True)
class HierarchyConfig:
    """What makes a hierarchy; saved with it.

    Attributes:
        topics: K1, text clusters (topics).
        modes: K2, image clusters (visual modes) per topic.
        min_leaf: leaves with fewer pairs are dropped; 2 * (support + query) lets every leaf
            give a support set and a query set twice over (128 for GRAM's 32 + 32).
        held_out: share of the leaves held out for meta-validation, as whole topics.
        seed: seeds both k-means levels and the held-out draw.
        features_sha256: SHA-256 of the feature cache's ``index.json`` the clustering read.
        iterations: k-means iterations per run.
        redo: k-means runs per clustering, from different k-means++ seedings; the run of the
            best objective is kept.
    """

    topics: int = 200
    modes: int = 4
    min_leaf: int = 128
    held_out: float = 0.05
    seed: int = 0
    features_sha256: str = ""
    iterations: int = 20
    redo: int = 3

    def __post_init__(self) -> None:
        for name in ("topics", "modes", "min_leaf", "iterations", "redo"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise HierarchyError(f"hierarchy config: {name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise HierarchyError(f"hierarchy config: seed must be an integer >= 0, got {self.seed!r}")
        if not isinstance(self.held_out, (int, float)) or isinstance(self.held_out, bool) or not 0 <= self.held_out < 1:
            raise HierarchyError(f"hierarchy config: held_out must be a share in [0, 1), got {self.held_out!r}")
        if not isinstance(self.features_sha256, str):
            raise HierarchyError(f"hierarchy config: features_sha256 must be a string, got {self.features_sha256!r}")


@dataclass(eq=False)
class Leaf:
    """One meta-training domain: the pairs of one visual mode of one topic.

    Attributes:
        topic: the topic (text cluster) id, in [0, K1).
        mode: the visual mode (image cluster) id within the topic, in [0, K2).
        members: [n] int64, the pairs' indices (rows of the feature cache, lines of the
            manifest's pairs), ascending.
        split: ``"train"`` or ``"val"`` (held out for meta-validation).
    """

    topic: int
    mode: int
    members: np.ndarray
    split: str = "train"


@dataclass(eq=False)
class Hierarchy:
    """The leaves of a CHC clustering, with the config that made it.

    Attributes:
        config: the settings and the feature cache it was built from.
        num_pairs: N, pairs in the feature cache (member indices are below it).
        leaves: the kept leaves, ordered by (topic, mode).
    """

    config: HierarchyConfig
    num_pairs: int
    leaves: list[Leaf]

    def split(self, name: str) -> list[int]:
        """Indices into :attr:`leaves` of the leaves in split ``name`` (``"train"``/``"val"``)."""
        if name not in SPLITS:
            raise HierarchyError(f"split must be one of {SPLITS}, got {name!r}")
        return [i for i, leaf in enumerate(self.leaves) if leaf.split == name]

    def save(self, path: str | os.PathLike) -> None:
        """Write the hierarchy as one JSON file, atomically: config and counts first, then one
        leaf per line (``{"topic", "mode", "split", "members"}``)."""
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "config": asdict(self.config),
            "num_pairs": self.num_pairs,
            "kept_pairs": int(sum(len(leaf.members) for leaf in self.leaves)),
        }
        lines = [
            json.dumps({"topic": leaf.topic, "mode": leaf.mode, "split": leaf.split, "members": leaf.members.tolist()})
            for leaf in self.leaves
        ]
        body = json.dumps(header, indent=2, sort_keys=True)[:-2]  # reopen the object for "leaves"
        text = body + ',\n  "leaves": [\n    ' + ",\n    ".join(lines) + "\n  ]\n}\n"
        atomic_write(path, lambda handle: handle.write(text))

    @classmethod
    def load(cls, path: str | os.PathLike, features_sha256: str | None = None) -> Hierarchy:
        """Read and validate a hierarchy file written by :meth:`save`.

        Args:
            path: the JSON file.
            features_sha256: when given, the feature cache's index hash the hierarchy must have
                been built from (:func:`trainers.gram.features.index_sha256`).

        Raises:
            HierarchyError: unreadable file, wrong format, a leaf that breaks the config (ids out
                of range, too few or unsorted members, a pair in two leaves, a topic split
                between train and val), or another feature cache.
        """
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError as error:
            raise HierarchyError(f"hierarchy file not found: {path} (make one with scripts/gram/cluster.py)") from error
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise HierarchyError(f"{path} is not valid JSON: {error}") from error
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
            raise HierarchyError(f"{path} is not a {FORMAT} file of version {FORMAT_VERSION}")
        config_data = data.get("config")
        if not isinstance(config_data, dict) or set(config_data) != set(HierarchyConfig.__dataclass_fields__):
            raise HierarchyError(
                f"{path}: config must have exactly the keys {sorted(HierarchyConfig.__dataclass_fields__)}"
            )
        try:
            config = HierarchyConfig(**config_data)
        except HierarchyError as error:
            raise HierarchyError(f"{path}: {error}") from error
        if features_sha256 is not None and config.features_sha256 != features_sha256:
            raise HierarchyError(
                f"{path} was clustered from another feature cache (index SHA-256 {config.features_sha256[:12]}..., "
                f"this cache's is {features_sha256[:12]}...); cluster this cache with scripts/gram/cluster.py"
            )
        num_pairs = data.get("num_pairs")
        if not isinstance(num_pairs, int) or num_pairs < 0:
            raise HierarchyError(f"{path}: num_pairs must be an integer >= 0, got {num_pairs!r}")
        if not isinstance(data.get("leaves"), list):
            raise HierarchyError(f"{path}: 'leaves' must be a list")
        leaves = [_parse_leaf(path, number, item, config, num_pairs) for number, item in enumerate(data["leaves"])]
        _check_leaves(path, leaves, num_pairs)
        return cls(config=config, num_pairs=num_pairs, leaves=leaves)


def _parse_leaf(path: str, number: int, item: Any, config: HierarchyConfig, num_pairs: int) -> Leaf:
    where = f"{path}: leaf {number}"
    if not isinstance(item, dict) or set(item) != {"topic", "mode", "split", "members"}:
        raise HierarchyError(f"{where}: expected an object with keys topic, mode, split, members")
    topic, mode, split, members = item["topic"], item["mode"], item["split"], item["members"]
    if not isinstance(topic, int) or not 0 <= topic < config.topics:
        raise HierarchyError(f"{where}: topic must be an integer in [0, {config.topics}), got {topic!r}")
    if not isinstance(mode, int) or not 0 <= mode < config.modes:
        raise HierarchyError(f"{where}: mode must be an integer in [0, {config.modes}), got {mode!r}")
    if split not in SPLITS:
        raise HierarchyError(f"{where}: split must be one of {SPLITS}, got {split!r}")
    if not isinstance(members, list) or not all(isinstance(m, int) and not isinstance(m, bool) for m in members):
        raise HierarchyError(f"{where}: members must be a list of pair indices")
    array = np.asarray(members, dtype=np.int64)
    if len(array) < config.min_leaf:
        raise HierarchyError(f"{where}: {len(array)} members, fewer than min_leaf {config.min_leaf}")
    if array.min() < 0 or array.max() >= num_pairs or np.any(np.diff(array) <= 0):
        raise HierarchyError(f"{where}: members must be ascending, distinct pair indices in [0, {num_pairs})")
    return Leaf(topic=topic, mode=mode, members=array, split=split)


def _check_leaves(path: str, leaves: list[Leaf], num_pairs: int) -> None:
    """Leaves are distinct (topic, mode)s, share no pair, and each topic is in one split."""
    seen: set[tuple[int, int]] = set()
    topic_split: dict[int, str] = {}
    owner = np.zeros(num_pairs, dtype=bool)
    for number, leaf in enumerate(leaves):
        if (leaf.topic, leaf.mode) in seen:
            raise HierarchyError(f"{path}: leaf {number} repeats topic {leaf.topic} mode {leaf.mode}")
        seen.add((leaf.topic, leaf.mode))
        if topic_split.setdefault(leaf.topic, leaf.split) != leaf.split:
            raise HierarchyError(
                f"{path}: leaf {number}: topic {leaf.topic} has leaves in both splits (topics are held out whole)"
            )
        if owner[leaf.members].any():
            raise HierarchyError(f"{path}: leaf {number} shares pairs with an earlier leaf")
        owner[leaf.members] = True


@contextlib.contextmanager
def _one_faiss_thread() -> Iterator[None]:
    # faiss splits k-means sums and searches over OpenMP threads; on one thread the result is a
    # function of the seed alone. Restored afterwards: other code may want faiss parallel.
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _derived_seed(*words: int) -> int:
    """A 31-bit seed from the given integers (independent streams per level and topic)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1)[0] & 0x7FFFFFFF)


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding of unit rows ``x`` [n, D]: each next centre drawn with probability
    proportional to the squared distance (2 - 2 cos) to the nearest centre so far.

    Returns:
        [k, D] float32 initial centroids, rows of ``x``.
    """
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    centres[0] = x[rng.integers(len(x))]
    distance = np.maximum(2.0 - 2.0 * (x @ centres[0]).astype(np.float64), 0.0)  # [n]
    for j in range(1, k):
        total = distance.sum()
        # All rows already coincide with a centre (duplicates): any row is as good as another.
        pick = rng.choice(len(x), p=distance / total) if total > 0 else rng.integers(len(x))
        centres[j] = x[pick]
        distance = np.minimum(distance, np.maximum(2.0 - 2.0 * (x @ centres[j]).astype(np.float64), 0.0))
    return centres


def spherical_kmeans(
    x: np.ndarray, k: int, seed: int, iterations: int = 20, redo: int = 3, sample_per_centroid: int = 256
) -> np.ndarray:
    """Assign unit rows of ``x`` [n, D] float32 to ``k`` spherical k-means clusters.

    Trains on at most ``sample_per_centroid * k`` rows drawn by the seed (as faiss would), from
    ``redo`` k-means++ seedings, and keeps the run of the highest objective (summed cosine to
    the centroids). faiss's own start is ``k`` uniform rows: with unequal clusters it often puts
    two centres in one and none in another, and more runs rarely mend it.

    Returns:
        [n] int64 cluster ids in [0, k), by largest cosine to the kept run's centroids.
    """
    rng = np.random.default_rng(seed)
    sample = x
    if len(x) > sample_per_centroid * k:
        sample = x[np.sort(rng.choice(len(x), sample_per_centroid * k, replace=False))]
    best, best_objective = None, -np.inf
    for _ in range(redo):
        # min_points_per_centroid=1: topics of a few hundred pairs are normal here, and faiss
        # would print a warning for every clustering below 39 points per centroid.
        kmeans = faiss.Kmeans(
            x.shape[1],
            k,
            niter=iterations,
            spherical=True,
            seed=int(rng.integers(2**31)),
            min_points_per_centroid=1,
            max_points_per_centroid=sample_per_centroid,
        )
        objective = kmeans.train(sample, init_centroids=_kmeans_plus_plus(sample, k, rng))
        if objective > best_objective:
            best, best_objective = kmeans, objective
    _, assignment = best.index.search(x, 1)  # [n, 1]; inner product of unit vectors = cosine
    return assignment[:, 0].astype(np.int64)


def _unit_rows(features: torch.Tensor, name: str) -> np.ndarray:
    """[n, D] float32 copy of ``features`` with rows scaled to unit norm."""
    # fp16 storage leaves norms off 1 by ~1e-3; spherical k-means compares cosines, so renormalise.
    x = features.to(torch.float32, copy=True).numpy()  # one copy, then scaled in place
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(norms)):
        raise HierarchyError(f"{name} features have zero or non-finite rows; recompute the feature cache")
    x /= norms
    return x


def build_hierarchy(
    image: torch.Tensor | np.ndarray, text: torch.Tensor | np.ndarray, config: HierarchyConfig
) -> Hierarchy:
    """Cluster pairs into topics (text) and visual modes (image), drop small leaves, hold out topics.

    Args:
        image: [N, D] image features of the pairs (fp16 or fp32, any norm).
        text: [N, D] text features, row i of the same pair as ``image``'s row i.
        config: K1, K2, min_leaf, held-out share, seed and the cache's index hash.

    Returns:
        The hierarchy; its leaves are ordered by (topic, mode), members ascending.

    Raises:
        HierarchyError: shapes differ, fewer pairs than topics, no leaf of ``min_leaf`` pairs,
            or a held-out share that leaves no training topic.
    """
    image, text = torch.as_tensor(image), torch.as_tensor(text)
    if image.ndim != 2 or image.shape != text.shape:
        raise HierarchyError(
            f"image and text features must be [N, D] matrices of one shape, got {list(image.shape)} and {list(text.shape)}"
        )
    num_pairs = text.shape[0]
    if num_pairs < config.topics:
        raise HierarchyError(f"cannot cluster {num_pairs} pairs into {config.topics} topics; lower --topics")
    leaves: list[Leaf] = []
    with _one_faiss_thread():
        topic_of = spherical_kmeans(
            _unit_rows(text, "text"), config.topics, _derived_seed(config.seed, 1), config.iterations, config.redo
        )
        for topic in range(config.topics):
            members = np.flatnonzero(topic_of == topic)  # ascending
            if len(members) < config.min_leaf:
                continue  # every leaf of it would be smaller still
            k = min(config.modes, len(members))
            seed = _derived_seed(config.seed, 2, topic)
            # One topic's image rows at a time in fp32: all of them at once would double the
            # memory of the fp16 cache for CC3M-sized data.
            mode_of = spherical_kmeans(
                _unit_rows(image[torch.from_numpy(members)], "image"), k, seed, config.iterations, config.redo
            )
            for mode in range(k):
                leaf = members[mode_of == mode]
                if len(leaf) >= config.min_leaf:
                    leaves.append(Leaf(topic=topic, mode=mode, members=leaf))
    if not leaves:
        raise HierarchyError(
            f"no leaf has min_leaf = {config.min_leaf} pairs ({num_pairs} pairs, {config.topics} topics x "
            f"{config.modes} modes); lower --min-leaf, --topics or --modes"
        )
    _hold_out_topics(leaves, config)
    kept = sum(len(leaf.members) for leaf in leaves)
    logger.info(
        "CHC: %d leaves (%d held out) under %d topics keep %d of %d pairs",
        len(leaves),
        sum(leaf.split == "val" for leaf in leaves),
        len({leaf.topic for leaf in leaves}),
        kept,
        num_pairs,
    )
    return Hierarchy(config=config, num_pairs=num_pairs, leaves=leaves)


def _hold_out_topics(leaves: list[Leaf], config: HierarchyConfig) -> None:
    """Mark whole topics ``"val"``, in a seeded order, until they hold ``held_out`` of the leaves."""
    if config.held_out == 0:
        return
    topics = sorted({leaf.topic for leaf in leaves})
    order = np.random.default_rng(_derived_seed(config.seed, 3)).permutation(topics)
    target = config.held_out * len(leaves)
    held: set[int] = set()
    count = 0
    for topic in order:
        if count >= target:
            break
        held.add(int(topic))
        count += sum(leaf.topic == topic for leaf in leaves)
    if len(held) == len(topics):
        raise HierarchyError(
            f"held_out {config.held_out} leaves no training topic ({len(topics)} topics with leaves); lower --held-out"
        )
    for leaf in leaves:
        if leaf.topic in held:
            leaf.split = "val"


class TaskSampler:
    """Meta-training tasks (episodes) from the leaves of one split of a :class:`Hierarchy`.

    Task ``k`` (:meth:`task`) is a pure function of ``(seed, k)``:

    1. with probability ``far_share`` the task is *far*: a topic uniformly among the split's
       topics, leaf ``a`` uniformly under it, and leaf ``b`` under another topic (uniform topic,
       then uniform leaf); otherwise *near*: a topic uniformly among those with at least two
       leaves in the split, and two distinct leaves ``a != b`` under it;
    2. support: ``support`` distinct pairs of ``a``; query: ``query`` distinct pairs of ``b``
       (disjoint from the support, since ``a != b``).

    Args:
        hierarchy: the clustering.
        support: pairs per support set.
        query: pairs per query set.
        far_share: probability that the query leaf is under another topic.
        seed: the stream's seed.
        split: ``"train"`` for meta-training, ``"val"`` for meta-validation.

    Raises:
        HierarchyError: sizes below 1, ``far_share`` outside [0, 1], a leaf of the split
            smaller than ``support`` or ``query``, or a split that cannot give the tasks asked
            for (near tasks need a topic with two leaves, far tasks two topics).
    """

    def __init__(
        self,
        hierarchy: Hierarchy,
        support: int = 32,
        query: int = 32,
        far_share: float = 0.3,
        seed: int = 0,
        split: str = "train",
    ) -> None:
        if support < 1 or query < 1:
            raise HierarchyError(f"TaskSampler: support and query must be >= 1, got {support} and {query}")
        if not 0 <= far_share <= 1:
            raise HierarchyError(f"TaskSampler: far_share must be a probability in [0, 1], got {far_share}")
        if seed < 0:
            raise HierarchyError(f"TaskSampler: seed must be >= 0, got {seed}")
        self.hierarchy = hierarchy
        self.support, self.query, self.far_share, self.seed, self.split = support, query, far_share, seed, split
        self.leaf_ids = hierarchy.split(split)
        by_topic: dict[int, list[int]] = {}
        for i in self.leaf_ids:
            by_topic.setdefault(hierarchy.leaves[i].topic, []).append(i)
        self._topics = [by_topic[topic] for topic in sorted(by_topic)]  # leaf ids per topic
        self._near = [leaves for leaves in self._topics if len(leaves) >= 2]
        smallest = min((len(hierarchy.leaves[i].members) for i in self.leaf_ids), default=0)
        if not self.leaf_ids:
            raise HierarchyError(f"TaskSampler: the hierarchy has no {split!r} leaves")
        if smallest < max(support, query):
            raise HierarchyError(
                f"TaskSampler: a {split!r} leaf has {smallest} pairs, fewer than support {support} / query {query}; "
                f"cluster with --min-leaf {2 * (support + query)}"
            )
        if far_share < 1 and not self._near:
            raise HierarchyError(
                f"TaskSampler: no {split!r} topic has two leaves, so near tasks (far_share < 1) cannot be drawn; "
                "cluster with more --modes or a lower --min-leaf"
            )
        if far_share > 0 and len(self._topics) < 2:
            raise HierarchyError(
                f"TaskSampler: far tasks (far_share > 0) need two {split!r} topics, found {len(self._topics)}"
            )

    def _draw(self, k: int) -> tuple[int, int, np.ndarray, np.ndarray]:
        if k < 0:
            raise HierarchyError(f"TaskSampler: task number must be >= 0, got {k}")
        rng = np.random.default_rng([self.seed, k])
        if rng.random() < self.far_share:
            topic = int(rng.integers(len(self._topics)))
            a = self._topics[topic][rng.integers(len(self._topics[topic]))]
            other = int(rng.integers(len(self._topics) - 1))
            other += other >= topic  # uniform over the other topics
            b = self._topics[other][rng.integers(len(self._topics[other]))]
        else:
            siblings = self._near[rng.integers(len(self._near))]
            a, b = (siblings[i] for i in rng.choice(len(siblings), size=2, replace=False))
        leaves = self.hierarchy.leaves
        support = rng.choice(leaves[a].members, size=self.support, replace=False)
        query = rng.choice(leaves[b].members, size=self.query, replace=False)
        return a, b, support, query

    def task(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Task number ``k`` (k >= 0).

        Returns:
            ``(support, query)``: [support] and [query] int64 pair indices (rows of the feature
            cache, pairs of the manifest), each without repeats, disjoint from each other.
        """
        _, _, support, query = self._draw(k)
        return support, query

    def task_leaves(self, k: int) -> tuple[int, int]:
        """``(a, b)``: indices into ``hierarchy.leaves`` of task ``k``'s support and query leaves."""
        a, b, _, _ = self._draw(k)
        return a, b
