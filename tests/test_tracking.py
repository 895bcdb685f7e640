"""Experiment tracking: run.json, metrics.jsonl, TensorBoard files read back with TensorBoard's own
reader, the MLflow mirror read back with MlflowClient, and `trugrade runs list|compare`."""
import json
import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import trugrade
from trugrade import cli, config, runs, safetensors, tracking

REPO = pathlib.Path(__file__).resolve().parents[1]


def make_config(**sections):
    tree = {"model": {"arch": "smallcnn", "num_classes": 3, "in_channels": 1, "input_size": 28},
            "data": {"path": "data/fashion"}, "run": {"name": "exp"}}
    for key, value in sections.items():
        tree.setdefault(key, {}).update(value)
    return config.from_mapping(tree)


def test_run_json_records_config_git_machine_and_status(tmp_path):
    cfg = make_config(optim={"lr": 0.05})
    run_dir = tmp_path / "exp"
    with tracking.RunRecorder(run_dir, cfg, dataset_manifest_hash="d" * 64, source_dir=REPO) as recorder:
        running = tracking.read_run(run_dir)
        assert running["status"] == "running" and running["end_time"] is None
        recorder.log_metrics(step=1, epoch=0, loss=1.0, lr=0.05)
    record = tracking.read_run(run_dir)
    assert record["status"] == "completed" and record["error"] is None
    assert record["end_time"] >= record["start_time"] and record["duration_s"] >= 0
    assert record["config"] == cfg.to_dict()
    assert record["config_hash"] == config.config_hash(cfg)
    hyper = record["hyperparameters"]
    assert hyper["optim.lr"] == 0.05 and hyper["model.arch"] == "smallcnn" and hyper["data.split.train"] == 0.8
    assert hyper["optim.betas"] == [0.9, 0.999]
    assert all(not isinstance(v, dict) or v == {} for v in hyper.values())
    assert record["dataset_manifest_hash"] == "d" * 64
    assert record["trugrade_version"] == trugrade.__version__
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode == 0:
        assert record["git"]["commit"] == head.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip() != ""
        assert record["git"]["dirty"] is dirty
    machine = record["machine"]
    assert machine["logical_cpus"] == os.cpu_count()
    assert machine["threads"] == trugrade.get_num_threads()
    assert machine["ram_bytes"] > 1 << 20
    if os.path.exists("/proc/cpuinfo"):
        assert machine["cpu_model"]


def test_flatten_walks_lists_of_sections():
    flat = tracking.flatten({"data": {"augment": [{"name": "hflip", "params": {"p": 0.5}}], "oversample": {}},
                             "optim": {"betas": [0.9, 0.99]}})
    assert flat == {"data.augment[0].name": "hflip", "data.augment[0].params.p": 0.5, "data.oversample": {},
                    "optim.betas": [0.9, 0.99]}


def test_git_absent_or_not_a_repository_is_null(tmp_path, monkeypatch):
    assert tracking.git_state(tmp_path) == {"commit": None, "dirty": None, "branch": None}
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable at all
    assert tracking.git_state(REPO) == {"commit": None, "dirty": None, "branch": None}
    with tracking.RunRecorder(tmp_path / "r", make_config()):
        pass
    assert tracking.read_run(tmp_path / "r")["git"]["commit"] is None


def test_failed_and_interrupted_runs(tmp_path):
    with pytest.raises(ValueError):
        with tracking.RunRecorder(tmp_path / "bad", make_config()):
            raise ValueError("loss is NaN")
    record = tracking.read_run(tmp_path / "bad")
    assert record["status"] == "failed" and "loss is NaN" in record["error"]
    with pytest.raises(KeyboardInterrupt):
        with tracking.RunRecorder(tmp_path / "stopped", make_config()):
            raise KeyboardInterrupt
    assert tracking.read_run(tmp_path / "stopped")["status"] == "interrupted"
    recorder = tracking.RunRecorder(tmp_path / "manual", make_config())
    recorder.finish("completed")
    with pytest.raises(trugrade.TrugradeValueError, match="after the run finished"):
        recorder.log_metrics(step=1, loss=1.0)
    with pytest.raises(trugrade.TrugradeValueError, match="status must be one of"):
        tracking.RunRecorder(tmp_path / "x", make_config()).finish("done")


def test_metrics_jsonl_lines(tmp_path):
    with tracking.RunRecorder(tmp_path / "m", make_config()) as recorder:
        recorder.log_metrics(step=1, epoch=0, loss=0.9, lr=0.001)
        recorder.log_metrics(epoch=0, train_loss=0.8, val_loss=0.85, val_accuracy=0.5,
                             per_class_accuracy=[0.4, 0.5, 0.6])
        with pytest.raises(trugrade.TrugradeValueError, match="step= or epoch="):
            recorder.log_metrics(loss=1.0)
    lines = (tmp_path / "m" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"step": 1, "epoch": 0, "loss": 0.9, "lr": 0.001},
        {"epoch": 0, "train_loss": 0.8, "val_loss": 0.85, "val_accuracy": 0.5, "per_class_accuracy": [0.4, 0.5, 0.6]}]


def test_crc32c_known_values():
    assert tracking.crc32c(b"123456789") == 0xE3069283
    assert tracking.crc32c(b"") == 0
    assert tracking.crc32c(bytes(32)) == 0x8A9136AA


def test_tensorboard_scalars_read_back_exactly(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator
    rng = np.random.default_rng(0)
    steps = [0, 1, 2, 127, 128, 300, 2**40]
    losses = rng.normal(size=len(steps)) * 1e3
    with tracking.RunRecorder(tmp_path / "tb", make_config()) as recorder:
        for step, loss in zip(steps, losses):
            recorder.log_metrics(step=step, epoch=0, loss=float(loss), lr=1e-3 / (step + 1))
        recorder.log_metrics(epoch=0, val_accuracy=0.625, val_loss=-0.0, per_class={"cat": 0.5}, note="text")
        recorder.log_metrics(epoch=1, val_accuracy=0.75, val_loss=3.4e38)
    accumulator = event_accumulator.EventAccumulator(str(tmp_path / "tb" / "tensorboard"),
                                                     size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    assert set(accumulator.Tags()["scalars"]) == {"loss", "lr", "val_accuracy", "val_loss", "per_class.cat"}
    loss_events = accumulator.Scalars("loss")
    assert [e.step for e in loss_events] == steps
    assert [e.value for e in loss_events] == [float(np.float32(v)) for v in losses]
    assert [e.value for e in accumulator.Scalars("lr")] == [float(np.float32(1e-3 / (s + 1))) for s in steps]
    assert [(e.step, e.value) for e in accumulator.Scalars("val_accuracy")] == [(0, 0.625), (1, 0.75)]
    assert [e.value for e in accumulator.Scalars("val_loss")] == [0.0, float(np.float32(3.4e38))]
    assert [e.value for e in accumulator.Scalars("per_class.cat")] == [0.5]


def test_tensorboard_switched_off(tmp_path):
    with tracking.RunRecorder(tmp_path / "off", make_config(tracking={"tensorboard": False})) as recorder:
        recorder.log_metrics(step=1, loss=1.0)
    assert not (tmp_path / "off" / "tensorboard").exists()
    assert tracking.read_run(tmp_path / "off")["tensorboard"] is None


def test_trugrade_package_imports_no_tensorboard_or_tensorflow():
    for path in (REPO / "trugrade").rglob("*.py"):
        text = path.read_text()
        for name in ("tensorboard", "tensorflow"):
            assert f"import {name}" not in text and f"from {name}" not in text, path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside mlflow's SQLAlchemy store
def test_mlflow_mirror_reads_back(tmp_path):
    import mlflow  # noqa: F401 - installed by .ci/setup; the test must not be skipped
    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = make_config(tracking={"mlflow": True}, optim={"lr": 0.02})
    run_dir = tmp_path / "runs" / "exp"
    with tracking.RunRecorder(run_dir, cfg, mlflow_tracking_uri=uri, mlflow_experiment="tests",
                              mlflow_artifact_location=str(tmp_path / "artifacts")) as recorder:
        config.save_resolved(cfg, run_dir / "config.yaml")
        for step in range(1, 4):
            recorder.log_metrics(step=step, epoch=0, loss=1.0 / step, lr=0.02)
        recorder.log_metrics(epoch=0, val_loss=0.5, val_accuracy=0.8)
        recorder.log_metrics(epoch=1, val_loss=0.25, val_accuracy=0.9)
        checkpoint = run_dir / "checkpoints" / "best.safetensors"
        checkpoint.parent.mkdir()
        safetensors.save(checkpoint, {"w": np.ones(3, np.float32)})
        recorder.log_artifact(checkpoint, "checkpoints")
        run_id = recorder.mlflow_run_id
    record = tracking.read_run(run_dir)
    assert record["mlflow"]["enabled"] and record["mlflow"]["run_id"] == run_id
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["optim.lr"] == "0.02"
    assert run.data.params["model.arch"] == "smallcnn"
    assert run.data.params["optim.betas"] == "[0.9, 0.999]"
    assert len(run.data.params) == len(record["hyperparameters"])
    history = client.get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]
    assert sorted((m.step, m.value) for m in client.get_metric_history(run_id, "val_accuracy")) == [(0, 0.8), (1, 0.9)]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"run.json", "metrics.jsonl", "config.yaml", "checkpoints"} <= artifacts
    assert [a.path for a in client.list_artifacts(run_id, "checkpoints")] == ["checkpoints/best.safetensors"]


def test_mlflow_requested_but_missing_is_recorded_not_fatal(tmp_path, monkeypatch):
    for name in ("mlflow", "mlflow.tracking"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed, even after another test imported it
    with pytest.warns(RuntimeWarning, match="mlflow package is not installed"):
        recorder = tracking.RunRecorder(tmp_path / "r", make_config(tracking={"mlflow": True}))
    recorder.log_metrics(step=1, loss=1.0)
    recorder.finish()
    assert tracking.read_run(tmp_path / "r")["mlflow"]["enabled"] is False


def write_run(directory, name, lr, val_losses, val_accuracies, status="completed"):
    cfg = make_config(optim={"lr": lr}, run={"name": name})
    recorder = tracking.RunRecorder(directory / name, cfg)
    step = 0
    for epoch, (loss, accuracy) in enumerate(zip(val_losses, val_accuracies)):
        step += 5
        recorder.log_metrics(step=step, epoch=epoch, loss=loss + 0.1, lr=lr)
        recorder.log_metrics(epoch=epoch, train_loss=loss + 0.05, val_loss=loss, val_accuracy=accuracy)
    if status != "running":
        recorder.finish(status)


def test_runs_compare_structure(tmp_path):
    write_run(tmp_path, "a", 0.01, [0.9, 0.5, 0.6], [0.6, 0.8, 0.7])
    write_run(tmp_path, "b", 0.001, [0.8, 0.7], [0.5, 0.55])
    table = runs.compare(["a", "b"], metrics=["val_accuracy", "val_loss"], directory=tmp_path)
    assert table["runs"] == ["a", "b"]
    assert table["metrics"]["columns"] == ["run", "val_accuracy final", "val_accuracy best", "val_loss final",
                                           "val_loss best"]
    assert table["metrics"]["rows"] == [["a", 0.7, 0.8, 0.6, 0.5], ["b", 0.55, 0.55, 0.7, 0.7]]
    assert table["hyperparameters"] == {"columns": ["key", "a", "b"], "rows": [["optim.lr", 0.01, 0.001]]}
    default = runs.compare([str(tmp_path / "a"), "b"], directory=tmp_path)
    assert [c for c in default["metrics"]["columns"] if c.endswith("final")] == [
        "train_loss final", "val_loss final", "val_accuracy final"]
    missing = runs.compare(["a"], metrics="val_accuracy,test_accuracy", directory=tmp_path)
    assert missing["metrics"]["rows"] == [["a", 0.7, 0.8, None, None]]
    with pytest.raises(trugrade.TrugradeValueError, match="runs in .*: a, b"):
        runs.compare(["nope"], directory=tmp_path)


def test_runs_list_and_cli(tmp_path, capsys):
    write_run(tmp_path, "a", 0.01, [0.9, 0.5], [0.6, 0.8])
    write_run(tmp_path, "b", 0.001, [0.8], [0.5], status="failed")
    write_run(tmp_path, "c", 0.001, [0.8], [0.5], status="running")
    entries = runs.list_runs(tmp_path)
    assert [(e["name"], e["status"], e["epochs"], e["val_accuracy"]) for e in entries] == [
        ("a", "completed", 2, 0.8), ("b", "failed", 1, 0.5), ("c", "running", 1, 0.5)]
    assert runs.list_runs(tmp_path / "absent") == []
    assert cli.main(["runs", "list", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "a" in out and "failed" in out and "running" in out and "smallcnn" in out
    plot = tmp_path / "curves.png"
    assert cli.main(["runs", "compare", "a", "b", "--dir", str(tmp_path), "--metrics", "val_accuracy",
                     "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "val_accuracy final" in out and "optim.lr" in out and "0.001" in out
    assert cli.main(["runs", "compare", "zzz", "--dir", str(tmp_path)]) == 2
    assert "trugrade: error: run 'zzz'" in capsys.readouterr().err


def test_plot_curves_png_with_matplotlib(tmp_path):
    import matplotlib  # noqa: F401
    write_run(tmp_path, "a", 0.01, [0.9, 0.5, 0.4], [0.6, 0.8, 0.85])
    write_run(tmp_path, "b", 0.001, [0.8, 0.7], [0.5, 0.55])
    path = runs.plot_curves(["a", "b"], "val_accuracy", tmp_path / "acc.png", directory=tmp_path)
    assert path == str(tmp_path / "acc.png")
    assert (tmp_path / "acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs.plot_curves(["a"], "loss", tmp_path / "loss.png", directory=tmp_path)
    with pytest.raises(trugrade.TrugradeValueError, match="logged 'nothing'"):
        runs.plot_curves(["a"], "nothing", tmp_path / "x.png", directory=tmp_path)


def test_plot_curves_svg_without_matplotlib(tmp_path, monkeypatch):
    write_run(tmp_path, "a", 0.01, [0.9, 0.5, 0.4], [0.6, 0.8, 0.85])
    write_run(tmp_path, "b", 0.001, [0.8, 0.7], [0.5, 0.55])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.warns(RuntimeWarning, match="matplotlib is not installed; wrote an SVG"):
        path = runs.plot_curves(["a", "b"], "val_accuracy", tmp_path / "acc.png", directory=tmp_path)
    assert path == str(tmp_path / "acc.svg") and not (tmp_path / "acc.png").exists()
    text = (tmp_path / "acc.svg").read_text()
    assert text.startswith("<svg") and text.count("<polyline") == 2 and ">a<" in text and ">b<" in text


def test_torn_last_metrics_line_is_skipped(tmp_path):
    write_run(tmp_path, "a", 0.01, [0.9], [0.6])
    with open(tmp_path / "a" / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 99, "lo')
    assert len(tracking.read_metrics(tmp_path / "a")) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runs.compare(["a"], metrics=["val_accuracy"], directory=tmp_path)["metrics"]["rows"][0][1] == 0.6
