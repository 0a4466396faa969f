"""Smoke tests of scripts/benchmark.py on a tiny random CLIP."""

from __future__ import annotations

import json

import pytest
import torch

from scripts import benchmark

TINY_RUN = ["--tiny", "--threads", "1", "--classes", "3", "--repeats", "1", "--eval-images", "6", "--eval-batch", "4",
            "--chunk-size", "2", "--recompute-above", "2"]


def test_main_writes_every_figure_and_fast_equals_naive(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert benchmark.main([*TINY_RUN, "--in-process", "--json", str(path)]) == 0
    result = json.loads(path.read_text())

    rows = {(row["stage"], row["way"]): row for row in result["rows"]}
    expected = {(stage, way) for stage, ways in benchmark.WAYS.items() for way in ways}
    assert set(rows) == expected
    for row in rows.values():
        assert row["status"] == "ok" and row["classes"] == 3 and row["blocks"] == 2
        assert row["seconds"] == row["best_seconds"] > 0 and len(row["all_seconds"]) == 1
        assert row["chunk_size"] == (0 if row["way"] in ("naive", "supernet-77") else 2)
        assert row["recompute_chunks"] == (row["way"] != "naive" and row["stage"] != "eval")
        assert isinstance(row["peak_mib"], float)
    # Truncated text on the fast rows, CLIP's full context on the naive ones.
    assert rows["search", "supernet"]["text_length"] < rows["search", "supernet-77"]["text_length"] == 77
    assert rows["eval", "naive"]["text_length"] == 77
    assert rows["eval", "once"]["text_seconds"] >= 0

    compared = {(c["stage"], c["way"]): c for c in result["comparisons"]}
    assert set(compared) == {("search", "supernet"), ("search", "supernet-77"), ("train", "searched"), ("eval", "once")}
    for comparison in compared.values():
        assert comparison["logits_rel"] < 1e-5
    for key in [("search", "supernet"), ("search", "supernet-77"), ("train", "searched")]:
        assert compared[key]["grads_rel"] < 1e-4

    assert result["complete"] and result["time_statistic"] == "median"
    decided = {t["target"] for t in result["targets"]}
    assert "supernet / fixed-t time <= 1.4" in decided
    assert all(isinstance(t["holds"], bool) for t in result["targets"])
    (bound,) = result["evaluation_bounds"]
    assert bound["classes"] == 3 and 0 < bound["text_share"] < 1
    assert bound["bound"] == pytest.approx(1 / (1 - bound["text_share"]))
    printed = capsys.readouterr().out
    assert "supernet-77" in printed and "holds" in printed and "no text saving can make it" in printed


def test_evaluation_bound_is_the_naive_time_over_its_image_time():
    rows = [
        dict(stage="eval", way="once", classes=100, blocks=12, status="ok", text_share=0.01),
        dict(stage="eval", way="naive", classes=100, blocks=12, status="ok", text_share=0.2),
        dict(stage="eval", way="naive", classes=1000, blocks=12, status="killed"),
    ]
    (bound,) = benchmark.evaluation_bounds(rows)
    assert (bound["classes"], bound["blocks"]) == (100, 12) and bound["bound"] == pytest.approx(1.25)


def test_isolated_row_reports_its_peak_and_is_killed_over_the_limit(tmp_path):
    settings = benchmark.Settings(
        tiny=True, batch=2, max_length=2, device="cpu", threads=1, seed=0, eval_images=4, eval_batch=4
    )
    row = benchmark.Measurement("search", "supernet", classes=3, blocks=2, repeats=1)
    figures, outputs = benchmark.measure_isolated(settings, row, str(tmp_path), memory_limit_gib=8, name="a")
    assert figures["status"] == "ok" and figures["peak_mib"] >= 0
    assert torch.load(outputs)["logits"].shape == (2, 3)

    figures, outputs = benchmark.measure_isolated(settings, row, str(tmp_path), memory_limit_gib=1e-3, name="b")
    assert figures["status"] == "killed" and outputs is None


def test_plan_reduces_or_skips_the_naive_way_for_many_classes():
    args = benchmark.build_parser().parse_args(["--classes", "10", "100", "1000", "--reduced-blocks", "4"])
    assert benchmark.resolve_arguments(args) == 12
    rows = benchmark.plan(args, depth=12)
    naive = {(m.stage, m.classes): m.blocks for m in rows if m.way == "naive"}
    assert naive[("search", 10)] == naive[("train", 10)] == 12
    assert naive[("search", 100)] == naive[("train", 100)] == 4
    assert ("search", 1000) not in naive and ("train", 1000) not in naive
    assert naive[("eval", 1000)] == args.eval_blocks == 12
    # Every naive row has the fast row it is compared with at the same depth.
    for stage, fast in [("search", "supernet"), ("search", "supernet-77"), ("train", "searched")]:
        for classes in (10, 100):
            assert any((m.stage, m.way, m.classes, m.blocks) == (stage, fast, classes, naive[(stage, classes)])
                       for m in rows)
    # Above --large-above only the fast steps run, once; chunks are recomputed as the trainers do.
    large = [(m.stage, m.way, m.repeats, m.recompute_chunks) for m in rows if m.classes == 1000]
    assert large == [("search", "supernet", 1, True), ("train", "searched", 1, True), ("eval", "once", 1, False),
                     ("eval", "naive", 1, False)]
    assert not any(m.recompute_chunks for m in rows if m.classes <= benchmark.RECOMPUTE_ABOVE_CLASSES)
    assert all(m.chunk_size == (0 if m.way in ("naive", "supernet-77") else benchmark.AUTO_CLASS_CHUNK) for m in rows)


def test_plan_measures_only_the_chosen_stages():
    args = benchmark.build_parser().parse_args(["--tiny", "--classes", "3", "--stages", "eval"])
    rows = benchmark.plan(args, depth=benchmark.resolve_arguments(args))
    assert [(m.stage, m.way) for m in rows] == [("eval", "once"), ("eval", "naive")]


def test_class_names_are_distinct_and_vary_in_length():
    names = benchmark.class_names(1000)
    assert len(set(names)) == 1000
    assert min(map(len, names)) < 15 and max(map(len, names)) > 40
    with pytest.raises(ValueError, match="at most 1000 classes"):
        benchmark.class_names(1001)


def test_mean_text_length_counts_each_sorted_chunk_at_its_longest_prompt():
    eot = 49407
    tokens = torch.zeros(4, 8, dtype=torch.long)
    for row, position in enumerate([7, 1, 5, 2]):  # prompts of 8, 2, 6 and 3 positions
        tokens[row, position] = eot
    assert benchmark.mean_text_length(tokens, chunk_size=0) == 8
    assert benchmark.mean_text_length(tokens, chunk_size=2) == (2 * 3 + 2 * 8) / 4


def test_differences_are_relative_to_the_naive_magnitude():
    naive = {"logits": torch.tensor([[2.0, -4.0]]), "grads": {"p": torch.tensor([10.0])}}
    fast = {"logits": torch.tensor([[2.0, -3.0]]), "grads": {"p": torch.tensor([9.0])}}
    assert benchmark.differences(fast, naive) == {"logits_abs": 1.0, "logits_rel": 0.25, "grads_rel": 0.1}


def test_rounds_pool_the_step_times_and_keep_the_highest_peak():
    first = {"status": "ok", "all_seconds": [1.0, 5.0], "seconds": 3.0, "best_seconds": 1.0, "peak_mib": 10.0}
    second = dict(first, all_seconds=[2.0], seconds=2.0, best_seconds=2.0, peak_mib=30.0)
    merged = benchmark.merge_rounds([first, second])
    assert (merged["seconds"], merged["best_seconds"], merged["peak_mib"], merged["rounds"]) == (2.0, 1.0, 30.0, 2)
    killed = {"status": "killed", "note": "> 1 GiB, killed"}
    assert benchmark.merge_rounds([first, killed]) == killed
