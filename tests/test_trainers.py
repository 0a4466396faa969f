"""DPLSearch and DPL on Dassl (or its test double): search, training, resume, evaluation, errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from dassl.engine import build_trainer
from test_prompted_clip import literal_averaged_input

import train
from trainers.dpl_core.tiny_clip import write_tiny_checkpoint
from trainers.dpl_core.architecture import PromptArchitecture
from trainers.dpl_core.config import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEARCH_CFG = os.path.join(REPO, "configs/trainers/DPLSearch/vit_b16_ep60_batch4.yaml")
TRAIN_CFG = os.path.join(REPO, "configs/trainers/DPL/vit_b16_ep40_batch4.yaml")
SYNTHETIC_CFG = os.path.join(REPO, "configs/datasets/synthetic.yaml")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("clip") / "tiny.pt")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


def run_args(trainer, output_dir, data_root, checkpoint, *extra_opts, flags=()):
    """train.py arguments for a seconds-long run on the synthetic set with the tiny CLIP."""
    config = SEARCH_CFG if trainer == "DPLSearch" else TRAIN_CFG
    return [
        "--root", data_root, "--seed", "1", "--trainer", trainer,
        "--dataset-config-file", SYNTHETIC_CFG, "--config-file", config,
        "--output-dir", str(output_dir), *flags,
        "DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", "2", "INPUT.SIZE", "(32, 32)",
        "DATALOADER.NUM_WORKERS", "0", "TRAINER.DPL.CLIP_CHECKPOINT", checkpoint,
        "TRAINER.DPLSEARCH.MAX_LENGTH", "3", "TRAIN.CHECKPOINT_FREQ", "1", *extra_opts,
    ]  # fmt: skip


def train_until_cut_in_second_epoch(trainer) -> None:
    """Train, and interrupt the run as the second epoch starts (after the first checkpoint)."""
    original_run_epoch = trainer.run_epoch

    def run_then_stop():
        if trainer.epoch == 1:
            raise KeyboardInterrupt
        original_run_epoch()

    trainer.run_epoch = run_then_stop
    with pytest.raises(KeyboardInterrupt):
        trainer.train()


def make_trainer(argv):
    cfg = train.setup_cfg(train.build_parser().parse_args(argv))
    return build_trainer(cfg)


def test_every_yaml_merges_onto_the_extended_defaults():
    from dassl.config import get_cfg_default

    paths = []
    for root, _, files in os.walk(os.path.join(REPO, "configs")):
        paths += [os.path.join(root, f) for f in files if f.endswith(".yaml")]
    assert len(paths) >= 16 + 6
    for path in paths:
        cfg = get_cfg_default()
        train.extend_cfg(cfg)
        cfg.merge_from_file(path)


def test_search_updates_alphas_and_cycles_the_whole_validation_split(tmp_path, data_root, tiny_checkpoint):
    trainer = make_trainer(run_args("DPLSearch", tmp_path / "search", data_root, tiny_checkpoint))
    val_paths = sorted(item.impath for item in trainer.arch_data)
    per_pass = -(-len(val_paths) // trainer.cfg.DATALOADER.TRAIN_X.BATCH_SIZE)
    passes = [[path for _ in range(per_pass) for path in trainer.next_arch_batch()["impath"]] for _ in range(2)]
    assert sorted(passes[0]) == val_paths and sorted(passes[1]) == val_paths
    assert passes[0] != passes[1], "each pass reshuffles"
    trainer.arch_batches_drawn = 0
    trainer._arch_batches = None

    before = trainer.model.arch_weights.text.detach().clone()
    prompts_before = [p.detach().clone() for p in trainer.model.prompt_parameters()]
    trainer.train()
    assert not torch.equal(before, trainer.model.arch_weights.text)
    assert any(not torch.equal(a, b) for a, b in zip(prompts_before, trainer.model.prompt_parameters()))
    for param in trainer.model.clip_model.parameters():
        assert param.grad is None

    out = tmp_path / "search"
    arch = PromptArchitecture.load(out / "arch.json")
    assert arch == trainer.architecture() and arch.candidates == (0, 1, 2, 3)
    history = [json.loads(line) for line in (out / "alpha_history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert torch.equal(torch.tensor(history[-1]["text"]), trainer.model.arch_weights.text.detach())


def test_interrupted_search_resumes_with_exact_alphas(tmp_path, data_root, tiny_checkpoint):
    out = tmp_path / "search"
    argv = run_args("DPLSearch", out, data_root, tiny_checkpoint, "OPTIM.MAX_EPOCH", "3")
    trainer = make_trainer(argv)
    train_until_cut_in_second_epoch(trainer)
    saved = json.loads((out / "alpha_history.jsonl").read_text().splitlines()[0])
    adam_steps = trainer._optims["arch_weights"].state[trainer.model.arch_weights.text]["step"]

    resumed = make_trainer(argv)
    resumed.before_train()  # Dassl resumes here from the output folder
    assert resumed.start_epoch == 1
    assert torch.equal(resumed.model.arch_weights.text.detach(), torch.tensor(saved["text"]))
    assert torch.equal(resumed.model.arch_weights.image.detach(), torch.tensor(saved["image"]))
    restored_state = resumed._optims["arch_weights"].state[resumed.model.arch_weights.text]
    assert restored_state["step"] == adam_steps and "exp_avg" in restored_state
    resumed.train()
    history = [json.loads(line)["epoch"] for line in (out / "alpha_history.jsonl").read_text().splitlines()]
    assert history == [1, 2, 3]
    assert (out / "arch.json").exists()


def test_search_with_sgd_alphas_and_its_own_alpha_batch_size(tmp_path, data_root, tiny_checkpoint):
    default = make_trainer(run_args("DPLSearch", tmp_path / "adam", data_root, tiny_checkpoint))
    adam = default._optims["arch_weights"]
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["betas"] == (0.5, 0.999)
    assert len(default.next_arch_batch()["img"]) == default.cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 4

    trainer = make_trainer(run_args("DPLSearch", tmp_path / "sgd", data_root, tiny_checkpoint,
                                    "TRAINER.DPLSEARCH.ALPHA_OPTIMIZER", "sgd", "TRAINER.DPLSEARCH.ALPHA_LR", "0.5",
                                    "TRAINER.DPLSEARCH.ALPHA_BATCH_SIZE", "3"))  # fmt: skip
    sgd = trainer._optims["arch_weights"]
    assert isinstance(sgd, torch.optim.SGD)
    assert (sgd.defaults["lr"], sgd.defaults["momentum"], sgd.defaults["weight_decay"]) == (0.5, 0.9, 0.0)
    assert len(trainer.next_arch_batch()["img"]) == 3
    trainer.arch_batches_drawn, trainer._arch_batches = 0, None

    # One alpha step by hand: SGD's first step is alpha - lr * grad (the momentum buffer starts at the gradient).
    batch = trainer.next_arch_batch()
    trainer.arch_batches_drawn, trainer._arch_batches = 0, None
    images, labels = trainer.parse_batch_train(batch)
    weights = trainer.model.arch_weights
    grads = torch.autograd.grad(F.cross_entropy(trainer.class_logits(images), labels), [weights.text, weights.image])
    expected = [(p - 0.5 * g).detach() for p, g in zip((weights.text, weights.image), grads)]
    trainer.batch_idx, trainer.num_batches = 0, 2
    trainer.forward_backward(next(iter(trainer.train_loader_x)))
    torch.testing.assert_close(weights.text.detach(), expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weights.image.detach(), expected[1], rtol=1e-5, atol=1e-6)
    assert "momentum_buffer" in sgd.state[weights.text]


def test_training_reads_the_averaged_template_embeddings(tmp_path, data_root, tiny_checkpoint, capsys):
    out = tmp_path / "train"
    trainer = make_trainer(run_args("DPL", out, data_root, tiny_checkpoint, "TRAINER.DPL.TEXT_INPUT",
                                    "averaged_template_embeddings", "TRAINER.DPL.TEXT_LENGTHS", "[1, 0, 2]",
                                    "TRAINER.DPL.IMAGE_LENGTHS", "[1, 1]"))  # fmt: skip
    assert trainer.class_tokens is None
    names = [name.replace("_", " ") for name in trainer.dm.dataset.classnames]
    with torch.no_grad():
        full, pooled = literal_averaged_input(trainer.model.clip_model, names)
    assert torch.equal(trainer.class_pooled, pooled)
    torch.testing.assert_close(trainer.class_embeddings, full[:, : int(pooled.max()) + 1], rtol=0, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(trainer.encode_classes(),
                                   trainer.model.encode_text_embeddings(trainer.class_embeddings, pooled), rtol=1e-5, atol=1e-5)  # fmt: skip
    trainer.train()
    assert "pooled at the last template's end of text" in capsys.readouterr().out
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["TRAINER.DPL.TEXT_INPUT"] == "averaged_template_embeddings", "part of the run's identity"
    assert json.loads((out / "result.json").read_text())["accuracy"] is not None


def test_interrupted_training_resumes_from_last_checkpoint(tmp_path, data_root, tiny_checkpoint, capsys):
    out = tmp_path / "train"
    argv = run_args("DPL", out, data_root, tiny_checkpoint, "TEST.FINAL_MODEL", "best_val",
                    "TRAINER.DPL.TEXT_LENGTHS", "[2, 0, 1]", "TRAINER.DPL.IMAGE_LENGTHS", "[1, 3]")  # fmt: skip
    trainer = make_trainer(argv)
    train_until_cut_in_second_epoch(trainer)
    after_first = [p.detach().clone() for p in trainer.model.prompt_parameters()]
    assert not (out / "result.json").exists()

    # The unfinished folder is not resumed for another seed; nothing in it changes.
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    other_seed = list(argv)
    other_seed[other_seed.index("--seed") + 1] = "2"
    with pytest.raises(SystemExit) as exit_info:
        train.main(other_seed)
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "holds a different run" in error and "SEED: 1 -> 2" in error and "another --output-dir" in error
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    resumed = make_trainer(argv)
    capsys.readouterr()
    resumed.train()
    log = capsys.readouterr().out
    assert "Previous epoch: 1" in log and "epoch [2/2]" in log and "epoch [1/2]" not in log
    assert "Deploy the model with the best val performance" in log and "model-best.pth.tar" in log
    assert "* accuracy:" in log
    best = torch.load(out / "prompt_learner" / "model-best.pth.tar", weights_only=True)
    deployed = resumed._models["prompt_learner"].state_dict()
    assert all(torch.equal(best["state_dict"][k], v) for k, v in deployed.items())
    last = torch.load(out / "prompt_learner" / "model.pth.tar-2", weights_only=True)["state_dict"]
    assert any(not torch.equal(a, b) for a, b in zip(after_first, last.values())), "epoch 2 trained on"


def test_bad_inputs_give_clear_errors(tmp_path, data_root, tiny_checkpoint):
    base = run_args("DPL", tmp_path / "x", data_root, tiny_checkpoint)
    with pytest.raises(ConfigError, match="command-line KEY VALUE overrides: Non-existent (config )?key: TRAINER.DPL.NOPE"):
        train.setup_cfg(train.build_parser().parse_args(base + ["TRAINER.DPL.NOPE", "1"]))
    with pytest.raises(ValueError, match="TRAINER.DPL.PREC must be one of .*got 'fp8'"):
        make_trainer(base + ["TRAINER.DPL.PREC", "fp8", "TRAINER.DPL.TEXT_LENGTHS", "[1, 1, 1]",
                             "TRAINER.DPL.IMAGE_LENGTHS", "[1, 1]"])  # fmt: skip
    with pytest.raises(ValueError, match="needs a ViT backbone"):
        make_trainer(base + ["MODEL.BACKBONE.NAME", "RN50", "TRAINER.DPL.TEXT_LENGTHS", "[1, 1, 1]",
                             "TRAINER.DPL.IMAGE_LENGTHS", "[1, 1]"])  # fmt: skip
    deep = tmp_path / "arch12.json"
    PromptArchitecture((1,) * 12, (2,) * 12, backbone="ViT-B/16").save(deep)
    with pytest.raises(ValueError, match=r"arch12.json: .*text tower has 3 blocks but the architecture lists 12"):
        make_trainer(base + ["TRAINER.DPL.ARCH_FILE", str(deep)])
    with pytest.raises(ValueError, match="exactly one architecture"):
        make_trainer(base)
    with pytest.raises(ValueError, match="not both"):
        make_trainer(base + ["TRAINER.DPL.ARCH_FILE", str(deep), "TRAINER.DPL.TEXT_LENGTHS", "[1, 1, 1]"])


def run_train_py(argv):
    result = subprocess.run([sys.executable, "train.py", *argv], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def final_accuracy(log: str, after: str) -> float:
    tail = log[log.rindex(after):]
    return float(re.findall(r"\* accuracy: ([\d.]+)%", tail)[-1])


@pytest.mark.slow
def test_end_to_end_search_train_and_eval_only(tmp_path, data_root, tiny_checkpoint):
    search_dir, train_dir, eval_dir = tmp_path / "search", tmp_path / "train", tmp_path / "eval"
    run_train_py(run_args("DPLSearch", search_dir, data_root, tiny_checkpoint))
    arch = PromptArchitecture.load(search_dir / "arch.json")
    assert (search_dir / "log.txt").exists() and (search_dir / "config.yaml").exists()

    arch_opts = ("TRAINER.DPL.ARCH_FILE", str(search_dir / "arch.json"))
    log = run_train_py(run_args("DPL", train_dir, data_root, tiny_checkpoint, *arch_opts))
    assert arch.summary() in log
    accuracy = final_accuracy(log, "Finish training")
    checkpoint = train_dir / "prompt_learner" / "model.pth.tar-2"
    size = checkpoint.stat().st_size
    assert size < 100_000, f"checkpoint holds more than the learned tensors: {size} bytes"
    saved = torch.load(checkpoint, weights_only=True)
    assert set(saved["state_dict"]) == {f"{t}.prompts.{i}" for t, n in (("text", 3), ("image", 2)) for i in range(n)}

    assert round(json.loads((train_dir / "result.json").read_text())["accuracy"], 1) == accuracy  # the log rounds

    # Without --load-epoch the last saved epoch is evaluated, and the log says which.
    eval_args = run_args("DPL", eval_dir, data_root, tiny_checkpoint, *arch_opts,
                         flags=("--eval-only", "--model-dir", str(train_dir)))  # fmt: skip
    eval_log = run_train_py(eval_args)
    assert f"Evaluating epoch 2, the last saved in {train_dir} (saved epochs: 1, 2" in eval_log
    assert final_accuracy(eval_log, "=> result") == accuracy
    evaluated = json.loads((eval_dir / "result.json").read_text())
    assert evaluated["kind"] == "eval" and round(evaluated["accuracy"], 1) == accuracy
    assert "already holds this run, finished" in run_train_py(eval_args)

    # A finished run is kept: the same command has nothing to do, another config is refused.
    before = {p: p.read_bytes() for p in train_dir.rglob("*") if p.is_file()}
    log = run_train_py(run_args("DPL", train_dir, data_root, tiny_checkpoint, *arch_opts))
    assert "already holds this run, finished" in log and "nothing to do" in log
    result = subprocess.run(
        [sys.executable, "train.py", *run_args("DPL", train_dir, data_root, tiny_checkpoint, *arch_opts,
                                               "OPTIM.MAX_EPOCH", "3")],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1 and "OPTIM.MAX_EPOCH: 2 -> 3" in result.stderr
    assert {p: p.read_bytes() for p in train_dir.rglob("*") if p.is_file()} == before


def test_best_val_copy_keeps_the_resume_pointer_on_the_last_epoch(tmp_path, data_root, tiny_checkpoint):
    trainer = make_trainer(run_args("DPL", tmp_path / "run", data_root, tiny_checkpoint,
                                    "TRAINER.DPL.TEXT_LENGTHS", "[1, 1, 1]", "TRAINER.DPL.IMAGE_LENGTHS", "[1, 1]"))  # fmt: skip
    out = str(tmp_path / "run")
    trainer.save_model(2, out)
    trainer.save_model(3, out, val_result=50.0, model_name="model-best.pth.tar")
    pointer = tmp_path / "run" / "prompt_learner" / "checkpoint"
    assert pointer.read_text().strip() == "model.pth.tar-3"
    assert (tmp_path / "run" / "prompt_learner" / "model-best.pth.tar").exists()


def test_token_group_presets_train_save_and_load(tmp_path, data_root, tiny_checkpoint, capsys):
    """A MaPLe-like architecture (coupled maps) and CoOp's class-specific context, through DPL."""
    from trainers.dpl_core.architecture import TokenGroup, deep_prompt_groups

    arch = tmp_path / "maple_tiny.json"
    PromptArchitecture(
        (0, 0, 0), (0, 0), candidates=(0,),
        text_groups=deep_prompt_groups(2, 2, init="a photo of a") + (TokenGroup(2, 1, 1, per_class=True),),
        image_groups=deep_prompt_groups(2, 2, source="coupled"),
    ).save(arch)  # fmt: skip
    out = tmp_path / "train"
    argv = run_args("DPL", out, data_root, tiny_checkpoint, "TRAINER.DPL.ARCH_FILE", str(arch),
                    "TRAINER.DPL.TEXT_TEMPLATES", "['of a {}.']")  # fmt: skip
    trainer = make_trainer(argv)
    model = trainer.model
    classes = len(trainer.dm.dataset.classnames)
    # text: 2 x 2 tokens x 192 + one per-class token; image: two maps 192 -> 128
    expected = 4 * 192 + classes * 192 + 2 * (192 * 128 + 128)
    assert sum(p.numel() for p in trainer._models["prompt_learner"].parameters()) == expected
    assert f"# learned parameters: {expected:,}" in capsys.readouterr().out
    learned = [p for p in model.prompt_parameters() if p.numel()]  # DPL's key/value prompts are empty here
    before = [p.detach().clone() for p in learned]
    trainer.train()
    after = [p.detach().clone() for p in learned]
    assert all(not torch.equal(a, b) for a, b in zip(before, after)), "every learned tensor trained"
    saved = torch.load(out / "prompt_learner" / "model.pth.tar-2", weights_only=True)["state_dict"]
    assert {"text_tokens.tokens.0", "text_tokens.tokens.2", "image_tokens.maps.1.weight"} <= set(saved)

    evaluator = make_trainer(run_args("DPL", tmp_path / "eval", data_root, tiny_checkpoint, "TRAINER.DPL.ARCH_FILE",
                                      str(arch), "TRAINER.DPL.TEXT_TEMPLATES", "['of a {}.']"))  # fmt: skip
    evaluator.load_model(str(out), epoch=2)
    for a, b in zip([p for p in evaluator.model.prompt_parameters() if p.numel()], after):
        assert torch.equal(a.detach(), b)


def test_token_groups_refuse_the_averaged_text_input(tmp_path, data_root, tiny_checkpoint):
    from trainers.dpl_core.architecture import context_group

    arch = tmp_path / "coop_tiny.json"
    PromptArchitecture((0, 0, 0), (0, 0), candidates=(0,), text_groups=context_group(4)).save(arch)
    with pytest.raises(ConfigError, match="TEXT_INPUT must be 'templates'"):
        make_trainer(run_args("DPL", tmp_path / "x", data_root, tiny_checkpoint, "TRAINER.DPL.ARCH_FILE", str(arch),
                              "TRAINER.DPL.TEXT_INPUT", "averaged_template_embeddings"))  # fmt: skip


def test_token_search_trains_resumes_exactly_and_its_architecture_trains_with_dpl(tmp_path, data_root, tiny_checkpoint):
    out = tmp_path / "tokens"
    argv = run_args("DPLSearch", out, data_root, tiny_checkpoint, "OPTIM.MAX_EPOCH", "3", "TRAINER.DPLSEARCH.SPACE", "tokens",
                    "TRAINER.DPLSEARCH.MAX_TOKENS", "2", "TRAINER.DPLSEARCH.MAX_LIFETIME", "2")  # fmt: skip
    at = argv.index("TRAINER.DPLSEARCH.MAX_LENGTH")
    del argv[at : at + 2]  # the length space's key stays at its default
    trainer = make_trainer(argv)
    weights = trainer.model.token_weights
    assert trainer._models["arch_weights"] is weights
    train_until_cut_in_second_epoch(trainer)
    saved = json.loads((out / "alpha_history.jsonl").read_text().splitlines()[0])
    assert saved["space"] == "tokens" and saved["lifetimes"] == [1, 2, None]
    assert torch.tensor(saved["text"]["lifetimes"]).shape == (3, 2, 3)  # blocks, tokens, lifetimes
    steps = {name: trainer._optims["arch_weights"].state[p]["step"] for name, p in weights.named_parameters()}

    resumed = make_trainer(argv)
    resumed.before_train()
    assert resumed.start_epoch == 1
    restored = resumed.model.token_weights
    assert torch.equal(restored.text_counts.detach(), torch.tensor(saved["text"]["counts"]))
    assert torch.equal(restored.image_lifetimes.detach(), torch.tensor(saved["image"]["lifetimes"]))
    for name, param in restored.named_parameters():
        state = resumed._optims["arch_weights"].state[param]
        assert state["step"] == steps[name] and "exp_avg" in state, name
    resumed.train()
    assert [json.loads(line)["epoch"] for line in (out / "alpha_history.jsonl").read_text().splitlines()] == [1, 2, 3]
    arch = PromptArchitecture.load(out / "arch.json")
    assert arch == resumed.architecture() and arch.text_lengths == (0, 0, 0)

    trained = tmp_path / "train"
    dpl = make_trainer(run_args("DPL", trained, data_root, tiny_checkpoint, "TRAINER.DPL.ARCH_FILE", str(out / "arch.json")))
    dpl.train()
    assert json.loads((trained / "result.json").read_text())["accuracy"] is not None


def test_gram_identity_regulator_and_the_default_start_train_bit_for_bit_as_plain_training(tmp_path, data_root, tiny_checkpoint):
    from dassl.utils import set_random_seed

    from trainers.dpl_core.architecture import context_group
    from trainers.gram.meta import learned_tensors, save_meta_init
    from trainers.gram.regulator import GradientRegulator

    def seeded_trainer(*argv):
        set_random_seed(1)  # as train.py does: the same data order and crops for every run
        return make_trainer(run_args(*argv))

    arch = tmp_path / "coop_tiny.json"
    PromptArchitecture((0, 0, 0), (1, 0), candidates=(0, 1), text_groups=context_group(4)).save(arch)
    base = ["TRAINER.DPL.ARCH_FILE", str(arch), "TRAINER.DPL.TEXT_TEMPLATES", "['{}.']"]
    plain = seeded_trainer("DPL", tmp_path / "plain", data_root, tiny_checkpoint, *base)
    start = {n: p.detach().clone() for n, p in learned_tensors(plain.model).items()}
    meta = tmp_path / "gram.pt"
    save_meta_init(meta, start, GradientRegulator({n: tuple(p.shape) for n, p in start.items()}), {"note": "identity"})
    plain.train()

    gram = seeded_trainer("DPL", tmp_path / "gram", data_root, tiny_checkpoint, *base, "TRAINER.DPL.GRAM_FILE", str(meta))
    assert gram.gradient_regulator is not None
    gram.train()
    for name, param in learned_tensors(gram.model).items():
        assert torch.equal(param, learned_tensors(plain.model)[name]), name
    assert not torch.equal(learned_tensors(gram.model)["text_tokens.tokens.0"], start["text_tokens.tokens.0"]), "it trained"
    record = json.loads((tmp_path / "gram" / "run.json").read_text())
    assert len(record["gram_sha256"]) == 64 and "gram_sha256" not in json.loads((tmp_path / "plain" / "run.json").read_text())

    # a regulator that halves every gradient changes the run; a file for other prompts is refused
    halving = GradientRegulator({n: tuple(p.shape) for n, p in start.items()})
    with torch.no_grad():
        for p in halving.parameters():
            p.fill_(0.5)
    save_meta_init(meta, start, halving, {})
    halved = seeded_trainer("DPL", tmp_path / "halved", data_root, tiny_checkpoint, *base, "TRAINER.DPL.GRAM_FILE", str(meta))
    halved.train()
    assert not torch.equal(learned_tensors(halved.model)["text_tokens.tokens.0"], learned_tensors(plain.model)["text_tokens.tokens.0"])
    other = tmp_path / "other.json"
    PromptArchitecture((0, 0, 0), (0, 0), candidates=(0,), text_groups=context_group(8)).save(other)
    with pytest.raises(ConfigError, match=r"GRAM_FILE: .*other prompts than this model's: .*file \(4, 192\), model \(8, 192\)"):
        make_trainer(run_args("DPL", tmp_path / "x", data_root, tiny_checkpoint, "TRAINER.DPL.ARCH_FILE", str(other),
                              "TRAINER.DPL.GRAM_FILE", str(meta)))  # fmt: skip
