"""Segmentation trains end to end: the C trainer with per-pixel targets (in-memory masks and
the loader's augmented masks), trugrade.train on a SYNTHETIC debris folder (combined loss,
class weights from the masks, seg metrics, early stopping and best checkpoint on val_f1,
test metrics and report), and batch inference of tiles (predict_tiles, trugrade predict)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import trugrade
from trugrade import _C, models
from trugrade.data import Loader, scan
from trugrade.errors import TrugradeError
from trugrade.predict import load_model, predict_tiles
from trugrade.synthetic import synthetic_debris_tile, write_synthetic_debris
from trugrade.train import load_checkpoint, train


def tiny_unet(**options):
    return models.create("unet", num_classes=2, in_channels=11, input_size=32, seed=0, **options)


def debris_arrays(count, size=32, seed=0):
    rng = np.random.default_rng(seed)
    tiles = [synthetic_debris_tile(rng, size=size, cloud_cover=0.0) for _ in range(count)]
    return (np.stack([t[0] for t in tiles]).astype(np.float32), np.stack([t[1] for t in tiles]).astype(np.int64))


@pytest.fixture(scope="module")
def debris(tmp_path_factory):
    root = tmp_path_factory.mktemp("debris")
    write_synthetic_debris(root, count=20, seed=3, size=32)
    return str(root)


def test_trainer_takes_in_memory_masks_and_evaluates_per_pixel():
    images, masks = debris_arrays(6)
    model = tiny_unet(loss={"dice": 0.4, "focal": 0.4, "wce": 0.2},
                      class_weights=models.class_weights_from_masks(masks, 2))
    trainer = _C.Trainer(model._c, images, masks, epochs=2, batch_size=4, seed=0, lr=1e-3, optimizer="adamw")
    losses = [trainer.run_epoch(catch_sigint=False) for _ in range(2)]
    assert all(np.isfinite(losses))
    logits, loss = trainer.evaluate(images, masks)
    assert np.asarray(logits).shape == (6, 2, 32, 32) and np.isfinite(loss)
    # the evaluation loss of one batch is the model's own eval-mode loss of that batch
    expected = model.forward(images[:4])
    np.testing.assert_allclose(np.asarray(trainer.evaluate(images[:4], masks[:4])[0]), expected, rtol=1e-5, atol=1e-5)


def test_trainer_refuses_targets_of_the_wrong_kind():
    images, masks = debris_arrays(4)
    with pytest.raises(TrugradeError, match="target"):
        _C.Trainer(tiny_unet()._c, images, masks[:, 0, 0].copy(), batch_size=2)
    classifier = models.create("smallcnn", num_classes=2, in_channels=11, input_size=32)
    with pytest.raises(TrugradeError, match="target"):
        _C.Trainer(classifier._c, images, masks, batch_size=2)


def test_trainer_streams_the_loaders_augmented_masks(debris):
    dataset = scan(debris)
    assert dataset.task == "segmentation"
    pipeline = [{"name": "hflip", "p": 0.5}, {"name": "rot90", "p": 0.5}]
    loader = Loader(dataset, split="train", batch_size=4, pipeline=pipeline, workers=1, seed=2)
    model = tiny_unet()
    trainer = _C.Trainer(model._c, loader._loader, None, epochs=1, batch_size=4, seed=2, lr=1e-3, optimizer="adam")
    assert np.isfinite(trainer.run_epoch(catch_sigint=False))
    assert trainer.progress()["steps_per_epoch"] == len(loader)


def seg_config(data, runs, **changes):
    cfg = {
        "model": {"arch": "unet", "num_classes": 2, "in_channels": 11, "input_size": 32},
        "data": {"path": data, "format": "seg_folders", "batch_size": 4, "num_workers": 1,
                 "split": {"train": 0.7, "val": 0.15, "test": 0.15},
                 "augment": [{"name": "hflip", "params": {"p": 0.5}}, {"name": "rotate90", "params": {"p": 0.5}},
                             {"name": "normalize", "params": {"mean": "auto", "std": "auto"}}]},
        "optim": {"name": "adamw", "lr": 2e-3},
        "train": {"epochs": 2, "seed": 0, "class_weights": "auto",
                  "early_stopping": {"metric": "val_f1", "patience": 5, "mode": "max"}},
        "loss": {"name": "combined", "weights": {"dice": 0.4, "focal": 0.4, "wce": 0.2}},
        "checkpoint": {"best_metric": "val_f1", "best_mode": "max"},
        "run": {"name": "seg", "dir": runs},
    }
    for key, value in changes.items():
        section, field = key.split("__")
        cfg[section][field] = value
    return cfg


@pytest.fixture(scope="module")
def seg_run(debris, tmp_path_factory):
    return train(seg_config(debris, str(tmp_path_factory.mktemp("runs"))), progress=False)


def test_a_segmentation_run_validates_tests_and_reports(seg_run):
    run = seg_run
    assert run.status == "completed" and len(run.metrics) == 2
    for key in ("val_loss", "val_iou", "val_f1", "val_miou", "val_pixel_accuracy", "val_iou_background"):
        assert key in run.metrics[-1] and np.isfinite(run.metrics[-1][key])
    assert 0.0 <= run.metrics[-1]["val_f1"] <= 1.0
    assert os.path.exists(run.best_checkpoint)
    tensors, meta = load_checkpoint(run.best_checkpoint)
    assert meta["task"] == "segmentation"
    weights = np.asarray(tensors["loss.class_weight"])
    assert weights.shape == (2,) and weights[1] > weights[0]   # debris is the rare class
    for key in ("loss", "iou", "f1", "miou", "pixel_accuracy", "per_class_iou", "threshold"):
        assert key in run.test
    assert os.path.exists(run.report_path)
    assert os.path.exists(os.path.join(run.dir, "overlays.png")) and os.path.exists(os.path.join(run.dir, "curves.png"))


def test_normalize_auto_is_measured_on_the_training_split(seg_run, debris):
    train_tiles = [np.load(os.path.join(debris, s["path"])).astype(np.float64) for s in scan(
        debris, split=(0.7, 0.15, 0.15), seed=0).split("train")]
    pixels = np.concatenate([t.reshape(11, -1) for t in train_tiles], axis=1)
    step = [a for a in seg_run.config.data.augment if a["name"] == "normalize"][0]["params"]
    np.testing.assert_allclose(step["mean"], pixels.mean(1), rtol=1e-5)
    np.testing.assert_allclose(step["std"], pixels.std(1), rtol=1e-5)
    # the run's config.yaml and its checkpoints keep the numbers (predict and resume use them)
    from trugrade import config as configlib
    saved = configlib.load(os.path.join(seg_run.dir, "config.yaml"))
    assert list([a for a in saved.data.augment if a["name"] == "normalize"][0]["params"]["mean"]) == list(step["mean"])
    _, meta = load_checkpoint(seg_run.best_checkpoint)
    assert meta["normalization"]["std"] == list(step["std"])


def test_normalize_auto_needs_both_and_lists_need_one_per_channel(debris, tmp_path):
    from trugrade import config as configlib
    from trugrade.errors import ConfigError
    half = seg_config(debris, str(tmp_path))
    half["data"]["augment"][-1]["params"] = {"mean": "auto", "std": [1.0] * 11}
    with pytest.raises(ConfigError, match="both auto"):
        configlib.from_mapping(half)
    short = seg_config(debris, str(tmp_path))
    short["data"]["augment"][-1]["params"] = {"mean": [0.0] * 3, "std": [1.0] * 3}
    with pytest.raises(ConfigError, match="in_channels"):
        configlib.from_mapping(short)


def test_the_shipped_recipe_is_the_described_one():
    from trugrade import config as configlib
    from trugrade.train_segmentation import loss_terms
    cfg = configlib.load(os.path.join(os.path.dirname(__file__), "..", "configs", "marine_debris_unet_se.yaml"))
    assert (cfg.model.arch, cfg.model.in_channels, cfg.model.num_classes) == ("unet_se", 11, 2)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adamw", 1e-3, 1e-4)
    assert (cfg.schedule.name, cfg.schedule.warmup_epochs) == ("warmup_cosine", 10)
    assert (cfg.data.batch_size, cfg.train.grad_clip_norm, cfg.train.class_weights) == (16, 1.0, "auto")
    stop = cfg.train.early_stopping
    assert (stop.metric, stop.patience, stop.mode) == ("val_f1", 15, "max")
    assert (cfg.checkpoint.best_metric, cfg.checkpoint.best_mode) == ("val_f1", "max")
    assert dict([a for a in cfg.data.augment if a["name"] == "normalize"][0]["params"]) == {"mean": "auto",
                                                                                              "std": "auto"}
    terms, weighted = loss_terms(cfg)
    assert weighted and {k: terms[k] for k in ("dice", "focal", "wce")} == {"dice": 0.4, "focal": 0.4, "wce": 0.2}
    assert (terms["gamma"], terms["alpha"], terms["smooth"]) == (cfg.loss.focal_gamma, cfg.loss.focal_alpha,
                                                                 cfg.loss.dice_smooth)


def test_focal_alpha_gamma_and_dice_smooth_reach_the_c_losses(debris, tmp_path):
    from trugrade import config as configlib
    from trugrade.train_segmentation import create_model
    from trugrade.data import scan as scan_folder
    cfg = configlib.from_mapping(seg_config(debris, str(tmp_path), loss__focal_alpha=0.3, loss__focal_gamma=1.5,
                                            loss__dice_smooth=0.5))
    model = create_model(cfg, scan_folder(debris))
    assert {k: model.options[k] for k in ("loss_dice", "loss_focal", "loss_ce", "focal_alpha", "focal_gamma",
                                          "dice_smooth")} == pytest.approx(
        {"loss_dice": 0.4, "loss_focal": 0.4, "loss_ce": 0.2, "focal_alpha": 0.3, "focal_gamma": 1.5,
         "dice_smooth": 0.5})
    # and they change the loss: the same weights and batch under other settings give other values
    images, masks = debris_arrays(2)
    losses = []
    for settings in ({"alpha": 0.3, "gamma": 1.5, "smooth": 0.5}, {"alpha": None, "gamma": 1.5, "smooth": 0.5},
                     {"alpha": 0.3, "gamma": 2.0, "smooth": 0.5}, {"alpha": 0.3, "gamma": 1.5, "smooth": 1.0}):
        other = tiny_unet(loss={"dice": 0.4, "focal": 0.4, "wce": 0.2, **settings}, class_weights=[0.2, 1.8])
        losses.append(other.loss_and_grads(images, masks)[0])
    assert len({round(v, 6) for v in losses}) == 4
    nulled = configlib.from_mapping(seg_config(debris, str(tmp_path), loss__focal_alpha=None))
    assert create_model(nulled, scan_folder(debris)).options["focal_alpha"] < 0   # null: no alpha


def test_the_loss_section_builds_the_models_loss(debris, tmp_path):
    from trugrade import config as configlib
    from trugrade.train_segmentation import loss_terms
    cfg = configlib.from_mapping(seg_config(debris, str(tmp_path)))
    assert loss_terms(cfg) == ({"dice": 0.4, "focal": 0.4, "gamma": 2.0, "alpha": 0.25, "smooth": 1.0, "wce": 0.2},
                               True)
    plain = configlib.from_mapping(seg_config(debris, str(tmp_path), loss__name="cross_entropy", loss__weights={},
                                              train__class_weights=None))
    assert loss_terms(plain) == ({"ce": 1.0}, True)
    run = train(seg_config(debris, str(tmp_path), loss__name="cross_entropy", loss__weights={},
                           train__class_weights=[0.2, 1.8], train__epochs=1), progress=False)
    assert run.status == "completed" and "val_f1" in run.metrics[-1]


def test_predict_tiles_writes_masks_and_probability_maps(seg_run, debris, tmp_path):
    tiles = sorted(os.path.join(debris, "images", f) for f in os.listdir(os.path.join(debris, "images")))[:3]
    model = load_model(seg_run.best_checkpoint)
    assert model.task == "segmentation"
    results = predict_tiles(model, tiles, str(tmp_path / "out"))
    assert len(results) == 3
    for r in results:
        probabilities = np.load(r["probabilities"])
        assert probabilities.shape == (32, 32) and probabilities.min() >= 0 and probabilities.max() <= 1
        mask = trugrade.read_image(r["mask"])[0]
        np.testing.assert_array_equal(mask, (probabilities > 0.5).astype(np.uint8))
    # the same tile at another size than the model's input is resized and mapped back
    big = np.repeat(np.repeat(np.load(tiles[0]), 2, axis=1), 2, axis=2)[:, :40, :40]
    np.save(tmp_path / "odd.npy", np.ascontiguousarray(big))
    assert model.predict_masks(big).shape == (1, 2, 40, 40)
    out = subprocess.run([sys.executable, "-m", "trugrade.cli", "predict", seg_run.best_checkpoint, *tiles,
                          "--out", str(tmp_path / "cli")], capture_output=True, text=True, cwd=os.getcwd())
    assert out.returncode == 0, out.stderr
    assert "tiles/s" in out.stdout
    assert len([f for f in os.listdir(tmp_path / "cli") if f.endswith("_mask.png")]) == 3


def test_metrics_jsonl_holds_the_seg_metrics(seg_run):
    with open(os.path.join(seg_run.dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert any("val_iou" in r for r in rows) and any("test_f1" in r for r in rows)
