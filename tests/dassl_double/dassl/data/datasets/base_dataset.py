"""Mirrors ``dassl.data.datasets.base_dataset``: ``Datum`` and ``DatasetBase``."""

import random
from collections import defaultdict
from typing import Optional, Sequence, Union

from dassl.utils import check_isfile


class Datum:
    """Mirrors Dassl's ``Datum``: an image path (an existing file) with label, domain and class name."""

    def __init__(self, impath: str = "", label: int = 0, domain: int = 0, classname: str = "") -> None:
        """Store the fields; like Dassl's asserts, a non-str or missing ``impath`` raises ``AssertionError``."""
        if not isinstance(impath, str):
            raise AssertionError(f"Datum.impath must be a str, got {type(impath).__name__}")
        if not check_isfile(impath):  # warns 'No file found at "..."' as Dassl does
            raise AssertionError(f"Datum.impath must be an existing file, got {impath!r}")
        self._impath = impath
        self._label = label
        self._domain = domain
        self._classname = classname

    @property
    def impath(self) -> str:
        """Image file path."""
        return self._impath

    @property
    def label(self) -> int:
        """Class label."""
        return self._label

    @property
    def domain(self) -> int:
        """Domain label."""
        return self._domain

    @property
    def classname(self) -> str:
        """Class name."""
        return self._classname


DataSource = list[Datum]


class DatasetBase:
    """Mirrors Dassl's ``DatasetBase``: train_x/train_u/val/test lists plus class bookkeeping.

    ``num_classes`` is ``max(label) + 1`` over ``train_x`` and ``lab2cname``/``classnames`` come
    from ``train_x`` only, as in Dassl.
    """

    dataset_dir = ""  # directory of the dataset (set by subclasses)
    domains: list[str] = []  # names of all domains (DA/DG datasets)

    def __init__(
        self,
        train_x: Optional[DataSource] = None,
        train_u: Optional[DataSource] = None,
        val: Optional[DataSource] = None,
        test: Optional[DataSource] = None,
    ) -> None:
        """Store the splits and derive the class count and names from ``train_x``."""
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._num_classes = self.get_num_classes(train_x)
        self._lab2cname, self._classnames = self.get_lab2cname(train_x)

    @property
    def train_x(self) -> Optional[DataSource]:
        """Labelled training data."""
        return self._train_x

    @property
    def train_u(self) -> Optional[DataSource]:
        """Unlabelled training data (optional)."""
        return self._train_u

    @property
    def val(self) -> Optional[DataSource]:
        """Validation data (optional)."""
        return self._val

    @property
    def test(self) -> Optional[DataSource]:
        """Test data."""
        return self._test

    @property
    def lab2cname(self) -> dict[int, str]:
        """Mapping label -> class name (from ``train_x``)."""
        return self._lab2cname

    @property
    def classnames(self) -> list[str]:
        """Class names ordered by label (from ``train_x``)."""
        return self._classnames

    @property
    def num_classes(self) -> int:
        """``max(label) + 1`` over ``train_x``."""
        return self._num_classes

    @staticmethod
    def get_num_classes(data_source: DataSource) -> int:
        """Return ``max(label) + 1`` over ``data_source``, as Dassl does."""
        return max({item.label for item in data_source}) + 1

    @staticmethod
    def get_lab2cname(data_source: DataSource) -> tuple[dict[int, str], list[str]]:
        """Return (label -> class name, class names sorted by label) from ``data_source``, as Dassl."""
        mapping = {item.label: item.classname for item in data_source}
        classnames = [mapping[label] for label in sorted(mapping)]
        return mapping, classnames

    def check_input_domains(self, source_domains: Sequence[str], target_domains: Sequence[str]) -> None:
        """Require non-empty source/target domain lists drawn from ``self.domains``, as Dassl does."""
        if len(source_domains) == 0:
            raise AssertionError("source_domains (list) is empty")
        if len(target_domains) == 0:
            raise AssertionError("target_domains (list) is empty")
        self.is_input_domain_valid(source_domains)
        self.is_input_domain_valid(target_domains)

    def is_input_domain_valid(self, input_domains: Sequence[str]) -> None:
        """Raise ``ValueError`` for a domain not in ``self.domains``, as Dassl does."""
        for domain in input_domains:
            if domain not in self.domains:
                raise ValueError(f"Input domain must belong to {self.domains}, but got [{domain}]")

    def generate_fewshot_dataset(
        self, *data_sources: DataSource, num_shots: int = -1, repeat: bool = False
    ) -> Union[DataSource, list[DataSource], tuple[DataSource, ...]]:
        """Mirrors Dassl's few-shot sampling: ``num_shots`` items per label from each source.

        Uses the global ``random`` module in Dassl's order (labels in first-seen order,
        ``random.sample`` per label), so a given seed draws the same images as Dassl. A label
        with fewer items keeps all of them, or is sampled with replacement when ``repeat``.
        ``num_shots < 1`` returns the input unchanged (the single source, or the tuple of
        sources); otherwise one list is returned for one source and a list of lists for several.
        """
        if num_shots < 1:
            return data_sources[0] if len(data_sources) == 1 else data_sources

        print(f"Creating a {num_shots}-shot dataset")
        output = []
        for data_source in data_sources:
            sampled: DataSource = []
            for items in self.split_dataset_by_label(data_source).values():
                if len(items) >= num_shots:
                    sampled.extend(random.sample(items, num_shots))
                elif repeat:
                    sampled.extend(random.choices(items, k=num_shots))
                else:
                    sampled.extend(items)
            output.append(sampled)
        return output[0] if len(output) == 1 else output

    def split_dataset_by_label(self, data_source: DataSource) -> defaultdict[int, DataSource]:
        """Group items by label (first-seen order), as Dassl does."""
        groups: defaultdict[int, DataSource] = defaultdict(list)
        for item in data_source:
            groups[item.label].append(item)
        return groups

    def split_dataset_by_domain(self, data_source: DataSource) -> defaultdict[int, DataSource]:
        """Group items by domain (first-seen order), as Dassl does."""
        groups: defaultdict[int, DataSource] = defaultdict(list)
        for item in data_source:
            groups[item.domain].append(item)
        return groups
