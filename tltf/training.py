"""`fine_tune`: the two-phase transfer-learning recipe in one call.

Phase 1 trains only the new head, with the backbone frozen, at a high rate: a
random head would otherwise send large gradients into the pretrained layers.
Phase 2 opens the backbone groups that the model's freeze policy names and
trains them at a low rate with a warm-up and cosine decay. With
``unfreeze="gradual"`` (ULMFiT) phase 2 opens one more group per epoch, from the
top, each epoch with its own warm-up and decay, until the policy is reached.
Per-group learning rates (``lr_decay``) apply in every phase (`tltf.rates`).
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from typing import Any

import numpy as np

from tltf import recipe
from tltf.batches import to_tf_dataset
from tltf.compiling import compile_model
from tltf.distribute import global_batch_size, preflight, shard
from tltf.errors import DataError, SpecError
from tltf.feature_cache import adapt_feature_norm, fit_head, num_examples, subset, why_not_cached
from tltf.freezing import apply_plan, plan, trainable_groups
from tltf.heads import adapt_targets
from tltf.lora import is_lora, parse
from tltf.metadata import info
from tltf.rates import set_lr_decay
from tltf.runs import Run

UNFREEZE = ("at_once", "gradual")


def fine_tune(
    model: Any,
    train: Any,
    validation_data: Any = None,
    *,
    epochs: int | None = None,
    freeze_epochs: int | None = None,
    lr: float | None = None,
    head_lr: float = recipe.HEAD_LR,
    lr_decay: float | dict[str, float] | None = None,
    unfreeze: str = "at_once",
    batch_size: int = 32,
    warmup: float = 0.1,
    seed: int = 0,
    callbacks: list | None = None,
    verbose: Any = "auto",
    cache_features: bool | None = None,
    cache_dir: str | None = None,
    run_dir: str | None = None,
    scale_lr: bool = False,
    **fit_kwargs: Any,
) -> Any:
    """Trains a tltf model: the head until it converges, then the groups its freeze policy opens.

    Example:
        >>> model = tltf.build(spec, class_names=train.class_names, freeze="top:2")
        >>> history = tltf.fine_tune(model, train, validation_data=val)   # sized by the data
        >>> history.history["val_accuracy"], history.phase_starts
        >>> tltf.fine_tune(model, train, epochs=4, unfreeze="gradual", lr_decay=0.5)

    By default each phase is sized by the data and keeps its best epoch
    (`tltf.recipe`): the head, L2-regularized like a logistic regression, trains on
    cached features until its training loss converges (within a step budget); phase 2
    takes `tltf.recipe.MIN_STEPS` optimizer steps (at least 3 epochs) and stops early
    on the validation loss. Without `validation_data` a stratified
    `tltf.recipe.HOLDOUT` of `train` is held out for phase 2. Give ``epochs`` and
    ``freeze_epochs`` to train exactly that many epochs instead, unregularized.

    Args:
        model: a model from `tltf.build`.
        train: a `tltf.data.Dataset`, a batched `tf.data.Dataset` of ``(x, y)``, or an
            ``(x, y)`` tuple of arrays / lists (strings for text models).
        validation_data: the same kinds, optional.
        epochs: epochs of phase 2; None sizes it by the data and stops early. With
            ``freeze="all"`` there is only the head phase, and this is its length
            (None: until it converges).
        freeze_epochs: head-only epochs before phase 2; None trains the head until it
            converges, 0 skips the head phase.
        lr: phase-2 peak learning rate; default the backbone's (5e-5 text, 1e-4 image),
            or `tltf.recipe.LORA_LR` (2e-3) when only LoRA adapters train.
        head_lr: the rate while only the head trains (`tltf.recipe.HEAD_LR`).
        lr_decay: per-group learning rates, stored in the model (see `tltf.build`);
            None keeps the model's, 1.0 turns them off.
        unfreeze: ``"at_once"`` opens the policy's groups together; ``"gradual"`` opens
            one more per epoch from the top (one epoch with the top group, one with the
            top two, ...), then trains the remaining epochs under the full policy.
        batch_size: used when tltf makes the batches (tltf datasets, arrays).
        warmup: fraction of phase-2 steps spent warming the rate up.
        verbose: Keras' ``fit`` verbosity; ``"auto"`` draws progress bars in a terminal
            and writes one line per epoch elsewhere (logs, CI). Unless 0, each phase
            is announced: what trains, at what rate, for how many epochs.
        cache_features: phases that train only the head run the frozen backbone once
            and train on its features cached on disk (`tltf.feature_cache`): None when
            applicable (no augmentation, data is a tltf Dataset or arrays), False never,
            True always (else `SpecError`). See docs/speed.md.
        cache_dir: where the features go; default ``$TLTF_CACHE_DIR`` or
            ``~/.cache/tltf/features``.
        run_dir: makes the run resumable: a process killed mid-run and started again
            with the same call loses at most one epoch; the trained model is saved
            there as ``model.keras`` (`tltf.runs.Run`).
        scale_lr: multiply the rates by the number of replicas (the global batch
            is ``batch_size`` per replica times the replicas of the model's strategy).
        **fit_kwargs: passed to `keras.Model.fit`; ``class_weight="balanced"`` weighs
            each class by its inverse frequency in `train` (a tltf Dataset).

    Returns:
        The Keras `History` of all phases, epochs numbered across them (an epoch
        number is skipped where a phase stopped early); ``history.phase_starts``
        holds the index where each phase after the first begins.
    """
    recipe.check_arguments(
        epochs=epochs, freeze_epochs=freeze_epochs, lr=lr, head_lr=head_lr, batch_size=batch_size
    )
    meta = info(model)
    policy = meta["freeze"]
    if epochs == 0 and (policy == "all" or freeze_epochs == 0):
        raise SpecError(
            f"epochs=0 with freeze={policy!r}"
            + (" and freeze_epochs=0" if policy != "all" else "")
            + " trains nothing; give epochs >= 1 (or None: sized by the data)."
        )
    strategy = model.distribute_strategy
    batch_size = global_batch_size(batch_size, strategy)
    if scale_lr:
        replicas = strategy.num_replicas_in_sync
        lr, head_lr = (lr or recipe.backbone_lr(meta, policy)) * replicas, head_lr * replicas
    run = Run(run_dir, model)
    if unfreeze not in UNFREEZE:
        raise SpecError(f"unfreeze={unfreeze!r}; use one of {UNFREEZE}.")
    if lr_decay is not None:
        meta = set_lr_decay(model, lr_decay)
    whole, held = train, None  # the head trains on all of `whole`; phase 2 stops on `held`
    if validation_data is None and policy != "all" and epochs is None:
        held = hold_out(train, seed=seed, verbose=verbose != 0)
        if held is not None:
            keep = np.setdiff1d(np.arange(num_examples(train)), held)
            train, validation_data = subset(whole, keep), subset(whole, held)
    report = whole.fit_report(meta["input_spec"]) if hasattr(whole, "fit_report") else ""
    if report and verbose != 0:
        print(f"tltf: {report}", flush=True)
    if fit_kwargs.get("class_weight") == "balanced":
        if not hasattr(train, "class_weight"):
            raise DataError(
                "class_weight='balanced' needs a tltf.data.Dataset to count the classes; "
                "for other data pass a dict {class index: weight}."
            )
        fit_kwargs["class_weight"] = train.with_class_names(meta["class_names"]).class_weight()
    if meta.task == "regression" and meta.target_stats is None:
        adapt_targets(model, _targets(train, model))
    adapt_feature_norm(  # once, for backbones that ask for it (tltf.Backbone)
        model,
        whole,
        batch_size=batch_size,
        cache_dir=cache_dir,
        cache_features=cache_features,
        verbose=verbose != 0,
    )
    train_ds = shard(to_tf_dataset(train, model, batch_size, training=True, seed=seed), strategy)
    preflight(train_ds, strategy)
    val_ds = (
        None
        if validation_data is None
        else shard(
            to_tf_dataset(validation_data, model, batch_size, training=False, seed=seed), strategy
        )
    )
    steps_per_epoch = int(train_ds.cardinality())  # < 0 when unknown
    whole_n = (  # examples the head trains on (a tf.data input: about)
        num_examples(whole)
        if hasattr(whole, "as_tf_dataset") or isinstance(whole, tuple)
        else max(1, steps_per_epoch) * batch_size
    )
    if verbose == "auto":  # Keras' progress bars only where a terminal redraws them
        verbose = 1 if sys.stdout.isatty() else 2
    fit = dict(validation_data=val_ds, verbose=verbose, shuffle=False, **fit_kwargs)
    # (tltf's datasets shuffle themselves)
    if policy == "all":
        phases = [("all", head_lr, epochs)]
    else:
        scratch = not meta.get("pretrained", True)  # random weights: no features to fit
        skip_head = freeze_epochs == 0 or (freeze_epochs is None and scratch)
        head_phase = [] if skip_head else [("all", head_lr, freeze_epochs)]
        n = epochs if epochs is not None else recipe.finetune_epochs(steps_per_epoch, scratch)
        stages = _stages(policy, list(meta["groups"]), n, unfreeze)
        last = len(stages) - 1  # an automatic phase 2 stops early in its last stage
        phases = head_phase + [
            (stage, lr, k if epochs is not None or i < last else None)
            for i, (stage, k) in enumerate(stages)
        ]
    histories = []
    done = 0
    final = plan(model, policy)
    applied = final
    for phase_policy, phase_lr, phase_epochs in phases:
        applied = plan(model, phase_policy)
        opened = apply_plan(model, applied)  # compiled below, once the phase's length is known
        head = phase_policy == "all"
        warmup_phase = head and policy != "all"  # fits the head to clean features
        stop = []
        head_data = (whole, None) if held is not None else (train, validation_data)
        if phase_epochs is None:  # automatic: an upper bound, and early stopping
            if head:
                cached = cache_features is not False and not why_not_cached(
                    model, *head_data, callbacks, clean=warmup_phase
                )
                phase_epochs = recipe.head_epochs(-(-whole_n // batch_size), cached)
                stop = recipe.head_callbacks()
            else:
                phase_epochs = recipe.finetune_epochs(
                    steps_per_epoch, not meta.get("pretrained", True)
                )
                stop = [recipe.early_stopping("loss" if val_ds is None else "val_loss")]
        if phase_epochs <= 0:
            continue
        if verbose != 0:
            _announce(meta, phase_policy, opened, phase_lr, phase_epochs, bool(stop))
        if head:
            compile_model(model, lr=phase_lr)
        else:
            steps = steps_per_epoch * phase_epochs
            peak = phase_lr or recipe.backbone_lr(meta, phase_policy)
            compile_model(model, lr=_warmup_cosine(peak, steps, warmup) if steps > 0 else peak)
        epoch_range = dict(initial_epoch=done, epochs=done + phase_epochs)
        phase_callbacks = [*(callbacks or []), *stop]
        with recipe.head_penalty(model, whole_n) if head and stop else nullcontext():
            history = fit_head(  # None unless only the head trains: then on cached features
                model,
                *head_data,
                cache_features=cache_features,
                cache_dir=cache_dir,
                batch_size=batch_size,
                seed=seed,
                callbacks=phase_callbacks,
                verbose=verbose,
                fit=run.fit,
                min_steps_per_epoch=recipe.HEAD_STEPS_PER_EPOCH if stop else 1,
                clean=warmup_phase,
                **epoch_range,
                **fit_kwargs,
            ) or run.fit(model, train_ds, callbacks=phase_callbacks, **epoch_range, **fit)
        histories.append(history)
        done += phase_epochs
    if applied != final:  # a phase ran under another plan: leave the model as built
        apply_plan(model, final)
        compile_model(model)
    run.finish(model)
    return _merge(histories)


def _announce(
    meta: dict, policy: Any, opened: list[str], lr: float | None, epochs: int, early: bool
) -> None:
    """One line per phase: what trains (`opened` groups), at what rate, for how long."""
    groups = list(meta["groups"])
    if not opened:
        what = "head only (backbone frozen)"
    elif is_lora(policy):
        what = f"rank-{parse(policy).rank} LoRA adapters in {', '.join(opened)} and the head"
    elif len(opened) == len(groups):
        what = f"all {len(groups)} groups and the head"
    else:
        what = f"groups {', '.join(opened)} and the head"
    rate = lr or recipe.backbone_lr(meta, policy)
    length = f"up to {epochs} epochs, stopping early" if early else f"{epochs} epochs"
    print(f"tltf: training {what} at lr {rate:g}, {length}", flush=True)


def hold_out(train: Any, *, seed: int = 0, verbose: bool = True) -> np.ndarray | None:
    """Rows of `train` to stop early on: `tltf.recipe.HOLDOUT` of each class, seeded.

    Example:
        >>> hold_out((texts, labels))          # 10% of each class, sorted row indices
        array([  3,  17,  42, ...])
        >>> hold_out(tf_dataset) is None       # cannot split
        True

    Works on a `tltf.data.Dataset` or ``(x, y)`` arrays (stratified when ``y`` holds
    class labels); a class keeps at least one example. None for anything else, or
    for data too small to spare an example.
    """
    if hasattr(train, "as_tf_dataset"):
        y = train.labels if train.task_hint == "classification" else None
    elif isinstance(train, tuple) and len(train) == 2:
        y = np.asarray(train[1]) if not hasattr(train[1], "to_list") else None
        if y is not None and not (y.ndim == 1 and y.dtype.kind in "iuUSO"):
            y = None  # not class labels: no strata
    else:
        return None
    n = num_examples(train)
    strata = [np.arange(n)] if y is None else [np.flatnonzero(y == c) for c in np.unique(y)]
    rng = np.random.default_rng(seed)
    picks = [
        rng.permutation(m)[: min(int(round(len(m) * recipe.HOLDOUT)), len(m) - 1)] for m in strata
    ]
    held = np.sort(np.concatenate(picks)) if picks else np.array([], dtype=np.int64)
    if not len(held):
        return None
    if verbose:
        print(
            f"tltf: no validation_data: {len(held)} of {n} training examples held out to "
            "stop phase 2 early on (pass validation_data=, or epochs= for a fixed length)",
            flush=True,
        )
    return held


def _stages(
    policy: str | list[str], groups: list[str], epochs: int, unfreeze: str
) -> list[tuple[Any, int]]:
    """``[(freeze policy, epochs)]`` of phase 2: one stage, or one group more per epoch."""
    opened = trainable_groups(policy, groups)
    if unfreeze == "at_once" or len(opened) < 2:
        return [(policy, epochs)]
    lora = parse(policy) if is_lora(policy) else None
    stages: list[tuple[Any, int]] = [
        (lora.with_top(k) if lora else opened[-k:], 1) for k in range(1, len(opened))
    ][:epochs]
    rest = epochs - len(stages)
    return stages + ([(policy, rest)] if rest > 0 else [])


def _targets(data: Any, model: Any) -> Any:
    """The training targets of `data` (for the regression statistics)."""
    if hasattr(data, "as_tf_dataset"):
        return data.targets
    if isinstance(data, tuple) and len(data) == 2:
        return data[1]
    return np.concatenate([np.asarray(y) for _, y in data])


def _warmup_cosine(peak: float, total_steps: int, warmup: float) -> Any:
    import keras

    warm = max(1, int(total_steps * warmup))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10,
        decay_steps=max(1, total_steps - warm),
        warmup_target=peak,
        warmup_steps=warm,
        alpha=0.01,
    )


def _merge(histories: list) -> Any:
    """One History whose per-epoch lists run across all phases, with their ``phase_starts``.

    A metric that a phase lacks (the head phase's validation metrics, when phase 2
    validates on a held-out slice) is NaN for its epochs, so the lists stay aligned.
    """
    if not histories:
        raise DataError("fine_tune ran no epochs: give epochs >= 1.")
    merged = histories[-1]
    keys = list(dict.fromkeys(k for h in histories for k in h.history))
    logs: dict[str, list] = {k: [] for k in keys}
    epochs: list[int] = []
    starts = []
    for h in histories:
        starts.append(len(epochs))
        epochs += list(h.epoch)
        for key in keys:
            logs[key].extend(h.history.get(key, [float("nan")] * len(h.epoch)))
    merged.history, merged.epoch, merged.phase_starts = logs, epochs, starts[1:]
    return merged
