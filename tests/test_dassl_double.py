"""Behaviour of Dassl that this project relies on.

These tests import ``dassl`` whatever it is: the test double (``tests/dassl_double``, used when
Dassl is not installed) or a real Dassl 0.6.3 install. They must pass against both; running
them in an environment with real Dassl checks that the double is faithful.
"""

import inspect
import io
import os
import pickle
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from yacs.config import CfgNode

from dassl.config import get_cfg_default
from dassl.data import DatasetWrapper
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from dassl.data.transforms import build_transform
from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
from dassl.evaluation import build_evaluator
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import Registry, load_checkpoint, setup_logger

NUM_CLASSES = 3
IMAGE_SIZE = 8
TRAIN_PER_CLASS = 4
VAL_PER_CLASS = 2
TEST_PER_CLASS = 2
# Per-class RGB colours, so the tiny linear model can actually learn the classes.
CLASS_COLOURS = [(220, 30, 30), (30, 220, 30), (30, 30, 220)]


def _write_tiny_images(root: Path) -> None:
    """Write ``root/tiny/<split>/<class>/<i>.png`` 8x8 images: class colour plus noise."""
    rng = np.random.default_rng(0)
    counts = {"train": TRAIN_PER_CLASS, "val": VAL_PER_CLASS, "test": TEST_PER_CLASS}
    for split, count in counts.items():
        for label, colour in enumerate(CLASS_COLOURS):
            class_dir = root / "tiny" / split / f"class_{label}"
            class_dir.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                noise = rng.integers(-20, 20, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(class_dir / f"{i}.png")


@DATASET_REGISTRY.register()
class DoubleTestTinyDataset(DatasetBase):
    """Three colour classes read from ``DATASET.ROOT/tiny``; few-shot sampling as CoOp datasets do."""

    dataset_dir = "tiny"

    def __init__(self, cfg: CfgNode) -> None:
        root = Path(cfg.DATASET.ROOT) / self.dataset_dir
        splits = {
            split: [
                Datum(impath=str(path), label=label, classname=f"class {label}")
                for label in range(NUM_CLASSES)
                for path in sorted((root / split / f"class_{label}").glob("*.png"))
            ]
            for split in ("train", "val", "test")
        }
        train, val = splits["train"], splits["val"]
        if cfg.DATASET.NUM_SHOTS >= 1:
            train, val = self.generate_fewshot_dataset(train, val, num_shots=cfg.DATASET.NUM_SHOTS)
        super().__init__(train_x=train, val=val, test=splits["test"])


class TinyLinear(nn.Module):
    """Linear classifier over flattened images [batch, 3, 8, 8] -> logits [batch, 3]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * IMAGE_SIZE * IMAGE_SIZE, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@TRAINER_REGISTRY.register()
class DoubleTestTinyTrainer(TrainerX):
    """Smallest CoOp-style trainer: overrides build_model and forward_backward only."""

    def build_model(self) -> None:
        self.model = TinyLinear().to(self.device)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("linear", self.model, self.optim, self.sched)

    def forward_backward(self, batch: dict) -> dict:
        image, label, _ = self.parse_batch_train(batch)
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    _write_tiny_images(root)
    return root


def _tiny_cfg(data_root: Path, output_dir: Path, **overrides: object) -> CfgNode:
    """Defaults + the tiny dataset/trainer, CPU, no workers, 2 epochs of 3 batches."""
    cfg = get_cfg_default()
    cfg.merge_from_list(
        [
            "DATASET.ROOT", str(data_root),
            "DATASET.NAME", "DoubleTestTinyDataset",
            "TRAINER.NAME", "DoubleTestTinyTrainer",
            "OUTPUT_DIR", str(output_dir),
            "USE_CUDA", False,
            "INPUT.SIZE", (IMAGE_SIZE, IMAGE_SIZE),
            "INPUT.INTERPOLATION", "bicubic",
            "INPUT.TRANSFORMS", ("random_flip", "normalize"),
            "DATALOADER.NUM_WORKERS", 0,
            "DATALOADER.TRAIN_X.BATCH_SIZE", 4,
            "DATALOADER.TEST.BATCH_SIZE", 4,
            "OPTIM.NAME", "sgd",
            "OPTIM.LR", 0.1,
            "OPTIM.LR_SCHEDULER", "cosine",
            "OPTIM.MAX_EPOCH", 2,
            "TRAIN.PRINT_FREQ", 2,
        ]
    )
    for key, value in overrides.items():
        cfg.merge_from_list([key, value])
    return cfg


# ------------------------------------------------------------------------------ registry


def test_registry_registers_under_class_name_and_rejects_duplicates() -> None:
    registry = Registry("TEST")

    @registry.register()
    class Alpha:
        pass

    assert registry.get("Alpha") is Alpha
    assert registry.registered_names() == ["Alpha"]

    def make_duplicate() -> type:
        class Alpha:  # same __name__, different class
            pass

        return Alpha

    with pytest.raises(KeyError):
        registry.register()(make_duplicate())
    assert registry.get("Alpha") is Alpha

    with pytest.raises(KeyError, match="Beta"):
        registry.get("Beta")


def test_build_trainer_rejects_unknown_name_with_suggestion(tmp_path: Path) -> None:
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = "DoubleTestTinyTrainr"
    with pytest.raises(ValueError, match=r"do you mean \[DoubleTestTinyTrainer\]"):
        build_trainer(cfg)


# ------------------------------------------------------------------------------ config


def test_default_config_values_and_fresh_copies() -> None:
    cfg = get_cfg_default()
    assert cfg.INPUT.SIZE == (224, 224)
    assert cfg.INPUT.INTERPOLATION == "bilinear"
    assert cfg.INPUT.PIXEL_MEAN == [0.485, 0.456, 0.406]
    assert cfg.INPUT.RRCROP_SCALE == (0.08, 1.0)
    assert cfg.DATASET.NUM_SHOTS == -1
    assert cfg.DATALOADER.NUM_WORKERS == 4
    assert cfg.DATALOADER.TRAIN_X.SAMPLER == "RandomSampler"
    assert cfg.DATALOADER.TEST.SAMPLER == "SequentialSampler"
    assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.DATALOADER.TEST.BATCH_SIZE) == (32, 32)
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.LR_SCHEDULER) == ("adam", 0.0003, "single_step")
    assert (cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.STEPSIZE) == (10, -1, (-1,))
    assert (cfg.TRAIN.CHECKPOINT_FREQ, cfg.TRAIN.PRINT_FREQ) == (0, 10)
    assert (cfg.TEST.EVALUATOR, cfg.TEST.SPLIT, cfg.TEST.FINAL_MODEL) == ("Classification", "test", "last_step")
    assert (cfg.SEED, cfg.USE_CUDA, cfg.VERBOSE, cfg.OUTPUT_DIR) == (-1, True, True, "./output")

    cfg.OPTIM.LR = 1.0
    assert get_cfg_default().OPTIM.LR == 0.0003


def test_coop_style_yaml_merges_and_unknown_keys_are_refused(tmp_path: Path) -> None:
    yaml_file = tmp_path / "coop.yaml"
    yaml_file.write_text(
        textwrap.dedent(
            """\
            DATALOADER:
              TRAIN_X:
                BATCH_SIZE: 4
              TEST:
                BATCH_SIZE: 100
              NUM_WORKERS: 8
            INPUT:
              SIZE: (224, 224)
              INTERPOLATION: "bicubic"
              PIXEL_MEAN: [0.48145466, 0.4578275, 0.40821073]
              PIXEL_STD: [0.26862954, 0.26130258, 0.27577711]
              TRANSFORMS: ["random_resized_crop", "random_flip", "normalize"]
            OPTIM:
              NAME: "sgd"
              LR: 0.0035
              MAX_EPOCH: 5
              LR_SCHEDULER: "cosine"
              WARMUP_EPOCH: 1
              WARMUP_TYPE: "constant"
              WARMUP_CONS_LR: 1e-5
            TRAIN:
              PRINT_FREQ: 20
            MODEL:
              BACKBONE:
                NAME: "ViT-B/16"
            """
        )
    )
    cfg = get_cfg_default()
    cfg.merge_from_file(str(yaml_file))
    cfg.merge_from_list(["DATASET.NUM_SHOTS", 16, "OPTIM.MAX_EPOCH", 2])
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 4
    assert cfg.INPUT.INTERPOLATION == "bicubic"
    assert list(cfg.INPUT.TRANSFORMS) == ["random_resized_crop", "random_flip", "normalize"]
    assert (cfg.OPTIM.NAME, cfg.OPTIM.WARMUP_TYPE, cfg.OPTIM.WARMUP_CONS_LR) == ("sgd", "constant", 1e-5)
    assert (cfg.OPTIM.MAX_EPOCH, cfg.DATASET.NUM_SHOTS) == (2, 16)
    assert cfg.MODEL.BACKBONE.NAME == "ViT-B/16"

    # yacs refuses keys the defaults lack: KeyError from files, AssertionError from lists.
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("OPTIM:\n  NOT_A_KEY: 1\n")
    with pytest.raises(KeyError, match="NOT_A_KEY"):
        cfg.merge_from_file(str(bad_yaml))
    with pytest.raises(AssertionError, match="Non-existent key"):
        cfg.merge_from_list(["TRAINER.DPL.N_CTX", 2])  # trainer keys must be added by extend_cfg
    cfg.TRAINER.DPL = CfgNode()
    cfg.TRAINER.DPL.N_CTX = 4
    cfg.merge_from_list(["TRAINER.DPL.N_CTX", 2])
    assert cfg.TRAINER.DPL.N_CTX == 2


# ------------------------------------------------------------------------------ data


def test_datum_requires_an_existing_file_path(data_root: Path) -> None:
    impath = str(next((data_root / "tiny" / "train" / "class_0").glob("*.png")))
    item = Datum(impath=impath, label=2, domain=1, classname="two")
    assert (item.impath, item.label, item.domain, item.classname) == (impath, 2, 1, "two")

    with pytest.warns(UserWarning, match="No file found"), pytest.raises(AssertionError):
        Datum(impath=str(data_root / "missing.png"), label=0)
    with pytest.raises(AssertionError):
        Datum(impath=Path(impath), label=0)  # a Path is not a str


def test_fewshot_sampling_counts(data_root: Path) -> None:
    cfg = _tiny_cfg(data_root, data_root / "unused")
    dataset = DoubleTestTinyDataset(cfg)
    train = dataset.train_x
    assert len(train) == NUM_CLASSES * TRAIN_PER_CLASS
    assert dataset.num_classes == NUM_CLASSES
    assert dataset.classnames == [f"class {i}" for i in range(NUM_CLASSES)]
    assert dataset.lab2cname == {i: f"class {i}" for i in range(NUM_CLASSES)}

    two_shot_train, two_shot_val = dataset.generate_fewshot_dataset(train, dataset.val, num_shots=2)
    assert Counter(item.label for item in two_shot_train) == {0: 2, 1: 2, 2: 2}
    assert Counter(item.label for item in two_shot_val) == {0: 2, 1: 2, 2: 2}
    assert len({item.impath for item in two_shot_train}) == 6  # without replacement

    # Fewer items than shots: all kept, or sampled with replacement when repeat=True.
    few = dataset.generate_fewshot_dataset(train, num_shots=TRAIN_PER_CLASS + 2)
    assert Counter(item.label for item in few) == {0: 4, 1: 4, 2: 4}
    repeated = dataset.generate_fewshot_dataset(train, num_shots=TRAIN_PER_CLASS + 2, repeat=True)
    assert Counter(item.label for item in repeated) == {0: 6, 1: 6, 2: 6}

    assert dataset.generate_fewshot_dataset(train, num_shots=-1) is train
    assert dataset.generate_fewshot_dataset(train, dataset.val, num_shots=0) == (train, dataset.val)

    by_label = dataset.split_dataset_by_label(train)
    assert sorted(by_label) == [0, 1, 2] and all(len(v) == TRAIN_PER_CLASS for v in by_label.values())


def test_transforms_and_dataset_wrapper_items(data_root: Path) -> None:
    cfg = _tiny_cfg(
        data_root, data_root / "unused",
        **{"INPUT.TRANSFORMS": ("random_resized_crop", "random_flip", "normalize")},
    )
    dataset = DoubleTestTinyDataset(cfg)
    tfm_train = build_transform(cfg, is_train=True)
    tfm_test = build_transform(cfg, is_train=False)

    train_item = DatasetWrapper(cfg, dataset.train_x, transform=tfm_train, is_train=True)[5]
    assert set(train_item) == {"img", "label", "domain", "impath", "index"}
    assert train_item["img"].shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert (train_item["index"], train_item["label"]) == (5, 1)
    assert train_item["impath"] == dataset.train_x[5].impath

    test_item = DatasetWrapper(cfg, dataset.test, transform=tfm_test)[0]
    assert test_item["img"].shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    # normalize with the ImageNet statistics: a red image has a large positive red channel.
    assert test_item["img"][0].mean() > 1.0 > test_item["img"][2].mean()

    cfg.INPUT.NO_TRANSFORM = True
    assert build_transform(cfg, is_train=True) is None


# ------------------------------------------------------------------------------ optim


def test_optimizer_staged_lr_and_param_groups() -> None:
    cfg = get_cfg_default()
    model = nn.Sequential()
    model.add_module("base", nn.Linear(2, 2))
    model.add_module("head", nn.Linear(2, 1))
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.1
    cfg.OPTIM.STAGED_LR = True
    cfg.OPTIM.NEW_LAYERS = ("head",)
    optim = build_optimizer(model, cfg.OPTIM)
    assert isinstance(optim, torch.optim.SGD)
    assert [g["lr"] for g in optim.param_groups] == pytest.approx([0.01, 0.1])
    assert [len(g["params"]) for g in optim.param_groups] == [2, 2]

    cfg.OPTIM.STAGED_LR = False
    cfg.OPTIM.NAME = "adamw"
    groups = [{"params": model.head.parameters(), "lr": 0.5}]
    optim = build_optimizer(model, cfg.OPTIM, param_groups=groups)
    assert isinstance(optim, torch.optim.AdamW) and len(optim.param_groups) == 1
    assert optim.param_groups[0]["lr"] == 0.5

    cfg.OPTIM.NAME = "lamb"
    with pytest.raises(ValueError, match="optim must be one of"):
        build_optimizer(model, cfg.OPTIM)


def test_lr_schedulers_without_warmup() -> None:
    cfg = get_cfg_default()
    optim = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    single = build_lr_scheduler(optim, cfg.OPTIM)  # STEPSIZE (-1,) -> step at MAX_EPOCH
    assert isinstance(single, torch.optim.lr_scheduler.StepLR) and single.step_size == 10

    cfg.OPTIM.LR_SCHEDULER = "multi_step"
    cfg.OPTIM.STEPSIZE = (2, 4)
    multi = build_lr_scheduler(optim, cfg.OPTIM)
    assert isinstance(multi, torch.optim.lr_scheduler.MultiStepLR)
    assert sorted(multi.milestones) == [2, 4]

    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cosine = build_lr_scheduler(optim, cfg.OPTIM)
    assert isinstance(cosine, torch.optim.lr_scheduler.CosineAnnealingLR) and cosine.T_max == 10.0

    cfg.OPTIM.LR_SCHEDULER = "exponential"
    with pytest.raises(ValueError, match="scheduler must be one of"):
        build_lr_scheduler(optim, cfg.OPTIM)


@pytest.mark.parametrize("warmup_type", ["constant", "linear"])
def test_warmup_scheduler_matches_stock_dassl_on_installed_torch(warmup_type: str) -> None:
    """Dassl passes ``verbose`` positionally to LRScheduler.__init__: TypeError once torch dropped it."""
    cfg = get_cfg_default()
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.OPTIM.WARMUP_EPOCH = 1
    cfg.OPTIM.WARMUP_TYPE = warmup_type
    optim = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    torch_takes_verbose = "verbose" in inspect.signature(torch.optim.lr_scheduler.LRScheduler.__init__).parameters
    if torch_takes_verbose:
        sched = build_lr_scheduler(optim, cfg.OPTIM)
        assert type(sched).__name__ == f"{warmup_type.capitalize()}WarmupScheduler"
    else:
        with pytest.raises(TypeError, match="positional argument"):
            build_lr_scheduler(optim, cfg.OPTIM)


# ------------------------------------------------------------------------------ evaluation


def test_classification_evaluator_result_block(capsys: pytest.CaptureFixture) -> None:
    cfg = get_cfg_default()
    evaluator = build_evaluator(cfg, lab2cname={0: "a", 1: "b", 2: "c"})
    logits = torch.eye(3)[[0, 1, 2, 2]]  # predictions 0, 1, 2, 2
    evaluator.process(logits, torch.tensor([0, 1, 1, 2]))
    results = evaluator.evaluate()

    assert list(results) == ["accuracy", "error_rate", "macro_f1"]
    assert results["accuracy"] == pytest.approx(75.0)
    assert results["error_rate"] == pytest.approx(25.0)
    # per-class F1: 1, 2/3, 2/3
    assert results["macro_f1"] == pytest.approx(100.0 * (1 + 2 / 3 + 2 / 3) / 3)
    out = capsys.readouterr().out
    assert "=> result\n* total: 4\n* correct: 3\n* accuracy: 75.0%\n* error: 25.0%\n* macro_f1: 77.8%" in out

    evaluator.reset()
    evaluator.process(torch.eye(3), torch.tensor([0, 1, 2]))
    assert evaluator.evaluate()["accuracy"] == pytest.approx(100.0)


def test_compute_accuracy_top1_only() -> None:
    logits = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    labels = torch.tensor([0, 1, 1, 1])
    (acc,) = compute_accuracy(logits, labels)
    assert acc.shape == (1,) and acc.item() == pytest.approx(50.0)
    # Dassl flattens the transposed match matrix with view(): top-k for k > 1 fails.
    with pytest.raises(RuntimeError, match="view size"):
        compute_accuracy(logits, labels, topk=(1, 2))


# ------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize(
    "payload", [np.float64(1.5), np.zeros(2)], ids=["numpy-scalar", "numpy-array"]
)
def test_load_checkpoint_without_weights_only_refuses_non_tensor_pickles(tmp_path: Path, payload: object) -> None:
    """Dassl calls torch.load without weights_only: torch >= 2.6 refuses non-tensor objects."""
    fpath = tmp_path / "model.pth.tar-1"
    torch.save({"state_dict": {"w": torch.ones(1)}, "epoch": 1, "val_result": payload}, fpath)
    torch_major_minor = tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])
    if torch_major_minor >= (2, 6):
        with pytest.raises(pickle.UnpicklingError):
            load_checkpoint(str(fpath))
    else:
        assert load_checkpoint(str(fpath))["epoch"] == 1

    with pytest.raises(FileNotFoundError):
        load_checkpoint(str(tmp_path / "missing"))


# ------------------------------------------------------------------------------ training


def test_trainer_trains_saves_and_tests(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = _tiny_cfg(data_root, tmp_path / "out", **{"DATASET.NUM_SHOTS": 3})
    trainer = build_trainer(cfg)
    assert isinstance(trainer, DoubleTestTinyTrainer)
    assert trainer.num_classes == NUM_CLASSES and trainer.lab2cname[1] == "class 1"
    assert len(trainer.dm.dataset.train_x) == NUM_CLASSES * 3
    assert trainer.val_loader is not None and trainer.train_loader_u is None
    assert trainer.get_model_names() == ["linear"]
    assert trainer.best_result == -np.inf

    trainer.train()
    out = capsys.readouterr().out

    # 9 images, batch 4, drop_last -> 2 batches per epoch; PRINT_FREQ 2 -> one line per epoch.
    progress = re.findall(
        r"^epoch \[(\d)/2\] batch \[(\d)/2\] time \d+\.\d{3} \(\d+\.\d{3}\) data \d+\.\d{3} \(\d+\.\d{3}\) "
        r"loss \d+\.\d{4} \(\d+\.\d{4}\) acc \d+\.\d{4} \(\d+\.\d{4}\) lr \d\.\d{4}e[-+]\d{2} eta \d+:\d{2}:\d{2}$",
        out,
        flags=re.MULTILINE,
    )
    assert progress == [("1", "2"), ("2", "2")]
    after_training = out[out.index("Finish training"):]
    assert "Deploy the last-epoch model" in after_training
    assert "Evaluate on the *test* set" in after_training
    assert re.search(r"=> result\n\* total: 6\n\* correct: \d\n\* accuracy: \d+\.\d%\n", after_training)
    assert re.search(r"^Elapsed: \d+:\d{2}:\d{2}$", after_training, flags=re.MULTILINE)

    model_dir = tmp_path / "out" / "linear"
    assert sorted(p.name for p in model_dir.iterdir()) == ["checkpoint", "model.pth.tar-2"]
    assert (model_dir / "checkpoint").read_text() == "model.pth.tar-2\n"
    assert (tmp_path / "out" / "tensorboard").is_dir()

    checkpoint = torch.load(model_dir / "model.pth.tar-2", map_location="cpu", weights_only=False)
    assert set(checkpoint) == {"state_dict", "epoch", "optimizer", "scheduler", "val_result"}
    assert checkpoint["epoch"] == 2 and checkpoint["val_result"] is None
    assert set(checkpoint["state_dict"]) == {"fc.weight", "fc.bias"}
    assert checkpoint["scheduler"]["last_epoch"] == 2  # stepped once per epoch

    # Epoch checkpoints have val_result=None, which Dassl's load_model formats with :.1f.
    with pytest.raises(TypeError):
        trainer.load_model(str(tmp_path / "out"), epoch=2)
    with pytest.raises(FileNotFoundError):
        trainer.load_model(str(tmp_path / "out"), epoch=1)
    trainer.load_model("")
    assert "load_model() is skipped" in capsys.readouterr().out


def test_trainer_resumes_from_last_checkpoint(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_dir = tmp_path / "out"
    build_trainer(_tiny_cfg(data_root, out_dir, **{"OPTIM.MAX_EPOCH": 1, "VERBOSE": False})).train()
    capsys.readouterr()

    resumed = build_trainer(_tiny_cfg(data_root, out_dir, **{"OPTIM.MAX_EPOCH": 2, "VERBOSE": False}))
    resumed.train()
    out = capsys.readouterr().out
    assert f"Found checkpoint at {out_dir} (will resume training)" in out
    assert "Previous epoch: 1" in out
    assert "epoch [1/2]" not in out and "epoch [2/2]" in out
    assert (out_dir / "linear" / "checkpoint").read_text() == "model.pth.tar-2\n"


def test_best_val_saves_and_deploys_best_model(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = _tiny_cfg(data_root, tmp_path / "out", **{"TEST.FINAL_MODEL": "best_val", "VERBOSE": False})
    trainer = build_trainer(cfg)
    trainer.train()
    out = capsys.readouterr().out

    assert out.count("Evaluate on the *val* set") == 2
    assert "Deploy the model with the best val performance" in out
    assert re.search(r"Load .*model-best\.pth\.tar to linear \(epoch=[12], val_result=\d+\.\d\)", out)
    model_dir = tmp_path / "out" / "linear"
    assert {"model-best.pth.tar", "model.pth.tar-2", "checkpoint"} == {p.name for p in model_dir.iterdir()}
    best = torch.load(model_dir / "model-best.pth.tar", map_location="cpu", weights_only=False)
    assert isinstance(best["val_result"], float) and best["val_result"] == trainer.best_result


# ------------------------------------------------------------------------------ logger


def test_setup_logger_tees_stdout_and_never_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    console = io.StringIO()  # the logger wraps (and, when closed, closes) whatever sys.stdout is
    monkeypatch.setattr(sys, "stdout", console)
    setup_logger(str(tmp_path))
    print("first run")
    setup_logger(str(tmp_path))  # log.txt exists: a timestamped file is used instead
    print("second run")
    sys.stdout.flush()

    assert console.getvalue() == "first run\nsecond run\n"
    assert (tmp_path / "log.txt").read_text() == "first run\nsecond run\n"
    stamped = [p for p in tmp_path.iterdir() if p.name.startswith("log.txt-")]
    assert len(stamped) == 1 and re.fullmatch(r"log\.txt-\d{4}(-\d{2}){5}", stamped[0].name)
    assert stamped[0].read_text() == "second run\n"

    setup_logger(str(tmp_path / "named.log"))  # a .txt/.log path is used as the file itself
    print("third run")
    sys.stdout.close()  # Dassl's Logger.close closes the wrapped console too
    assert (tmp_path / "named.log").read_text() == "third run\n"
    assert console.closed


def test_subprocesses_import_the_same_dassl() -> None:
    """conftest exports the import path, so `python train.py ...` launched by tests sees this dassl."""
    import dassl

    result = subprocess.run(
        [sys.executable, "-c", "import dassl; print(dassl.__file__)"],
        capture_output=True, text=True, timeout=60, env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == Path(dassl.__file__)
