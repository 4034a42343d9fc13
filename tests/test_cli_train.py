"""`tltf train` end to end on a tiny local backbone: run folder, report, export, resume."""

from __future__ import annotations

import csv
import json
import os

import pytest
import yaml
from cli_util import run_cli

import tltf
from tltf.cli import main


def _write_csv(path, texts, labels):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))


@pytest.fixture(scope="module")
def text_csvs(tiny_text_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("csv")
    texts, labels = tiny_text_data
    _write_csv(folder / "train.csv", texts, labels)
    _write_csv(folder / "test.csv", texts[:9], labels[:9])
    return folder


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, text_csvs, tmp_path_factory):
    """One `tltf train` run: a config file, with flags that override some of its values."""
    root = tmp_path_factory.mktemp("train")
    cfg = {
        "backbone": f"keras_hub:{tiny_bert_dir}",
        "sequence_length": 16,
        "data": str(text_csvs / "train.csv"),
        "test_data": str(text_csvs / "test.csv"),
        "epochs": 5,  # the flag below wins
        "freeze_epochs": 1,  # fixed lengths: one head epoch, then --epochs
        "batch_size": 8,
        "freeze": ["layer_1"],
        "lr": "1e-3",  # YAML reads 1e-3 as a string; the config takes it as a number
        "export": "topics",
        "export_dir": str(root / "export"),
    }
    (root / "run.yaml").write_text(yaml.safe_dump(cfg))
    run_dir = root / "run"
    argv = ["train", "--config", str(root / "run.yaml"), "--epochs", "1"]
    code, out, err = run_cli([*argv, "--run-dir", str(run_dir)])
    assert code == 0, err
    return {"root": root, "run_dir": run_dir, "out": out, "argv": argv}


def test_train_reports_exports_and_predicts_through_the_export(trained):
    out = trained["out"]
    assert "held-out accuracy:" in out and "precision" in out
    assert os.path.isdir(trained["root"] / "export" / "topics" / "1")
    assert "exported:" in out and "SavedModel prediction:" in out


def test_run_folder_holds_config_logs_checkpoint_model_metrics_and_plots(trained):
    run_dir = trained["run_dir"]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["epochs"] == 1  # the flag overrode the file's 5
    assert saved["batch_size"] == 8 and saved["freeze"] == ["layer_1"] and saved["lr"] == 1e-3
    assert saved["head_lr"] == tltf.recipe.HEAD_LR and saved["run_dir"] == str(
        run_dir
    )  # defaults, resolved
    for part in ("train", "validation"):
        assert any(f.startswith("events.out.tfevents") for f in os.listdir(run_dir / "logs" / part))
    state = json.loads((run_dir / "tltf_run.json").read_text())  # resume state
    assert state["phases"] == ["0-1", "1-2"]
    assert (run_dir / "model.keras").stat().st_size > 0

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["history"]["loss"]) == 2  # head warm-up + 1 epoch
    assert len(metrics["history"]["val_accuracy"]) == 2
    held_out = metrics["held_out"]
    assert held_out["class_names"] == ["games", "math", "sound"]
    assert sum(map(sum, held_out["confusion"])) == 9
    assert set(held_out["per_class"]["games"]) == {"precision", "recall", "f1", "support"}
    assert metrics["export"].endswith(os.path.join("topics", "1"))

    for name in ("training_curves.png", "confusion_matrix.png"):
        data = (run_dir / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_rerun_of_a_finished_run_trains_nothing_and_reports_again(trained):
    """Same run folder: both phases are recorded as finished, so no epoch runs."""
    run_dir = trained["run_dir"]
    before = json.loads((run_dir / "metrics.json").read_text())
    code, out, err = run_cli([*trained["argv"], "--run-dir", str(run_dir)])
    assert code == 0, err
    assert "Epoch " not in out
    assert "held-out accuracy:" in out and "exported:" in out
    after = json.loads((run_dir / "metrics.json").read_text())
    assert after["history"] == before["history"]  # restored from the run folder
    assert after["held_out"]["confusion"] == before["held_out"]["confusion"]
    assert after["export"].endswith(os.path.join("topics", "2"))


def test_multilabel_task_reports_keras_metrics_without_a_confusion_matrix(
    tiny_bert_dir, tiny_text_data, tmp_path
):
    texts, labels = tiny_text_data
    with open(tmp_path / "train.jsonl", "w") as fh:
        for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
            tags = [label, "sound"] if i % 3 == 0 and label != "sound" else [label]
            fh.write(json.dumps({"text": text, "label": tags}) + "\n")
    argv = ["train", "--backbone", f"keras_hub:{tiny_bert_dir}", "--sequence-length", "16"]
    argv += ["--data", str(tmp_path / "train.jsonl"), "--task", "multilabel", "--freeze", "all"]
    argv += ["--epochs", "1", "--batch-size", "8", "--run-dir", str(tmp_path / "run")]
    code, out, err = run_cli([*argv, "--export-dir", str(tmp_path / "export")])
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"loss", "auc"} <= set(metrics["held_out"])
    assert (tmp_path / "run" / "training_curves.png").exists()
    assert not (tmp_path / "run" / "confusion_matrix.png").exists()
    assert "SavedModel prediction: {" in out and "'labels'" in out
    code, _, err = run_cli(
        ["evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "train.jsonl")]
    )
    assert code == 2 and "is a multilabel model" in err


def test_print_config_shows_every_default_and_exits(tmp_path):
    code, out, _ = run_cli(["train", "--print-config", "--epochs", "7", "--run-dir", "r"])
    assert code == 0
    cfg = yaml.safe_load(out)
    assert cfg["epochs"] == 7 and cfg["run_dir"] == "r"
    assert cfg["batch_size"] == 32 and cfg["freeze"] == "top:2" and cfg["backbone"] is None
    assert "# training" in out


def test_print_config_default_run_dir_is_named_after_the_data(tmp_path):
    code, out, _ = run_cli(["train", "--print-config", "--data", str(tmp_path / "pets.csv")])
    assert code == 0
    assert yaml.safe_load(out)["run_dir"].startswith(os.path.join("runs", "pets-"))


def test_a_split_folder_is_named_after_its_data_set(tmp_path):
    code, out, _ = run_cli(
        ["train", "--print-config", "--data", str(tmp_path / "photos" / "train")]
    )
    saved = yaml.safe_load(out)
    assert code == 0 and saved["export"] == "photos"  # not "train"
    assert saved["freeze"] == "top:2" and saved["bn"] == "auto"


def test_unknown_config_key_names_the_nearest_valid_one(tmp_path):
    (tmp_path / "run.yaml").write_text("epoch: 3\n")
    code, _, err = run_cli(["train", "--config", str(tmp_path / "run.yaml")])
    assert code == 2
    assert "unknown key 'epoch'; did you mean 'epochs'?" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_column_is_one_line_error_with_exit_2(tmp_path):
    _write_csv(tmp_path / "train.csv", ["a", "b"], ["x", "y"])
    argv = ["train", "--backbone", "keras:MobileNetV2", "--data", str(tmp_path / "train.csv")]
    code, _, err = run_cli([*argv, "--text-column", "body", "--run-dir", str(tmp_path / "r")])
    assert code == 2
    assert "body" in err and "train.csv" in err
    assert "Traceback" not in err


def test_bad_spec_is_one_line_error(tmp_path, text_csvs):
    argv = ["train", "--backbone", "nosuch:model", "--data", str(text_csvs / "train.csv")]
    code, _, err = run_cli([*argv, "--run-dir", str(tmp_path / "r")])
    assert code == 2
    assert "unknown source 'nosuch'" in err


def test_bad_choice_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--precision", "fp8"])
    assert exit_info.value.code == 2
    assert "--precision" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]])
def test_help_explains_options(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "tltf" in capsys.readouterr().out


def test_train_help_lists_every_config_key(capsys):
    from tltf import config

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for option in config.OPTIONS:
        if option.type is not dict:
            assert option.flag in out
    assert "--config" in out and "--print-config" in out


def test_train_with_lora_keeps_adapters_and_exports_merged(tiny_bert_dir, text_csvs, tmp_path):
    argv = ["train", "--backbone", f"keras_hub:{tiny_bert_dir}", "--sequence-length", "16"]
    argv += ["--data", str(text_csvs / "train.csv"), "--freeze", "lora:4", "--epochs", "1"]
    argv += ["--freeze-epochs", "1", "--batch-size", "8", "--run-dir", str(tmp_path / "run")]
    code, out, err = run_cli([*argv, "--export-dir", str(tmp_path / "export")])
    assert code == 0, err
    assert "rank-4 LoRA adapters in layer_0, layer_1 and the head" in out
    model = tltf.load_model(str(tmp_path / "run" / "model.keras"))
    assert tltf.info(model).freeze == "lora:4"
    fresh = tltf.build(
        f"keras_hub:{tiny_bert_dir}", class_names=tltf.info(model).class_names, sequence_length=16
    )
    tltf.load_adapters(fresh, str(tmp_path / "run" / "adapters.npz"))
    texts = ["game play score", "math algebra", "audio music"]
    import tensorflow as tf

    assert "csv0" in os.listdir(tmp_path / "export")  # named after the data's folder
    served = tf.saved_model.load(str(tmp_path / "export" / "csv0" / "1"))
    scores = served.signatures["serving_default"](tf.constant(texts))["scores"].numpy()
    expected = tf.nn.softmax(fresh.predict(tf.constant(texts), verbose=0)).numpy()
    assert abs(scores - expected).max() < 1e-5
