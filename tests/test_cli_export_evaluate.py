"""`tltf export RUN_DIR` and `tltf evaluate EXPORT_OR_RUN`, and the CLI's exit codes."""

from __future__ import annotations

import csv
import json
import os

import pytest
from cli_util import run_cli

from tltf.cli import main


@pytest.fixture(scope="module")
def run_dir(tiny_bert_dir, tiny_text_data, tmp_path_factory):
    """A finished `tltf train` run (head only, 2 epochs) on the tiny BERT; its test CSV."""
    root = tmp_path_factory.mktemp("run")
    texts, labels = tiny_text_data
    for name, rows in (("train.csv", range(len(texts))), ("test.csv", range(0, len(texts), 4))):
        with open(root / name, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["body", "topic"])
            writer.writerows((texts[i], labels[i]) for i in rows)
    argv = [
        "train",
        *("--backbone", f"keras_hub:{tiny_bert_dir}", "--sequence-length", "16"),
        *("--data", str(root / "train.csv"), "--text-column", "body", "--label-column", "topic"),
        *("--freeze", "all", "--epochs", "2", "--batch-size", "8", "--head-lr", "0.05"),
        *("--run-dir", str(root / "run"), "--export", "topics"),
        *("--export-dir", str(root / "export")),
    ]
    code, _, err = run_cli(argv)
    assert code == 0, err
    return root / "run"


def test_export_run_dir_writes_the_next_version_under_the_runs_export_name(run_dir, tmp_path):
    code, out, err = run_cli(["export", str(run_dir), "--export-dir", str(tmp_path)])
    assert code == 0, err
    assert out.strip() == f"exported: {tmp_path / 'topics' / '1'}"
    with open(tmp_path / "topics" / "1" / "assets.extra" / "labels.txt") as fh:
        assert fh.read().split() == ["games", "math", "sound"]
    code, out, _ = run_cli(
        ["export", str(run_dir), "--name", "other", "--export-dir", str(tmp_path)]
    )
    assert code == 0 and out.strip().endswith(os.path.join("other", "1"))


def test_evaluate_run_and_its_export_agree(run_dir):
    """The run's Keras model and the SavedModel it exported give the same report."""
    test_csv = str(run_dir.parent / "test.csv")
    reports = {}
    for target in (run_dir, run_dir.parent / "export" / "topics"):
        # the run knows its column names; the export is told them by flags
        flags = [] if target == run_dir else ["--text-column", "body", "--label-column", "topic"]
        code, out, err = run_cli(["evaluate", str(target), "--data", test_csv, "--json", *flags])
        assert code == 0, err
        reports[target.name] = json.loads(out)
    run, export = reports["run"], reports["topics"]
    assert run["confusion"] == export["confusion"]
    assert sum(map(sum, run["confusion"])) == 9
    assert run["accuracy"] == pytest.approx(export["accuracy"])
    assert set(run["per_class"]["math"]) == {"precision", "recall", "f1", "support"}


def test_evaluate_prints_report_confusion_matrix_and_plot(run_dir, tmp_path):
    png = tmp_path / "cm.png"
    test_csv = str(run_dir.parent / "test.csv")
    code, out, err = run_cli(["evaluate", str(run_dir), "--data", test_csv, "--plot", str(png)])
    assert code == 0, err
    assert "accuracy" in out and "precision" in out and "recall" in out
    matrix = out[out.index("true \\ predicted") :].splitlines()
    assert [line.split()[0] for line in matrix[1:4]] == ["games", "math", "sound"]
    assert png.read_bytes().startswith(b"\x89PNG")


def test_evaluate_unseen_label_is_a_one_line_error(run_dir, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("body,topic\nplay a game,games\nhello,weather\n")
    code, _, err = run_cli(["evaluate", str(run_dir), "--data", str(bad)])
    assert code == 2
    assert "weather" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["export", "evaluate"])
def test_not_a_run_folder_is_exit_2(command, tmp_path):
    argv = [command, str(tmp_path / "nope")] + (
        ["--data", "x.csv"] if command == "evaluate" else []
    )
    code, _, err = run_cli(argv)
    assert code == 2
    assert "nope" in err and "Traceback" not in err


def test_unexpected_failure_is_exit_1_in_one_line_and_debug_shows_it(monkeypatch, tmp_path):
    from tltf.commands import export

    def broken(run_dir):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(export, "load_run_model", broken)
    code, _, err = run_cli(["export", str(tmp_path)])
    assert code == 1
    assert err.strip() == (
        "tltf export: failed: RuntimeError: disk on fire (add --debug for the traceback)"
    )
    with pytest.raises(RuntimeError):
        main(["export", str(tmp_path), "--debug"])


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    for command in ("train", "export", "evaluate", "predict"):
        assert command in out


def test_train_from_run_appends_new_classes_and_exports_beside(run_dir, tiny_text_data, tmp_path):
    """``tltf train --from-run RUN``: the run's model continues, a class the data adds is
    appended (tltf.extend), and the export is the next version of the run's export."""
    import tltf

    texts, labels = tiny_text_data
    data = tmp_path / "more.csv"
    with open(data, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["body", "topic"])
        writer.writerows(zip(texts, labels, strict=True))
        writer.writerows((f"video film {w}", "video") for w in ("codec", "player", "film") * 4)
    export_dir = run_dir.parent / "export"
    before = sorted(os.listdir(export_dir / "topics"))
    argv = ["train", "--from-run", str(run_dir), "--data", str(data)]
    argv += ["--text-column", "body", "--label-column", "topic", "--freeze", "all"]
    argv += ["--epochs", "2", "--batch-size", "8", "--head-lr", "0.05"]
    argv += ["--run-dir", str(tmp_path / "grown"), "--export-dir", str(export_dir)]
    code, out, err = run_cli(argv)
    assert code == 0, err
    assert "appending ['video']" in out
    after = sorted(os.listdir(export_dir / "topics"))
    assert len(after) == len(before) + 1  # the next version, beside the run's
    newest = export_dir / "topics" / max(after, key=int)
    manifest = json.load(open(newest / "assets.extra" / "tltf.json"))
    assert manifest["class_names"] == ["games", "math", "sound", "video"]
    assert manifest["extended_from"]["class_names"] == ["games", "math", "sound"]
    metrics = json.load(open(tmp_path / "grown" / "metrics.json"))
    assert metrics["from_run"] == str(run_dir)
    model = tltf.load_model(str(tmp_path / "grown" / "model.keras"))
    assert tltf.info(model).class_names == ("games", "math", "sound", "video")
