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
