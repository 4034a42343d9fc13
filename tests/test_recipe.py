"""The default recipe (`tltf.recipe`): a head that converges and keeps its best epoch, phase 2
sized by the data, a held-out slice when no validation data is given, one source of defaults."""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest

import tltf
from tltf import config, recipe


def _image_model(backbone, freeze="all", classes=("a", "b", "c"), **options):
    """The small CNN of the `tiny_cnn` fixture with a new head (a pretrained backbone)."""
    keras.utils.set_random_seed(0)
    return tltf.build(
        backbone, class_names=list(classes), preprocess="none", freeze=freeze, **options
    )


def _noisy_images(n, seed):
    """Images whose labels are noise: the head overfits, so its validation loss turns up."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32"), rng.integers(0, 3, n)


def _colour_images(n, seed):
    """Noisy images whose brightness says their class: a head learns them over many epochs."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.uniform(0, 150, (n, 32, 32, 3)) + 50 * y[:, None, None, None]
    return x.astype("float32"), y


class _Weights(keras.callbacks.TerminateOnNaN):  # a head-safe kind: the cache stays on
    """Records the head's weights after each epoch."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append([w.numpy().copy() for w in self.model.get_layer("logits").weights])


def test_head_phase_converges_and_restores_its_best_epoch(tiny_cnn):
    model = _image_model(tiny_cnn)
    weights = _Weights()
    history = tltf.fine_tune(model, _noisy_images(96, 0), callbacks=[weights], verbose=0)
    loss = history.history["loss"]  # the training loss: the head converges on it
    best = int(np.argmin(loss))
    assert len(loss) == best + 1 + recipe.HEAD_PATIENCE  # stopped: PATIENCE epochs later
    assert len(loss) < recipe.head_epochs(3, cached=True)  # within the step budget
    assert history.history["learning_rate"][-1] < recipe.HEAD_LR / 3  # lowered on plateaus
    final = [w.numpy() for w in model.get_layer("logits").weights]
    for kept, recorded in zip(final, weights.epochs[best], strict=True):
        np.testing.assert_array_equal(kept, recorded)  # the best epoch's head, not the last's
    assert not all(np.array_equal(a, b) for a, b in zip(final, weights.epochs[-1], strict=True))
    assert model.get_layer("logits").kernel.regularizer is None  # the penalty is gone after


def test_head_penalty_is_scikit_learns_c1_per_example(tiny_cnn):
    model = _image_model(tiny_cnn)
    kernel = model.get_layer("logits").kernel
    with recipe.head_penalty(model, 50):
        (penalty,) = [float(x) for x in model.losses]
        assert penalty == pytest.approx(float(np.sum(kernel.numpy() ** 2)) / 100, rel=1e-5)
    assert model.losses == []


class _Steps(keras.callbacks.TerminateOnNaN):  # a head-safe kind: the cache stays on
    def on_train_begin(self, logs=None):
        self.steps = self.params["steps"]


def test_an_automatic_head_epoch_takes_at_least_the_minimum_steps(tiny_cnn):
    x, y = _noisy_images(40, 2)
    val = (x[:9], y[:9])
    fixed, auto = _Steps(), _Steps()
    tltf.fine_tune(
        _image_model(tiny_cnn),
        (x, y),
        validation_data=val,
        epochs=1,
        batch_size=8,
        callbacks=[fixed],
        verbose=0,
    )
    assert fixed.steps == 5  # a fixed length: one pass over the 40 examples
    tltf.fine_tune(
        _image_model(tiny_cnn),
        (x, y),
        validation_data=val,
        batch_size=8,
        callbacks=[auto],
        verbose=0,
    )
    assert auto.steps == 35  # ceil(32 * 8 / 40) = 7 passes: 280 examples, 35 batches of 8


def test_phase_two_gets_at_least_the_minimum_steps_on_a_tiny_set(tiny_cnn):
    class Plan(keras.callbacks.Callback):
        """Records each fit's planned epochs and steps per epoch."""

        def __init__(self):
            super().__init__()
            self.fits = []

        def on_train_begin(self, logs=None):
            self.fits.append({"epochs": self.params["epochs"], "steps": self.params["steps"]})

        def on_epoch_begin(self, epoch, logs=None):
            self.fits[-1].setdefault("first", epoch)

        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = True  # the plan is known: one step per phase will do

    model = _image_model(tiny_cnn, freeze="top:1")
    plan = Plan()
    x, y = _noisy_images(32, 3)
    tltf.fine_tune(
        model,
        (x, y),
        validation_data=_noisy_images(9, 4),
        batch_size=8,
        callbacks=[plan],
        verbose=0,
    )
    head, phase2 = plan.fits
    planned = phase2["epochs"] - phase2["first"]
    assert phase2["steps"] == 4
    assert planned == recipe.finetune_epochs(4) and planned * 4 >= recipe.MIN_STEPS
    assert head["epochs"] == recipe.HEAD_EPOCHS_UNCACHED  # a custom callback: no cache


def test_phase_two_length_is_bounded_both_ways():
    assert recipe.finetune_epochs(1) == recipe.MIN_STEPS  # a tiny set: more epochs
    assert recipe.finetune_epochs(10_000) == recipe.MIN_EPOCHS  # a large set: not over-trained
    small = recipe.finetune_epochs(10)
    assert small * 10 >= recipe.MIN_STEPS and (small - 1) * 10 < recipe.MIN_STEPS
    assert (
        recipe.head_epochs(10, cached=True) * recipe.HEAD_STEPS_PER_EPOCH <= recipe.HEAD_MAX_STEPS
    )
    assert recipe.head_epochs(10, cached=False) == recipe.HEAD_EPOCHS_UNCACHED


def test_defaults_come_from_one_place():
    params = inspect.signature(tltf.fine_tune).parameters
    cfg = config.defaults()
    rec = tltf.recommend(2000, 10, similarity="medium")
    assert params["head_lr"].default == cfg["head_lr"] == rec.head_lr == recipe.HEAD_LR
    assert params["epochs"].default is cfg["epochs"] is None
    assert params["freeze_epochs"].default is cfg["freeze_epochs"] is None
    for size in (100, 2000, 50_000):  # small, medium and large data
        kwargs = tltf.recommend(size, 10).fine_tune_kwargs()
        assert kwargs["epochs"] is None and kwargs["freeze_epochs"] is None
        assert kwargs["head_lr"] == recipe.HEAD_LR


def test_lora_trains_at_its_own_rate(tiny_bert_dir, capsys):
    """Adapters start at zero: phase 2 defaults to LORA_LR, not the backbone's rate."""
    meta = {"default_lr": 5e-5}
    assert recipe.backbone_lr(meta, "lora:8") == recipe.LORA_LR == 2e-3
    assert recipe.backbone_lr(meta, "lora:8:1") == recipe.LORA_LR  # a gradual stage
    assert recipe.backbone_lr(meta, "top:2") == recipe.backbone_lr(meta, "none") == 5e-5
    model = tltf.build(
        f"keras_hub:{tiny_bert_dir}", class_names=["a", "b"], sequence_length=16, freeze="lora:2"
    )
    tltf.fine_tune(model, (["x y", "z w"] * 4, ["a", "b"] * 4), epochs=1, freeze_epochs=0)
    assert "LoRA adapters in layer_0, layer_1 and the head at lr 0.002" in capsys.readouterr().out


def test_hold_out_is_stratified_and_seeded(capsys):
    labels = np.array(["a"] * 30 + ["b"] * 10 + ["c"] * 1)
    held = tltf.training.hold_out((np.arange(len(labels)), labels), seed=0)
    assert sorted(labels[held].tolist()) == ["a", "a", "a", "b"]  # 10% of each; c keeps its one
    assert len(set(held.tolist())) == 4 and held.tolist() == sorted(held.tolist())
    assert "4 of 41 training examples held out" in capsys.readouterr().out
    again = tltf.training.hold_out((np.arange(len(labels)), labels), seed=0, verbose=False)
    assert again.tolist() == held.tolist()
    assert tltf.training.hold_out((labels[:2], labels[:2]), verbose=False) is None  # too small
    regression = tltf.training.hold_out((np.zeros(20), np.linspace(0, 1, 20)), verbose=False)
    assert len(regression) == 2  # no strata: 10% of all


def test_without_validation_data_phase_two_stops_on_a_held_out_slice(
    tmp_path, capsys, tiny_bert_dir, tiny_text_data
):
    texts, labels = tiny_text_data
    data = tltf.data.from_arrays(texts * 2, labels * 2)  # 24 per class: 2 held out of each
    held = tltf.training.hold_out(data, seed=0, verbose=False)
    assert len(held) == 6 and len(set(data.labels[held].tolist())) == 3

    def model():
        keras.utils.set_random_seed(0)
        spec = f"keras_hub:{tiny_bert_dir}"
        return tltf.build(spec, class_names=data.class_names, sequence_length=16, freeze="top:1")

    steps = _Steps()
    trained = model()
    run_dir = str(tmp_path / "run")
    history = tltf.fine_tune(trained, data, batch_size=6, callbacks=[steps], run_dir=run_dir)
    out = capsys.readouterr().out
    assert "6 of 72 training examples held out" in out
    assert "features of 72 training examples" in out  # the head trains on all of them
    assert steps.steps == 11  # phase 2 on the other 66, in batches of 6
    (start,) = history.phase_starts
    val_loss = np.array(history.history["val_loss"])
    assert len(val_loss) == len(history.epoch)  # aligned: NaN where a phase has none
    assert np.isnan(val_loss[:start]).all() and not np.isnan(val_loss[start:]).any()

    again = tltf.fine_tune(model(), data, batch_size=6, verbose=0, run_dir=run_dir)
    assert again.epoch == history.epoch and set(again.history) == set(history.history)
    for key, values in history.history.items():  # resumed: nothing trained again
        np.testing.assert_allclose(again.history[key], values, rtol=1e-6)


def test_history_marks_where_each_phase_starts(tiny_cnn):
    model = _image_model(tiny_cnn, freeze="top:1")
    x, y = _noisy_images(24, 6)
    history = tltf.fine_tune(model, (x, y), epochs=2, freeze_epochs=3, batch_size=8, verbose=0)
    assert history.phase_starts == [3] and history.epoch == [0, 1, 2, 3, 4]


def test_warm_up_of_an_augmented_model_trains_on_clean_cached_features(tiny_cnn, tmp_path, capsys):
    model = _image_model(tiny_cnn, freeze="top:1", augment="light")
    x, y = _colour_images(24, 5)
    history = tltf.fine_tune(
        model, (x, y), validation_data=_colour_images(9, 6), cache_dir=str(tmp_path), verbose=2
    )
    out = capsys.readouterr().out
    assert "features of 24 training examples" in out  # the warm-up ran on the cache
    assert len(history.phase_starts) == 1
    assert model.get_layer("backbone").trainable_weights  # phase 2 ran with the top group open
    pre = model.layers[1]
    assert not np.allclose(pre(x[:2], training=True), x[:2])  # augmentation still in phase 2
    with pytest.raises(tltf.SpecError, match="random in training"):  # freeze="all": no cache
        tltf.fine_tune(
            _image_model(tiny_cnn, augment="light"),
            (x, y),
            cache_features=True,
            verbose=0,
        )
