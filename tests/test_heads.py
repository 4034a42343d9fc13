"""Task heads: options, targets, losses and metrics, training, and what each task serves.

Exports of every task (signatures, parity, a fresh process) are in test_export_tasks.py.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tltf
from tltf.errors import DataError, SpecError
from tltf.heads import SupervisedContrastiveLoss, get_task, head_options

GAMES = "game games play player score level".split()
MATH = "math algebra equation number matrix solver".split()
TEXTS = [
    "game play score",
    "math algebra",
    "player level game",
    "equation number solver",
    "the score",
    "a matrix",
    "games and music",
    "algebra of the level",
]


@pytest.fixture
def eager():
    """Keras' train step op by op: no graph build per compile (see test_finetune.py)."""
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


def _build(tiny_bert_dir, task, **options):
    options.setdefault("sequence_length", 16)
    return tltf.build(f"keras_hub:{tiny_bert_dir}", task=task, **options)


def test_head_options_take_each_tasks_own_keys():
    assert head_options(None, "multilabel")["threshold"] == 0.5
    assert head_options([32], "embedding") == {
        "hidden": [32],
        "dropout": 0.1,
        "activation": "relu",
        "dim": 128,
        "temperature": 0.1,
    }
    assert head_options({"normalize": False}, "regression")["normalize"] is False
    with pytest.raises(SpecError, match="unknown keys \\['threshold'\\]; task 'classification'"):
        head_options({"threshold": 0.3}, "classification")
    with pytest.raises(SpecError, match="known tasks: classification, text_pair, multilabel"):
        get_task("ner")


def test_a_classifier_reads_its_features_normalized_to_feature_length(tiny_bert_dir, tmp_path):
    from tltf.heads.classification import FEATURE_LENGTH
    from tltf.metadata import head_model

    model = _build(tiny_bert_dir, "classification", class_names=["games", "math"])
    head = head_model(model)
    x = np.random.default_rng(0).normal(size=(4, head.input.shape[-1])).astype("float32")
    np.testing.assert_allclose(head(x), head(7 * x), rtol=1e-5, atol=1e-6)  # direction only
    scaled = head.get_layer("head_unit_length")(x)
    np.testing.assert_allclose(np.linalg.norm(scaled, axis=1), FEATURE_LENGTH, rtol=1e-5)
    assert tltf.info(model)["head"]["feature_length"] == FEATURE_LENGTH
    model.save(str(tmp_path / "m.keras"))  # the layer reloads with its length
    reloaded = head_model(keras.saving.load_model(str(tmp_path / "m.keras")))
    np.testing.assert_allclose(reloaded(x), head(x), rtol=1e-5, atol=1e-6)
    assert reloaded.get_layer("head_unit_length").length == FEATURE_LENGTH

    raw = head_model(
        _build(
            tiny_bert_dir, "classification", class_names=["a", "b"], head={"feature_length": None}
        )
    )
    assert "head_unit_length" not in [layer.name for layer in raw.layers]
    assert not np.allclose(raw(x), raw(7 * x), atol=1e-3)
    scratch = tltf.build(  # random weights train from scratch: raw features, as measured
        "keras:MobileNetV2", weights=None, input_shape=(32, 32, 3), class_names=["a", "b"]
    )
    assert tltf.info(scratch)["head"]["feature_length"] is None
    for bad in (0, -1.0, "long"):
        with pytest.raises(SpecError, match="feature_length.*give a length above 0"):
            _build(
                tiny_bert_dir,
                "classification",
                class_names=["a", "b"],
                head={"feature_length": bad},
            )


def test_loss_and_metrics_overrides_survive_set_freeze_and_fine_tune(tiny_bert_dir, eager):
    model = _build(
        tiny_bert_dir,
        "regression",
        freeze="top:1",
        loss="mean_absolute_error",
        metrics=[keras.metrics.MeanSquaredError(name="mse")],
    )
    tltf.set_freeze(model, "top:2")
    history = tltf.fine_tune(
        model, (TEXTS, np.arange(8.0)), epochs=1, freeze_epochs=1, batch_size=4, verbose=0
    )
    assert model.loss == "mean_absolute_error"
    assert {"loss", "mse"} <= set(history.history) and "mae" not in history.history


def test_a_class_threshold_decides_the_served_label(tiny_bert_dir):
    model = _build(tiny_bert_dir, "classification", class_names=["wake", "other"], freeze="all")
    logits = model.get_layer("logits")
    logits.kernel.assign(np.zeros(logits.kernel.shape, "float32"))
    logits.bias.assign(np.log([0.7, 0.3]).astype("float32"))  # scores 0.7 / 0.3 for any text
    task = get_task("classification")
    served = lambda: task.serve(model, tf.constant(TEXTS[:2]), tltf.info(model))["label"]  # noqa: E731
    assert served().numpy().tolist() == [b"wake", b"wake"]
    assert tltf.set_threshold(model, {"wake": 0.8}) == {"wake": 0.8}
    assert served().numpy().tolist() == [b"other", b"other"]  # 0.7 is under 0.8
    tltf.set_threshold(model, {"wake": 0.6})
    assert served().numpy().tolist() == [b"wake", b"wake"]
    for bad, message in [
        ({"wak": 0.5}, "not one of the classes"),
        ({"wake": 1.5}, "in \\(0, 1\\)"),
    ]:
        with pytest.raises(SpecError, match=message):
            tltf.set_threshold(model, bad)


def test_multilabel_targets_training_and_serving(tiny_bert_dir):
    names = ["games", "math", "sound"]
    model = _build(
        tiny_bert_dir, "multilabel", class_names=names, head={"threshold": 0.4}, freeze="none"
    )
    meta = tltf.info(model)
    task = get_task("multilabel")
    lists = [["games"], ["math", "sound"], [], "math"]
    expected = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0], [0, 1, 0]], "float32")
    np.testing.assert_array_equal(task.targets(lists, meta), expected)
    np.testing.assert_array_equal(task.targets(expected, meta), expected)
    with pytest.raises(DataError, match="Example 1: label 'art'"):
        task.targets([["games"], ["art"]], meta)
    with pytest.raises(DataError, match="need 0/1 values of shape \\[N, 3\\]"):
        task.targets(np.ones((2, 2)), meta)

    y = [[w in GAMES for w in t.split()] for t in TEXTS]
    y = [["games"] * any(g) + ["math"] * (not any(g)) for g in y]
    history = tltf.fine_tune(
        model, (TEXTS, y), epochs=6, freeze_epochs=0, lr=1e-2, batch_size=4, verbose=0
    )
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert {"accuracy", "auc"} <= set(history.history)

    assert tltf.set_threshold(model, [0.3, 0.5, 0.99]) == [0.3, 0.5, 0.99]  # one per label
    meta = tltf.info(model)
    out = {k: v.numpy() for k, v in task.serve(model, tf.constant(TEXTS), meta).items()}
    scores = out["scores"]
    np.testing.assert_allclose(scores, tf.sigmoid(model(tf.constant(TEXTS))).numpy(), atol=1e-6)
    np.testing.assert_array_equal(out["predicted"], scores >= [0.3, 0.5, 0.99])
    for row, labels, predicted in zip(scores, out["labels"], out["predicted"], strict=True):
        chosen = [n for n, p in zip(names, predicted, strict=True) if p]
        by_score = sorted(chosen, key=lambda n: -row[names.index(n)])
        assert [s.decode() for s in labels] == by_score + [""] * (3 - len(chosen))


def test_regression_normalizes_targets_and_predicts_original_units(tiny_bert_dir, eager):
    model = _build(tiny_bert_dir, "regression", class_names=["price", "stars"], freeze="all")
    assert model.output.shape == (None, 2)
    prices = np.array([900, 1000, 1100, 1200, 950, 1050, 1150, 1000], "float32")
    stars = np.array([1, 2, 3, 4, 5, 4, 3, 2], "float32")
    y = np.stack([prices, stars], axis=1)
    tltf.fine_tune(model, (TEXTS, y), epochs=3, lr=3e-3, batch_size=4, verbose=0)
    stats = tltf.info(model)["target_stats"]
    np.testing.assert_allclose(stats["mean"], y.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats["std"], y.std(axis=0), rtol=1e-5)
    scale = model.get_layer("target_scale")
    np.testing.assert_allclose(scale.std.numpy(), y.std(axis=0), rtol=1e-5)
    pred = model.predict(tf.constant(TEXTS), verbose=0)
    # the head predicts standardized values, so predictions are in each target's own range
    assert np.all(np.abs(pred - y.mean(axis=0)) < 4 * y.std(axis=0))
    served = get_task("regression").serve(model, tf.constant(TEXTS), tltf.info(model))
    np.testing.assert_allclose(served["predictions"].numpy(), pred, rtol=1e-5)
    with pytest.raises(DataError, match="the model predicts 2 target"):
        tltf.fine_tune(model, (TEXTS, prices), epochs=1, verbose=0)


def test_regression_trains_on_a_tltf_dataset_and_refuses_class_labels(tiny_bert_dir, eager):
    model = _build(tiny_bert_dir, "regression", head={"normalize": False})
    assert tltf.info(model)["class_names"] == ["target"]
    data = tltf.data.from_arrays(TEXTS, targets=np.linspace(0, 1, 8))
    history = tltf.fine_tune(model, data, epochs=1, freeze_epochs=0, batch_size=4, verbose=0)
    assert "target_stats" not in tltf.info(model) and {"mae", "rmse"} <= set(history.history)
    labelled = tltf.data.from_arrays(TEXTS, ["a", "b"] * 4)
    with pytest.raises(DataError, match="holds classification data, but the model's task is"):
        tltf.fine_tune(model, labelled, epochs=1, verbose=0)


def test_token_classification_aligns_words_to_their_first_word_piece(tiny_bert_dir):
    model = _build(tiny_bert_dir, "token_classification", class_names=["O", "G"], sequence_length=6)
    pre = model.get_layer("text_preprocessor")
    out = pre(tf.constant(["game,play the xyz", "math", ""]))
    # [CLS] game , play the [UNK] [SEP]  -> cut at 6: [CLS] game , play the [SEP]
    np.testing.assert_array_equal(
        out["word_starts"].numpy(), [[1, 4, -1], [1, -1, -1], [-1, -1, -1]]
    )
    assert out["token_ids"].shape == (3, 6)
    assert model(tf.constant(["game play", "math"])).shape == (2, 2, 2)
    with pytest.raises(DataError, match="Example 1: 2 words \\(split on whitespace\\) but 1 tags"):
        tltf.fine_tune(model, (["game", "math play"], [["G"], ["O"]]), epochs=1, verbose=0)
    with pytest.raises(SpecError, match="needs a backbone that takes \\{'features': 'words'\\}"):
        tltf.build("keras:MobileNetV2", task="token_classification", class_names=["O", "G"],
                   weights=None, input_shape=(32, 32, 3))  # fmt: skip


def test_token_classification_learns_tags_and_serves_them_per_word(tiny_bert_dir):
    tags = [["G" if w in GAMES else "M" if w in MATH else "O" for w in t.split()] for t in TEXTS]
    model = _build(
        tiny_bert_dir, "token_classification", class_names=["O", "G", "M"], freeze="none"
    )
    history = tltf.fine_tune(
        model, (TEXTS * 3, tags * 3), epochs=6, freeze_epochs=0, lr=1e-2, batch_size=8, verbose=0
    )
    assert history.history["accuracy"][-1] >= 0.9 > history.history["accuracy"][0]

    long = " ".join(["game"] * 20)  # 20 words, 14 fit in 16 tokens
    out = get_task("token_classification").serve(
        model, tf.constant(["math game the", long]), tltf.info(model)
    )
    words = out["words"].numpy().astype(str)
    served = out["tags"].numpy().astype(str)
    assert words.shape == served.shape == (2, 20) and out["scores"].shape == (2, 20, 3)
    assert list(words[0, :4]) == ["math", "game", "the", ""]
    assert list(served[0, :4]) == ["M", "G", "O", ""]
    assert list(served[1]) == ["G"] * 14 + [""] * 6


def test_text_pair_packs_both_texts_and_trains_on_pairs(tiny_bert_dir, eager):
    model = _build(tiny_bert_dir, "text_pair", class_names=["same", "different"])
    assert [i.name for i in model.inputs] == ["text", "text_pair"]
    features = model.get_layer("text_preprocessor")(
        (tf.constant(["game play"]), tf.constant(["math"]))
    )
    assert features["segment_ids"].numpy().tolist() == [[0, 0, 0, 0, 1, 1]]
    first = TEXTS
    second = TEXTS[1:] + TEXTS[:1]
    topic = [any(w in GAMES for w in t.split()) for t in first]
    labels = ["same" if a == b else "different" for a, b in zip(topic, topic[1:] + topic[:1], strict=True)]  # fmt: skip
    history = tltf.fine_tune(model, ((first, second), labels), epochs=1, batch_size=4, verbose=0)
    assert "accuracy" in history.history
    pairs = tltf.data.from_arrays(first, labels, x2=second)
    tltf.fine_tune(model, pairs, epochs=1, freeze_epochs=0, batch_size=4, verbose=0)
    out = get_task("text_pair").serve(model, (tf.constant(first), tf.constant(second)), {
        "class_names": ["same", "different"]
    })  # fmt: skip
    assert out["label"].shape == (8,)

    with pytest.raises(DataError, match="task='text_pair' takes x=\\(texts, second_texts\\)"):
        tltf.fine_tune(model, (first, labels), epochs=1, verbose=0)
    single = _build(tiny_bert_dir, "classification", class_names=["same", "different"])
    with pytest.raises(DataError, match="has text pairs; use task='text_pair'"):
        tltf.fine_tune(single, pairs, epochs=1, verbose=0)


def test_supervised_contrastive_loss_matches_its_definition():
    emb = np.array([[1, 0], [1, 0], [0, 1], [0.6, 0.8]], "float32")
    labels = np.array([0, 0, 1, 2])
    loss = SupervisedContrastiveLoss(temperature=0.5)
    per_example = loss.call(tf.constant(labels), tf.constant(emb)).numpy()
    sim = emb @ emb.T / 0.5
    expected = []
    for i in range(4):
        others = [j for j in range(4) if j != i]
        log_denominator = np.log(np.exp(sim[i, others]).sum())
        positives = [j for j in others if labels[j] == labels[i]]
        expected.append(-np.mean([sim[i, j] - log_denominator for j in positives]) if positives else 0.0)  # fmt: skip
    np.testing.assert_allclose(per_example, expected, rtol=1e-5)


def test_embedding_is_unit_length_and_training_groups_classes(tiny_bert_dir):
    labels = np.array([any(w in GAMES for w in t.split()) for t in TEXTS])
    keras.utils.set_random_seed(0)
    model = _build(
        tiny_bert_dir, "embedding", class_names=["games", "math"], head={"dim": 8}, freeze="none"
    )
    assert model.output.shape == (None, 8)

    def similarity_gap():
        emb = get_task("embedding").serve(model, tf.constant(TEXTS), tltf.info(model))
        emb = emb["embedding"].numpy()
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
        sim = emb @ emb.T
        same = labels[:, None] == labels[None, :]
        off_diagonal = ~np.eye(len(TEXTS), dtype=bool)
        return sim[same & off_diagonal].mean() - sim[~same].mean()

    before = similarity_gap()
    history = tltf.fine_tune(
        model, (TEXTS * 2, np.tile(labels.astype(int), 2)), epochs=15, freeze_epochs=0, lr=3e-3,
        batch_size=16, verbose=0,
    )  # fmt: skip
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert "neighbour_accuracy" in history.history
    after = similarity_gap()  # mean cosine similarity within classes minus across them
    assert after > 0.3 and after > before + 0.1
