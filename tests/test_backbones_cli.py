"""`tltf backbones`: the listing, one backbone's groups, and option errors."""

from __future__ import annotations

import keras

from tltf.cli import main


def test_lists_sources_families_and_naming(capsys):
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    for source in ("keras:", "hub:", "keras_hub:", "keras_nlp:", "hf:", "file:"):
        assert f"  {source}" in out
    for name in (n for n in dir(keras.applications) if n[:1].isupper()):
        assert name in out
    assert "size 224-600 (min 32)" in out  # EfficientNet B0-B7
    assert "stem, stage1..stage7, top" in out
    assert "preprocessor=" in out and "KAGGLEHUB_CACHE" in out
    assert "  speech:openwakeword  audio: openWakeWord's" in out  # listed under audio, spaced


def test_presets_come_from_the_installed_keras_hub(capsys):
    assert main(["backbones", "--presets"]) == 0
    assert "bert_tiny_en_uncased" in capsys.readouterr().out


def test_one_backbone_prints_its_groups(capsys):
    args = ["backbones", "keras:MobileNetV2", "--option", "weights=null"]
    assert main([*args, "--option", "input_shape=[32, 32, 3]"]) == 0
    out = capsys.readouterr().out
    assert "Backbone keras:MobileNetV2" in out
    rows = [line.split()[0] for line in out.splitlines()[2:]]
    assert rows == ["stem", "stage1", "stage2", "stage3", "stage4", "stage5", "top"]


def test_bad_options_are_one_line_errors(capsys):
    assert main(["backbones", "keras:MobileNetV2", "--option", "weights"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["backbones", "nosource"]) == 2
    assert "SOURCE:NAME" in capsys.readouterr().err
