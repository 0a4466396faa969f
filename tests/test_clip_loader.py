"""CLIP loading: explicit file, cache directory, download fallback, MaPLe's build_model, errors."""

from __future__ import annotations

import hashlib

import clip
import pytest
import torch

from trainers.dpl_core import clip_loader
from trainers.dpl_core.clip_loader import CLIPLoadError, cached_checkpoint_path, load_clip, published_sha256
from trainers.dpl_core.tiny_clip import TINY_CONFIG, make_tiny_clip, write_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("clip") / "tiny.pt")


def assert_same_weights(model, reference):
    ref = reference.state_dict()
    for name, value in model.state_dict().items():
        # build_model rounds matrices to fp16 (about 5e-4 relative) and we load them back in fp32
        torch.testing.assert_close(value, ref[name], rtol=1e-3, atol=1e-5, msg=name)


def test_load_state_dict_file_reads_sizes_from_checkpoint(checkpoint):
    model = load_clip("ViT-B/16", checkpoint=checkpoint)
    assert model.visual.conv1.weight.dtype == torch.float32 and not model.training
    assert len(model.transformer.resblocks) == TINY_CONFIG["transformer_layers"]
    assert len(model.visual.transformer.resblocks) == TINY_CONFIG["vision_layers"]
    assert_same_weights(model, make_tiny_clip())


def test_load_jit_archive(tmp_path):
    reference = make_tiny_clip(seed=3)
    traced = torch.jit.trace(reference, (torch.randn(1, 3, 32, 32), clip.tokenize(["a dog"])), check_trace=False)
    path = tmp_path / "ViT-B-16.pt"
    traced.save(str(path))
    assert_same_weights(load_clip("ViT-B/16", checkpoint=str(path)), reference)


def test_cache_directory_is_used_before_download(tmp_path, monkeypatch):
    expected = cached_checkpoint_path("ViT-B/32", str(tmp_path))
    assert expected.endswith("ViT-B-32.pt")
    write_tiny_checkpoint(expected, seed=1)
    # The cached file must carry the SHA-256 of its download URL, as OpenAI's files do.
    digest = hashlib.sha256(open(expected, "rb").read()).hexdigest()
    monkeypatch.setitem(clip.clip._MODELS, "ViT-B/32", f"https://example.org/clip/models/{digest}/ViT-B-32.pt")

    def no_download(*args, **kwargs):
        raise AssertionError("must not download when the cache has the file")

    monkeypatch.setattr(clip.clip, "_download", no_download)
    assert_same_weights(load_clip("ViT-B/32", cache_dir=str(tmp_path)), make_tiny_clip(seed=1))


def test_a_cached_file_that_is_not_openais_is_refused(tmp_path):
    cached = write_tiny_checkpoint(cached_checkpoint_path("ViT-B/16", str(tmp_path)))
    assert published_sha256("ViT-B/16") == "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"
    with pytest.raises(CLIPLoadError, match=r"is not OpenAI's ViT-B/16 file: its SHA-256 is .* the download URL says 5806e77cd80f8b59"):
        load_clip("ViT-B/16", cache_dir=str(tmp_path))
    assert_same_weights(load_clip("ViT-B/16", checkpoint=cached), make_tiny_clip(seed=0))  # named explicitly: used as it is


def test_offline_without_file_gives_clear_error(tmp_path, monkeypatch):
    def offline(url, root):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(clip.clip, "_download", offline)
    with pytest.raises(CLIPLoadError, match=r"not at .*ViT-B-16.pt and could not be downloaded.*CLIP_CHECKPOINT"):
        load_clip("ViT-B/16", cache_dir=str(tmp_path))
    with pytest.raises(CLIPLoadError, match="downloading is disabled"):
        load_clip("ViT-B/16", cache_dir=str(tmp_path), download=False)


def test_download_is_the_last_resort(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, root):
        calls.append(url)
        return write_tiny_checkpoint(tmp_path / "downloaded.pt", seed=2)

    monkeypatch.setattr(clip.clip, "_download", fake_download)
    model = load_clip("ViT-L/14", cache_dir=str(tmp_path))
    assert len(calls) == 1 and "ViT-L-14" in calls[0]
    assert_same_weights(model, make_tiny_clip(seed=2))


def test_resnet_and_unknown_backbones_are_refused(tmp_path, checkpoint):
    with pytest.raises(CLIPLoadError, match="ResNet; DPL .* needs a ViT backbone"):
        load_clip("RN50", checkpoint=checkpoint)
    with pytest.raises(CLIPLoadError, match="unknown CLIP backbone 'ViT-X/99'"):
        load_clip("ViT-X/99", cache_dir=str(tmp_path))
    resnet = clip.model.CLIP(64, 64, (1, 1, 1, 1), 64, None, 77, 49408, 64, 1, 1)
    path = tmp_path / "rn.pt"
    torch.save(resnet.state_dict(), path)
    with pytest.raises(CLIPLoadError, match="holds a ResNet CLIP"):
        load_clip("ViT-B/16", checkpoint=str(path))


def test_missing_and_invalid_checkpoint_files(tmp_path):
    with pytest.raises(CLIPLoadError, match="checkpoint not found: .*nope.pt"):
        load_clip("ViT-B/16", checkpoint=str(tmp_path / "nope.pt"))
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(1)}, junk)
    with pytest.raises(CLIPLoadError, match="junk.pt is not a CLIP checkpoint"):
        load_clip("ViT-B/16", checkpoint=str(junk))


def test_maple_style_build_model_gets_vanilla_design_details(checkpoint, monkeypatch):
    vanilla_build = clip.model.build_model
    seen = {}

    def maple_build_model(state_dict: dict, design_details):
        seen.update(design_details)
        return vanilla_build(state_dict)

    monkeypatch.setattr(clip.model, "build_model", maple_build_model)
    model = load_clip("ViT-B/16", checkpoint=checkpoint)
    assert seen["trainer"] == "CoOp" and seen["vision_depth"] == 0 and seen["language_depth"] == 0
    assert_same_weights(model, make_tiny_clip())


def test_single_argument_build_model_is_called_without_design_details(checkpoint, monkeypatch):
    vanilla_build = clip.model.build_model

    def coop_build_model(state_dict: dict):
        return vanilla_build(state_dict)

    monkeypatch.setattr(clip.model, "build_model", coop_build_model)
    assert_same_weights(clip_loader.load_clip("ViT-B/16", checkpoint=checkpoint), make_tiny_clip())
