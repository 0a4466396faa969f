"""Load a CLIP model by backbone name or checkpoint file, the one place that does so.

Weights are resolved in a fixed order:

1. an explicit checkpoint path (a JIT archive as OpenAI ships them, or a plain state dict);
2. the CLIP cache directory (``~/.cache/clip`` or the given one), file named as OpenAI's URL
   and checked against the SHA-256 that URL carries;
3. a download through the ``clip`` package, only if allowed and nothing local was found.

The result is always a vanilla CLIP ``nn.Module`` in fp32 on the CPU, in eval mode; callers
move it to their device and precision. This works with OpenAI's ``clip`` package and with the
modified copy that MaPLe's checkout ships, whose ``build_model`` needs a ``design_details``
dict.
"""

from __future__ import annotations

import inspect
import logging
import os
import urllib.parse
import zipfile

import clip
import torch
from torch import nn

from trainers.dpl_core.architecture import ModelShape
from trainers.dpl_core.run_folder import sha256_file

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = os.path.expanduser("~/.cache/clip")

# MaPLe's build_model(state_dict, design_details) and CLIP(..., design_details) build vanilla
# blocks for these settings.
VANILLA_DESIGN_DETAILS = {
    "trainer": "CoOp",
    "vision_depth": 0,
    "language_depth": 0,
    "vision_ctx": 0,
    "language_ctx": 0,
    "maple_length": 0,
}


class CLIPLoadError(RuntimeError):
    """CLIP weights could not be found or are not a usable ViT CLIP."""


def _known_models() -> dict[str, str]:
    return dict(getattr(clip.clip, "_MODELS", {}))


def check_vit_backbone(backbone: str) -> None:
    """Raise :class:`CLIPLoadError` if ``backbone`` names a ResNet CLIP (``RN50``, ...)."""
    if backbone.upper().startswith("RN"):
        raise CLIPLoadError(
            f"backbone {backbone!r} is a ResNet; DPL puts prompts into transformer blocks of both "
            "towers and needs a ViT backbone (ViT-B/32, ViT-B/16, ViT-L/14, ...)"
        )


def cached_checkpoint_path(backbone: str, cache_dir: str | None = None) -> str:
    """Where OpenAI's loader stores ``backbone`` (whether or not the file exists)."""
    models = _known_models()
    if backbone not in models:
        raise CLIPLoadError(
            f"unknown CLIP backbone {backbone!r}; expected one of {sorted(models)} "
            "or a checkpoint path in TRAINER.DPL.CLIP_CHECKPOINT"
        )
    filename = os.path.basename(urllib.parse.urlparse(models[backbone]).path)
    return os.path.join(cache_dir or DEFAULT_CACHE_DIR, filename)


def published_sha256(backbone: str) -> str | None:
    """The SHA-256 OpenAI publishes for ``backbone``'s file: the folder name in its download URL
    (the ``clip`` package checks downloads against it)."""
    parts = urllib.parse.urlparse(_known_models().get(backbone, "")).path.split("/")
    digest = parts[-2] if len(parts) >= 2 else ""
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else None


def _is_torchscript_archive(path: str) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder; ``torch.save`` zips have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """State dict from a JIT archive (OpenAI's release format) or a saved state dict."""
    try:
        if _is_torchscript_archive(path):
            return torch.jit.load(path, map_location="cpu").state_dict()
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CLIPLoadError(f"could not read CLIP checkpoint {path}: {error}") from error
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or "token_embedding.weight" not in obj:
        raise CLIPLoadError(
            f"{path} is not a CLIP checkpoint: expected a TorchScript archive or a CLIP state dict "
            "(with keys such as 'token_embedding.weight' and 'visual.conv1.weight')"
        )
    return obj


def build_vanilla_clip(state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Build CLIP from a state dict with whichever ``clip`` package is importable."""
    build_model = clip.model.build_model
    params = inspect.signature(build_model).parameters
    state_dict = dict(state_dict)  # build_model deletes keys
    if "design_details" in params:
        model = build_model(state_dict, dict(VANILLA_DESIGN_DETAILS))
    else:
        model = build_model(state_dict)
    return model.float().eval()


def resolve_checkpoint(
    backbone: str,
    checkpoint: str | None = None,
    cache_dir: str | None = None,
    download: bool = True,
) -> str:
    """The local file holding the CLIP weights, downloaded first if allowed and needed.

    Args:
        backbone: OpenAI model name such as ``"ViT-B/16"``. Only used to find the file when
            ``checkpoint`` is empty; ResNet names are refused either way.
        checkpoint: path to a local checkpoint; when set, it is the only source tried.
        cache_dir: CLIP cache directory (default ``~/.cache/clip``).
        download: allow downloading when no local file is found.

    Raises:
        CLIPLoadError: ResNet backbone, or file not found (and not downloadable).
    """
    check_vit_backbone(backbone)
    if checkpoint:
        path = os.path.expanduser(checkpoint)
        if not os.path.isfile(path):
            raise CLIPLoadError(f"CLIP checkpoint not found: {path} (set by TRAINER.DPL.CLIP_CHECKPOINT)")
        return path
    path = cached_checkpoint_path(backbone, cache_dir)
    if os.path.isfile(path):
        expected, found = published_sha256(backbone), sha256_file(path)
        if expected and found != expected:
            raise CLIPLoadError(
                f"{path} is not OpenAI's {backbone} file: its SHA-256 is {found[:16]}..., the download URL says "
                f"{expected[:16]}... (a partial download, or another file under that name). Delete it to download "
                "again, or name it in TRAINER.DPL.CLIP_CHECKPOINT to use it as it is."
            )
        return path
    if not download:
        raise CLIPLoadError(f"CLIP weights for {backbone} not found at {path} and downloading is disabled")
    logger.info("Downloading CLIP %s into %s", backbone, os.path.dirname(path))
    try:
        return clip.clip._download(_known_models()[backbone], os.path.dirname(path))
    except Exception as error:  # urllib raises several types when offline
        raise CLIPLoadError(
            f"CLIP weights for {backbone} are not at {path} and could not be downloaded "
            f"({type(error).__name__}: {error}). Copy the file there, or point "
            "TRAINER.DPL.CLIP_CHECKPOINT at a local checkpoint."
        ) from error


def load_clip(
    backbone: str,
    checkpoint: str | None = None,
    cache_dir: str | None = None,
    download: bool = True,
) -> nn.Module:
    """Load a ViT CLIP in fp32 on the CPU from the file :func:`resolve_checkpoint` finds.

    Raises:
        CLIPLoadError: ResNet backbone, file not found offline, or unreadable checkpoint.
    """
    path = resolve_checkpoint(backbone, checkpoint, cache_dir, download)
    state_dict = _read_state_dict(path)
    if "visual.proj" not in state_dict:
        raise CLIPLoadError(
            f"{path} holds a ResNet CLIP; DPL needs a ViT backbone (prompts enter transformer blocks)"
        )
    logger.info("Loaded CLIP weights from %s", path)
    return build_vanilla_clip(state_dict)


def model_shape(clip_model: nn.Module) -> ModelShape:
    """Depth and width of both towers, input resolution and patch size of a loaded ViT CLIP."""
    visual = clip_model.visual
    return ModelShape(
        text_depth=clip_model.transformer.layers,
        text_width=clip_model.transformer.width,
        image_depth=visual.transformer.layers,
        image_width=visual.transformer.width,
        resolution=visual.input_resolution,
        patch_size=visual.conv1.kernel_size[0],
    )
