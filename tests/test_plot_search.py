"""scripts/plot_search.py on search folders built from a synthetic alpha history."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
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


def test_default_labels_keep_the_differing_path_parts(tmp_path):
    paths = [tmp_path / "output" / d / "DPLSearch" / "c_16shots" / "seed1" for d in ("eurosat", "dtd")]
    assert ps.default_labels(paths) == ["eurosat", "dtd"]
    mixed = [tmp_path / "x" / "seed1", tmp_path / "y" / "z" / "seed1"]
    assert ps.default_labels(mixed) == ["x/seed1", "y/z/seed1"]


def test_chosen_length_ties_go_to_shorter_and_mixture_is_a_softmax():
    alpha = np.array([[1.0, 3.0, 3.0, 0.0], [0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 2.0]])
    assert ps.chosen_lengths(alpha, [0, 2, 4, 6]) == (2, 0, 6)
    weights = ps.mixture_weights(alpha, temperature=2.0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    expected = np.exp(alpha[0] / 2) / np.exp(alpha[0] / 2).sum()
    np.testing.assert_allclose(weights[0], expected)
    # Large alphas must not overflow.
    assert np.isfinite(ps.mixture_weights(alpha * 1e4, 1.0)).all()


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
