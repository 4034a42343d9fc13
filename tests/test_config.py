"""`tltf.config`: one schema for YAML files, flags and the docs table."""

from __future__ import annotations

import argparse
import os

import pytest
import yaml

from tltf import config, recipe
from tltf.config import ConfigError

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "cli.md")


def _write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return str(path)


def test_resolve_layers_defaults_file_and_overrides(tmp_path):
    path = _write(tmp_path, "epochs: 5\nbatch_size: 16\nfreeze: [layer_3, layer_4]\n")
    cfg = config.resolve(path, {"epochs": 1})
    assert cfg["epochs"] == 1  # override beats file
    assert cfg["batch_size"] == 16  # file beats default
    assert cfg["freeze"] == ["layer_3", "layer_4"]
    assert cfg["seed"] == 0 and cfg["head_lr"] == recipe.HEAD_LR  # defaults fill the rest
    assert set(cfg) == set(config.BY_NAME)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epoch: 3\n", "run.yaml: unknown key 'epoch'; did you mean 'epochs'?"),
        ("batch-size: 3\n", "unknown key 'batch-size'; did you mean 'batch_size'?"),
        ("lerning_rate: 3\n", "unknown key 'lerning_rate'; valid keys: backbone, task,"),
        ("backbon: keras:ResNet50\n", "did you mean 'backbone'?"),
    ],
)
def test_unknown_key_names_the_nearest_valid_spelling(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        config.load(_write(tmp_path, text))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs: three\n", "epochs must be an integer, got a string 'three'"),
        ("epochs: 2.5\n", "epochs must be an integer, got a number 2.5"),
        ("epochs: true\n", "epochs must be an integer, got a boolean True"),
        ("lr: fast\n", "lr must be a number, got a string 'fast'"),
        ("freeze: 3\n", "freeze must be a string or a list of strings, got an integer 3"),
        ("backbone_options: [1]\n", "backbone_options must be a mapping, got a list"),
        ("precision: fp8\n", "precision='fp8'; use one of auto, float32,"),
    ],
)
def test_type_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        config.load(_write(tmp_path, text))
    assert message in str(info.value)
    assert "run.yaml" in str(info.value)


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    assert config.load(_write(tmp_path, "lr: 1e-4\nhead_lr: 3\n")) == {"lr": 1e-4, "head_lr": 3.0}


def test_comma_separated_freeze_becomes_a_list():
    assert config.check({"freeze": "layer_0,layer_1"}, "x")["freeze"] == ["layer_0", "layer_1"]
    assert config.check({"freeze": "top:2"}, "x")["freeze"] == "top:2"


def test_null_is_allowed_and_means_the_default_behaviour(tmp_path):
    assert config.load(_write(tmp_path, "lr: null\nbackbone: ~\n")) == {
        "lr": None,
        "backbone": None,
    }


def test_empty_file_is_no_keys_and_a_list_is_an_error(tmp_path):
    assert config.load(_write(tmp_path, "# nothing\n")) == {}
    with pytest.raises(ConfigError, match="expected a mapping of keys to values, got a list"):
        config.load(_write(tmp_path, "- epochs\n"))


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    with pytest.raises(ConfigError, match=r"run.yaml line 2: not valid YAML"):
        config.load(_write(tmp_path, "epochs: 2\nfreeze: top: 2\n"))


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        config.load(str(tmp_path / "nope.yaml"))


def test_to_yaml_round_trips_through_load(tmp_path):
    cfg = config.resolve(None, {"freeze": ["a", "b"], "lr": 2e-5, "backbone": "keras:ResNet50"})
    text = config.to_yaml(cfg)
    assert yaml.safe_load(text) == cfg
    assert config.resolve(_write(tmp_path, text)) == cfg
    assert text.startswith("# model\nbackbone: 'keras:ResNet50'\n")


def test_flags_come_from_the_schema_and_absent_flags_do_not_override():
    parser = argparse.ArgumentParser()
    config.add_flags(parser)
    args = parser.parse_args(["--batch-size", "64", "--freeze", "layer_0,layer_1", "--lr", "3e-5"])
    given = config.given_flags(args)
    assert given == {"batch_size": "64", "freeze": "layer_0,layer_1", "lr": "3e-5"}
    assert config.check(given, "command line") == {
        "batch_size": 64,
        "freeze": ["layer_0", "layer_1"],
        "lr": 3e-5,
    }
    with pytest.raises(SystemExit):
        parser.parse_args(["--backbone-options", "x"])  # YAML only


def test_bad_flag_value_names_the_key():
    with pytest.raises(ConfigError, match="command line: epochs must be an integer"):
        config.resolve(None, {"epochs": "many"})


def test_docs_table_is_generated_from_the_schema():
    table = config.markdown_table()
    assert len(table.splitlines()) == 2 + len(config.OPTIONS)
    with open(DOCS, encoding="utf-8") as fh:
        assert table in fh.read(), "docs/cli.md is stale: paste tltf.config.markdown_table()"
