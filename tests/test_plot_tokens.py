"""scripts/plot_tokens.py: which prompt tokens are alive in which block, as a picture."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from trainers.dpl_core.architecture import PromptArchitecture, TokenGroup, modular_groups

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("plot_tokens", REPO / "scripts" / "plot_tokens.py")
plot_tokens = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = plot_tokens
spec.loader.exec_module(plot_tokens)


def test_rows_and_counts_of_modular_prompt_learning():
    arch = PromptArchitecture.load(REPO / "configs" / "architectures" / "mpl_c1_add2_rm1_depth9.json")
    assert plot_tokens.alive_counts(arch, "image") == [1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9]
    assert plot_tokens.alive_counts(arch, "text") == [1] * 12  # MaPLe's replacement: one token at a time
    rows = plot_tokens.token_rows(arch, "image")
    assert len(rows) == 17 and {r.kind for r in rows} == {"coupled"}
    assert (rows[0].entry, rows[0].last) == (0, 0) and (rows[1].entry, rows[1].last) == (1, 11)


def test_key_value_prompts_come_first_and_count_per_block():
    arch = PromptArchitecture((2, 0, 1), (0, 0), candidates=(0, 1, 2), text_groups=(TokenGroup(1, 1, None),))
    rows = plot_tokens.token_rows(arch, "text")
    assert [(r.kind, r.entry, r.last) for r in rows] == [("key/value", 0, 0), ("key/value", 0, 0), ("key/value", 2, 2),
                                                         ("learned", 1, 2)]  # fmt: skip
    assert plot_tokens.alive_counts(arch, "text") == [2, 1, 2]


def test_writes_a_png_and_refuses_a_bad_file_in_one_line(tmp_path, capsys):
    arch = tmp_path / "arch.json"
    PromptArchitecture((0,) * 4, (0,) * 4, candidates=(0,), image_groups=modular_groups(1, 2, 1, 3, source="learned")).save(arch)
    assert plot_tokens.main([str(arch)]) == 0
    out = tmp_path / "arch_tokens.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert plot_tokens.main([str(bad), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a DPL architecture" in err and len(err.strip().splitlines()) == 1
