"""The model card: typed, read-only, one writer, and it survives `.keras` save and load."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest

import tltf
from tltf.card import ModelCard
from tltf.errors import SpecError
from tltf.metadata import update_info

CARD = {
    "task": "classification",
    "class_names": ["cat", "dog"],
    "backbone": "keras:MobileNetV2",
    "modality": "image",
    "input_spec": {"shape": [None, None, 3], "dtype": "float32"},
    "groups": {"stem": ["Conv1"], "top": ["Conv_1", "Conv_1_bn"]},
    "head": {"hidden": [], "dropout": 0.1},
    "freeze": ["top"],
}


def test_card_is_typed_frozen_and_reads_like_the_old_dict():
    card = ModelCard.from_dict(CARD)
    assert card.class_names == ("cat", "dog") and card.groups["top"] == ("Conv_1", "Conv_1_bn")
    assert card["class_names"] == ["cat", "dog"] and card["freeze"] == ["top"]  # JSON form
    assert card.get("target_stats", "none") == "none" and "target_stats" not in card
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.freeze = "none"
    with pytest.raises(TypeError, match="read-only; change it with .*set_lr_decay"):
        card["lr_decay"] = 0.5
    with pytest.raises(TypeError, match="read-only"):
        card.head["dropout"] = 0.5
    assert card["head"] == {"hidden": [], "dropout": 0.1}
    copy = card["head"]
    copy["dropout"] = 0.9  # a copy: the card does not change
    assert card.head["dropout"] == 0.1


def test_card_round_trips_json_and_keeps_unknown_keys():
    card = ModelCard.from_dict({**CARD, "made_by": "a newer tltf"})
    assert card.extra == {"made_by": "a newer tltf"} and card["made_by"] == "a newer tltf"
    again = ModelCard.from_dict(card.to_json())
    assert again == card and json.loads(again.to_json())["made_by"] == "a newer tltf"
    assert again.replace(bn="train").bn == "train" and again.bn == "frozen"
    with pytest.raises(SpecError, match="no field"):
        card.replace(fraze="all")
    with pytest.raises(SpecError, match=r"missing \['modality'\]"):
        ModelCard.from_dict({k: v for k, v in CARD.items() if k != "modality"})
    with pytest.raises(SpecError, match="class_names=.*must be strings"):
        ModelCard.from_dict({**CARD, "class_names": [0, 1]})


@pytest.fixture(scope="module")
def model():
    return tltf.build(
        "keras:MobileNetV2",
        task="multilabel",
        class_names=["sky", "tree"],
        weights=None,
        input_shape=(32, 32, 3),
        freeze="top:1",
    )


def test_the_owners_write_the_card_and_save_load_keeps_it(model, tmp_path):
    assert isinstance(tltf.info(model), ModelCard)
    tltf.set_freeze(model, "top:2")
    card = tltf.info(model)
    assert card.freeze == "top:2" and card.groups and card.modality == "image"
    assert tltf.set_lr_decay(model, 0.5).lr_decay == 0.5
    with pytest.raises(SpecError, match="unknown groups"):
        tltf.set_lr_decay(model, {"nope": 0.1})
    assert tltf.set_threshold(model, [0.2, 0.7]) == [0.2, 0.7]
    with pytest.raises(SpecError, match="one per label"):
        tltf.set_threshold(model, [0.2])
    assert tltf.info(model).head["threshold"] == (0.2, 0.7)
    update_info(model, extra={"note": "kept"})
    assert tltf.info(model)["note"] == "kept"
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = tltf.load_model(path)
    assert tltf.info(loaded) == tltf.info(model)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)


def test_a_keras_file_from_before_the_card_still_loads(model, tmp_path):
    """Older `.keras` files hold the metadata dict without the newer keys."""
    old = {k: v for k, v in tltf.info(model).to_dict().items() if k not in ("augment", "head")}
    layer = model.get_layer("tltf_info")
    config = {**layer.get_config(), "info": json.dumps(old)}
    rebuilt = type(layer).from_config(config)
    assert rebuilt.card.task == "multilabel" and rebuilt.card.augment is None
    classic = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(SpecError, match="was not built by tltf.build"):
        tltf.info(classic)
    with pytest.raises(SpecError, match="a classification model takes \\{class: threshold\\}"):
        tltf.set_threshold(
            tltf.build(
                "keras:MobileNetV2", class_names=["a", "b"], weights=None, input_shape=(32, 32, 3)
            ),
            0.5,
        )
