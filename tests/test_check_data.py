"""scripts/check_data.py on a DATA folder with complete, incomplete, unbuilt, missing datasets."""

from __future__ import annotations

import importlib.util
import io
import json
import random
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("check_data", REPO / "scripts" / "check_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_data = load_script()


def touch(path: Path, content: bytes = b"") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def split_dataset(
    folder: Path,
    image_subdir: str,
    split_file: str,
    sizes: Dict[str, int],
    classes: int = 2,
    content: bytes = b"",
) -> None:
    splits: Dict[str, List] = {}
    for split, count in sizes.items():
        splits[split] = []
        for label in range(classes):
            for index in range(count):
                relative = f"c{label}/{split}_{index}.jpg"
                touch(folder / image_subdir / relative, content)
                splits[split].append([relative, label, f"class {label}"])
    (folder / split_file).write_text(json.dumps(splits))


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """DTD complete; EuroSAT with 2 test images gone; Pets without split file but with its raw
    annotations; Caltech101 without its image folder; ImageNet-R complete; the rest absent."""
    split_dataset(
        tmp_path / "dtd",
        "images",
        "split_zhou_DescribableTextures.json",
        {"train": 3, "val": 2, "test": 4},
    )
    split_dataset(
        tmp_path / "eurosat", "2750", "split_zhou_EuroSAT.json", {"train": 3, "val": 1, "test": 2}
    )
    for index in range(2):
        (tmp_path / "eurosat" / "2750" / "c1" / f"test_{index}.jpg").unlink()
    touch(tmp_path / "oxford_pets" / "images" / "Bengal_1.jpg")
    for name in ("trainval.txt", "test.txt"):
        (tmp_path / "oxford_pets" / "annotations").mkdir(parents=True, exist_ok=True)
        (tmp_path / "oxford_pets" / "annotations" / name).write_text("Bengal_1 1 1 1\n")
    (tmp_path / "caltech-101").mkdir()
    (tmp_path / "imagenet-rendition").mkdir()
    (tmp_path / "imagenet-rendition" / "classnames.txt").write_text(
        "n01443537 goldfish\nn01440764 tench\n"
    )
    for wnid in ("n01443537", "n01440764"):
        touch(tmp_path / "imagenet-rendition" / "imagenet-r" / wnid / "1.jpg")
    return tmp_path


def table_lines(output: str) -> Dict[str, List[str]]:
    """Table rows by dataset name, split into cells."""
    return {
        line.split()[0]: line.split()
        for line in output.splitlines()
        if line and line.split()[0] in NAMES
    }


NAMES = {
    "ImageNet",
    "Caltech101",
    "OxfordPets",
    "StanfordCars",
    "OxfordFlowers",
    "Food101",
    "FGVCAircraft",
    "SUN397",
    "DescribableTextures",
    "EuroSAT",
    "UCF101",
    "ImageNetV2",
    "ImageNetSketch",
    "ImageNetA",
    "ImageNetR",
}


def snapshot(root: Path) -> List[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_report_table_and_problems(data, capsys):
    before = snapshot(data)
    assert check_data.main([str(data)]) == 0
    output = capsys.readouterr().out
    rows = table_lines(output)
    assert set(rows) == NAMES
    assert rows["DescribableTextures"][1:6] == ["complete", "2", "6", "4", "8"]
    assert rows["EuroSAT"][1:6] == ["incomplete", "2", "6", "2", "4"]
    assert rows["OxfordPets"][1:4] == ["no", "split", "yet"]
    assert rows["Caltech101"][1] == "incomplete"
    assert rows["ImageNetR"][1:6] == ["complete", "2", "-", "-", "2"]
    assert rows["ImageNet"][1] == "missing" and rows["SUN397"][1] == "missing"
    assert (
        f"2 of 4 images are missing on disk:\n      {data / 'eurosat' / '2750' / 'c1' / 'test_0.jpg'}"
        in output
    )
    assert (
        f"Caltech101: image folder not found: {data / 'caltech-101' / '101_ObjectCategories'}"
        in output
    )
    assert f"ImageNet: dataset folder not found: {data / 'imagenet'}" in output
    assert "the reader would build a new split" in output
    assert snapshot(data) == before  # the checker writes nothing (no split file, no cache)


def test_require_sets_exit_status(data, capsys):
    assert check_data.main([str(data), "--require", "DescribableTextures", "imagenetr"]) == 0
    assert (
        check_data.main([str(data), "--require", "DescribableTextures", "EuroSAT", "OxfordPets"])
        == 1
    )
    assert "Required but not complete: OxfordPets, EuroSAT" in capsys.readouterr().out
    # Images are not checked on request: EuroSAT then looks complete.
    assert check_data.main([str(data), "--require", "EuroSAT", "--skip-image-check"]) == 0


def test_data_from_environment_and_bad_arguments(data, monkeypatch, capsys):
    monkeypatch.setenv("DATA", str(data))
    assert check_data.main([]) == 0
    assert f"Datasets under {data}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        check_data.main(["--require", "ImageNet1k"])
    assert exit_info.value.code == 2
    assert "unknown dataset ImageNet1k" in capsys.readouterr().err
    monkeypatch.delenv("DATA")
    with pytest.raises(SystemExit):
        check_data.main([])
    assert "give DATA" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        check_data.main([str(data / "nowhere")])
    assert "DATA folder not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- --open-images


def jpeg_bytes(size: int = 48) -> bytes:
    """A real JPEG of random pixels (large enough that cutting it in half breaks the decode)."""
    from PIL import Image

    rng = random.Random(0)
    pixels = bytes(rng.randrange(256) for _ in range(size * size * 3))
    image = Image.frombytes("RGB", (size, size), pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture
def images(tmp_path: Path) -> Dict[str, object]:
    """DTD and EuroSAT with real JPEGs; in DTD one file of random bytes (a test image) and one
    truncated JPEG (a train image); in EuroSAT one image deleted; the rest absent."""
    good = jpeg_bytes()
    split_dataset(
        tmp_path / "dtd",
        "images",
        "split_zhou_DescribableTextures.json",
        {"train": 3, "val": 2, "test": 2},
        content=good,
    )
    split_dataset(
        tmp_path / "eurosat",
        "2750",
        "split_zhou_EuroSAT.json",
        {"train": 2, "val": 1, "test": 1},
        content=good,
    )
    random_bytes = tmp_path / "dtd" / "images" / "c1" / "test_0.jpg"
    random_bytes.write_bytes(bytes(random.Random(1).randrange(256) for _ in range(2000)))
    truncated = tmp_path / "dtd" / "images" / "c0" / "train_2.jpg"
    truncated.write_bytes(good[: len(good) // 2])
    gone = tmp_path / "eurosat" / "2750" / "c0" / "val_0.jpg"
    gone.unlink()
    return {"root": tmp_path, "bad": {str(random_bytes), str(truncated)}, "gone": str(gone)}


def undecodable_listed(output: str, name: str) -> Dict[str, str]:
    """``{path: error}`` from the ``<name>: N of M images cannot be decoded:`` block."""
    lines = output.splitlines()
    start = next(
        index
        for index, line in enumerate(lines)
        if line.startswith(f"- {name}: ") and "cannot be decoded" in line
    )
    listed = {}
    for line in lines[start + 1 :]:
        if not line.startswith("      "):
            break
        path, error = line.strip().split(": ", 1)
        listed[path] = error
    return listed


def test_open_images_lists_exactly_the_undecodable_images(images, capsys):
    root = images["root"]
    before = snapshot(root)
    assert check_data.main([str(root), "--open-images", "--require", "DescribableTextures"]) == 1
    output = capsys.readouterr().out
    rows = table_lines(output)
    assert rows["DescribableTextures"][1:6] == ["incomplete", "2", "6", "4", "4"]
    assert "- DescribableTextures: 2 of 14 images cannot be decoded:" in output
    listed = undecodable_listed(output, "DescribableTextures")
    assert set(listed) == images["bad"]
    for error in listed.values():
        assert error.split(":")[0] in {"UnidentifiedImageError", "OSError"}, error
    assert "Required but not complete: DescribableTextures" in output
    # EuroSAT's missing image is reported once, by the existence check, not as undecodable.
    assert rows["EuroSAT"][1] == "incomplete"
    assert output.count(images["gone"]) == 1
    assert "EuroSAT val: 1 of 2 images are missing on disk" in output
    assert output.count("cannot be decoded") == 1
    assert snapshot(root) == before  # still writes nothing

    # One worker finds the same images.
    assert check_data.main([str(root), "--open-images", "--workers", "1"]) == 0
    assert set(undecodable_listed(capsys.readouterr().out, "DescribableTextures")) == images["bad"]


def test_without_open_images_the_report_is_as_before(images, capsys):
    root = images["root"]
    assert check_data.main([str(root), "--require", "DescribableTextures"]) == 0
    output = capsys.readouterr().out
    assert table_lines(output)["DescribableTextures"][1:6] == ["complete", "2", "6", "4", "4"]
    assert "cannot be decoded" not in output
    assert not any(path in output for path in images["bad"])


def test_open_images_arguments(images, capsys):
    root = str(images["root"])
    for bad in (["--open-images", "--skip-image-check"], ["--open-images", "--workers", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            check_data.main([root, *bad])
        assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_undecodable_list_is_capped_with_a_count():
    count = check_data.MAX_UNREADABLE_LISTED + 3
    failures = [(f"/d/{index}.jpg", "OSError: broken") for index in range(count)]
    text = check_data.format_undecodable("X", failures, 100)
    lines = text.splitlines()
    assert lines[0] == f"X: {len(failures)} of 100 images cannot be decoded:"
    assert lines[1] == "    /d/0.jpg: OSError: broken"
    assert len(lines) == 1 + check_data.MAX_UNREADABLE_LISTED + 1
    assert lines[-1] == "    ... and 3 more"
