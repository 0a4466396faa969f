"""Mirrors ``dassl.data.data_manager``: data loaders built from ``cfg`` and a dataset summary."""

from typing import Any, Callable, Optional, Sequence, Union

import torch
import torchvision.transforms as T
from tabulate import tabulate
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from yacs.config import CfgNode

from dassl.utils import read_image

from .datasets import build_dataset
from .datasets.base_dataset import Datum
from .samplers import build_sampler
from .transforms import INTERPOLATION_MODES, build_transform

Transform = Union[Callable, Sequence[Callable], None]


def build_data_loader(
    cfg: CfgNode,
    sampler_type: str = "SequentialSampler",
    data_source: Optional[list[Datum]] = None,
    batch_size: int = 64,
    n_domain: int = 0,
    n_ins: int = 2,
    tfm: Transform = None,
    is_train: bool = True,
    dataset_wrapper: Optional[type] = None,
) -> DataLoader:
    """Mirrors Dassl's ``build_data_loader``: sampler + ``DatasetWrapper`` + torch ``DataLoader``.

    Training loaders drop the last incomplete batch when the source holds at least one full
    batch; an empty loader fails Dassl's ``assert len(data_loader) > 0``.
    """
    sampler = build_sampler(
        sampler_type, cfg=cfg, data_source=data_source, batch_size=batch_size,
        n_domain=n_domain, n_ins=n_ins,
    )
    wrapper_cls = DatasetWrapper if dataset_wrapper is None else dataset_wrapper
    data_loader = DataLoader(
        wrapper_cls(cfg, data_source, transform=tfm, is_train=is_train),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=torch.cuda.is_available() and cfg.USE_CUDA,
    )
    if len(data_loader) == 0:
        raise AssertionError(f"Empty data loader ({len(data_source)} items, batch size {batch_size})")
    return data_loader


class DataManager:
    """Mirrors Dassl's ``DataManager``: dataset, transforms and train_x/train_u/val/test loaders."""

    def __init__(
        self,
        cfg: CfgNode,
        custom_tfm_train: Transform = None,
        custom_tfm_test: Transform = None,
        dataset_wrapper: Optional[type] = None,
    ) -> None:
        """Build everything from ``cfg``; prints the dataset summary table when ``cfg.VERBOSE``."""
        dataset = build_dataset(cfg)

        if custom_tfm_train is None:
            tfm_train = build_transform(cfg, is_train=True)
        else:
            print("* Using custom transform for training")
            tfm_train = custom_tfm_train

        if custom_tfm_test is None:
            tfm_test = build_transform(cfg, is_train=False)
        else:
            print("* Using custom transform for testing")
            tfm_test = custom_tfm_test

        def train_loader(loader_cfg: CfgNode, source: list[Datum]) -> DataLoader:
            return build_data_loader(
                cfg,
                sampler_type=loader_cfg.SAMPLER,
                data_source=source,
                batch_size=loader_cfg.BATCH_SIZE,
                n_domain=loader_cfg.N_DOMAIN,
                n_ins=loader_cfg.N_INS,
                tfm=tfm_train,
                is_train=True,
                dataset_wrapper=dataset_wrapper,
            )

        def test_loader(source: list[Datum]) -> DataLoader:
            return build_data_loader(
                cfg,
                sampler_type=cfg.DATALOADER.TEST.SAMPLER,
                data_source=source,
                batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
                tfm=tfm_test,
                is_train=False,
                dataset_wrapper=dataset_wrapper,
            )

        loader_x_cfg = cfg.DATALOADER.TRAIN_X
        loader_u_cfg = loader_x_cfg if cfg.DATALOADER.TRAIN_U.SAME_AS_X else cfg.DATALOADER.TRAIN_U
        self.train_loader_x = train_loader(loader_x_cfg, dataset.train_x)
        self.train_loader_u = train_loader(loader_u_cfg, dataset.train_u) if dataset.train_u else None
        self.val_loader = test_loader(dataset.val) if dataset.val else None
        self.test_loader = test_loader(dataset.test)

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname

        self.dataset = dataset

        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self) -> int:
        """Number of classes of the dataset (``max(train_x label) + 1``)."""
        return self._num_classes

    @property
    def num_source_domains(self) -> int:
        """``len(cfg.DATASET.SOURCE_DOMAINS)``."""
        return self._num_source_domains

    @property
    def lab2cname(self) -> dict[int, str]:
        """Label -> class name mapping of the dataset."""
        return self._lab2cname

    def show_dataset_summary(self, cfg: CfgNode) -> None:
        """Print Dassl's tabulate summary (dataset, domains, # classes, # train_x/train_u/val/test)."""
        rows: list[list[Any]] = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            rows.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            rows.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        rows.append(["# classes", f"{self.num_classes:,}"])
        rows.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            rows.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            rows.append(["# val", f"{len(self.dataset.val):,}"])
        rows.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(rows))


class DatasetWrapper(TorchDataset):
    """Mirrors Dassl's ``DatasetWrapper``: items are dicts with img, label, domain, impath, index.

    A list/tuple transform yields ``img``, ``img2``, ...; ``K_TRANSFORMS > 1`` (training only)
    turns each into a list of K views; ``RETURN_IMG0`` adds the resized, un-augmented ``img0``.
    """

    def __init__(
        self, cfg: CfgNode, data_source: list[Datum], transform: Transform = None, is_train: bool = False
    ) -> None:
        """Keep the data and transform(s); K>1 views without a transform raise ``ValueError`` as in Dassl."""
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0

        if self.k_tfm > 1 and transform is None:
            raise ValueError(f"Cannot augment the image {self.k_tfm} times because transform is None")

        # The un-augmented view: resize to INPUT.SIZE, tensor, and normalize if configured.
        to_tensor = [
            T.Resize(cfg.INPUT.SIZE, interpolation=INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]),
            T.ToTensor(),
        ]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_tensor.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(to_tensor)

    def __len__(self) -> int:
        """Number of items."""
        return len(self.data_source)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        """Read, transform and return item ``idx`` as Dassl's dict (img [3, H, W] after ToTensor)."""
        item = self.data_source[idx]
        output: dict[str, Any] = {
            "label": item.label,
            "domain": item.domain,
            "impath": item.impath,
            "index": idx,
        }
        img0 = read_image(item.impath)

        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                key = "img" if i == 0 else f"img{i + 1}"
                output[key] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)

        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _transform_image(self, tfm: Callable, img0: Any) -> Any:
        """Apply ``tfm`` K times; a single view is returned bare, several as a list, as in Dassl."""
        views = [tfm(img0) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views
