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
        # The tiny CLIP of the demo: 3 text blocks, the image tower keeps its 2.
        assert row["status"] == "ok" and row["classes"] == 3 and row["blocks"] == 3
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
    claimed = {c["claim"]: c for c in result["claims"]}
    assert {"search_vs_naive", "supernet_vs_fixed_t", "training_vs_all_zero", "training_vs_naive",
            "evaluation_vs_naive", "search_peak_memory"} <= set(claimed)
    assert all(c["text"] and c["classes"] == 3 for c in claimed.values())
    assert claimed["search_vs_naive"]["figures"]["logits_rel"] == compared["search", "supernet"]["logits_rel"]
    evaluation = claimed["evaluation_vs_naive"]["figures"]
    assert 0 < evaluation["text_share"] < 1 and evaluation["text_bound"] > 1
    printed = capsys.readouterr().out
    assert "supernet-77" in printed and "no text saving can pass" in printed and "outputs equal up to" in printed
    assert "holds" not in printed and "issue" not in printed


def test_evaluation_bound_is_the_naive_time_over_its_image_time():
    # A naive pass of 10 s with 2 s of text leaves 8 s of images: 10 / 8 = 1.25. With 3 s of
    # text in 4 s: 4 / 1 = 4. A pass that is all text has no bound.
    rows = [
        dict(stage="eval", way="once", classes=100, blocks=12, status="ok", text_share=0.01),
        dict(stage="eval", way="naive", classes=100, blocks=12, status="ok", text_share=0.2),
        dict(stage="eval", way="naive", classes=300, blocks=4, status="ok", text_share=0.75),
        dict(stage="eval", way="naive", classes=500, blocks=12, status="ok", text_share=1.0),
        dict(stage="eval", way="naive", classes=1000, blocks=12, status="killed"),
    ]
    bounds = [(b["classes"], b["blocks"], b["bound"]) for b in benchmark.evaluation_bounds(rows)]
    assert bounds == [(100, 12, pytest.approx(1.25)), (300, 4, pytest.approx(4.0)), (500, 12, float("inf"))]


def _row(stage: str, way: str, classes: int, blocks: int, seconds: float, peak_mib: float, **extra) -> dict:
    return dict(stage=stage, way=way, classes=classes, blocks=blocks, status="ok", seconds=seconds, peak_mib=peak_mib,
                **extra)


def test_claims_state_each_comparison_with_hand_worked_figures():
    rows = [
        _row("search", "supernet", 10, 12, 2.5, 1536.0),
        _row("search", "fixed-t", 10, 12, 2.0, 1024.0),
        _row("search", "tokens", 10, 12, 7.5, 3072.0),
        _row("search", "supernet", 10, 4, 0.75, 400.0),
        _row("search", "supernet-77", 10, 4, 3.0, 1000.0),
        _row("search", "naive", 10, 4, 12.0, 3000.0),
        _row("train", "searched", 10, 12, 1.8, 700.0),
        _row("train", "all-zero", 10, 12, 2.0, 650.0),
        _row("train", "searched", 10, 4, 1.2, 800.0),
        _row("train", "naive", 10, 4, 3.0, 600.0),
        _row("eval", "once", 10, 12, 80.0, 900.0),
        _row("eval", "naive", 10, 12, 100.0, 1000.0, text_share=0.2),
        dict(stage="eval", way="naive", classes=100, blocks=12, status="killed"),
    ]
    comparisons = [
        dict(stage="search", way="supernet", classes=10, blocks=4, logits_rel=1.5e-6, grads_rel=7.4e-6),
        dict(stage="eval", way="once", classes=10, blocks=12, logits_rel=2.2e-6),
    ]
    claimed = benchmark.claims(rows, comparisons, depth=12, time_key="seconds")
    assert [(c["claim"], c["classes"], c["blocks"], c["figures"], c["text"]) for c in claimed] == [
        # 12 / 0.75 = 16 times the speed, 3000 / 400 = 7.5 times less memory
        ("search_vs_naive", 10, 4, dict(speedup=16.0, memory_saving=7.5, logits_rel=1.5e-6, grads_rel=7.4e-6),
         "16.00x faster; 7.50x less peak memory; outputs equal up to 1.5e-06 (logits), 7.4e-06 (gradients) relative"),
        # 12 / 3 = 4, 3000 / 1000 = 3
        ("one_pass_vs_per_candidate", 10, 4, dict(speedup=4.0, memory_saving=3.0),
         "4.00x faster; 3.00x less peak memory"),
        # 2.5 / 2 = 1.25
        ("supernet_vs_fixed_t", 10, 12, dict(time_ratio=1.25), "1.25x its time"),
        # 1.8 / 2 = 0.9
        ("training_vs_all_zero", 10, 12, dict(time_ratio=pytest.approx(0.9)), "0.90x its time"),
        # 3 / 1.2 = 2.5; 600 / 800 = 0.75, i.e. 800 / 600 = 1.33 times more memory
        ("training_vs_naive", 10, 4, dict(speedup=pytest.approx(2.5), memory_saving=0.75),
         "2.50x faster; 1.33x more peak memory"),
        # 100 / 80 = 1.25; text 20% of 100 s leaves 80 s of images: 100 / 80 = 1.25
        ("evaluation_vs_naive", 10, 12,
         dict(speedup=1.25, text_bound=pytest.approx(1.25), text_share=0.2, logits_rel=2.2e-6),
         "1.25x faster; no text saving can pass 1.25x here (text is 20% of the naive pass); "
         "outputs equal up to 2.2e-06 (logits) relative"),
        # 7.5 / 2.5 = 3 times the length search's time, 3072 / 1536 = 2 times its memory
        ("token_search_vs_length_search", 10, 12, dict(time_ratio=3.0, memory_ratio=2.0),
         "3.00x its time; 2.00x its peak memory"),
        # 1536 MiB / 1024
        ("search_peak_memory", 10, 12, dict(peak_gib=1.5), "1.50 GiB"),
        ("token_search_peak_memory", 10, 12, dict(peak_gib=3.0), "3.00 GiB"),
    ]  # fmt: skip
    printed = benchmark.report([], [], claimed, "seconds")
    assert "10 classes, 4 blocks   search step vs the naive way" in printed and "16.00x faster" in printed

    # A peak below what the meter sees (0 MiB) gives no memory figure rather than a ratio of 0.
    rows[5] = dict(rows[5], peak_mib=0.0)  # the naive search row
    first = benchmark.claims(rows, comparisons, depth=12, time_key="seconds")[0]
    assert "memory_saving" not in first["figures"] and first["text"].startswith("16.00x faster; outputs equal")


def test_isolated_row_reports_its_peak_and_is_killed_over_the_limit(tmp_path):
    settings = benchmark.Settings(
        tiny=True, batch=2, max_length=2, max_lifetime=2, device="cpu", threads=1, seed=0, eval_images=4, eval_batch=4
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
    # Above --large-above only the fast steps (and the token search) run, once; chunks are
    # recomputed as the trainers do.
    large = [(m.stage, m.way, m.repeats, m.recompute_chunks) for m in rows if m.classes == 1000]
    assert large == [("search", "supernet", 1, True), ("search", "tokens", 1, True), ("train", "searched", 1, True),
                     ("eval", "once", 1, False), ("eval", "naive", 1, False)]
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
