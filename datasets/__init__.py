"""Dataset readers in CoOp's layout; importing the package registers them in Dassl's
``DATASET_REGISTRY`` under CoOp's names (plus ``Synthetic``)."""

from .caltech101 import Caltech101
from .coop_format import CoOpDataset, DataReport, DatasetError
from .dtd import DescribableTextures
from .eurosat import EuroSAT
from .fgvc_aircraft import FGVCAircraft
from .food101 import Food101
from .imagenet import ImageNet
from .imagenet_a import ImageNetA
from .imagenet_r import ImageNetR
from .imagenet_sketch import ImageNetSketch
from .imagenetv2 import ImageNetV2
from .oxford_flowers import OxfordFlowers
from .oxford_pets import OxfordPets
from .stanford_cars import StanfordCars
from .sun397 import SUN397
from .synthetic import Synthetic
from .ucf101 import UCF101

# The 15 CoOp benchmarks in the order of CoOp's DATASETS.md (the synthetic set is not one).
BENCHMARKS = (
    ImageNet,
    Caltech101,
    OxfordPets,
    StanfordCars,
    OxfordFlowers,
    Food101,
    FGVCAircraft,
    SUN397,
    DescribableTextures,
    EuroSAT,
    UCF101,
    ImageNetV2,
    ImageNetSketch,
    ImageNetA,
    ImageNetR,
)

__all__ = [
    "BENCHMARKS",
    "CoOpDataset",
    "DataReport",
    "DatasetError",
    "Caltech101",
    "DescribableTextures",
    "EuroSAT",
    "FGVCAircraft",
    "Food101",
    "ImageNet",
    "ImageNetA",
    "ImageNetR",
    "ImageNetSketch",
    "ImageNetV2",
    "OxfordFlowers",
    "OxfordPets",
    "StanfordCars",
    "SUN397",
    "Synthetic",
    "UCF101",
]
