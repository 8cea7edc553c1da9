"""ml.scripts.gpu_data: the downscaled copy of a dataset that a GPU machine trains from."""

from __future__ import annotations

import pytest
from PIL import Image

from ml.data import load_dataset
from ml.scripts.gpu_data import SHORT_SIDE, main
from tests.ml.factories import photo


@pytest.fixture
def source(tmp_path):
    data = tmp_path / "mpox-skin"
    (data / "monkeypox").mkdir(parents=True)
    (data / "normal").mkdir()
    # A landscape JPEG stored sideways with an EXIF "rotate 90" tag, and a large PNG.
    exif = Image.Exif()
    exif[0x0112] = 6
    photo(600, 400, seed=1).save(data / "monkeypox" / "sideways.jpg", exif=exif, quality=90)
    photo(900, 700, seed=2).save(data / "normal" / "big.png")
    photo(120, 90, seed=3).save(data / "normal" / "small.jpg")
    (data / "manifest.csv").write_text("file,label,notes\nnormal/big.png,normal,group=7\n")
    backbone = tmp_path / "backbone.pth"
    backbone.write_bytes(b"weights")
    return data, backbone


def test_the_copy_is_upright_rgb_at_the_training_size_with_manifest_and_backbone(source, tmp_path, capsys) -> None:
    data, backbone = source
    out = tmp_path / "gpudata"

    assert main(["--data", str(data), "--backbone", str(backbone), "--out", str(out)]) == 0

    copy = out / "mpox-skin"
    with Image.open(copy / "monkeypox" / "sideways.jpg") as upright:
        assert upright.size == (SHORT_SIDE, 384)  # EXIF applied: now portrait, short side 256
        assert upright.getexif().get(0x0112) is None
    with Image.open(copy / "normal" / "big.png") as big:
        assert (big.format, big.mode, min(big.size)) == ("JPEG", "RGB", SHORT_SIDE)  # same name, JPEG inside
    with Image.open(copy / "normal" / "small.jpg") as small:
        assert small.size == (120, 90)  # never enlarged
    assert (copy / "manifest.csv").read_text() == (data / "manifest.csv").read_text()
    assert (out / "backbone.pth").read_bytes() == b"weights"
    # The loader reads the copy like the original: same files, labels and manifest hash.
    original, copied = load_dataset(data), load_dataset(copy)
    assert [r.relative_to(data) for r in original.records] == [r.relative_to(copy) for r in copied.records]
    assert original.manifest_sha256 == copied.manifest_sha256
    assert "3 photos" in capsys.readouterr().out


def test_a_missing_data_folder_is_named(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "nowhere does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_backbone_weights_are_named_before_anything_is_copied(source, tmp_path, capsys) -> None:
    data, _ = source
    with pytest.raises(SystemExit) as exit_info:
        main(["--data", str(data), "--backbone", str(tmp_path / "none.pth"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "none.pth do not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
