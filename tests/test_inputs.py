"""The tf.data pipelines, on real JPEG files."""

import numpy as np
import pytest

from carclf_core.config import InputConfig

from .conftest import DECODABLE_ODD_IMAGES, jpeg_bytes, write_odd_images

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
    assert float(x.numpy().max()) > 100  # 16-bit PNG scaled into 0..255, not clipped to black
