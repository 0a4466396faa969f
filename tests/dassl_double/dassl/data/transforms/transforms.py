"""Mirrors ``dassl.data.transforms.transforms``: ``build_transform`` from ``cfg.INPUT``.

The double implements the torchvision-backed choices; Dassl's own augmentations (translation,
cutout, instance norm, gaussian noise, AutoAugment/RandAugment policies) raise
``NotImplementedError`` here.
"""

from typing import Optional, Sequence

from torchvision.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    GaussianBlur,
    Normalize,
    RandomApply,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)
from torchvision.transforms.functional import InterpolationMode
from yacs.config import CfgNode

# Dassl's list of accepted names; anything else fails its assertion.
AVAI_CHOICES = [
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",
    "cutout",
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
]

_NOT_MIRRORED = {
    "instance_norm",
    "random_translation",
    "cutout",
    "imagenet_policy",
    "cifar10_policy",
    "svhn_policy",
    "randaugment",
    "randaugment_fixmatch",
    "randaugment2",
    "gaussian_noise",
}

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


def build_transform(
    cfg: CfgNode, is_train: bool = True, choices: Optional[Sequence[str]] = None
) -> Optional[Compose]:
    """Mirrors Dassl's ``build_transform``: train or test pipeline from ``cfg.INPUT``.

    Returns None when ``INPUT.NO_TRANSFORM``. ``choices`` overrides ``INPUT.TRANSFORMS``;
    a name outside Dassl's list raises ``AssertionError`` as in Dassl.
    """
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None

    if choices is None:
        choices = cfg.INPUT.TRANSFORMS
    for choice in choices:
        if choice not in AVAI_CHOICES:
            raise AssertionError(f"Unknown transform {choice!r} in INPUT.TRANSFORMS; expected one of {AVAI_CHOICES}")
        if choice in _NOT_MIRRORED:
            raise NotImplementedError(f"The Dassl test double does not implement the {choice!r} transform")

    target_size = f"{cfg.INPUT.SIZE[0]}x{cfg.INPUT.SIZE[1]}"
    normalize = Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD)
    if is_train:
        return _build_transform_train(cfg, choices, target_size, normalize)
    return _build_transform_test(cfg, choices, target_size, normalize)


def _build_transform_train(
    cfg: CfgNode, choices: Sequence[str], target_size: str, normalize: Normalize
) -> Compose:
    """Training pipeline in Dassl's order: resize (unless cropping), crops, flip, colour ops, tensor, normalize."""
    print("Building transform_train")
    interp_mode = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    input_size = cfg.INPUT.SIZE
    tfms: list = []

    if "random_crop" not in choices and "random_resized_crop" not in choices:
        print(f"+ resize to {target_size}")
        tfms.append(Resize(input_size, interpolation=interp_mode))

    if "random_crop" in choices:
        print(f"+ random crop (padding = {cfg.INPUT.CROP_PADDING})")
        tfms.append(RandomCrop(input_size, padding=cfg.INPUT.CROP_PADDING))

    if "random_resized_crop" in choices:
        scale = cfg.INPUT.RRCROP_SCALE
        print(f"+ random resized crop (size={input_size}, scale={scale})")
        tfms.append(RandomResizedCrop(input_size, scale=scale, interpolation=interp_mode))

    if "random_flip" in choices:
        print("+ random flip")
        tfms.append(RandomHorizontalFlip())

    if "colorjitter" in choices:
        b, c, s, h = (cfg.INPUT.COLORJITTER_B, cfg.INPUT.COLORJITTER_C, cfg.INPUT.COLORJITTER_S, cfg.INPUT.COLORJITTER_H)
        print(f"+ color jitter (brightness={b}, contrast={c}, saturation={s}, hue={h})")
        tfms.append(ColorJitter(brightness=b, contrast=c, saturation=s, hue=h))

    if "randomgrayscale" in choices:
        print("+ random gray scale")
        tfms.append(RandomGrayscale(p=cfg.INPUT.RGS_P))

    if "gaussian_blur" in choices:
        print(f"+ gaussian blur (kernel={cfg.INPUT.GB_K})")
        tfms.append(RandomApply([GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))

    print("+ to torch tensor of range [0, 1]")
    tfms.append(ToTensor())

    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfms.append(normalize)
    return Compose(tfms)


def _build_transform_test(
    cfg: CfgNode, choices: Sequence[str], target_size: str, normalize: Normalize
) -> Compose:
    """Test pipeline as in Dassl: resize the shorter edge to max(SIZE), center crop, tensor, normalize."""
    print("Building transform_test")
    interp_mode = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    input_size = cfg.INPUT.SIZE

    print(f"+ resize the smaller edge to {max(input_size)}")
    tfms: list = [Resize(max(input_size), interpolation=interp_mode)]
    print(f"+ {target_size} center crop")
    tfms.append(CenterCrop(input_size))
    print("+ to torch tensor of range [0, 1]")
    tfms.append(ToTensor())
    if "normalize" in choices:
        print(f"+ normalization (mean={cfg.INPUT.PIXEL_MEAN}, std={cfg.INPUT.PIXEL_STD})")
        tfms.append(normalize)
    return Compose(tfms)
