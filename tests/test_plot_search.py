"""scripts/plot_search.py on search folders built from a synthetic alpha history."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from PIL import Image

from scripts import plot_search as ps

CANDIDATES = [0, 1, 2, 3]


def make_search(folder: Path, seed: int = 0, epochs: int = 3, text_depth: int = 3, image_depth: int = 2,
                arch_override: dict | None = None) -> dict:
    """Write arch.json and alpha_history.jsonl as DPLSearch does; returns the arch dict."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for epoch in range(1, epochs + 1):
        # Alphas drift away from zero so the entropy falls over the epochs, as in a real search.
        text = rng.normal(size=(text_depth, len(CANDIDATES))) * epoch
        image = rng.normal(size=(image_depth, len(CANDIDATES))) * epoch
        lines.append(json.dumps({"epoch": epoch, "candidates": CANDIDATES, "temperature": 1.0,
                                 "text": text.tolist(), "image": image.tolist()}))
    (folder / "alpha_history.jsonl").write_text("\n".join(lines) + "\n")
    arch = {
        "format": "dpl-architecture", "version": 1, "backbone": "ViT-B/16", "candidates": CANDIDATES,
        "text_lengths": [CANDIDATES[i] for i in text.argmax(axis=1)],
        "image_lengths": [CANDIDATES[i] for i in image.argmax(axis=1)],
    }
    arch.update(arch_override or {})
    (folder / "arch.json").write_text(json.dumps(arch))
    return arch


def write_search(folder: Path, text: list[list[float]], image: list[list[float]], temperature: float = 1.0) -> None:
    """A one-epoch search with the given alphas; arch.json holds their decode."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "alpha_history.jsonl").write_text(json.dumps(
        {"epoch": 1, "candidates": CANDIDATES, "temperature": temperature, "text": text, "image": image}) + "\n")
    arch = {"format": "dpl-architecture", "version": 1, "backbone": "ViT-B/16", "candidates": CANDIDATES,
            "text_lengths": [CANDIDATES[int(np.argmax(row))] for row in text],
            "image_lengths": [CANDIDATES[int(np.argmax(row))] for row in image]}
    (folder / "arch.json").write_text(json.dumps(arch))


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        image.verify()  # raises on a truncated or corrupt file
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert width > 100 and height > 100


def test_plots_from_search_folder(tmp_path, capsys):
    folder = tmp_path / "search"
    make_search(folder)
    assert ps.main([str(folder)]) == 0
    for name in ("mixture_weights.png", "search_evolution.png"):
        assert_png(folder / name)
    assert str(folder / "mixture_weights.png") in capsys.readouterr().out


def test_out_folder_is_created_and_used(tmp_path):
    folder = tmp_path / "search"
    make_search(folder)
    out = tmp_path / "figures" / "eurosat"
    assert ps.main([str(folder), "--out", str(out)]) == 0
    assert_png(out / "mixture_weights.png")
    assert_png(out / "search_evolution.png")
    assert not (folder / "mixture_weights.png").exists()


def test_compare_figure_with_labels_and_different_depths(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_search(a, seed=1)
    make_search(b, seed=2, text_depth=4, image_depth=1)
    out = tmp_path / "cmp"
    # An arch.json file works as well as its folder.
    assert ps.main(["--compare", str(a), str(b / "arch.json"), "--labels", "EuroSAT", "DTD", "--out", str(out)]) == 0
    assert_png(out / "architectures.png")


def test_compare_without_out_writes_to_current_directory(tmp_path, monkeypatch):
    make_search(tmp_path / "a")
    monkeypatch.chdir(tmp_path)
    assert ps.main(["--compare", "a"]) == 0
    assert_png(tmp_path / "architectures.png")


FEW_SHOT = Path("output", "eurosat", "DPLSearch", "vit_b16_ep60_batch4_16shots", "seed1")
BASE2NEW = Path("output", "base2new", "train_base", "oxford_flowers", "shots_16", "DPLSearch",
                "vit_b16_ep20_batch4_b2n", "seed2")


def test_search_names_follow_the_coop_layout(tmp_path):
    assert ps.search_name(tmp_path / FEW_SHOT) == ("eurosat", "vit_b16_ep60_batch4_16shots", "seed1")
    assert ps.search_name(tmp_path / FEW_SHOT / "arch.json") == ("eurosat", "vit_b16_ep60_batch4_16shots", "seed1")
    assert ps.search_name(tmp_path / BASE2NEW) == ("oxford_flowers", "base2new vit_b16_ep20_batch4_b2n_16shots",
                                                   "seed2")
    assert ps.search_name(tmp_path / "x" / "seed1") is None
    assert ps.search_name(tmp_path / "eurosat" / "DPL" / "vit_b16_16shots" / "seed1") is None  # not a search


def test_compare_labels_name_dataset_config_seed(tmp_path):
    same = [tmp_path / "output" / d / "DPLSearch" / "c_16shots" / "seed1" for d in ("eurosat", "dtd")]
    assert ps.compare_labels(same) == (["eurosat", "dtd"], "c_16shots / seed1")
    # Long folder names of two settings: dataset / config / seed, not the whole relative path.
    assert ps.compare_labels([tmp_path / FEW_SHOT, tmp_path / "runs" / BASE2NEW]) == (
        ["eurosat / vit_b16_ep60_batch4_16shots / seed1",
         "oxford_flowers / base2new vit_b16_ep20_batch4_b2n_16shots / seed2"], "")
    # Other paths: their last three parts.
    mixed = [tmp_path / "a" / "x" / "seed1", tmp_path / "b" / "y" / "z" / "seed1", tmp_path / FEW_SHOT]
    assert ps.compare_labels(mixed) == (
        ["a/x/seed1", "y/z/seed1", "eurosat / vit_b16_ep60_batch4_16shots / seed1"], "")
    # The same search under two roots: paths relative to their common folder keep them apart.
    assert ps.compare_labels([tmp_path / "ours" / FEW_SHOT, tmp_path / "CoOp" / FEW_SHOT]) == (
        [str(Path("ours") / FEW_SHOT), str(Path("CoOp") / FEW_SHOT)], "")


def _overlap(a: Bbox, b: Bbox) -> bool:
    """Whether two display boxes share area (touching edges do not count)."""
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _suptitle(fig: Figure) -> Text:
    return next(c for c in fig.get_children() if isinstance(c, Text) and c.get_text() == fig.get_suptitle())


def test_compare_figure_labels_once_and_nothing_overlaps(tmp_path):
    paths = [tmp_path / FEW_SHOT, tmp_path / BASE2NEW]
    for seed, path in enumerate(paths):
        make_search(path, seed=seed, text_depth=12, image_depth=12)
    labels, shared = ps.compare_labels(paths)
    fig = ps.compare_figure([ps.load_architecture_arg(p) for p in paths], labels, shared)
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    text_ax, image_ax = [ax for ax in fig.axes if ax.get_title().endswith("(right: total)")]
    assert [t.get_text() for t in text_ax.get_yticklabels()] == labels
    assert [t.get_text() for t in image_ax.get_yticklabels()] == ["", ""]  # the labels are written once
    # Each panel, with its tick labels and the totals on its right, clears the other and the title.
    boxes = [ax.get_tightbbox(renderer) for ax in (text_ax, image_ax)]
    assert not _overlap(*boxes)
    title = _suptitle(fig).get_window_extent(renderer)
    assert not any(_overlap(title, box) for box in boxes)
    assert all(box.x0 >= 0 and box.x1 <= fig.bbox.x1 for box in boxes)  # nothing cut off at the edges


def test_chosen_length_ties_go_to_shorter_and_mixture_is_a_softmax():
    alpha = np.array([[1.0, 3.0, 3.0, 0.0], [0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 2.0]])
    assert ps.chosen_lengths(alpha, [0, 2, 4, 6]) == (2, 0, 6)
    weights = ps.mixture_weights(alpha, temperature=2.0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    # Row 0 / T = [0.5, 1.5, 1.5, 0]: exp = [1.648721, 4.481689, 4.481689, 1], sum 11.612099,
    # weights [0.141983, 0.385950, 0.385950, 0.086117].
    np.testing.assert_allclose(weights[0], [0.141983, 0.385950, 0.385950, 0.086117], atol=1e-6)
    np.testing.assert_allclose(weights[1], [0.25] * 4)
    # Large alphas must not overflow.
    assert np.isfinite(ps.mixture_weights(alpha * 1e4, 1.0)).all()


def test_mixture_figure_colours_the_deviation_from_uniform(tmp_path):
    # softmax of [0.04, 0, 0, 0]: e^0.04 = 1.040811, sum 4.040811: 0.257575 and 0.247475 (1/K = 0.25),
    # deviations +0.007575 and -0.002525; of [0.02, 0, 0, 0]: 0.253769 and 0.248744, deviation +0.003769.
    write_search(tmp_path, text=[[0.04, 0, 0, 0], [0, 0.04, 0, 0], [0, 0, 0, 0.04]],
                 image=[[0, 0, 0.02, 0], [0.02, 0, 0, 0]])
    fig = ps.mixture_figure(*ps.load_search(tmp_path))
    text_ax, image_ax = [ax for ax in fig.axes if ax.get_images()]
    image = text_ax.get_images()[0]
    np.testing.assert_allclose(image.get_array()[0], [0.007575, -0.002525, -0.002525, -0.002525], atol=1e-6)
    # A diverging map centred at 0 (uniform), spanning the largest deviation of both towers.
    norm = image.norm
    assert norm.vcenter == 0 and norm.vmin == pytest.approx(-0.007575, abs=1e-6)
    assert norm.vmax == pytest.approx(0.007575, abs=1e-6)
    assert image_ax.get_images()[0].norm is norm
    # Deviations below 0.01: four decimals, so 0.2576 and 0.2475 are told apart.
    texts = [t.get_text() for t in text_ax.texts]
    assert texts[:4] == ["0.2576", "0.2475", "0.2475", "0.2475"]
    assert "0.2538" in [t.get_text() for t in image_ax.texts]
    # Chosen lengths boxed where the alphas are largest.
    assert [(round(r.get_x() + 0.5), round(r.get_y() + 0.5)) for r in text_ax.patches] == [(0, 0), (1, 1), (3, 2)]
    # Every weight within 10% of 1/K: the reader is told the choice is a near-tie.
    assert "near-uniform" in text_ax.get_title() and "max |w − 1/K| = 0.0076" in text_ax.get_title()
    assert "near-ties" in fig.get_suptitle()


def test_mixture_figure_of_a_decided_search_has_no_near_tie_note(tmp_path):
    # softmax of [3, 0, 0, 0]: e^3 = 20.085537, sum 23.085537: 0.870048, deviation 0.620048.
    write_search(tmp_path, text=[[3, 0, 0, 0]], image=[[0, 0, 3, 0]])
    fig = ps.mixture_figure(*ps.load_search(tmp_path))
    text_ax = next(ax for ax in fig.axes if ax.get_images())
    assert text_ax.get_images()[0].norm.vmax == pytest.approx(0.620048, abs=1e-6)
    assert text_ax.texts[0].get_text() == "0.87"  # two decimals suffice
    assert "near" not in text_ax.get_title() and "near" not in fig.get_suptitle()


def test_entropy_panel_has_headroom_and_its_legend_outside(tmp_path):
    write_search(tmp_path, text=[[0.0, 0.0, 0.0, 0.0]] * 3, image=[[0.0, 0.0, 0.0, 0.0]] * 2)  # uniform: entropy log 4
    fig = ps.evolution_figure(*ps.load_search(tmp_path))
    ax = next(a for a in fig.axes if a.get_title().startswith("Mean per-block entropy"))
    log_k = 1.386294  # log 4
    bottom, top = ax.get_ylim()
    assert bottom == 0 and top > log_k + 0.1  # the curves at log K stay off the frame
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_ydata()[0] == pytest.approx(log_k, abs=1e-6)
    uniform = [t for t in ax.texts if t.get_text().startswith("uniform")]
    assert len(uniform) == 1 and uniform[0].get_position()[1] == pytest.approx(log_k, abs=1e-6)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    data_area = ax.get_window_extent(renderer)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["text", "image"]
    assert not _overlap(legend.get_window_extent(renderer), data_area)
    label = uniform[0].get_window_extent(renderer)
    assert data_area.y0 < label.y0 and label.y1 <= data_area.y1  # in the headroom, inside the panel


def test_mean_entropy_bounds():
    assert ps.mean_entropy(np.full((3, 4), 0.25)) == pytest.approx(math.log(4))
    assert ps.mean_entropy(np.eye(4)[:2]) == pytest.approx(0.0)


def test_disagreeing_arch_json_warns_but_plots(tmp_path, caplog):
    folder = tmp_path / "search"
    arch = make_search(folder)
    wrong = [(n + 1) % 4 for n in arch["text_lengths"]]
    (folder / "arch.json").write_text(json.dumps({**arch, "text_lengths": wrong}))
    with caplog.at_level(logging.WARNING):
        assert ps.main([str(folder)]) == 0
    assert "disagrees" in caplog.text and "text block 0" in caplog.text
    assert_png(folder / "mixture_weights.png")


def test_agreeing_arch_json_does_not_warn(tmp_path):
    arch_dict = make_search(tmp_path)
    arch, history = ps.load_search(tmp_path)
    assert ps.check_agreement(arch, history[-1]) == []
    assert arch.lengths("text") == tuple(arch_dict["text_lengths"])


def test_repeated_epoch_keeps_the_later_line(tmp_path, caplog):
    make_search(tmp_path)
    path = tmp_path / "alpha_history.jsonl"
    lines = path.read_text().splitlines()
    again = json.loads(lines[1])
    again["text"] = [[9.0, 0.0, 0.0, 0.0]] * 3
    path.write_text("\n".join([*lines, json.dumps(again)]) + "\n")
    with caplog.at_level(logging.WARNING):
        history = ps.load_alpha_history(path)
    assert [h.epoch for h in history] == [1, 2, 3]
    assert history[1].alphas["text"][0, 0] == 9.0
    assert "logged again" in caplog.text


def _break(folder: Path, name: str, content: str | None) -> None:
    if content is None:
        (folder / name).unlink()
    else:
        (folder / name).write_text(content)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("arch.json", None, "arch.json not found"),
        ("alpha_history.jsonl", None, "alpha_history.jsonl not found"),
        ("alpha_history.jsonl", "", "is empty"),
        ("arch.json", "{not json", "not valid JSON"),
        ("arch.json", json.dumps({"format": "other"}), "not a DPL architecture"),
        ("arch.json", json.dumps({"format": "dpl-architecture", "version": 1, "backbone": "ViT-B/16",
                                  "candidates": [0, 1, 2, 3], "text_lengths": [0, 9, 0], "image_lengths": [0, 0]}),
         "not among the candidates"),
        ("arch.json", json.dumps({"format": "dpl-architecture", "version": 1, "candidates": [0, 1, 2, 3],
                                  "text_lengths": [0, 1, 0], "image_lengths": [0, 0]}), "missing keys ['backbone']"),
        ("alpha_history.jsonl", '{"epoch": 1}\n', "alpha_history.jsonl:1: missing keys"),
        ("alpha_history.jsonl",
         json.dumps({"epoch": 1, "candidates": [0, 1, 2, 3], "temperature": 1.0,
                     "text": [[0, 0, 0]] * 3, "image": [[0, 0, 0, 0]] * 2}), "text block 0 must be a list of 4"),
        ("alpha_history.jsonl",
         json.dumps({"epoch": 1, "candidates": [0, 1, 2], "temperature": 1.0,
                     "text": [[0, 0, 0]] * 3, "image": [[0, 0, 0]] * 2}), "has candidates [0, 1, 2]"),
        ("alpha_history.jsonl",
         json.dumps({"epoch": 1, "candidates": [0, 1, 2, 3], "temperature": 0,
                     "text": [[0, 0, 0, 0]] * 3, "image": [[0, 0, 0, 0]] * 2}), "temperature must be a positive"),
        ("alpha_history.jsonl",
         json.dumps({"epoch": 1, "candidates": [0, 1, 2, 3], "temperature": 1.0,
                     "text": [[0, 0, 0, 0]] * 5, "image": [[0, 0, 0, 0]] * 2}), "has 5 text blocks"),
    ],
)
def test_malformed_search_folder_is_a_clear_error(tmp_path, capsys, name, content, message):
    folder = tmp_path / "search"
    make_search(folder)
    _break(folder, name, content)
    with pytest.raises(SystemExit) as excinfo:
        ps.main([str(folder)])
    assert excinfo.value.code == 2
    assert message in capsys.readouterr().err
    assert not (folder / "mixture_weights.png").exists()


def test_bad_line_is_named_by_number(tmp_path):
    make_search(tmp_path)
    path = tmp_path / "alpha_history.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{broken", lines[2]]) + "\n")
    with pytest.raises(ps.SearchOutputError, match=r"alpha_history.jsonl:2: not valid JSON"):
        ps.load_alpha_history(path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["{missing}"], "does not exist"),
        ([], "either a search folder or --compare"),
        (["{search}", "--compare", "{search}"], "either a search folder or --compare"),
        (["--compare", "{search}", "{search}", "--labels", "one"], "--labels has 1 entries for 2"),
        (["{search}", "--labels", "x"], "--labels goes with --compare"),
        (["--compare", "{missing}"], "neither a search folder nor"),
    ],
)
def test_bad_command_lines(tmp_path, capsys, argv, message):
    search = tmp_path / "search"
    make_search(search)
    argv = [a.format(search=search, missing=tmp_path / "missing") for a in argv]
    with pytest.raises(SystemExit) as excinfo:
        ps.main(argv)
    assert excinfo.value.code == 2
    assert message in capsys.readouterr().err


def test_search_of_one_tower_only(tmp_path):
    # A search restricted to the text tower logs an empty image tower.
    make_search(tmp_path, image_depth=0)
    assert ps.main([str(tmp_path)]) == 0
    assert_png(tmp_path / "mixture_weights.png")
    assert_png(tmp_path / "search_evolution.png")
