"""scripts/plot_search.py on search folders built from a synthetic alpha history."""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from PIL import Image

from scripts import plot_search as ps
from trainers.dpl_core.architecture import PromptArchitecture, TokenGroup
from trainers.dpl_core.token_search import TokenSearchSpace, decode_tokens

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


# ----------------------------------------------------------------------------- token search

LIFETIMES = [1, 2, None]


def token_line(epoch: int, counts: dict[str, list], lifetimes: dict[str, list], max_tokens: int = 2,
               temperature: float = 1.0) -> dict:
    """A history line as DPLSearch writes it with TRAINER.DPLSEARCH.SPACE tokens."""
    return {"epoch": epoch, "space": "tokens", "max_tokens": max_tokens, "lifetimes": LIFETIMES,
            "temperature": temperature,
            **{t: {"counts": counts[t], "lifetimes": lifetimes[t]} for t in ("text", "image")}}


def save_token_arch(folder: Path, line: dict) -> PromptArchitecture:
    """arch.json as DPLSearch writes it: the decode of ``line``'s weights."""
    space = TokenSearchSpace(line["max_tokens"], tuple(line["lifetimes"]))
    groups = {t: decode_tokens(space, t, line[t]["counts"], line[t]["lifetimes"]) for t in ("text", "image")}
    arch = PromptArchitecture((0,) * len(line["text"]["counts"]), (0,) * len(line["image"]["counts"]),
                              candidates=(0,), backbone="ViT-B/16", text_groups=groups["text"],
                              image_groups=groups["image"])
    arch.save(folder / "arch.json")
    return arch


def make_token_search(folder: Path, seed: int = 0, epochs: int = 3, text_depth: int = 4, image_depth: int = 3,
                      max_tokens: int = 2) -> list[dict]:
    """A token search's folder: random weights drifting from zero, arch.json their last decode."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    depths = {"text": text_depth, "image": image_depth}
    lines = [token_line(epoch, {t: (rng.normal(size=(d, max_tokens + 1)) * epoch).tolist() for t, d in depths.items()},
                        {t: (rng.normal(size=(d, max_tokens, len(LIFETIMES))) * epoch).tolist()
                         for t, d in depths.items()}, max_tokens)
             for epoch in range(1, epochs + 1)]
    (folder / "alpha_history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    save_token_arch(folder, lines[-1])
    return lines


def hand_made_line(epoch: int = 1) -> dict:
    """Text: 3 blocks, image: 2; counts 0..2, lifetimes 1, 2, end; ties in both kinds of weights.

    Text counts: block 0 ties 1 and 2 tokens (-> 1), block 1 chooses 1, block 2 chooses 2.
    Text lifetimes: block 0 token 0 ties 1 and 2 (-> 1); block 1 token 0 chooses 2, which runs
    past the last block (1 + 2 >= 3: -> end); block 2's tokens choose 2 and 1, both past the end.
    Image counts tie everywhere (-> 0 tokens).
    """
    return token_line(epoch, {"text": [[0, 1, 1], [0, 2, 1], [0, 0, 5]], "image": [[2, 2, 2], [0, 0, 0]]},
                      {"text": [[[3, 3, 0], [0, 0, 9]], [[0, 2, 1], [9, 0, 0]], [[0, 5, 0], [1, 0, 0]]],
                       "image": [[[0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]]})


def write_token_search(folder: Path, *lines: dict) -> PromptArchitecture:
    """A token search's folder with these history lines; arch.json is the last one's decode."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "alpha_history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return save_token_arch(folder, lines[-1])


TOKEN_PLOTS = ("count_weights.png", "lifetime_weights.png", "search_evolution.png", "tokens.png")


def test_token_search_folder_gives_its_four_plots(tmp_path, capsys, caplog):
    folder = tmp_path / "search"
    make_token_search(folder)
    with caplog.at_level(logging.WARNING):
        assert ps.main([str(folder)]) == 0
    assert capsys.readouterr().out.split() == [str(folder / name) for name in TOKEN_PLOTS]
    for name in TOKEN_PLOTS:
        assert_png(folder / name)
    assert not (folder / "mixture_weights.png").exists()
    assert "disagrees" not in caplog.text


def test_token_choices_follow_the_decode_rule_with_ties(tmp_path):
    write_token_search(tmp_path, hand_made_line())
    (epoch,) = ps.load_alpha_history(tmp_path / "alpha_history.jsonl")
    assert ps.chosen_tokens(epoch, "text") == [(1,), (None,), (None, None)]
    assert ps.chosen_counts(epoch, "text") == (1, 1, 2)
    assert ps.chosen_counts(epoch, "image") == (0, 0)
    labels, probability = ps.lifetime_cells(epoch, "text")
    assert labels == [["1", ""], ["end", ""], ["end", "end"]]
    # Block 0 token 0: softmax [3, 3, 0] -> e^3 / (2 e^3 + 1) = 20.085537 / 41.171074 = 0.487856.
    # Block 1 token 0 is "end" by lifetime 2 or by end: (e^2 + e) / (1 + e^2 + e) = 10.107338 / 11.107338 = 0.909969.
    # Block 2 is the last: every option reaches the end, probability 1. NaN: not kept.
    np.testing.assert_allclose(probability, [[0.487856, np.nan], [0.909969, np.nan], [1.0, 1.0]], atol=1e-6)
    labels, probability = ps.lifetime_cells(epoch, "image")
    assert labels == [["", ""], ["", ""]] and np.isnan(probability).all()


def test_count_and_lifetime_figures_show_the_choices(tmp_path):
    write_token_search(tmp_path, hand_made_line())
    arch, history = ps.load_search(tmp_path)
    fig = ps.count_figure(arch, history)
    text_ax, image_ax = [ax for ax in fig.axes if ax.get_images()]
    # Boxed: the chosen count of every block (x = count, y = block).
    assert [(round(r.get_x() + 0.5), round(r.get_y() + 0.5)) for r in text_ax.patches] == [(1, 0), (1, 1), (2, 2)]
    assert [(round(r.get_x() + 0.5), round(r.get_y() + 0.5)) for r in image_ax.patches] == [(0, 0), (0, 1)]
    assert text_ax.get_title().startswith("text tower: chosen 1 1 2")
    # Image counts are uniform (1/3 each): its choice is a near-tie and the title says so.
    assert "near-uniform" in image_ax.get_title() and "count weights (image)" in fig.get_suptitle()

    fig = ps.lifetime_figure(arch, history)
    text_ax, image_ax = [ax for ax in fig.axes if ax.get_images()]
    assert [t.get_text() for t in text_ax.texts] == ["1\n0.49", "end\n0.91", "end\n1.00", "end\n1.00"]
    hatched = [(round(r.get_x() + 0.5), round(r.get_y() + 0.5)) for r in text_ax.patches if r.get_hatch()]
    assert hatched == [(1, 0), (1, 1)]  # token 1 of blocks 0 and 1: beyond their count of 1
    assert len([r for r in image_ax.patches if r.get_hatch()]) == 4 and not image_ax.texts
    assert text_ax.get_title() == "text tower: 4 tokens kept" and image_ax.get_title() == "image tower: 0 tokens kept"
    # The colour is the probability itself, on a fixed 0..1 scale.
    image = text_ax.get_images()[0]
    assert (image.norm.vmin, image.norm.vmax) == (0.0, 1.0)
    assert image.get_array()[1, 0] == pytest.approx(0.909969, abs=1e-6)


def test_token_evolution_tracks_chosen_counts_and_both_entropies(tmp_path):
    first = hand_made_line(1)
    second = hand_made_line(2)
    second["text"]["counts"][2] = [9, 0, 0]  # block 2 drops its tokens after epoch 2
    write_token_search(tmp_path, first, second)
    fig = ps.token_evolution_figure(*ps.load_search(tmp_path))
    maps = [ax for ax in fig.axes if ax.get_title().endswith("chosen count per block")]
    assert [ax.get_title() for ax in maps] == ["text tower: chosen count per block", "image tower: chosen count per block"]
    np.testing.assert_array_equal(maps[0].collections[0].get_array(), [[1, 1], [1, 1], [2, 0]])
    panels = {ax.get_title(): ax for ax in fig.axes if "entropy" in ax.get_title()}
    assert set(panels) == {"Mean per-block entropy of the count weights", "Mean per-token entropy of the lifetime weights"}
    for ax in panels.values():  # counts 0..2 and lifetimes 1, 2, end: three options each
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert dashed[0].get_ydata()[0] == pytest.approx(math.log(3))
        assert [line.get_label() for line in ax.get_lines() if line.get_linestyle() != "--"] == ["text", "image"]
    # Image counts: uniform in both epochs, entropy log 3.
    image_counts = panels["Mean per-block entropy of the count weights"].get_lines()[1].get_ydata()
    np.testing.assert_allclose(image_counts, [math.log(3)] * 2)


@pytest.mark.parametrize("figure", ["count_figure", "lifetime_figure", "token_evolution_figure"])
def test_token_figures_have_nothing_overlapping(tmp_path, figure):
    make_token_search(tmp_path, text_depth=12, image_depth=12, max_tokens=4)
    fig = getattr(ps, figure)(*ps.load_search(tmp_path))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes]
    boxes += [legend.get_window_extent(renderer) for legend in fig.legends]
    boxes.append(_suptitle(fig).get_window_extent(renderer) if fig.get_suptitle() else Bbox.null())
    for i, a in enumerate(boxes):
        assert a.x0 >= 0 and a.x1 <= fig.bbox.x1 and a.y0 >= 0 and a.y1 <= fig.bbox.y1
        assert not any(_overlap(a, b) for b in boxes[i + 1:])


def test_disagreeing_token_arch_json_warns_but_plots(tmp_path, caplog):
    write_token_search(tmp_path, hand_made_line())
    arch, history = ps.load_search(tmp_path)
    assert ps.check_token_agreement(arch, history[-1]) == []
    # Block 0 saved with two tokens that live to the end, where the weights choose one of lifetime 1.
    wrong = PromptArchitecture((0,) * 3, (0,) * 2, candidates=(0,), backbone="ViT-B/16",
                               text_groups=(TokenGroup(0, 2, None, positional=False), *arch.text_groups[1:]))
    wrong.save(tmp_path / "arch.json")
    assert ps.check_token_agreement(wrong, history[-1]) == [
        "text block 0: arch.json 2 tokens (end end), weights 1 token (1)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert ps.main([str(tmp_path)]) == 0
    assert "disagrees with the weights of epoch 1" in caplog.text and "text block 0: arch.json 2 tokens" in caplog.text
    assert_png(tmp_path / "count_weights.png")


def _without(data: dict, *keys: str) -> dict:
    inner = data
    for key in keys[:-1]:
        inner = inner[key]
    del inner[keys[-1]]
    return data


LENGTH_LINE = {"epoch": 2, "candidates": [0, 1, 2], "temperature": 1.0, "text": [[0, 0, 0]] * 3,
               "image": [[0, 0, 0]] * 2}


@pytest.mark.parametrize(
    "lines, message",
    [
        ([_without(hand_made_line(), "max_tokens")], "alpha_history.jsonl:1: missing keys ['max_tokens']"),
        ([_without(hand_made_line(), "image", "counts")], "alpha_history.jsonl:1: image is missing keys ['counts']"),
        ([{**hand_made_line(), "text": [[0, 1, 1]]}], "alpha_history.jsonl:1: text must be an object with counts"),
        ([{**hand_made_line(), "text": {"counts": [[0, 1]] * 3, "lifetimes": hand_made_line()["text"]["lifetimes"]}}],
         "alpha_history.jsonl:1: text counts of block 0 must be 3 numbers (counts 0..2), got [0, 1]"),
        ([{**hand_made_line(), "image": {"counts": [[0, 0, 0]] * 2, "lifetimes": [[[0, 0, 0]] * 2, [[0, 0, 0]]]}}],
         "alpha_history.jsonl:1: image lifetimes of block 1 must be 2 rows (one per token)"),
        ([{**hand_made_line(), "image": {"counts": [[0, 0, 0]] * 2, "lifetimes": [[[0, 0, 0]] * 2, [[0, 0], [0, 0, 0]]]}}],
         "alpha_history.jsonl:1: image lifetimes of block 1 token 0 must be 3 numbers (lifetimes 1, 2, end)"),
        ([{**hand_made_line(), "image": {"counts": [[0, 0, 0]] * 2, "lifetimes": [[[0, 0, 0]] * 2]}}],
         "alpha_history.jsonl:1: image has 2 blocks of count weights but 1 of lifetime weights"),
        ([{**hand_made_line(), "image": {"counts": [[0, 0, float("nan")]] * 2,
                                         "lifetimes": [[[0, 0, 0]] * 2] * 2}}],
         "alpha_history.jsonl:1: image counts are not all finite"),
        ([{**hand_made_line(), "lifetimes": [2, 1]}], "alpha_history.jsonl:1: lifetimes must be increasing"),
        ([{**hand_made_line(), "max_tokens": 0}], "alpha_history.jsonl:1: the token search needs max_tokens >= 1"),
        ([{**hand_made_line(), "space": "widths"}], "alpha_history.jsonl:1: unknown space 'widths'"),
        ([hand_made_line(1), LENGTH_LINE],
         "alpha_history.jsonl:2: a line of a lengths search after lines of a tokens search"),
        ([{**LENGTH_LINE, "epoch": 1}, hand_made_line(2)],
         "alpha_history.jsonl:2: a line of a tokens search after lines of a lengths search"),
        ([hand_made_line(1), {**hand_made_line(2), "lifetimes": [1, 2, 3]}],
         ("alpha_history.jsonl:2: max_tokens/lifetimes/blocks (2, (1, 2, 3), 3, 2) differ from the earlier lines' "
          "(2, (1, 2, None), 3, 2)")),
    ],
)
def test_malformed_token_history_is_one_clear_error_line(tmp_path, capsys, lines, message):
    write_token_search(tmp_path, hand_made_line())
    (tmp_path / "alpha_history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(SystemExit) as excinfo:
        ps.main([str(tmp_path)])
    assert excinfo.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0]
    assert not any((tmp_path / name).exists() for name in TOKEN_PLOTS)


@pytest.mark.parametrize(
    "arch, message",
    [
        (PromptArchitecture((0, 1, 0), (0, 0), candidates=(0, 1)), "is a token search's, but arch.json has key/value"),
        (PromptArchitecture((0,) * 4, (0,) * 2, candidates=(0,)), "has 3 text blocks but arch.json 4"),
    ],
)
def test_token_history_with_another_search_arch_json_is_refused(tmp_path, capsys, arch, message):
    write_token_search(tmp_path, hand_made_line())
    arch.save(tmp_path / "arch.json")
    with pytest.raises(SystemExit) as excinfo:
        ps.main([str(tmp_path)])
    assert excinfo.value.code == 2 and message in capsys.readouterr().err


def test_token_search_without_torch_is_a_clear_error(tmp_path, capsys, monkeypatch):
    write_token_search(tmp_path, hand_made_line())
    monkeypatch.delitem(sys.modules, "trainers.dpl_core.token_search")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(SystemExit) as excinfo:
        ps.main([str(tmp_path)])
    assert excinfo.value.code == 2 and "needs torch" in capsys.readouterr().err


def test_compare_token_searches_draws_the_counts_per_block(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_token_search(a, hand_made_line())
    make_token_search(b, seed=3, text_depth=4, image_depth=2)
    archs = [ps.load_architecture_arg(p) for p in (a, b)]
    fig = ps.compare_figure(archs, ["hand", "random"])
    text_ax = next(ax for ax in fig.axes if ax.get_title() == "text tower (right: total)")
    matrix = text_ax.get_images()[0].get_array()
    np.testing.assert_array_equal(matrix[0, :3], [1, 1, 2])  # the hand-made search's chosen counts
    assert matrix.mask[0, 3]  # its text tower is one block shorter: drawn blank
    np.testing.assert_array_equal(matrix[1], ps.entering_counts(archs[1], "text"))
    assert fig.get_suptitle() == "Prompt tokens entering per block"
    out = tmp_path / "cmp"
    assert ps.main(["--compare", str(a), str(b), "--out", str(out)]) == 0
    assert_png(out / "architectures.png")


def test_compare_refuses_length_and_token_searches_together(tmp_path, capsys):
    make_search(tmp_path / "lengths")
    write_token_search(tmp_path / "tokens", hand_made_line())
    out = tmp_path / "cmp"
    with pytest.raises(SystemExit) as excinfo:
        ps.main(["--compare", str(tmp_path / "lengths"), str(tmp_path / "tokens"), "--labels", "L", "T",
                 "--out", str(out)])
    assert excinfo.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert "one kind of architecture at a time, but L has key/value prompt lengths" in errors[0] and "T token groups" in errors[0]
    assert not out.exists()
