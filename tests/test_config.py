from pathlib import Path

import pytest

from carclf_core import config as config_mod
from carclf_core.config import Config, ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_repository_config_yaml_is_every_key_with_defaults():
    text = (REPO / "config.yaml").read_text()
    assert text == config_mod.commented_yaml(header=config_mod.CONFIG_HEADER), \
        "config.yaml is stale: python -m carclf_core.config > config.yaml"
    assert config_mod.load(REPO / "config.yaml") == Config()


def test_every_key_is_documented():
    docs = config_mod.field_docs()
    for section, values in Config().to_dict().items():
        for key in values:
            assert docs.get(f"{section}.{key}"), f"{section}.{key} has no docstring"


@pytest.mark.parametrize("override, message", [
    ("train.patience=twelve", 'train.patience: expected a positive integer, got "twelve"'),
    ("train.patience=0", "train.patience: expected a positive integer, got 0"),
    ("train.patiense=3", "train.patiense: unknown key"),
    ("nosuch.key=1", "nosuch: unknown key"),
    ("input.height=-5", "input.height: expected a positive integer, got -5"),
    ("split.train=0.9", "split: train + val + test must sum to 1"),
    ("prefilter.threshold=1.5", "prefilter.threshold: expected a number between 0 and 1"),
    ("prefilter.car_classes=[656, 1000]", "prefilter.car_classes: expected ImageNet class indices"),
    ("data.label=trim", 'data.label: expected one of make, model, got "trim"'),
    ("input.augment=perhaps", 'input.augment: expected true or false, got "perhaps"'),
    ("train.learning_rate=fast", 'train.learning_rate: expected a number, got "fast"'),
    ("split.min_per_class=2", "split.min_per_class: expected an integer >= 3"),
])
def test_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        config_mod.load(None, [override])
    assert str(info.value).startswith(message)


def test_overrides_and_file_layering(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\nsplit:\n  seed: 3\n")
    config = config_mod.load(path, ["train.epochs=9", "train.weights=null", "prefilter.mode=off"])
    assert config.train.epochs == 9 and config.split.seed == 3
    assert config.train.weights == "null"
    assert config.prefilter.mode == "off"  # YAML reads bare `off` as false; the loader maps it back
    assert config.train.patience == 12  # untouched default
    with pytest.raises(dataclasses_frozen_error()):
        config.train.epochs = 1  # type: ignore[misc]


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        config_mod.load(path)
    with pytest.raises(ConfigError, match="missing.yaml: cannot read config file"):
        config_mod.load(tmp_path / "missing.yaml")


def test_dump_round_trips():
    config = config_mod.load(None, ["train.freeze=regex", "train.freeze_patterns=[conv5.*]"])
    assert config_mod.from_dict(__import__("yaml").safe_load(config_mod.dump(config))) == config


# --- numbers -------------------------------------------------------------------------------------

def _float_keys() -> list[str]:
    import dataclasses
    import typing

    keys = []
    for name, cls in typing.get_type_hints(Config).items():
        hints = typing.get_type_hints(cls)
        keys += [f"{name}.{f.name}" for f in dataclasses.fields(cls) if hints[f.name] is float]
    return keys


def test_float_keys_are_the_ones_expected():
    assert _float_keys() == [
        "prefilter.threshold", "split.train", "split.val", "split.test", "input.augment_share",
        "input.brightness", "input.contrast", "train.learning_rate", "train.worker_timeout_s", "train.cluster_wait_s",
        "train.batch_events_per_second"]


@pytest.mark.parametrize("key", _float_keys())
@pytest.mark.parametrize("raw, shown", [(".inf", "inf"), ("-.inf", "-inf"), (".nan", "nan"), ("1e400", "inf")])
def test_every_float_must_be_finite(key, raw, shown):
    with pytest.raises(ConfigError) as info:
        config_mod.load(None, [f"{key}={raw}"])
    assert str(info.value) == f"{key}: expected a finite number, got {shown}"
    assert info.value.key == key


def test_a_float_given_as_a_huge_integer_is_refused_not_an_overflow():
    with pytest.raises(ConfigError, match=r"^train.learning_rate: expected a finite number, got 9{60}\.\.\.9$"):
        config_mod.load(None, ["train.learning_rate=" + "9" * 400])


@pytest.mark.parametrize("raw, value", [
    ("1e-3", 0.001), ("1E-3", 0.001), ("5e-4", 0.0005), ("1.5e-4", 0.00015), ("2.e-3", 0.002), (".001", 0.001),
    ("+1e-3", 0.001), ("1_0e-4", 0.001), ("0.0001", 0.0001), ("1", 1.0)])
def test_yaml_12_floats_in_overrides_and_files(tmp_path, raw, value):
    assert config_mod.load(None, [f"train.learning_rate={raw}"]).train.learning_rate == value
    path = tmp_path / "c.yaml"
    path.write_text(f"train:\n  learning_rate: {raw}\n")
    assert config_mod.load(path).train.learning_rate == value


def test_yaml_12_floats_leave_integers_and_names_alone():
    path, value = config_mod.parse_override("split.seed=7")
    assert value == 7 and type(value) is int
    assert config_mod.parse_override("x.y=09")[1] == "09"  # neither octal nor decimal: a string, as before
    assert config_mod.parse_override("x.y=1e")[1] == "1e"
    assert config_mod.parse_override("x.y=e3")[1] == "e3"
    assert config_mod.parse_override("x.y=.")[1] == "."
    with pytest.raises(ConfigError, match=r'^split.seed: expected an integer, got 1000.0$'):
        config_mod.load(None, ["split.seed=1e3"])


@pytest.mark.parametrize("seed", [0, 42, 2**32 - 1])
def test_seeds_keras_takes_are_accepted(seed):
    assert config_mod.load(None, [f"split.seed={seed}"]).split.seed == seed


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64])
def test_seeds_keras_refuses_are_refused(seed):
    with pytest.raises(ConfigError) as info:
        config_mod.load(None, [f"split.seed={seed}"])
    assert str(info.value) == f"split.seed: expected an integer 0..4294967295 (what Keras takes), got {seed}"


# --- early stopping's metric and direction -------------------------------------------------------

@pytest.mark.parametrize("monitor, direction", [
    ("loss", "min"), ("val_loss", "min"), ("categorical_accuracy", "max"), ("val_categorical_accuracy", "max"),
    ("top5", "max"), ("val_top5", "max")])
def test_monitor_direction_follows_the_metric(monitor, direction):
    train = config_mod.load(None, [f"train.monitor={monitor}"]).train
    assert train.monitor_mode == "auto"
    assert train.monitor_direction == direction
    explicit = config_mod.load(None, [f"train.monitor={monitor}", f"train.monitor_mode={direction}"]).train
    assert explicit.monitor_direction == direction


def test_default_monitor_is_val_loss_downwards():
    assert Config().train.monitor == "val_loss" and Config().train.monitor_direction == "min"


@pytest.mark.parametrize("name, direction", [
    ("val_auc", "max"), ("precision", "max"), ("val_recall", "max"), ("accuracy", "max"), ("acc", "max"),
    ("val_top_k_categorical_accuracy", "max"), ("mae", "min"), ("val_mean_squared_error", "min")])
def test_metric_direction_by_name(name, direction):
    assert config_mod.metric_direction(name) == direction


@pytest.mark.parametrize("monitor", ["val_acuracy", "val_accuracy", "accuracy", "Val_loss", "val_loss_", ""])
def test_a_monitor_training_does_not_log_is_refused_with_the_valid_names(monitor):
    with pytest.raises(ConfigError) as info:
        config_mod.load(None, [f"train.monitor={monitor}"])
    assert str(info.value) == (
        "train.monitor: expected a metric training logs (loss, categorical_accuracy, top5, val_loss, "
        f'val_categorical_accuracy, val_top5), got "{monitor}"')


@pytest.mark.parametrize("monitor, mode, natural", [
    ("val_loss", "max", "min"), ("val_categorical_accuracy", "min", "max"), ("top5", "min", "max")])
def test_a_monitor_mode_against_the_metric_is_refused(monitor, mode, natural):
    with pytest.raises(ConfigError) as info:
        config_mod.load(None, [f"train.monitor={monitor}", f"train.monitor_mode={mode}"])
    assert str(info.value) == f"train.monitor_mode: {monitor} improves towards {natural}, got {mode}; use auto"


def test_monitor_metrics_are_the_ones_the_model_is_compiled_with():
    """config.TRAIN_METRICS mirrors model.py's compile() (read as text: the config imports no Keras)."""
    source = (REPO / "carclf_core" / "model.py").read_text()
    assert 'metrics=["categorical_accuracy", keras.metrics.TopKCategoricalAccuracy(5, name="top5")]' in source
    assert config_mod.TRAIN_METRICS == ("loss", "categorical_accuracy", "top5")


# --- paths and names -----------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["data.dir", "run.root", "prefilter.model", "prefilter.weights", "train.weights",
                                 "train.backbone"])
@pytest.mark.parametrize("raw", ["", "   ", "''"])
def test_empty_paths_are_refused(key, raw):
    with pytest.raises(ConfigError) as info:
        config_mod.load(None, [f"{key}={raw}"])
    assert str(info.value) == f'{key}: expected a non-empty path, got ""'


def test_a_path_with_a_nul_byte_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text('data:\n  dir: "a\\0b"\n')
    with pytest.raises(ConfigError, match=r'^data.dir: expected a non-empty path, got "a\\x00b"$'):
        config_mod.load(path)


@pytest.mark.parametrize("name", ["carclf", "a", "x" * 64, "ok-1.2_x", "_a", "-a", "2024"])
def test_run_names_that_make_folder_names(name):
    assert config_mod.load(None, [f"run.name={name}"]).run.name == name


@pytest.mark.parametrize("name, shown", [
    ("", '""'), (".hidden", '".hidden"'), ("..", '".."'), ("a/b", '"a/b"'), ("a b", '"a b"'), ("é", '"é"'),
    ("x" * 65, '"' + "x" * 59 + '..."'), ("x" * 250, '"' + "x" * 59 + '..."'), ("a\\tb", '"a\\tb"')])
def test_run_names_that_do_not_make_folder_names_are_refused(name, shown):
    with pytest.raises(ConfigError) as info:
        config_mod.load(None, [f'run.name="{name}"'])
    assert str(info.value) == ("run.name: expected 1..64 characters of A-Z a-z 0-9 . _ - (a folder name), "
                               f"not starting with '.', got {shown}")


# --- sections and keys ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, shown", [("data: 0", "0"), ("data: [1]", "[1]"), ("data: x", '"x"'),
                                         ("train: false", "False")])
def test_a_section_that_is_not_a_mapping_is_refused_naming_file_and_key(tmp_path, text, shown):
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n")
    section = text.split(":")[0]
    with pytest.raises(ConfigError) as info:
        config_mod.load(path)
    assert str(info.value) == f"{path}: {section}: expected a section (a mapping of keys), got {shown}"


@pytest.mark.parametrize("override, message", [
    ("data=0", "data: expected a section (a mapping of keys), got 0"),
    ("train=[1]", "train: expected a section (a mapping of keys), got [1]"),
])
def test_a_section_that_is_not_a_mapping_is_refused_in_overrides(override, message):
    with pytest.raises(ConfigError) as info:
        config_mod.load(None, [override])
    assert str(info.value) == message
    with pytest.raises(ConfigError, match="data: expected a section"):
        config_mod.from_dict({"data": 0})


def test_an_empty_section_takes_the_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\ntrain:\n  epochs: 3\n")
    config = config_mod.load(path)
    assert config.data == Config().data and config.train.epochs == 3


@pytest.mark.parametrize("text, message", [
    ("1: x\n", "key 1 at line 1 is not a name"),
    ("? [a]\n: b\n", "a list used as a key at line 1 is not a name"),
    ("? {a: 1}\n: b\n", "a mapping used as a key at line 1 is not a name"),
    ("data:\n  1: x\n", "key 1 at line 2 in data is not a name"),
    ("train:\n  null: 3\n", "key null at line 2 in train is not a name"),
    ("train:\n  true: 3\n", "key true at line 2 in train is not a name"),
    ("train:\n  freeze_patterns: [{2.5: x}]\n", "key 2.5 at line 2 in train.freeze_patterns[0] is not a name"),
    ("train:\n  epochs: 3\n  epochs: 4\n", 'key "epochs" in train given twice (lines 2 and 3)'),
    ("train: {}\ntrain: {}\n", 'key "train" given twice (lines 1 and 2)'),
])
def test_keys_must_be_names_given_once(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config_mod.load(path)
    assert str(info.value).startswith(f"{path}: {message}")
    assert "\n" not in str(info.value)


def test_keys_in_override_values_must_be_names():
    with pytest.raises(ConfigError) as info:
        config_mod.load(None, ["data={1: x}"])
    assert str(info.value).startswith("data: key 1 at line 1 is not a name")
    with pytest.raises(ConfigError, match=r"^1: key is not a name"):
        config_mod.from_dict({1: {}})


def test_a_quoted_number_is_a_name_and_merge_keys_work(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text('"train":\n  <<: {epochs: 5}\n  patience: 2\n')
    config = config_mod.load(path)
    assert config.train.epochs == 5 and config.train.patience == 2


def test_a_date_that_is_no_date_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  name: 2024-13-45\n")
    with pytest.raises(ConfigError, match=r"c.yaml: cannot read a value \(month must be in 1..12\)$"):
        config_mod.load(path)


# --- YAML budgets --------------------------------------------------------------------------------

ALIAS_BOMB = "\n".join(
    ["a: &a [" + ",".join(['"lol"'] * 9) + "]"]
    + [f"{b}: &{b} [" + ",".join([f"*{a}"] * 9) + "]" for a, b in zip("abcdefgh", "bcdefghi", strict=True)]) + "\n"


def test_the_alias_bomb_is_refused_at_once_naming_the_file(tmp_path):
    import time

    assert len(ALIAS_BOMB) < 400  # 9**9 = 387 million strings once expanded
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        config_mod.load(path)
    assert time.monotonic() - start < 1
    assert str(info.value) == (f"{path}: more than 100,000 values once YAML aliases are expanded; "
                               "refused as an alias bomb")
    with pytest.raises(ConfigError, match=r"^train.freeze_patterns: more than 100,000 values"):
        config_mod.load(None, ["train.freeze_patterns=" + ALIAS_BOMB.replace("\n", ", ").join("{}")])


def _patterns_with_aliases(n: int) -> str:
    return "train:\n  freeze: regex\n  freeze_patterns: [&p conv5.*" + ", *p" * n + "]\n"


def test_at_most_100_aliases(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(_patterns_with_aliases(100))
    assert config_mod.load(path).train.freeze_patterns == ("conv5.*",) * 101
    path.write_text(_patterns_with_aliases(101))
    with pytest.raises(ConfigError) as info:
        config_mod.load(path)
    assert str(info.value) == f"{path}: more than 100 YAML aliases; refused as an alias bomb"


@pytest.mark.parametrize("text", ["data: &a {dir: [*a]}\n", "x: &x [1, [2, *x]]\n"])
def test_an_alias_inside_its_own_value_is_refused(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config_mod.load(path)
    assert str(info.value) == f"{path}: a YAML alias refers to a value that contains it"


@pytest.mark.parametrize("depth", [40, 5000])
def test_deep_nesting_is_refused(tmp_path, depth):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  freeze_patterns: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(ConfigError) as info:
        config_mod.load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "nested deeper than 32 levels" in str(info.value) or "maximum nesting depth" in str(info.value)


def test_size_cap(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * config_mod.MAX_BYTES)
    assert config_mod.load(path) == Config()  # a comment, exactly at the cap
    path.write_bytes(b"#" * (config_mod.MAX_BYTES + 1))
    with pytest.raises(ConfigError) as info:
        config_mod.load(path)
    assert str(info.value) == f"{path}: larger than 256 KiB: not a config file"


def test_dev_zero_is_refused_at_once():
    import time

    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"^/dev/zero: is a character device where a file belongs; name a YAML file$"):
        config_mod.load(Path("/dev/zero"))
    assert time.monotonic() - start < 1


def test_a_folder_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: is a folder where a file belongs; name a YAML file$"):
        config_mod.load(tmp_path)


# --- encodings -----------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding, byte", [("utf-16", "byte 0 is 0xff"), ("utf-16-le", "byte 1 is 0x00"),
                                            ("utf-16-be", "byte 0 is 0x00")])
def test_utf16_is_refused_with_a_hint(tmp_path, encoding, byte):
    path = tmp_path / "c.yaml"
    path.write_bytes("train:\n  epochs: 3\n".encode(encoding))
    with pytest.raises(ConfigError) as info:
        config_mod.load(path)
    assert str(info.value) == f"{path}: not UTF-8 text ({byte}); save it as UTF-8 (it looks like UTF-16)"
    assert info.value.key == str(path)


@pytest.mark.parametrize("data, byte", [(b"train:\n  epochs: \xff\xfe3\n", "byte 17 is 0xff"),
                                        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "byte 0 is 0x89"),
                                        (b"train: x\0y\n", "byte 8 is 0x00")])
def test_binary_is_refused(tmp_path, data, byte):
    path = tmp_path / "c.bin"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        config_mod.load(path)
    assert str(info.value) == f"{path}: not UTF-8 text ({byte}); save it as UTF-8"


def test_utf8_with_a_byte_order_mark_and_non_ascii_values_are_fine(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("\ufeffdata:\n  dir: données\n".encode())
    assert config_mod.load(path).data.dir == "données"


def test_yaml_errors_are_one_line_with_the_place(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: [3\n")
    with pytest.raises(ConfigError) as info:
        config_mod.load(path)
    assert str(info.value) == f"{path}: not valid YAML: did not find expected ',' or ']' (line 3, column 1)"


def test_yaml_tags_that_build_objects_are_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: !!python/object/apply:os.system [echo hi]\n")
    with pytest.raises(ConfigError, match=r"c.yaml: not valid YAML: could not determine a constructor"):
        config_mod.load(path)


# --- retired keys --------------------------------------------------------------------------------

def test_heatmap_clip_is_gone_but_old_run_configs_still_load(tmp_path):
    assert "heatmap_clip" not in Config().to_dict()["evaluate"]
    assert "heatmap_clip" not in (REPO / "config.yaml").read_text()
    path = tmp_path / "old-run-config.yaml"
    path.write_text("evaluate:\n  heatmap_clip: [0, 5]\n  most_confused: 7\n")
    assert config_mod.load(path).evaluate.most_confused == 7
    with pytest.raises(ConfigError, match="^evaluate.heatmap_clop: unknown key"):
        config_mod.load(None, ["evaluate.heatmap_clop=[0, 5]"])
