"""The tf.data pipelines, on real JPEG files."""

import numpy as np
import pytest

from carclf_core.config import InputConfig

from .conftest import DECODABLE_ODD_IMAGES, jpeg_bytes, odd_rgb, write_odd_images

tf = pytest.importorskip("tensorflow")
inputs = pytest.importorskip("carclf_core.inputs")


@pytest.fixture(scope="module")
def coded_images(tmp_path_factory):
    """60 grey images whose mean value (10 + 4 i) encodes their index, so order can be checked from pixels."""
    root = tmp_path_factory.mktemp("coded")
    paths, labels = [], []
    for i in range(60):
        path = root / f"img{i:03d}.jpg"
        path.write_bytes(jpeg_bytes((10 + i * 4,) * 3, size=(40, 24), seed=i))
        paths.append(str(path))
        labels.append(i % 3)
    return paths, np.array(labels)


def test_eval_pipeline_keeps_order_and_labels(coded_images):
    paths, labels = coded_images
    cfg = InputConfig(height=24, width=40, batch_size=16)
    ds = inputs.make_dataset(paths, labels, 3, cfg, training=False)
    images, onehot = [], []
    for x, y in ds:
        images.append(x.numpy())
        onehot.append(y.numpy())
    images, onehot = np.concatenate(images), np.concatenate(onehot)
    assert images.shape == (60, 24, 40, 3) and images.dtype == np.float32
    assert onehot.argmax(1).tolist() == labels.tolist()
    red = images[..., 0].mean(axis=(1, 2))
    assert np.all(np.diff(red) > 2), "images came out of order"


def test_training_pipeline_shuffles_across_whole_split_each_epoch(coded_images):
    paths, labels = coded_images
    cfg = InputConfig(height=24, width=40, batch_size=60, augment=False)
    ds = inputs.make_dataset(paths, labels, 3, cfg, training=True, seed=1)
    orders = []
    for _ in range(2):
        x, _ = next(iter(ds))
        brightness = x.numpy().mean(axis=(1, 2, 3))
        orders.append(np.argsort(np.argsort(brightness)).tolist())  # rank = file index (codes increase)
    assert sorted(orders[0]) == list(range(60))
    assert orders[0] != orders[1], "reshuffle each epoch"
    # a buffer of 32 (the reference's) could never put the last image first; the whole-split buffer can
    assert orders[0][:10] != list(range(10))


@pytest.mark.parametrize("cache", [False, True], ids=["streamed", "cached"])
def test_each_epoch_comes_in_a_new_order_and_the_seed_repeats_the_epochs(coded_images, cache):
    """Two epochs of one training pipeline differ in order, whether the decoded images are cached or
    not (a cache shuffled once would repeat one order for ever); a new pipeline with the same seed
    delivers the same two epochs again, order and augmentation alike, and another seed others."""
    paths, labels = coded_images
    cfg = InputConfig(height=24, width=40, batch_size=16, cache=cache, augment=True, augment_share=0.5)

    def two_epochs(seed: int) -> list[tuple[list[int], np.ndarray]]:
        ds = inputs.make_dataset(paths, labels, 3, cfg, training=True, seed=seed, with_rows=True)
        epochs = []
        for _ in range(2):
            batches = list(ds.as_numpy_iterator())
            epochs.append((np.concatenate([b[-1] for b in batches]).tolist(), np.concatenate([b[0] for b in batches])))
        return epochs

    first, again, other = two_epochs(5), two_epochs(5), two_epochs(6)
    assert sorted(first[0][0]) == sorted(first[1][0]) == list(range(60))
    assert first[0][0] != first[1][0], "the second epoch repeated the first one's order"
    for (order, images), (order_again, images_again) in zip(first, again, strict=True):
        assert order == order_again
        np.testing.assert_array_equal(images, images_again)  # the same images augmented the same way
    assert other[0][0] != first[0][0]


def test_augmentation_decided_per_image(coded_images):
    paths, labels = coded_images
    cfg = InputConfig(height=24, width=40, batch_size=60, augment=True, augment_share=0.5)
    ds = inputs.make_dataset(paths, labels, 3, cfg, training=True, seed=3, with_augment_flags=True)
    _, _, flags = next(iter(ds))
    flags = flags.numpy()
    assert 0 < flags.sum() < len(flags), "augmentation must differ across images of one batch"
    assert 10 < flags.sum() < 50


def test_resize_modes_keep_requested_size(coded_images):
    paths, labels = coded_images
    for mode in ("pad", "crop", "stretch"):
        cfg = InputConfig(height=30, width=30, batch_size=4, resize=mode)
        x, _ = next(iter(inputs.make_dataset(paths[:4], labels[:4], 3, cfg, training=False)))
        assert x.shape == (4, 30, 30, 3)
        assert float(x.numpy().min()) >= 0 and float(x.numpy().max()) <= 255


def test_file_deleted_after_indexing_is_dropped_not_fatal(coded_images, tmp_path):
    paths, labels = coded_images
    victim = tmp_path / "gone.jpg"
    victim.write_bytes(jpeg_bytes((0, 0, 0)))
    files = paths[:5] + [str(victim)]
    victim.unlink()
    cfg = InputConfig(height=24, width=40, batch_size=8)
    batches = list(inputs.make_dataset(files, np.zeros(6, int), 3, cfg, training=False))
    assert sum(len(x) for x, _ in batches) == 5


def test_pipeline_decodes_every_format_the_index_accepts(tmp_path):
    files = write_odd_images(tmp_path)
    paths = [str(files[name]) for name in DECODABLE_ODD_IMAGES]
    cfg = InputConfig(height=20, width=30, batch_size=16)
    (x, y), = list(inputs.make_dataset(paths, np.zeros(len(paths), int), 2, cfg, training=False))
    assert x.shape == (len(paths), 20, 30, 3)
    # Each picture's colours are Pillow's conversion of it to RGB (compared as per-channel means, which
    # the halving resize keeps): a swapped channel, a grey taken for CMYK or a wrong palette shows. The
    # 16-bit PNG is scaled into 0..255 (Pillow's own conversion clips it to white): its 8-bit source.
    from PIL import Image

    pixels = x.numpy()
    for name, decoded in zip(DECODABLE_ODD_IMAGES, pixels, strict=True):
        with Image.open(files[name]) as image:
            expected = np.asarray(image.convert("RGB"), dtype=np.float64).mean(axis=(0, 1))
        if name == "png16":
            expected = np.full(3, odd_rgb()[..., 0].mean())
        got = decoded.mean(axis=(0, 1))
        assert np.abs(got - expected).max() < 3, (name, got, expected)
        if name in ("gray", "png16"):
            assert np.ptp(decoded, axis=-1).max() == 0, name  # grey: one channel copied to all three


# --- resize modes on a hand-made picture: each mode's known layout ---------------------------------

@pytest.fixture(scope="module")
def halves(tmp_path_factory) -> str:
    """A 4 x 2 PNG (lossless): the left half pure red, the right half pure blue."""
    from PIL import Image

    pixels = np.zeros((2, 4, 3), dtype=np.uint8)
    pixels[:, :2] = (255, 0, 0)
    pixels[:, 2:] = (0, 0, 255)
    path = tmp_path_factory.mktemp("halves") / "halves.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def _red_share(image: np.ndarray) -> np.ndarray:
    """Red / 255 per pixel, after checking that every pixel is red, blue, a mix of them, or black."""
    assert np.all(image[..., 1] == 0)
    return np.round(image[..., 0] / 255.0, 4)


TRAINING_LAYOUTS = {
    # scale 1 keeps 4 x 2; one black row above and below
    "pad": [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]],
    # scale 2 covers 4 x 4 with 8 x 4, centre columns 2..5: bilinear mixes at the seam (0.75, 0.25)
    "crop": [[1, 0.75, 0.25, 0]] * 4,
    # 4 x 2 to 4 x 4: rows doubled, columns kept
    "stretch": [[1, 1, 0, 0]] * 4,
}


@pytest.mark.parametrize("mode", sorted(TRAINING_LAYOUTS))
def test_training_resize_modes_have_their_known_layouts(halves, mode):
    cfg = InputConfig(height=4, width=4, batch_size=1, resize=mode)
    (x, _), = list(inputs.make_dataset([halves], [0], 2, cfg, training=False).as_numpy_iterator())
    red = _red_share(x[0])
    np.testing.assert_allclose(red, TRAINING_LAYOUTS[mode], atol=1e-4)
    blue = x[0, ..., 2] / 255.0
    padding = np.array(TRAINING_LAYOUTS["pad"]) == 0 if mode == "pad" else np.zeros((4, 4), bool)
    np.testing.assert_allclose(blue[~padding], 1 - red[~padding], atol=1e-4)  # red and blue share each pixel


PREFILTER_LAYOUTS = {
    # the central square (87.5 % of the short side: 2 pixels, columns 1..2) scaled 4x: a ramp
    "center_crop": [[255, 255, 223, 159, 96, 32, 0, 0]] * 8,
    # no scaling: the 4 x 2 picture in the middle of black
    "crop_or_pad": [[0] * 8] * 3 + [[0, 0, 255, 255, 0, 0, 0, 0]] * 2 + [[0] * 8] * 3,
    # scaled 2x to 8 x 4, two black rows above and below
    "pad": [[0] * 8] * 2 + [[255, 255, 255, 191, 64, 0, 0, 0]] * 4 + [[0] * 8] * 2,
}


@pytest.mark.parametrize("mode", sorted(PREFILTER_LAYOUTS))
def test_prefilter_resize_modes_have_their_known_layouts(halves, mode):
    (x, rows), = list(inputs.make_prefilter_dataset([halves], 8, mode, 1).as_numpy_iterator())
    assert x.dtype == np.uint8 and rows.tolist() == [0]
    np.testing.assert_array_equal(x[0, ..., 0], PREFILTER_LAYOUTS[mode])
    assert np.all(x[0, ..., 1] == 0)


def test_prefilter_default_resize_is_center_crop():
    from carclf_core.config import PrefilterConfig

    assert PrefilterConfig().resize == "center_crop"


# --- what went in against what came out -----------------------------------------------------------

def test_rows_name_the_files_a_pipeline_dropped(coded_images, tmp_path):
    paths, labels = coded_images
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8" + bytes(200))  # a JPEG start, then nothing TensorFlow can decode
    files = paths[:3] + [str(broken)] + paths[3:6]
    cfg = InputConfig(height=24, width=40, batch_size=4)
    ds = inputs.make_dataset(files, np.arange(7) % 3, 3, cfg, training=False, with_rows=True)
    rows = np.concatenate([r for _, _, r in ds.as_numpy_iterator()])
    assert rows.tolist() == [0, 1, 2, 4, 5, 6]
    # the audit sees the same through a training pipeline (shuffled, augmented), batch by batch
    audit = inputs.RowAudit(len(files))
    train = inputs.make_dataset(files, np.arange(7) % 3, 3, cfg, training=True, seed=0, audit=audit)
    for _epoch in range(2):
        audit.start()
        batches = list(train.as_numpy_iterator())
        assert all(len(batch) == 2 for batch in batches)  # Keras gets (images, labels) only
        assert sum(len(x) for x, _ in batches) == 6
        assert audit.missing().tolist() == [3]
