"""scripts/parse_results.py on log trees built in a temp dir, in the layouts CoOp/MaPLe use."""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scripts import parse_results as pr
from trainers.dpl_core.run_folder import log_order, parse_log

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "parse_results.py"


# ----------------------------------------------------------------------------- log writers


def _args(eval_only: bool) -> list[str]:
    return ["***************", "** Arguments **", "***************", f"eval_only: {eval_only}", "seed: 1"]


def _result(acc: float) -> list[str]:
    return ["=> result", "* total: 1,000", "* correct: 700", f"* accuracy: {acc:.1f}%", "* error: 30.0%",
            "* macro_f1: 69.0%"]


def write_train_log(folder: Path, acc: float | None, finished: bool = True, name: str = "log.txt") -> Path:
    """A Dassl training log; validation tests print '=> result' during training (best_val)."""
    lines = _args(False) + ["epoch [1/2] batch [1/4] time 0.1 loss 1.0", *_result(11.0),
                            "epoch [2/2] batch [1/4] time 0.1 loss 0.9"]
    if finished:
        lines += ["Finish training", "Deploy the last-epoch model"]
        if acc is not None:
            lines += _result(acc)
        lines += ["Elapsed: 0:00:05"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n")
    return folder / name


def write_eval_log(folder: Path, acc: float | None, name: str = "log.txt", args: bool = True) -> Path:
    """A log of an --eval-only run (no 'Finish training')."""
    lines = (_args(True) if args else []) + ["Loading weights to prompt_learner from ..."]
    if acc is not None:
        lines += _result(acc)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n")
    return folder / name


def fewshot_dir(root: Path, dataset: str, trainer: str, cfg: str, seed: int, shots: int = 16) -> Path:
    return root / dataset / trainer / f"{cfg}_{shots}shots" / f"seed{seed}"


def b2n_dir(root: Path, split: str, dataset: str, trainer: str, cfg: str, seed: int) -> Path:
    return root / "base2new" / split / dataset / "shots_16" / trainer / cfg / f"seed{seed}"


def run(argv: list[str], tmp_path: Path, capsys) -> tuple[dict, str]:
    """Run main with --json and return (parsed json, stdout)."""
    out = tmp_path / "result.json"
    assert pr.main([*argv, "--json", str(out)]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def row(data: dict, dataset: str, method: str, metric: str = "accuracy", setting: str | None = None) -> dict:
    rows = [r for r in data["rows"] if r["dataset"] == dataset and r["method"] == method and r["metric"] == metric
            and (setting is None or r["setting"] == setting)]
    assert len(rows) == 1, rows
    return rows[0]


# ----------------------------------------------------------------------------- logs


def test_train_log_takes_last_accuracy_after_finish_training(tmp_path):
    log = write_train_log(tmp_path, 71.3)
    outcome = parse_log(log)
    assert (outcome.kind, outcome.accuracy) == ("train", 71.3)  # not the validation 11.0 before it


def test_killed_train_log_with_validation_results_is_unfinished(tmp_path):
    # '=> result' from a validation pass must not turn a killed training run into an eval log.
    outcome = parse_log(write_train_log(tmp_path, None, finished=False))
    assert outcome.kind == "unfinished" and outcome.accuracy is None
    assert "Finish training" in outcome.problem


def test_argument_block_decides_eval_vs_train(tmp_path):
    # No progress lines (e.g. a large TRAIN.PRINT_FREQ) but 'eval_only: False': a killed training run.
    log = tmp_path / "log.txt"
    log.write_text("\n".join(_args(False) + _result(30.0)) + "\n")
    assert parse_log(log).kind == "unfinished"


def test_finished_training_without_test_is_untested(tmp_path):
    outcome = parse_log(write_train_log(tmp_path, None, finished=True))
    assert outcome.kind == "untested" and outcome.accuracy is None


def test_eval_log_takes_accuracy_after_result(tmp_path):
    outcome = parse_log(write_eval_log(tmp_path, 64.2))
    assert (outcome.kind, outcome.accuracy) == ("eval", 64.2)


def test_eval_log_without_argument_block_is_recognised(tmp_path):
    outcome = parse_log(write_eval_log(tmp_path, 50.5, args=False))
    assert (outcome.kind, outcome.accuracy) == ("eval", 50.5)


def test_eval_log_without_result_is_unfinished(tmp_path):
    outcome = parse_log(write_eval_log(tmp_path, None))
    assert outcome.kind == "unfinished" and outcome.accuracy is None


def test_restart_logs_newest_finished_wins(tmp_path):
    write_train_log(tmp_path, 50.0, name="log.txt")
    write_train_log(tmp_path, 60.0, name="log.txt-2024-05-01-10-00-00")
    write_train_log(tmp_path, 55.0, name="log.txt-2024-04-01-10-00-00")
    write_train_log(tmp_path, None, finished=False, name="log.txt-2024-06-01-10-00-00")  # newest, crashed
    run_ = pr.read_seed_folder(tmp_path, 1)
    assert run_.accuracy == 60.0
    assert run_.log.name == "log.txt-2024-05-01-10-00-00"


def testlog_order_is_first_run_then_restarts_by_time():
    names = ["log.txt-2024-06-01-10-00-00", "log.txt", "log.txt-2023-12-31-23-59-59", "log.txt-2024-01-02-00-00-00"]
    ordered = sorted((Path(n) for n in names), key=log_order)
    assert [p.name for p in ordered] == [
        "log.txt", "log.txt-2023-12-31-23-59-59", "log.txt-2024-01-02-00-00-00", "log.txt-2024-06-01-10-00-00"]


def test_restart_logs_all_unfinished_reports_newest(tmp_path):
    write_train_log(tmp_path, None, finished=False, name="log.txt")
    write_train_log(tmp_path, None, finished=False, name="log.txt-2024-06-01-10-00-00")
    run_ = pr.read_seed_folder(tmp_path, 1)
    assert run_.accuracy is None
    assert run_.problem.startswith("log.txt-2024-06-01-10-00-00:")


# ----------------------------------------------------------------------------- statistics


def _t_cdf(t: float, df: int) -> float:
    """Student's t CDF by Simpson integration of the density (independent of the module)."""
    x = np.linspace(0.0, t, 200_001)
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    y = c * (1 + x * x / df) ** (-(df + 1) / 2)
    h = x[1] - x[0]
    return 0.5 + h / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum())


@pytest.mark.parametrize("df", [1, 2, 3, 4, 9, 30, 31, 45, 200])
def test_t_quantile_without_scipy(df):
    assert _t_cdf(pr.t975_fallback(df), df) == pytest.approx(0.975, abs=2e-7)


def test_t_quantile_uses_fallback_when_scipy_missing(monkeypatch):
    monkeypatch.setattr(pr, "_scipy_stats", None)
    assert pr.t975(2) == pr.t975_fallback(2)


def test_summary_mean_std_ci_and_missing_seed():
    s = pr.summarise({1: 70.0, 2: 72.0, 3: 77.0}, [1, 2, 3])
    # mean (70 + 72 + 77) / 3 = 73; deviations -3, -1, 4: sample variance (9 + 1 + 16) / 2 = 13,
    # std sqrt(13) = 3.605551; CI half-width t_{0.975,2} * s / sqrt(3) = 4.302653 * 3.605551 / 1.732051 = 8.956686.
    assert s.mean == pytest.approx(73.0)
    assert s.std == pytest.approx(3.605551, abs=1e-6)
    assert s.ci95 == pytest.approx(8.956686, abs=1e-5)
    partial = pr.summarise({1: 70.0, 3: 77.0}, [1, 2, 3])
    assert not partial.complete and partial.seeds == (1, 3) and partial.mean == pytest.approx(73.5)
    single = pr.summarise({1: 70.0}, [1])
    assert single.complete and single.std is None and single.ci95 is None


# ----------------------------------------------------------------------------- few-shot


def build_fewshot(root: Path) -> dict[tuple[str, str], list[float]]:
    accs = {
        ("eurosat", "DPL"): [80.0, 82.0, 84.0],
        ("dtd", "DPL"): [60.0, 61.0, 65.0],
        ("eurosat", "CoOp"): [70.0, 71.0, 75.0],
        ("dtd", "CoOp"): [55.0, 56.0, 57.0],
    }
    for (dataset, trainer), values in accs.items():
        for seed, acc in enumerate(values, start=1):
            write_train_log(fewshot_dir(root, dataset, trainer, "vit_b16", seed), acc)
    return accs


def test_fewshot_mean_std_average_and_delta(tmp_path, capsys):
    root = tmp_path / "output"
    build_fewshot(root)
    data, out = run([str(root), "--reference", "CoOp"], tmp_path, capsys)
    expected = {
        ("eurosat", "DPL"): (82.0, 2.0),  # 80 82 84: deviations -2 0 2, variance (4 + 0 + 4) / 2 = 4
        ("dtd", "DPL"): (62.0, 2.645751),  # 60 61 65: deviations -2 -1 3, variance (4 + 1 + 9) / 2 = 7
        ("eurosat", "CoOp"): (72.0, 2.645751),  # 70 71 75: deviations -2 -1 3, variance 7
        ("dtd", "CoOp"): (56.0, 1.0),  # 55 56 57: deviations -1 0 1, variance (1 + 0 + 1) / 2 = 1
    }
    for (dataset, trainer), (mean, std) in expected.items():
        r = row(data, dataset, f"{trainer}/vit_b16")
        assert r["mean"] == pytest.approx(mean, abs=1e-4)
        assert r["std"] == pytest.approx(std, abs=1e-4)
        assert r["n_seeds"] == 3 and r["complete"] is True
    assert row(data, "eurosat", "DPL/vit_b16")["delta"] == pytest.approx(82.0 - 72.0)
    avg = row(data, "Average", "DPL/vit_b16")
    assert avg["mean"] == pytest.approx((82.0 + 62.0) / 2)
    assert avg["delta"] == pytest.approx((82.0 + 62.0) / 2 - (72.0 + 56.0) / 2)
    assert "82.00 ± 2.00" in out and "+10.00" in out
    assert "(2/3)" not in out


def test_recipes_are_named_in_a_column_and_in_every_row(tmp_path, capsys):
    root = tmp_path / "output"
    cfgs = {"vit_b16_ep40_batch4": 70.0, "vit_b16_paper_ep40_batch4": 72.0, "vit_b16_reference_ep40_batch4": 74.0}
    for cfg, acc in cfgs.items():
        write_train_log(fewshot_dir(root, "eurosat", "DPL", cfg, 1), acc)
        write_train_log(b2n_dir(root, "train_base", "eurosat", "DPL", cfg, 1), acc)
        write_eval_log(b2n_dir(root, "test_new", "eurosat", "DPL", cfg, 1), acc - 10)
    write_train_log(fewshot_dir(root, "eurosat", "MaPLe", "vit_b16_c2_ep5", 1), 71.0)
    data, out = run([str(root)], tmp_path, capsys)
    recipes = {"DPL/vit_b16_ep40_batch4": "ours", "DPL/vit_b16_paper_ep40_batch4": "paper",
               "DPL/vit_b16_reference_ep40_batch4": "reference", "MaPLe/vit_b16_c2_ep5": ""}  # fmt: skip
    for method, recipe in recipes.items():
        assert row(data, "eurosat", method, setting="fewshot")["recipe"] == recipe
        if method.startswith("DPL/"):
            assert row(data, "eurosat", method, "hm")["recipe"] == recipe
    lines = out.splitlines()
    assert re.search(r"^\| Dataset +\| Method +\| Recipe +\| Accuracy", out, re.M)
    assert re.search(r"^\| Dataset +\| Method +\| Recipe +\| Base", out, re.M)
    assert any(re.search(r"\| DPL/vit_b16_paper_ep40_batch4 +\| paper +\| 72\.00 +\|", line) for line in lines)
    assert any(re.search(r"\| DPL/vit_b16_reference_ep40_batch4 +\| reference +\| 74\.00 +\| 64\.00 +\|", line) for line in lines)
    assert any(re.search(r"\| MaPLe/vit_b16_c2_ep5 +\| +\| 71\.00 +\|", line) for line in lines)

    # Without a named recipe among the shown methods the tables stay as they were.
    data, out = run([str(root), "--methods", "DPL/vit_b16_ep40_batch4", "MaPLe"], tmp_path, capsys)
    assert "Recipe" not in out and row(data, "eurosat", "DPL/vit_b16_ep40_batch4", setting="fewshot")["recipe"] == "ours"


def test_engine_presets_are_named_apart_from_dpl_and_from_the_host_methods_they_reproduce(tmp_path, capsys):
    ours, host = tmp_path / "output", tmp_path / "MaPLe" / "output"
    maple, coop50, coop200 = "maple_2ctx_depth9_ep5_batch4", "coop_16ctx_vit_b16_ep50", "coop_16ctx_vit_b16_ep200"
    runs = {(ours, "DPL", maple): 70.0, (ours, "DPL", "vit_b16_ep40_batch4"): 74.0, (ours, "DPL", coop50): 66.0,
            (ours, "DPL", coop200): 68.0, (ours, "DPL", "mpl_c1_add2_rm1_depth9_ep5_batch4"): 69.0,
            (host, "MaPLe", "vit_b16_c2_ep5_batch4_2ctx"): 72.0}  # fmt: skip
    for (root, trainer, cfg), acc in runs.items():
        write_train_log(fewshot_dir(root, "eurosat", trainer, cfg, 1), acc)
        write_train_log(b2n_dir(root, "train_base", "eurosat", trainer, cfg, 1), acc)
        write_eval_log(b2n_dir(root, "test_new", "eurosat", trainer, cfg, 1), acc - 10)
    # A bare "MaPLe" is the host's trainer: it does not pick the engine's MaPLe preset.
    data, out = run([str(ours), str(host), "--reference", "MaPLe"], tmp_path, capsys)
    labels = {
        f"DPL/{maple}": f"MaPLe 2ctx depth 9 (DPL engine, DPL/{maple})",
        f"DPL/{coop50}": f"CoOp 16ctx (DPL engine, DPL/{coop50})",
        f"DPL/{coop200}": f"CoOp 16ctx (DPL engine, DPL/{coop200})",
        "DPL/mpl_c1_add2_rm1_depth9_ep5_batch4": "MPL c1 add2 rm1 depth 9 (DPL engine, DPL/mpl_c1_add2_rm1_depth9_ep5_batch4)",
        "DPL/vit_b16_ep40_batch4": "DPL/vit_b16_ep40_batch4",
        "MaPLe/vit_b16_c2_ep5_batch4_2ctx": "MaPLe/vit_b16_c2_ep5_batch4_2ctx",
    }
    for method, label in labels.items():
        for metric, setting in (("accuracy", "fewshot"), ("new", "base2new")):
            assert row(data, "eurosat", method, metric, setting)["label"] == label
    # The few-shot rows: accuracy and Δ vs the host's MaPLe.
    for method, cells in ((f"DPL/{maple}", r"70\.00 +\| -2\.00"), ("DPL/vit_b16_ep40_batch4", r"74\.00 +\| \+2\.00"),
                          (f"DPL/{coop200}", r"68\.00 +\| -4\.00"), ("MaPLe/vit_b16_c2_ep5_batch4_2ctx", r"72\.00 +\| ref")):
        assert re.search(rf"^\| (eurosat)? +\| {re.escape(labels[method])} +\| {cells} +\|$", out, re.M), method
    # Every row of the engine's MaPLe says so, in both tables; none reads as the host's MaPLe.
    maple_rows = [line for line in out.splitlines() if maple in line]
    assert len(maple_rows) == 4 and all("MaPLe 2ctx depth 9 (DPL engine, " in line for line in maple_rows)
    assert "Δ vs MaPLe/vit_b16_c2_ep5_batch4_2ctx" in out
    assert row(data, "eurosat", f"DPL/{maple}", setting="fewshot")["recipe"] == "original"
    assert row(data, "eurosat", "DPL/vit_b16_ep40_batch4", setting="fewshot")["recipe"] == "ours"

    # The preset as the reference is named as in its rows.
    data, out = run([str(ours), str(host), "--reference", f"DPL/{maple}"], tmp_path, capsys)
    assert f"Δ vs {labels[f'DPL/{maple}']}" in out and f"Δ Base vs {labels[f'DPL/{maple}']}" in out
    assert row(data, "eurosat", "MaPLe/vit_b16_c2_ep5_batch4_2ctx", setting="fewshot")["delta"] == pytest.approx(2.0)


def test_fewshot_ci_switch(tmp_path, capsys):
    root = tmp_path / "output"
    build_fewshot(root)
    data, out = run([str(root), "--ci"], tmp_path, capsys)
    r = row(data, "eurosat", "DPL/vit_b16")
    # 80 82 84: s = 2; t_{0.975,2} * s / sqrt(n) = 4.302653 * 2 / 1.732051 = 4.968276
    assert r["ci95"] == pytest.approx(4.968276, abs=1e-4)
    assert "82.00 ± 4.97" in out
    assert data["spread"] == "ci95"


def test_missing_seed_is_marked_and_listed(tmp_path, capsys, caplog):
    root = tmp_path / "output"
    build_fewshot(root)
    gone = fewshot_dir(root, "dtd", "DPL", "vit_b16", 3)
    for f in gone.iterdir():
        f.unlink()
    gone.rmdir()
    with caplog.at_level(logging.WARNING):
        data, out = run([str(root), "--seeds", "1", "2", "3"], tmp_path, capsys)
    r = row(data, "dtd", "DPL/vit_b16")
    assert r["mean"] == pytest.approx(60.5) and r["n_seeds"] == 2 and r["complete"] is False
    assert "60.50 ± 0.71 (2/3)" in out
    assert "(partial seeds)" in out  # the average says it includes a partial cell
    assert str(gone) in caplog.text
    assert {"folder": str(gone), "problem": "missing", "detail": ""} in data["problems"]


def test_expected_seeds_flag_marks_unrun_seeds(tmp_path, capsys):
    root = tmp_path / "output"
    build_fewshot(root)
    data, out = run([str(root), "--seeds", "1", "2", "3", "4"], tmp_path, capsys)
    assert row(data, "eurosat", "DPL/vit_b16")["n_expected"] == 4
    assert "82.00 ± 2.00 (3/4)" in out
    missing = {p["folder"] for p in data["problems"] if p["problem"] == "missing"}
    assert str(fewshot_dir(root, "eurosat", "CoOp", "vit_b16", 4)) in missing


def test_unfinished_run_is_marked_and_listed(tmp_path, capsys, caplog):
    root = tmp_path / "output"
    build_fewshot(root)
    crashed = fewshot_dir(root, "eurosat", "CoOp", "vit_b16", 2)
    write_train_log(crashed, None, finished=False)
    with caplog.at_level(logging.WARNING):
        data, out = run([str(root)], tmp_path, capsys)
    r = row(data, "eurosat", "CoOp/vit_b16")
    assert r["seeds"] == [1, 3] and r["mean"] == pytest.approx(72.5)
    assert "(2/3)" in out
    assert str(crashed) in caplog.text and "Finish training" in caplog.text
    assert [p["problem"] for p in data["problems"] if p["folder"] == str(crashed)] == ["unfinished"]


def test_method_missing_a_dataset_lists_the_conventional_folders(tmp_path, capsys):
    root = tmp_path / "output"
    build_fewshot(root)
    write_train_log(fewshot_dir(root, "ucf101", "DPL", "vit_b16", 1), 75.0)
    data, out = run([str(root), "--seeds", "1"], tmp_path, capsys)
    assert row(data, "ucf101", "CoOp/vit_b16")["mean"] is None
    assert "— (0/1)" in out
    assert row(data, "Average", "CoOp/vit_b16")["n_datasets"] == 2
    assert "(2/3 datasets)" in out
    missing = {p["folder"] for p in data["problems"]}
    assert str(fewshot_dir(root, "ucf101", "CoOp", "vit_b16", 1)) in missing


def test_csv_output(tmp_path, capsys):
    root = tmp_path / "output"
    build_fewshot(root)
    path = tmp_path / "r.csv"
    assert pr.main([str(root), "--csv", str(path), "--reference", "CoOp/vit_b16"]) == 0
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    eurosat = [r for r in rows if r["dataset"] == "eurosat" and r["method"] == "DPL/vit_b16"]
    assert len(eurosat) == 1
    assert float(eurosat[0]["mean"]) == pytest.approx(82.0)
    assert eurosat[0]["seeds"] == "1 2 3" and eurosat[0]["values"] == "80.0 82.0 84.0"
    assert float(eurosat[0]["delta"]) == pytest.approx(10.0)
    assert {r["dataset"] for r in rows} == {"eurosat", "dtd", "Average"}


def test_delta_is_taken_over_the_common_seeds_and_marked(tmp_path, capsys):
    root = tmp_path / "output"
    build_fewshot(root)
    gone = fewshot_dir(root, "eurosat", "CoOp", "vit_b16", 3)
    for f in gone.iterdir():
        f.unlink()
    gone.rmdir()
    # Disjoint seeds: nothing to compare.
    write_train_log(fewshot_dir(root, "ucf101", "DPL", "vit_b16", 1), 75.0)
    write_train_log(fewshot_dir(root, "ucf101", "CoOp", "vit_b16", 2), 65.0)
    data, out = run([str(root), "--reference", "CoOp"], tmp_path, capsys)
    # eurosat: CoOp has seeds 1 2 (70, 71); DPL on those seeds (80 + 82) / 2 = 81, minus (70 + 71) / 2 = 70.5:
    # +10.5, not DPL's 3-seed mean 82 minus 70.5 = +11.5.
    eurosat = row(data, "eurosat", "DPL/vit_b16")
    assert eurosat["delta"] == pytest.approx(10.5)
    assert eurosat["delta_seeds"] == [1, 2] and eurosat["delta_same_seeds"] is False
    assert "+10.50 (2 common seeds)" in out
    # dtd: same seeds, 62 - 56 = +6, unmarked.
    dtd = row(data, "dtd", "DPL/vit_b16")
    assert dtd["delta"] == pytest.approx(6.0) and dtd["delta_same_seeds"] is True
    assert "| +6.00 " in out
    ucf = row(data, "ucf101", "DPL/vit_b16")
    assert ucf["delta"] is None and "— (no common seeds)" in out
    # Average over the 2 of 3 datasets with common seeds: (10.5 + 6) / 2 = 8.25.
    avg = row(data, "Average", "DPL/vit_b16")
    assert avg["delta"] == pytest.approx(8.25) and avg["delta_same_seeds"] is False
    assert "+8.25 (2/3 datasets) (seed sets differ)" in out
    assert "note: Δ vs CoOp/vit_b16 is taken over the seeds both the method and CoOp/vit_b16 have" in out


# ----------------------------------------------------------------------------- base-to-new


def test_base2new_hm_from_means_and_test_base_preferred(tmp_path, capsys):
    root = tmp_path / "output"
    bases = {"dtd": [80.0, 82.0], "eurosat": [90.0, 94.0]}
    news = {"dtd": [50.0, 54.0], "eurosat": [60.0, 70.0]}
    for dataset in bases:
        for seed in (1, 2):
            write_train_log(b2n_dir(root, "train_base", dataset, "DPL", "c", seed), bases[dataset][seed - 1])
            write_eval_log(b2n_dir(root, "test_new", dataset, "DPL", "c", seed), news[dataset][seed - 1])
    # MaPLe's reproduce scripts evaluate base classes separately: that result wins over train_base.
    write_eval_log(b2n_dir(root, "test_base", "dtd", "DPL", "c", 1), 81.0)
    data, out = run([str(root)], tmp_path, capsys)
    # dtd: base (81 + 82) / 2 = 81.5 (seed 1 from test_base), new (50 + 54) / 2 = 52,
    # HM 2 * 81.5 * 52 / (81.5 + 52) = 8476 / 133.5 = 63.490637.
    assert row(data, "dtd", "DPL/c", "base")["mean"] == pytest.approx(81.5)
    assert row(data, "dtd", "DPL/c", "new")["mean"] == pytest.approx(52.0)
    hm_dtd = row(data, "dtd", "DPL/c", "hm")["mean"]
    assert hm_dtd == pytest.approx(63.490637, abs=1e-4)
    # Not the mean of per-seed HMs: (8100 / 131 + 8856 / 136) / 2 = (61.832061 + 65.117647) / 2 = 63.474854.
    assert hm_dtd != pytest.approx(63.474854, abs=1e-3)
    # Average: base (81.5 + 92) / 2 = 86.75, new (52 + 65) / 2 = 58.5,
    # HM 2 * 86.75 * 58.5 / (86.75 + 58.5) = 10149.75 / 145.25 = 69.877797.
    assert row(data, "Average", "DPL/c", "hm")["mean"] == pytest.approx(69.877797, abs=1e-4)
    assert "Base-to-new" in out and "HM" in out


def test_base2new_missing_new_and_delta(tmp_path, capsys, caplog):
    root = tmp_path / "output"
    for trainer, (b, n) in {"DPL": (80.0, 70.0), "MaPLe": (82.0, 72.0)}.items():
        for seed in (1, 2, 3):
            write_train_log(b2n_dir(root, "train_base", "dtd", trainer, "c", seed), b + seed)
            if not (trainer == "MaPLe" and seed == 3):
                write_eval_log(b2n_dir(root, "test_new", "dtd", trainer, "c", seed), n + seed)
    with caplog.at_level(logging.WARNING):
        data, out = run([str(root), "--reference", "MaPLe"], tmp_path, capsys)
    new = row(data, "dtd", "MaPLe/c", "new")
    assert new["n_seeds"] == 2 and new["mean"] == pytest.approx(73.5)
    assert row(data, "dtd", "MaPLe/c", "hm")["complete"] is False
    # Base: both have seeds 1 2 3, 81 82 83 vs 83 84 85: -2, unmarked.
    base = row(data, "dtd", "DPL/c", "base")
    assert base["delta"] == pytest.approx(-2.0) and base["delta_same_seeds"] is True
    # New on the common seeds 1 2: (71 + 72) / 2 - (73 + 74) / 2 = 71.5 - 73.5 = -2
    # (not DPL's mean over 3 seeds, 72, minus 73.5 = -1.5).
    delta_new = row(data, "dtd", "DPL/c", "new")
    assert delta_new["delta"] == pytest.approx(-2.0)
    assert delta_new["delta_seeds"] == [1, 2] and delta_new["delta_same_seeds"] is False
    # HM from those means: 2 * 82 * 71.5 / 153.5 = 76.390879 minus 2 * 84 * 73.5 / 157.5 = 78.4: -2.009121.
    assert row(data, "dtd", "DPL/c", "hm")["delta"] == pytest.approx(-2.009121, abs=1e-4)
    assert "-2.00 (2 common seeds)" in out and "-2.01 (common seeds)" in out
    assert row(data, "Average", "DPL/c", "new")["delta"] == pytest.approx(-2.0)
    assert str(b2n_dir(root, "test_new", "dtd", "MaPLe", "c", 3)) in caplog.text
    assert "73.50 ± 0.71 (2/3)" in out


# ----------------------------------------------------------------------------- cross-dataset, roots, filters


def test_cross_dataset_source_targets_and_domain_shift(tmp_path, capsys):
    root = tmp_path / "output"
    cfg = "c_cross"
    write_train_log(fewshot_dir(root, "imagenet", "DPL", cfg, 1), 70.0)
    for dataset, acc in {"dtd": 40.0, "eurosat": 50.0, "imagenet_a": 45.0, "imagenetv2": 63.0}.items():
        write_eval_log(root / "evaluation" / "DPL" / f"{cfg}_16shots" / dataset / "seed1", acc)
    data, out = run([str(root)], tmp_path, capsys)
    cross = [r for r in data["rows"] if r["setting"] == "crossdataset"]
    assert {r["dataset"] for r in cross} == {"imagenet (source)", "dtd", "eurosat", "imagenet_a", "imagenetv2",
                                             "Average (targets)", "Average (domain shift)"}
    assert row(data, "imagenet (source)", "DPL/c_cross")["mean"] == 70.0
    assert row(data, "Average (targets)", "DPL/c_cross")["mean"] == pytest.approx(45.0)
    assert row(data, "Average (domain shift)", "DPL/c_cross")["mean"] == pytest.approx(54.0)
    # A config trained only on the source is not listed as a few-shot method with 10 missing datasets.
    assert not [r for r in data["rows"] if r["setting"] == "fewshot"]
    assert data["problems"] == []


def test_several_roots_variants_filter_and_order(tmp_path, capsys):
    ours = tmp_path / "output"
    checkout = tmp_path / "CoOp"
    for seed in (1, 2):
        write_train_log(fewshot_dir(ours, "dtd", "DPL", "a", seed), 60.0 + seed)
        write_train_log(fewshot_dir(ours, "dtd", "DPL", "b", seed), 50.0 + seed)
        # CoOp's main.sh adds an nctx/csc/ctp level; the checkout root has the output/ prefix.
        coop = checkout / "output" / "dtd" / "CoOp" / "vit_b16_16shots" / "nctx16_cscFalse_ctpend" / f"seed{seed}"
        write_train_log(coop, 40.0 + seed)
    data, out = run([str(ours), str(checkout), "--methods", "CoOp", "DPL/a", "--reference", "DPL/a"],
                    tmp_path, capsys)
    methods = [r["method"] for r in data["rows"] if r["dataset"] == "dtd"]
    assert methods == ["CoOp/vit_b16/nctx16_cscFalse_ctpend", "DPL/a"]
    assert row(data, "dtd", "CoOp/vit_b16/nctx16_cscFalse_ctpend")["delta"] == pytest.approx(-20.0)


def test_search_runs_without_test_are_hidden(tmp_path, capsys, caplog):
    root = tmp_path / "output"
    build_fewshot(root)
    write_train_log(fewshot_dir(root, "dtd", "DPLSearch", "s", 1), None, finished=True)
    with caplog.at_level(logging.INFO):
        data, _ = run([str(root)], tmp_path, capsys)
    assert "DPLSearch/s" not in {r["method"] for r in data["rows"]}
    assert "DPLSearch/s" in caplog.text
    assert data["problems"] == []


def test_unrecognised_layout_is_reported(tmp_path, capsys, caplog):
    root = tmp_path / "output"
    build_fewshot(root)
    stray = root / "misc" / "seed1"
    write_train_log(stray, 10.0)
    with caplog.at_level(logging.WARNING):
        data, _ = run([str(root)], tmp_path, capsys)
    assert data["unrecognised"] == [str(stray)]
    assert "not in a known layout" in caplog.text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--methods", "VPT", "IVLP"], "none of --methods VPT IVLP has runs"),
        (["--reference", "DPL/*", "--methods", "DPL", "CoOp"], "exactly one"),
    ],
)
def test_bad_filters_are_clear_errors(tmp_path, capsys, extra, message):
    root = tmp_path / "output"
    build_fewshot(root)
    write_train_log(fewshot_dir(root, "dtd", "DPL", "other", 1), 1.0)
    with pytest.raises(SystemExit) as excinfo:
        pr.main([str(root), *extra])
    assert excinfo.value.code == 2
    assert message in capsys.readouterr().err


def test_method_pattern_without_runs_is_reported_and_skipped(tmp_path):
    """The README's comparison lists VPT: a tree without VPT runs still gets its report."""
    root = tmp_path / "output"
    build_fewshot(root)
    report = tmp_path / "r.json"
    done = subprocess.run([sys.executable, str(SCRIPT), str(root), "--methods", "DPL", "VPT", "CoOp",
                           "--reference", "CoOp", "--json", str(report)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "'VPT'" in line]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING:") and "no runs found" in warnings[0]
    assert "82.00 ± 2.00" in done.stdout and "CoOp/vit_b16" in done.stdout
    data = json.loads(report.read_text())
    assert data["missing_methods"] == ["VPT"]
    assert {r["method"] for r in data["rows"]} == {"DPL/vit_b16", "CoOp/vit_b16"}


def test_help_prints_single_percent_signs(capsys):
    with pytest.raises(SystemExit) as excinfo:
        pr.main(["--help"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    assert "%%" not in out
    assert "(or 95% CI)" in out and "95% confidence interval" in out


def test_missing_root_and_empty_root_are_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        pr.main([str(tmp_path / "nope")])
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        pr.main([str(tmp_path / "empty")])
    assert "no seed<N> folders" in capsys.readouterr().err


def test_same_seed_in_two_roots_is_an_error(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    write_train_log(fewshot_dir(a, "dtd", "DPL", "c", 1), 1.0)
    write_train_log(fewshot_dir(b, "dtd", "DPL", "c", 1), 2.0)
    with pytest.raises(SystemExit):
        pr.main([str(a), str(b)])
    err = capsys.readouterr().err
    assert "seed 1 of DPL/c" in err and "exists twice" in err
    assert str(fewshot_dir(a, "dtd", "DPL", "c", 1)) in err and str(fewshot_dir(b, "dtd", "DPL", "c", 1)) in err


def test_same_seed_in_two_roots_counts_only_for_the_selected_methods(tmp_path, capsys):
    # CoOp's checkout and ours both hold CoOp seed 1; a report of DPL alone is not ambiguous.
    ours, checkout = tmp_path / "output", tmp_path / "CoOp" / "output"
    write_train_log(fewshot_dir(ours, "dtd", "DPL", "c", 1), 60.0)
    for root in (ours, checkout):
        write_train_log(fewshot_dir(root, "dtd", "CoOp", "c", 1), 50.0)
    data, _ = run([str(ours), str(checkout), "--methods", "DPL"], tmp_path, capsys)
    assert row(data, "dtd", "DPL/c")["mean"] == pytest.approx(60.0)
    with pytest.raises(SystemExit) as excinfo:
        pr.main([str(ours), str(checkout), "--methods", "DPL", "CoOp"])
    assert excinfo.value.code == 2
    assert "seed 1 of CoOp/c" in capsys.readouterr().err


def test_command_line_run_without_dassl_or_torch(tmp_path):
    """Both result scripts run as plain scripts and import neither Dassl nor torch."""
    root = tmp_path / "output"
    build_fewshot(root)
    done = subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True, check=True)
    assert "82.00 ± 2.00" in done.stdout
    check = (
        "import sys; sys.path.insert(0, sys.argv[1]); import parse_results, plot_search; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dassl', 'torch', 'clip'}))"
    )
    done = subprocess.run([sys.executable, "-c", check, str(SCRIPT.parent)], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_x_and_x_plus_gram_are_rows_of_their_own_in_one_table_with_x_recipe(tmp_path, capsys):
    """The launchers' '+gram' folders (DPL_GRAM_FILE) read as "X + GRAM" beside X, in few-shot and base-to-new."""
    root = tmp_path / "output"
    coop, paper = "coop_16ctx_vit_b16_ep50", "vit_b16_paper_ep40_batch4"
    accs = {coop: [60.0, 62.0], f"{coop}+gram": [66.0, 70.0], paper: [70.0, 72.0], f"{paper}+gram": [73.0, 77.0]}
    for cfg, values in accs.items():
        for seed, acc in enumerate(values, start=1):
            write_train_log(fewshot_dir(root, "eurosat", "DPL", cfg, seed), acc)
            write_train_log(b2n_dir(root, "train_base", "eurosat", "DPL", cfg, seed), acc + 10)
            write_eval_log(b2n_dir(root, "test_new", "eurosat", "DPL", cfg, seed), acc - 10)
    data, out = run([str(root), "--reference", f"DPL/{coop}"], tmp_path, capsys)
    labels = {f"DPL/{coop}": f"CoOp 16ctx (DPL engine, DPL/{coop})",
              f"DPL/{coop}+gram": f"CoOp 16ctx + GRAM (DPL engine, DPL/{coop}+gram)",
              f"DPL/{paper}": f"DPL/{paper}", f"DPL/{paper}+gram": f"DPL/{paper} + GRAM"}  # fmt: skip
    recipes = {f"DPL/{coop}": "original", f"DPL/{coop}+gram": "original", f"DPL/{paper}": "paper", f"DPL/{paper}+gram": "paper"}
    # Means over seeds 1 2: coop 61, coop + GRAM 68, paper 71, paper + GRAM 75 (base +10, new -10).
    means = {f"DPL/{coop}": 61.0, f"DPL/{coop}+gram": 68.0, f"DPL/{paper}": 71.0, f"DPL/{paper}+gram": 75.0}
    for method, mean in means.items():
        few = row(data, "eurosat", method, setting="fewshot")
        assert (few["label"], few["recipe"], few["n_seeds"]) == (labels[method], recipes[method], 2)
        assert few["mean"] == pytest.approx(mean) and few["delta"] == pytest.approx(mean - 61.0)
        assert row(data, "eurosat", method, "base")["mean"] == pytest.approx(mean + 10)
        assert row(data, "eurosat", method, "new")["mean"] == pytest.approx(mean - 10)
        assert row(data, "eurosat", method, "hm")["label"] == labels[method]
    # One row each, X + GRAM right after X, in both tables (std of 2 seeds: |a - b| / sqrt(2)).
    def eurosat_rows(table: str) -> list[list[str]]:
        lines = table[table.index("| eurosat") : table.index("| Average")].splitlines()
        return [[cell.strip() for cell in line.strip("|").split("|")][1:] for line in lines]

    fewshot, base2new = out.split("Base-to-new")
    spreads = {f"DPL/{coop}": "1.41", f"DPL/{coop}+gram": "2.83", f"DPL/{paper}": "1.41", f"DPL/{paper}+gram": "2.83"}
    assert [r[:3] for r in eurosat_rows(fewshot)] == [
        [labels[m], recipes[m], f"{means[m]:.2f} ± {spreads[m]}"] for m in labels]
    assert [r[:4] for r in eurosat_rows(base2new)] == [
        [labels[m], recipes[m], f"{means[m] + 10:.2f} ± {spreads[m]}", f"{means[m] - 10:.2f} ± {spreads[m]}"]
        for m in labels]  # fmt: skip

    # --reference names X + GRAM as well: the Δ is then against it.
    data, out = run([str(root), "--reference", f"DPL/{coop}+gram"], tmp_path, capsys)
    assert f"Δ vs {labels[f'DPL/{coop}+gram']}" in out
    assert row(data, "eurosat", f"DPL/{coop}", setting="fewshot")["delta"] == pytest.approx(-7.0)
    assert row(data, "eurosat", f"DPL/{coop}", "new")["delta"] == pytest.approx(-7.0)
