"""Training under `tf.distribute`: strategy choice, precision, input sharding, workers.

The same script runs on a laptop CPU, a multi-GPU box, several workers and a
Colab TPU; `tltf.build` and `tltf.fine_tune` call what is here:

    >>> model = tltf.build(spec, class_names=names, strategy="auto", precision="auto")
    >>> tltf.fine_tune(model, train, epochs=3, batch_size=32, run_dir="runs/topics")
    >>> tltf.export(model, "export/topics")      # the chief writes; other workers do not

- `strategy`: `resolve` picks the strategy: a TPU (``tpu=``, ``TPU_NAME``, Colab's TPU
  Node address or a TPU VM's local chips), else TF_CONFIG with several workers
  (MultiWorkerMirroredStrategy), else several GPUs (MirroredStrategy), else the
  default strategy. `precision_policy`: bfloat16 on TPU, float16 with loss scaling on
  GPUs of compute capability 7.0 and up, float32 on CPU; the logits stay float32.
- `inputs`: `shard` splits input across workers; `preflight` raises, before a TPU
  trains, on the inputs known to fail there.
- `keras_compat`: `patch_keras_fit`, the workaround Keras 3's `fit` needs under a
  strategy (keras #20585).
- `workers`: `is_chief`, `chief_writes`, `chief_only`: only the chief writes files.

Resumable runs are `tltf.runs.Run`. TensorFlow is imported only inside functions, so
importing this package is cheap. See docs/distribute.md.
"""

from tltf.distribute.inputs import preflight, shard
from tltf.distribute.keras_compat import KERAS_FIT_BUG_VERSIONS, patch_keras_fit
from tltf.distribute.strategy import (
    PRECISIONS,
    STRATEGIES,
    TPU_STEPS_PER_EXECUTION,
    Environment,
    building,
    builds_in_scope,
    choose,
    compile_options,
    global_batch_size,
    in_strategy_scope,
    precision_policy,
    resolve,
)
from tltf.distribute.workers import chief_only, chief_writes, is_chief

__all__ = [
    "KERAS_FIT_BUG_VERSIONS",
    "PRECISIONS",
    "STRATEGIES",
    "TPU_STEPS_PER_EXECUTION",
    "Environment",
    "building",
    "builds_in_scope",
    "chief_only",
    "chief_writes",
    "choose",
    "compile_options",
    "global_batch_size",
    "in_strategy_scope",
    "is_chief",
    "patch_keras_fit",
    "precision_policy",
    "preflight",
    "resolve",
    "shard",
]
