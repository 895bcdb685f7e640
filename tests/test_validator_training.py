"""The validator around training: likely label errors found with a trained model (after
training, into the run; and by `validate_dataset(..., model=RUN)` / `trugrade validate --model`),
and the preflight that stops training on fatal dataset problems unless overridden.

The models are small CNNs trained for a few epochs (seconds) on images whose class is their
brightness, with a few images planted in the wrong class folder."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import trugrade
from trugrade import cli, creator
from trugrade.data import scan
from trugrade.train import train

LEVELS = {"dark": 40, "mid": 128, "light": 215}


def brightness_image(level, rng):
    return np.clip(level + rng.normal(0, 18, (32, 32, 3)), 0, 255).astype(np.uint8)


def write_dataset(root, per_class=40, mislabelled=()):
    """Class folders of 32x32 RGB PNGs; `mislabelled` lists (true class, folder) pairs: an image
    of the true class's brightness saved in the other class's folder. Returns their paths."""
    rng = np.random.default_rng(0)
    for name, level in LEVELS.items():
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(brightness_image(level, rng)).save(root / name / f"{i}.png")
    planted = []
    for k, (true, folder) in enumerate(mislabelled):
        path = f"{folder}/planted_{k}.png"
        Image.fromarray(brightness_image(LEVELS[true], rng)).save(root / path)
        planted.append(path)
    return planted


def config(data, runs, epochs=4, **data_extra):
    return {
        "model": {"arch": "smallcnn", "num_classes": len(LEVELS), "in_channels": 3, "input_size": 28},
        "data": {"path": str(data), "batch_size": 16, "num_workers": 2,
                 "split": {"train": 0.7, "val": 0.15, "test": 0.15}, **data_extra,
                 "augment": [{"name": "resize", "params": {"size": 28}},
                             {"name": "normalize", "params": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}]},
        "optim": {"name": "adamw", "lr": 3e-3},
        "train": {"epochs": epochs, "seed": 0},
        "checkpoint": {"best_metric": "val_accuracy"},
        "run": {"name": "labels", "dir": str(runs)},
    }


PLANTS = [("light", "dark"), ("dark", "light"), ("mid", "dark"), ("light", "mid"), ("dark", "mid"),
          ("mid", "light"), ("light", "dark"), ("dark", "light")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    planted = write_dataset(root / "data", mislabelled=PLANTS)
    run = train(config(root / "data", root / "runs"), progress=False)
    return root, planted, run


def test_training_writes_likely_label_errors_into_its_run(trained):
    root, planted, run = trained
    assert run.status == "completed" and run.test["accuracy"] >= 0.8
    with open(os.path.join(run.dir, "label_issues.json")) as f:
        written = json.load(f)
    assert written == json.loads(json.dumps(run.label_issues))
    ds = scan(root / "data", split=(0.7, 0.15, 0.15), seed=0)  # the run's own splits
    scored = {s["path"] for s in ds.samples if s["split"] in ("train", "val")}
    assert written["splits"] == ["train", "val"] and written["samples_scored"] == len(scored)
    found = {row["path"] for row in written["issues"]}
    planted_scored = set(planted) & scored
    assert len(planted_scored) >= 4
    assert planted_scored <= found, (planted_scored - found, found)
    clean_flagged = found - set(planted)
    assert len(clean_flagged) <= 0.05 * len(scored), clean_flagged
    by_path = {row["path"]: row for row in written["issues"]}
    for path in planted_scored:
        k = planted.index(path)
        assert by_path[path]["given"] == PLANTS[k][1] and by_path[path]["predicted"] == PLANTS[k][0]
        assert by_path[path]["split"] in ("train", "val")
    page = open(os.path.join(run.dir, "report.html"), encoding="utf-8").read()
    assert "Likely label errors" in page and sorted(planted_scored)[0] in page
    assert page.count("data:image/png;base64,") >= len(planted_scored)


def test_validate_dataset_with_the_trained_model(trained):
    root, planted, run = trained
    report = trugrade.validate_dataset(root / "data", model=run.dir, checks=["label_errors"])
    (finding,) = report.of_kind("likely_label_error")
    found = set(finding.files)
    assert set(planted) <= found, set(planted) - found
    assert len(found - set(planted)) <= 0.05 * report.stats["n_samples"]
    assert finding.files[0] in planted  # most suspicious first
    thresholds_joint = np.array(report.stats["confident_joint"])
    assert thresholds_joint.shape == (3, 3) and thresholds_joint.trace() >= 0.9 * thresholds_joint.sum()
    # by run name under a runs folder, and by checkpoint file: the same findings
    by_name = trugrade.validate_dataset(root / "data", model=run.name, runs_directory=root / "runs",
                                        checks=["label_errors"])
    by_checkpoint = trugrade.validate_dataset(root / "data", model=run.best_checkpoint, checks=["label_errors"])
    assert by_name.of_kind("likely_label_error")[0].files == finding.files
    assert by_checkpoint.of_kind("likely_label_error")[0].files == finding.files


def test_cli_validate_with_a_model(trained, tmp_path, capsys):
    root, planted, run = trained
    out = tmp_path / "r.json"
    assert cli.main(["validate", str(root / "data"), "--model", run.dir, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    (finding,) = [f for f in data["findings"] if f["kind"] == "likely_label_error"]
    assert set(planted) <= set(finding["files"])
    assert "probably mislabelled" in capsys.readouterr().out


def test_a_model_of_other_classes_is_refused(trained, tmp_path):
    root, _, run = trained
    for name in ("cat", "dog"):
        os.makedirs(tmp_path / "other" / name)
        for i in range(3):
            Image.fromarray(np.full((32, 32, 3), 50 * i, np.uint8)).save(tmp_path / "other" / name / f"{i}.png")
    with pytest.raises(trugrade.TrugradeError, match="classes"):
        trugrade.validate_dataset(tmp_path / "other", model=run.dir, checks=["label_errors"])


def test_label_issues_can_be_turned_off(tmp_path):
    write_dataset(tmp_path / "data", per_class=12)
    run = train(config(tmp_path / "data", tmp_path / "runs", epochs=1, label_issues=False), progress=False)
    assert run.label_issues is None and not os.path.exists(os.path.join(run.dir, "label_issues.json"))


# --------------------------------------------------------------------------- preflight


def break_files(data):
    """A truncated PNG (cut after a real encoder wrote it) and a zero-byte file."""
    whole = open(data / "dark" / "0.png", "rb").read()
    open(data / "dark" / "0.png", "wb").write(whole[: len(whole) // 2])
    open(data / "light" / "1.png", "wb").close()


@pytest.mark.parametrize("how", ["python", "cli"])
def test_preflight_refuses_damaged_files_and_prints_the_findings(tmp_path, capsys, how):
    write_dataset(tmp_path / "data", per_class=12)
    break_files(tmp_path / "data")
    cfg = config(tmp_path / "data", tmp_path / "runs", epochs=1, on_bad_file="skip")
    if how == "python":
        with pytest.raises(trugrade.DatasetError, match="fatal") as info:
            train(cfg, progress=False)
        assert "dark/0.png" in str(info.value) and "light/1.png" in str(info.value)
    else:
        path = tmp_path / "c.yaml"
        path.write_text(json.dumps(cfg))  # JSON is YAML
        assert cli.main(["train", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "trugrade preflight" in err and "empty_file" in err and "light/1.png" in err
    assert ("truncated" in err or "corrupt" in err) or how == "python"
    assert not os.path.exists(tmp_path / "runs" / "labels" / "checkpoints" / "last.safetensors")


@pytest.mark.parametrize("how", ["argument", "config", "cli"])
def test_preflight_override_trains_and_still_prints(tmp_path, capsys, how):
    write_dataset(tmp_path / "data", per_class=12)
    break_files(tmp_path / "data")
    cfg = config(tmp_path / "data", tmp_path / "runs", epochs=1, on_bad_file="skip", label_issues=False)
    if how == "argument":
        run = train(cfg, progress=False, check_dataset=False)
        assert run.status == "completed"
    elif how == "config":
        cfg["data"]["preflight"] = False
        assert train(cfg, progress=False).status == "completed"
    else:
        path = tmp_path / "c.yaml"
        path.write_text(json.dumps(cfg))
        assert cli.main(["train", str(path), "--no-progress", "--no-check"]) == 0
    err = capsys.readouterr().err
    assert "trugrade preflight" in err and "empty_file" in err


def test_preflight_refuses_labels_outside_the_task_classes(tmp_path, capsys):
    """A created dataset of a task with its own class list: a folder of another class is fatal."""
    rng = np.random.default_rng(1)
    for name in ("scratch", "dent", "stain", "wear", "crease", "rust"):
        os.makedirs(tmp_path / "src" / name)
        for i in range(8):
            Image.fromarray(brightness_image(30 + 35 * i, rng)).save(tmp_path / "src" / name / f"{i}.png")
    made = creator.create("surface_analysis/damage_classification", tmp_path / "src", tmp_path / "ds")
    report = trugrade.validate_dataset(tmp_path / "ds")
    (finding,) = report.of_kind("label_outside_classes")
    assert finding.severity == "fatal" and all(p.startswith("rust/") for p in finding.files)
    assert len(finding.files) == 8 and "rust" in finding.message
    overrides = {"train.epochs": 1, "run.dir": str(tmp_path / "runs"), "data.label_issues": False}
    with pytest.raises(trugrade.DatasetError, match="rust"):
        train(made["config"], overrides=overrides, progress=False)
    assert "label_outside_classes" in capsys.readouterr().err
    run = train(made["config"], overrides=overrides, progress=False, check_dataset=False)
    assert run.status == "completed"


def test_created_dataset_config_trains(tmp_path):
    write_dataset(tmp_path / "src", per_class=12)
    made = creator.create("image_classification/classification", tmp_path / "src", tmp_path / "ds")
    run = train(made["config"], overrides={"train.epochs": 1, "run.dir": str(tmp_path / "runs")}, progress=False)
    assert run.status == "completed" and run.label_issues is not None
    ds = trugrade.data.load_manifest(made["manifest"])
    assert run.label_issues["samples_scored"] == sum(s["split"] in ("train", "val") for s in ds.samples)
