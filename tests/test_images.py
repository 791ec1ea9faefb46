"""The image reader on real-world files: EXIF orientation in every reader, extreme sizes and aspects,
JPEGs that Pillow forgives but TensorFlow does not. Real JPEG files written with Pillow; TensorFlow's
own decoder where the pipelines are concerned."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from carclf_core import images
from carclf_core.config import InputConfig

from .conftest import DECODABLE_ODD_IMAGES, write_odd_images

# 40 wide, 24 high, nothing symmetric: a red block top left, a blue bar down the right, a green dot
# near the bottom, on a grey that darkens to the right. Any turn or flip moves something.
_Y, _X = np.mgrid[0:24, 0:40]
PICTURE = np.stack([np.full((24, 40), 160) - _X * 2] * 3, axis=-1).astype(np.uint8)
PICTURE[2:10, 3:15] = (230, 30, 30)
PICTURE[:, 33:37] = (30, 30, 230)
PICTURE[17:21, 8:12] = (30, 220, 30)


def _exif_segment(orientation: int, big_endian: bool) -> bytes:
    """An APP1 EXIF segment holding only the orientation tag (SHORT, in the chosen byte order)."""
    order = ">" if big_endian else "<"
    tiff = (b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + (8).to_bytes(4, "big" if big_endian else "little")
    entry = np.array([0x0112, 3], dtype=order + "u2").tobytes() + np.array([1], dtype=order + "u4").tobytes()
    entry += np.array([orientation, 0], dtype=order + "u2").tobytes()
    ifd = np.array([1], dtype=order + "u2").tobytes() + entry + bytes(4)
    payload = b"Exif\x00\x00" + tiff + ifd
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def write_oriented_jpeg(
    path: Path, pixels: np.ndarray, orientation: int, big_endian: bool = False, after: bytes = b""
) -> Path:
    """A JPEG of ``pixels`` as stored by a camera, with EXIF orientation ``orientation``.

    Args:
        big_endian: write the EXIF block in Motorola byte order (many cameras do), else Intel.
        after: segments to place between the start of the file and the EXIF segment (a JFIF APP0,
            an ICC APP2), as some writers do.
    """
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    path.write_bytes(data[:2] + after + _exif_segment(orientation, big_endian) + data[2:])
    return path


def _upright_by_pillow(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def _close(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Equal up to two JPEG decoders' rounding (IDCT, chroma upsampling at sharp edges)."""
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    difference = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    message = f"{what}: {difference.mean():.2f} levels off on average, {difference.max()} at most"
    assert difference.mean() < 1.5 and difference.max() <= 16, message  # measured: 1.1 and 11


JFIF = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
ICC_LIKE = b"\xff\xe2\x00\x08ICC\x00\x00\x00"
LAYOUTS = {
    "intel": {},
    "motorola": {"big_endian": True},
    "after-jfif-and-app2": {"after": JFIF + ICC_LIKE, "big_endian": True},
}


# --- Python reader and index check ---------------------------------------------------------------

@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_read_image_turns_photos_upright_as_pillow_does(tmp_path, orientation, layout):
    path = write_oriented_jpeg(tmp_path / "photo.jpg", PICTURE, orientation, **LAYOUTS[layout])
    upright = _upright_by_pillow(path)
    assert upright.shape == ((40, 24, 3) if orientation in (6, 8) else (24, 40, 3))
    got = images.read_image(path)
    np.testing.assert_array_equal(got, upright)  # the same decoder: exactly
    assert np.array_equal(images.read_image(path, path.read_bytes()), got)
    check = images.check_image(path)
    assert check.status == images.OK and check.orientation == orientation
    assert (check.height, check.width) == upright.shape[:2]  # the upright size, not the stored one


def test_every_orientation_and_a_photo_without_one(tmp_path):
    plain = tmp_path / "plain.jpg"
    Image.fromarray(PICTURE).save(plain, quality=95)
    assert images.check_image(plain).orientation == 1
    stored = images.read_image(plain)
    assert stored.shape == (24, 40, 3)
    for orientation in range(1, 9):
        path = write_oriented_jpeg(tmp_path / f"o{orientation}.jpg", PICTURE, orientation)
        np.testing.assert_array_equal(images.read_image(path), _upright_by_pillow(path))
        assert images.orientations([path]).tolist() == [orientation]
    # the turn is really there: orientation 3 is the stored picture upside down
    turned = images.read_image(tmp_path / "o3.jpg")
    assert np.abs(turned.astype(int) - stored[::-1, ::-1]).mean() < 2
    assert np.abs(turned.astype(int) - stored).mean() > 20


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow's, about the damage made here
def test_damaged_or_odd_exif_means_upright(tmp_path):
    path = write_oriented_jpeg(tmp_path / "bad.jpg", PICTURE, 6)
    data = bytearray(path.read_bytes())
    at = data.find(b"Exif\x00\x00") + 6
    data[at + 4 : at + 8] = (5000).to_bytes(4, "little")  # the directory offset points past the block
    path.write_bytes(bytes(data))
    assert images.jpeg_orientation(bytes(data)) == 1
    assert images.read_image(path).shape == (24, 40, 3)
    assert images.jpeg_orientation(b"") == 1 and images.jpeg_orientation(b"\x89PNG\r\n") == 1
    assert images.orientations([tmp_path / "missing.jpg"]).tolist() == [1]  # its decode will say why
    assert images.jpeg_orientation(write_oriented_jpeg(tmp_path / "nine.jpg", PICTURE, 9).read_bytes()) == 1


def test_header_followed_by_zeros_is_rejected_with_its_reason(tmp_path):
    """Pillow decodes a JPEG whose picture data is zeros (libjpeg pads it); TensorFlow refuses it."""
    tf = pytest.importorskip("tensorflow")
    buffer = io.BytesIO()
    # a detailed photo compresses to many bytes: as zeros they decode (as flat blocks) to the last one
    noise = np.random.default_rng(0).integers(0, 256, (212, 320, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG", quality=90)
    good = buffer.getvalue()
    scan = good.find(b"\xff\xda")
    header = good[: scan + 2 + int.from_bytes(good[scan + 2 : scan + 4], "big")]
    zeros = tmp_path / "zeros.jpg"
    zeros.write_bytes(header + bytes(len(good) - len(header)))
    with Image.open(zeros) as image:
        image.load()  # Pillow alone would have accepted it
    check = images.check_image(zeros)
    assert check.status == images.REJECTED
    assert check.reason == "truncated image (no JPEG end marker after the picture data)"
    assert images.check_image(zeros, zeros.read_bytes()) == check
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_image(zeros.read_bytes(), channels=3)
    with pytest.raises(images.ImageError, match="no JPEG end marker"):
        images.read_image(zeros)
    # garbage that ends properly decodes in both (a grey picture): accepted
    ended = tmp_path / "ended.jpg"
    ended.write_bytes(header + bytes(len(good) - len(header) - 2) + b"\xff\xd9")
    assert images.check_image(ended).status == images.OK
    assert tf.io.decode_image(ended.read_bytes(), channels=3).shape == (212, 320, 3)
    # an EXIF thumbnail carries its own end marker: it must not vouch for the main picture
    thumb = io.BytesIO()
    Image.fromarray(PICTURE).save(thumb, format="JPEG")
    app1 = b"Exif\x00\x00" + thumb.getvalue()
    with_thumb = tmp_path / "thumb.jpg"
    with_thumb.write_bytes(b"\xff\xd8\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + zeros.read_bytes()[2:])
    assert images.check_image(with_thumb).reason == check.reason


def test_the_check_agrees_with_tensorflow_on_damaged_jpegs(tmp_path):
    """Bytes flipped, files cut, tails zeroed (with and without the end marker), bytes removed: the
    index accepts exactly the files TensorFlow decodes."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(5)
    ramp = np.linspace(0, 160, 160, dtype=np.float32)[None, :, None]
    verdicts = []
    for k in range(40):
        pixels = np.clip(ramp + rng.normal(60, 20, (100, 160, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=80, progressive=k % 2 == 1)
        data = bytearray(buffer.getvalue())
        scan, end = data.find(b"\xff\xda") + 20, len(data)
        at = int(rng.integers(scan, end - 2))
        kind = k % 5
        if kind == 0:
            data[at] = int(rng.integers(0, 256))
        elif kind == 1:
            data = data[:at]
        elif kind == 2:
            data[at:] = bytes(end - at)
        elif kind == 3:
            data[at : end - 2] = bytes(end - 2 - at)
        else:
            del data[at : at + int(rng.integers(1, 50))]
        try:
            tf.io.decode_image(bytes(data), channels=3)
            decodes = True
        except tf.errors.InvalidArgumentError:
            decodes = False
        checked = images.check_image(tmp_path / f"{k}.jpg", bytes(data)).status == images.OK
        verdicts.append((kind, decodes, checked))
    assert all(decodes == checked for _, decodes, checked in verdicts), verdicts
    assert {decodes for _, decodes, _ in verdicts} == {True, False}  # both outcomes were exercised


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ((2000, 4), "too narrow (2000x4 pixels, more than 20:1)"),
        ((4, 2000), "too narrow (4x2000 pixels, more than 20:1)"),
        ((7, 30), "too small (7x30 pixels, at least 8 a side)"),
    ],
)
def test_extreme_sizes_are_rejected_with_the_reason(tmp_path, size, reason):
    path = tmp_path / "strip.jpg"
    Image.new("RGB", size, (90, 120, 150)).save(path)
    check = images.check_image(path)
    assert (check.status, check.reason) == (images.REJECTED, reason)
    assert (check.width, check.height) == size


def test_the_narrowest_accepted_image_goes_through_the_training_pipeline(tmp_path):
    pytest.importorskip("tensorflow")
    from carclf_core import inputs

    strip = tmp_path / "strip.jpg"
    Image.new("RGB", (400, 20), (200, 40, 40)).save(strip)  # 20:1, the limit
    assert images.check_image(strip).status == images.OK
    cfg = InputConfig(height=212, width=320, batch_size=4, resize="pad")
    (x, _), = list(inputs.make_dataset([str(strip)], [0], 2, cfg, training=False).as_numpy_iterator())
    assert x.shape == (1, 212, 320, 3)
    assert x[0, 106, 160, 0] > 150 and x[0, 0, 160].max() == 0  # the strip, centred, padded above


def test_big_phone_photo(tmp_path):
    """A 4,000 x 3,000 photo stored on its side (orientation 6): the index sees it upright and the
    pipeline shrinks it without losing where things are."""
    pytest.importorskip("tensorflow")
    from carclf_core import inputs

    red_to_blue = np.zeros((3000, 4000, 3), dtype=np.uint8)
    red_to_blue[..., 0] = np.linspace(250, 0, 4000, dtype=np.float32)[None, :]
    red_to_blue[..., 2] = np.linspace(0, 250, 4000, dtype=np.float32)[None, :]
    path = write_oriented_jpeg(tmp_path / "phone.jpg", red_to_blue, 6)
    check = images.check_image(path)
    assert (check.status, check.width, check.height, check.orientation) == (images.OK, 3000, 4000, 6)
    upright = images.read_image(path)
    assert upright.shape == (4000, 3000, 3)
    # turned a quarter clockwise: the red left edge is now at the top
    assert upright[0, :, 0].mean() > 200 and upright[-1, :, 2].mean() > 200
    cfg = InputConfig(height=212, width=320, batch_size=1, resize="pad")
    (x, _), = list(inputs.make_dataset([str(path)], [0], 2, cfg, training=False).as_numpy_iterator())
    column = x[0, :, 160]
    assert column[2, 0] > 200 and column[-3, 2] > 200  # red on top, blue at the bottom, as upright
    assert x[0, 106, :30].max() == 0  # a portrait picture in a landscape input: padded at the sides


def test_mpo_is_decoded_as_its_first_picture(tmp_path):
    tf = pytest.importorskip("tensorflow")
    first, second = Image.fromarray(PICTURE), Image.new("RGB", (40, 24), (250, 250, 250))
    path = tmp_path / "stereo.jpg"
    first.save(path, format="MPO", save_all=True, append_images=[second], quality=95)
    check = images.check_image(path)
    assert (check.status, check.format) == (images.OK, "MPO")
    _close(tf.io.decode_image(path.read_bytes(), channels=3).numpy(), images.read_image(path), "MPO")


# --- the TensorFlow side gives the same pixels ---------------------------------------------------

@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_pipelines_turn_photos_upright_like_the_python_reader(tmp_path, orientation):
    """read_rgb, the training/evaluation pipeline and the prefilter pipeline all see the upright photo."""
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    from carclf_core import inputs

    path = write_oriented_jpeg(tmp_path / "photo.jpg", PICTURE, orientation, big_endian=orientation == 8)
    expected = images.read_image(path)
    height, width = expected.shape[:2]
    _close(inputs.read_rgb(tf.constant(str(path))).numpy(), expected, "read_rgb")
    # stretch to the picture's own size is no resize at all: the decoded, turned pixels
    cfg = InputConfig(height=height, width=width, batch_size=2, resize="stretch")
    (x, _), = list(inputs.make_dataset([str(path)], [0], 2, cfg, training=False).as_numpy_iterator())
    _close(x[0].round().astype(np.uint8), expected, "make_dataset")
    side = max(height, width)
    (square, rows), = list(inputs.make_prefilter_dataset([str(path)], side, "crop_or_pad", 1).as_numpy_iterator())
    top, left = (side - height) // 2, (side - width) // 2
    _close(square[0, top : top + height, left : left + width], expected, "make_prefilter_dataset")
    assert rows.tolist() == [0]


@pytest.mark.parametrize("name", DECODABLE_ODD_IMAGES)
def test_odd_formats_read_alike_in_python_and_tensorflow(tmp_path, name):
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    from carclf_core import inputs

    path = write_odd_images(tmp_path)[name]
    expected = images.read_image(path)
    assert expected.dtype == np.uint8 and expected.shape == (40, 60, 3)
    _close(inputs.read_rgb(tf.constant(str(path))).numpy(), expected, name)
