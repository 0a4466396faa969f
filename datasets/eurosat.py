"""EuroSAT (RGB) in CoOp's layout: 10 land-use classes of satellite images."""

from __future__ import annotations

from dassl.data.datasets import DATASET_REGISTRY

from .coop_format import SplitJsonDataset, Splits, class_folder_groups, split_groups

# CoOp's readable class names for EuroSAT's folder names (they appear in the text prompts).
RENAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(SplitJsonDataset):
    """``eurosat/2750/<class>/*.jpg`` + ``split_zhou_EuroSAT.json``."""

    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    layout = "$DATA/eurosat/ with 2750/ (EuroSAT.zip) and split_zhou_EuroSAT.json"

    @classmethod
    def build_split(cls, dataset_dir: str, image_dir: str) -> Splits:
        return split_groups(
            class_folder_groups(image_dir, cls.__name__, renames=RENAMES), cls.__name__
        )
