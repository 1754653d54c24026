"""Reading every ordinary kind of image file into 8-bit RGB."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facecmp.errors import FacecmpError
from facecmp.images import load_rgb


def test_grayscale_rgba_16bit_and_palette_become_rgb(tmp_path):
    Image.fromarray(np.full((20, 30), 128, np.uint8)).save(tmp_path / "g.png")
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left half
    rgba[:, 15:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(np.arange(600, dtype=np.uint16).reshape(20, 30) * 100).save(tmp_path / "w.png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).convert("P").save(tmp_path / "p.gif")
    for name in ("g.png", "a.png", "w.png", "p.gif"):
        img = load_rgb(tmp_path / name)
        assert img.shape == (20, 30, 3) and img.dtype == np.uint8
    a = load_rgb(tmp_path / "a.png")
    assert tuple(a[0, 0]) == (255, 255, 255) and tuple(a[0, 20]) == (255, 0, 0)
    w = load_rgb(tmp_path / "w.png")
    assert w.min() == 0 and w.max() == 255  # 16-bit range is stretched, not clipped


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert load_rgb(tmp_path / "r.jpg").shape == (40, 20, 3)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\0" * 40])
def test_bad_files_raise_one_line_errors(tmp_path, content):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(FacecmpError) as err:
        load_rgb(path)
    assert "bad.jpg" in str(err.value) and "\n" not in str(err.value)


def test_truncated_jpeg_is_an_error(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(FacecmpError):
        load_rgb(tmp_path / "t.jpg")


def test_missing_file(tmp_path):
    with pytest.raises(FacecmpError, match="no such file"):
        load_rgb(tmp_path / "nope.jpg")
