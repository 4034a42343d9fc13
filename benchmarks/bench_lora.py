"""LoRA adapters against opening groups: MiniLM on debian-topics at k = 32 and 128 per class.

Arms (each run in its own process, so that its peak memory is its own):

- ``top:2``: the README's policy, the two top transformer blocks train;
- ``none``: full fine-tuning;
- ``lora:8``: rank-8 adapters on the query and value projections of every block
  (`tltf.lora`), at phase-2 rates given by ``--lora-lrs``.

Every arm is ``tltf.build`` + ``tltf.fine_tune`` with its defaults (head phase on
cached features, phase 2 sized by the data and stopped early on a 10% holdout), seed 0,
the same subset of k training rows per class; accuracy on the 600 test rows. Reported:
trainable backbone parameters, the median phase-2 training step (batch 32, after the
first ten), peak resident memory of the process, fine-tuning wall time, accuracy, and
the frozen head and the logistic-regression probe on the same subset.

    python benchmarks/bench_lora.py --json benchmarks/results/lora.json
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from common import finish, parser

HERE = os.path.dirname(os.path.abspath(__file__))


def one(arm: str, k: str, lr: float | None, seed: int) -> dict:
    """Trains one arm in this process; its figures."""
    import keras
    import numpy as np
    from bench_accuracy import backbone, features, load, logistic_regression, subsets

    import tltf
    from tltf.lora import adapter_count
    from tltf.metadata import backbone_model

    train, test = load("text")
    sub = train.subset(subsets(train.labels, k, seed + 1)[seed])
    spec, opts = backbone("text")
    keras.utils.set_random_seed(seed)
    model = tltf.build(spec, class_names=sub.class_names, freeze=arm, **opts)
    steps: list[float] = []

    class StepTimes(keras.callbacks.Callback):
        """Phase-2 step times: batches of the whole model (the head phase fits a head model)."""

        def on_train_batch_begin(self, batch, logs=None):
            self.started = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if self.model is model:
                steps.append(time.perf_counter() - self.started)

    started = time.perf_counter()
    tltf.fine_tune(model, sub, lr=lr, seed=seed, verbose=0, callbacks=[StepTimes()])
    seconds = time.perf_counter() - started
    accuracy = tltf.evaluate(model, test, batch_size=64).accuracy
    backbone_weights = backbone_model(model).trainable_weights
    out = {
        "arm": arm,
        "k": k,
        "lr": lr,
        "accuracy": round(float(accuracy), 4),
        "fine_tune_seconds": round(seconds, 1),
        "phase2_steps": len(steps),
        "step_ms": round(1000 * float(np.median(steps[10:] or steps)), 1) if steps else None,
        "trainable_backbone_params": int(sum(np.prod(w.shape) for w in backbone_weights)),
        "adapter_params": adapter_count(model),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if arm.startswith("lora"):
        frozen = tltf.build(spec, class_names=sub.class_names, freeze="all", **opts)
        x, y = features(frozen, sub)
        out["probe_lr"] = round(logistic_regression(x, y, *features(frozen, test)), 4)
    return out


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--ks", default="32,128")
    p.add_argument("--arms", default="top:2,none,lora:8")
    p.add_argument("--lora-lrs", default="5e-5,5e-4,2e-3", help="phase-2 rates of LoRA arms")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--one",
        nargs=3,
        metavar=("ARM", "K", "LR"),
        help="internal: run one arm (LR 'default' or a number) and print its figures",
    )
    args = p.parse_args()
    if args.one:
        arm, k, lr = args.one
        print(
            "RESULT " + json.dumps(one(arm, k, None if lr == "default" else float(lr), args.seed))
        )
        return
    runs = []
    for k in args.ks.split(","):
        for arm in args.arms.split(","):
            lrs = args.lora_lrs.split(",") if arm.startswith("lora") else ["default"]
            for lr in lrs:
                cmd = [sys.executable, __file__, "--one", arm, k, lr, "--seed", str(args.seed)]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode or not lines:
                    print(f"{arm} k={k} lr={lr} failed:\n{proc.stderr[-3000:]}", flush=True)
                    continue
                result = json.loads(lines[-1][len("RESULT ") :])
                runs.append(result)
                print(
                    f"k={k:>4} {arm:<8} lr={lr:<8} acc {result['accuracy']:.3f}  "
                    f"backbone params {result['trainable_backbone_params']:>10,}  "
                    f"step {result['step_ms']} ms  peak {result['peak_rss_mib']} MiB  "
                    f"{result['fine_tune_seconds']} s"
                    + (f"  (probe {result['probe_lr']:.3f})" if "probe_lr" in result else ""),
                    flush=True,
                )
    finish("lora", {"runs": runs}, args)


if __name__ == "__main__":
    main()
