"""tltf.recommend and `tltf recommend`: the seeds' rules as code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import tltf
from tltf import recipe
from tltf.advisor import recommend
from tltf.backbone import Backbone
from tltf.cli import main
from tltf.errors import SpecError


def _backbone(groups: int, default_lr: float = 5e-5) -> Backbone:
    return Backbone(
        spec="keras_hub:x",
        modality="text",
        model=None,
        preprocessor=None,
        groups={f"layer_{i}": [] for i in range(groups)},
        feature_dim=8,
        input_spec={},
        default_lr=default_lr,
    )


@pytest.mark.parametrize("similarity", ["high", "medium", "low"])
@pytest.mark.parametrize("examples", [300, 1990])  # 30 and 199 per class
def test_small_data_trains_only_the_head(similarity, examples):
    """Up to 200 per class: at 128 and 158 the frozen head beat opened groups (benchmarks)."""
    rec = recommend(examples, 10, similarity=similarity)
    assert (rec.data_size, rec.freeze, rec.bn) == ("small", "all", "frozen")
    assert rec.lr_decay is None and rec.epochs is None  # fine_tune's: until the head converges
    assert "feature extraction" in rec.explanation
    assert ("expect lower accuracy" in rec.explanation) == (similarity != "high")


def test_medium_data_opens_more_groups_the_less_similar_the_task():
    bb = _backbone(8)
    opened = [
        int(recommend(3000, 10, similarity=s, backbone=bb).freeze.split(":")[1])
        for s in ("high", "medium", "low")
    ]
    assert opened == [2, 4, 6]
    rec = recommend(3000, 10, similarity="high", backbone=bb)
    assert (rec.data_size, rec.unfreeze, rec.lr_decay, rec.bn) == (
        "medium",
        "gradual",
        0.5,
        "frozen",
    )
    assert rec.lr == 5e-5 and rec.head_lr == recipe.HEAD_LR
    # without a loaded backbone: fixed counts
    assert recommend(3000, 10, similarity="low").freeze == "top:4"
    assert recommend(2000, 10).data_size == "medium"  # from 200 per class


def test_large_data_fine_tunes_everything():
    similar = recommend(50_000, 10, similarity="high", backbone="keras:ResNet50")
    assert (similar.data_size, similar.freeze, similar.bn) == ("large", "none", "frozen")
    assert similar.lr == 1e-4 and similar.lr_decay == 0.8
    different = recommend(50_000, 10, similarity="low", backbone="hf:org/bert")
    assert (different.freeze, different.bn, different.lr_decay) == ("none", "train", None)
    assert different.lr == 5e-5
    assert "bn='train'" in different.explanation


def test_recommendation_plugs_into_build_and_fine_tune(tiny_bert_dir):
    model = tltf.build(f"keras_hub:{tiny_bert_dir}", class_names=["a", "b"], sequence_length=16)
    rec = tltf.recommend(600, 2, similarity="medium", backbone=model)
    assert rec.freeze == "top:2"  # 3 groups: embeddings, layer_0, layer_1
    assert rec.build_kwargs() == {"freeze": "top:2", "bn": "frozen", "lr_decay": 0.5}
    assert rec.fine_tune_kwargs() == {
        "lr": 5e-5,
        "head_lr": recipe.HEAD_LR,
        "unfreeze": "gradual",
        "epochs": None,  # fine_tune's own: sized by the data
        "freeze_epochs": None,
    }
    tltf.set_freeze(model, rec.freeze)
    assert tltf.info(model)["freeze"] == "top:2"


def test_bad_arguments_are_clear_errors():
    with pytest.raises(SpecError, match="similarity='same'"):
        recommend(100, 2, similarity="same")
    with pytest.raises(SpecError, match="num_examples=0"):
        recommend(0, 2)


def test_cli_recommend_prints_the_policy_and_json(capsys):
    assert main(["recommend", "--examples", "3000", "--classes", "10", "--similarity", "low"]) == 0
    text = capsys.readouterr().out
    assert "freeze         top:4" in text and "medium data" in text
    out = subprocess.run(
        [sys.executable, "-m", "tltf.cli", "recommend", "--examples", "200", "--classes", "4",
         "--backbone", "keras:MobileNetV2", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    rec = json.loads(out.stdout)
    assert rec["freeze"] == "all" and rec["lr"] == 1e-4 and rec["data_size"] == "small"
    bad = subprocess.run(
        [sys.executable, "-m", "tltf.cli", "recommend", "--examples", "0", "--classes", "2"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "num_examples=0" in bad.stderr


def test_small_text_data_opens_the_top_two_groups_images_stay_frozen(tiny_bert_dir):
    text = recommend(320, 10, similarity="high", backbone=_backbone(7))
    assert (text.data_size, text.freeze, text.lr) == ("small", "top:2", 5e-5)
    assert "top 2 groups" in text.explanation
    assert recommend(320, 10, similarity="high", backbone="hf:org/bert").freeze == "top:2"
    model = tltf.build(f"keras_hub:{tiny_bert_dir}", class_names=["a", "b"], sequence_length=16)
    assert recommend(64, 2, backbone=model).freeze == "top:2"  # of embeddings, layer_0, layer_1
    assert recommend(320, 10, backbone=_backbone(2)).freeze == "all"  # would open everything
    assert recommend(320, 10, similarity="low", backbone=_backbone(7)).freeze == "all"
    assert recommend(320, 10, similarity="high", backbone="keras:MobileNet").freeze == "all"
