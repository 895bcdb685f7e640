"""The dataset creator: tasks, create (manifest, splits, suggested config), COCO <-> YOLO, stats, CLI."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import trugrade
from trugrade import cli, creator
from trugrade.errors import DatasetError

from test_validator import picture, save, write_classification


def test_every_task_knows_output_formats_and_architectures():
    from trugrade.config_schema import ARCHS
    assert set(creator.CATEGORIES) == {"border_detection", "corner_analysis", "edge_analysis", "surface_analysis",
                                       "photometric_stereo", "image_classification", "semantic_segmentation",
                                       "object_detection", "experimental"}
    for spec in creator.TASKS.values():
        assert spec.output in creator.OUTPUT_TYPES and spec.formats and spec.architectures
        assert set(spec.architectures) <= set(ARCHS)
    assert creator.find_task("damage_classification").classes == ("crease", "dent", "scratch", "stain", "wear")
    assert creator.find_task("border_detection/outer_and_graphical").classes == ("outer_border", "graphical_border")
    with pytest.raises(ValueError, match="ambiguous"):
        creator.find_task("quality_rating")
    with pytest.raises(ValueError, match="not a task"):
        creator.find_task("nope")


def test_create_classification(tmp_path):
    src = tmp_path / "src"
    for c, n in (("crease", 30), ("dent", 6), ("scratch", 12)):
        for i in range(n):
            save(f"{src}/{c}/{i}.png", picture(hash((c, i)) % 10000, (96, 80)))
    out = tmp_path / "out"
    result = creator.create("surface_analysis/damage_classification", src, out, seed=3)
    ds = trugrade.datasets.load_manifest(result["manifest"])
    assert len(ds) == 48 and ds.classes == ["crease", "dent", "scratch"]
    lines = sum(len(open(out / "splits" / f"{sp}.txt").read().split()) for sp in ("train", "val", "test"))
    assert lines == 48
    info = json.load(open(out / "dataset.json"))
    assert info["output"] == "class" and info["stats"]["imbalance_ratio"] == 5.0
    cfg = trugrade.config.load(result["config"])
    text = open(result["config"]).read()
    assert cfg.model.num_classes == 3 and cfg.model.in_channels == 3
    assert cfg.data.format == "manifest" and cfg.data.path.endswith("manifest.json")
    assert cfg.train.class_weights == "auto"  # imbalance 5 > 3
    assert cfg.train.epochs == 50  # small data: intensive preset
    assert all("#" in line for line in text.splitlines() if line.strip().startswith(("arch", "batch_size", "name:")))
    # the created folder validates (its manifest and dataset.json are found)
    assert trugrade.validate_dataset(out).fatal == []


def test_suggestions_follow_the_statistics():
    spec = creator.find_task("image_classification/classification")
    small = {"n_images": 60000, "splits": {"train": 50000}, "median_size": [28, 28], "channels": 1,
             "classes": list("0123456789"), "imbalance_ratio": 1.0, "channel_mean": [0.28], "channel_std": [0.35]}
    text = creator.suggest_config(small, spec, "/data/m.json")
    cfg = trugrade.config.from_mapping(__import__("yaml").safe_load(text))
    assert cfg.model.arch == "smallcnn" and cfg.model.input_size == 28 and cfg.data.batch_size == 64
    assert cfg.train.epochs == 5 and cfg.loss.name == "cross_entropy" and cfg.train.class_weights is None
    skewed = dict(small, median_size=[512, 384], channels=3, n_images=800, splits={"train": 600},
                  imbalance_ratio=25.0, channel_mean=None)
    cfg = trugrade.config.from_mapping(__import__("yaml").safe_load(creator.suggest_config(skewed, spec, "/m")))
    assert cfg.model.arch == "resnet18" and cfg.model.input_size == 224 and cfg.data.batch_size == 16
    assert cfg.loss.name == "focal" and cfg.data.sampler == "balanced" and cfg.train.epochs == 50
    seg = creator.find_task("semantic_segmentation")
    tiles = {"n_images": 300, "splits": {"train": 200}, "median_size": [256, 256], "channels": 11}
    cfg = trugrade.config.from_mapping(__import__("yaml").safe_load(creator.suggest_config(tiles, seg, "/m",
                                                                                           num_classes=2)))
    assert cfg.model.arch == "unet_se" and cfg.model.num_classes == 2 and cfg.loss.name == "combined"
    assert [a["name"] for a in cfg.data.augment] == ["hflip", "rotate90"]


def write_yolo(root, n=6):
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "data.yaml").write_text("names: [car, person]\n")
    for i in range(n):
        sp = "train" if i < n - 2 else "val"
        save(f"{root}/images/{sp}/{i}.png", picture(500 + i, (60, 80)))
        (root / "labels" / sp / f"{i}.txt").write_text(f"{i % 2} 0.5 0.4 0.25 0.3\n1 0.2 0.7 0.1 0.2\n")


def boxes_by_name(ds):
    return {os.path.basename(s["path"]): (s["split"], [[b[0]] + [round(v, 4) for v in b[1:]] for b in s["boxes"]])
            for s in ds.samples}


def test_convert_yolo_to_coco_and_back(tmp_path):
    write_yolo(tmp_path / "yolo")
    original = trugrade.datasets.scan(tmp_path / "yolo")
    assert creator.convert(tmp_path / "yolo", tmp_path / "coco", to="coco") == 6
    coco = trugrade.datasets.scan(tmp_path / "coco")
    assert coco.layout == "coco" and coco.classes == original.classes
    assert boxes_by_name(coco) == boxes_by_name(original)
    doc = json.load(open(tmp_path / "coco" / "annotations" / "instances_train.json"))
    assert doc["annotations"][0]["bbox"] == [30.0, 15.0, 20.0, 18.0]  # pixels: x, y, w, h of 80x60
    creator.convert(tmp_path / "coco", tmp_path / "back", to="yolo")
    back = trugrade.datasets.scan(tmp_path / "back")
    assert back.layout == "yolo" and boxes_by_name(back) == boxes_by_name(original)
    with pytest.raises(DatasetError, match="detection"):
        write_classification(tmp_path / "cls", per_split=(2, 1, 1))
        creator.convert(tmp_path / "cls", tmp_path / "x", to="yolo")


def test_create_detection_and_segmentation(tmp_path):
    write_yolo(tmp_path / "yolo")
    result = creator.create("object_detection/detection", tmp_path / "yolo", tmp_path / "det", copy=True)
    ds = trugrade.datasets.load_manifest(result["manifest"])
    assert ds.root == str((tmp_path / "det" / "data").resolve()) and os.path.isfile(os.path.join(ds.root,
                                                                                                 ds.samples[0]["path"]))
    cfg = trugrade.config.load(result["config"])
    assert cfg.model.arch == "fpn" and cfg.model.num_classes == 3
    with pytest.raises(DatasetError, match="needs classification data"):
        creator.create("surface_analysis/damage_classification", tmp_path / "yolo", tmp_path / "bad")
    seg = tmp_path / "seg"
    for i in range(6):
        save(f"{seg}/images/{i}.png", picture(600 + i))
        mask = np.zeros((64, 64), np.uint8)
        mask[5:20, 5:60] = 1
        mask[40:60, 5:60] = 2
        save(f"{seg}/masks/{i}.png", mask)
    result = creator.create("border_detection/outer_and_graphical", seg, tmp_path / "border")
    cfg = trugrade.config.load(result["config"])
    assert cfg.model.num_classes == 3 and cfg.model.arch == "unet"
    report = trugrade.validate_dataset(tmp_path / "border")
    assert report.stats["class_unit"] == "pixels" and len(report.stats["class_counts"]["train"]) == 3


def test_create_rating_needs_rating_classes(tmp_path):
    write_classification(tmp_path / "src", classes=("3", "7", "9"), per_split=(3, 1, 1))
    result = creator.create("corner_analysis/quality_rating", tmp_path / "src", tmp_path / "out")
    cfg = trugrade.config.load(result["config"])
    assert cfg.train.label_smoothing == 0.1 and cfg.model.num_classes == 3
    write_classification(tmp_path / "named", per_split=(3, 1, 1))
    with pytest.raises(DatasetError, match="ratings"):
        creator.create("corner_analysis/quality_rating", tmp_path / "named", tmp_path / "out2")


def test_create_photometric_stereo(tmp_path):
    src = tmp_path / "ps"
    lights = [[0, 0, 1], [1, 0, 1], [0, 1, 1], [-1, 0, 1]]
    for k in range(5):
        for i in range(4):
            save(f"{src}/obj{k}/{i:02d}.png", picture(700 + 4 * k + i)[:, :, 0])
        (src / f"obj{k}" / "lights.txt").write_text("\n".join(" ".join(map(str, v)) for v in lights))
        np.save(src / f"obj{k}" / "normals.npy", np.zeros((3, 64, 64), np.float32))
    result = creator.create("photometric_stereo/surface_normals", src, tmp_path / "out")
    doc = json.load(open(result["manifest"]))
    assert len(doc["objects"]) == 5 and doc["objects"][0]["target"] == "obj0/normals.npy"
    assert abs(np.linalg.norm(doc["objects"][0]["lights"][1]) - 1) < 1e-6
    cfg = trugrade.config.load(result["config"])
    assert cfg.model.in_channels == 4 and cfg.model.num_classes == 3
    (src / "obj0" / "lights.txt").write_text("0 0 1\n")
    with pytest.raises(DatasetError, match="4 images but 1 lights"):
        creator.create("photometric_stereo/surface_normals", src, tmp_path / "out3")


def test_cli(tmp_path, capsys):
    write_classification(tmp_path / "src", per_split=(4, 2, 2))
    assert cli.main(["dataset", "create", "--task", "image_classification/classification", "--from",
                     str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "config.yaml").is_file()
    assert "created" in capsys.readouterr().out
    assert cli.main(["dataset", "stats", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["n_images"] == 16
    assert cli.main(["dataset", "tasks"]) == 0
    assert "photometric_stereo/surface_normals" in capsys.readouterr().out
    assert cli.main(["validate", str(tmp_path / "out"), "--json", str(tmp_path / "r.json"), "--html",
                     str(tmp_path / "r.html")]) == 0
    assert json.load(open(tmp_path / "r.json"))["summary"]["fatal"] == 0
    open(tmp_path / "src" / "train" / "cat" / "0.png", "wb").close()
    assert cli.main(["validate", str(tmp_path / "src")]) == 1
    assert "empty" in capsys.readouterr().out
    write_yolo(tmp_path / "yolo")
    assert cli.main(["dataset", "convert", str(tmp_path / "yolo"), "--to", "coco", "--out",
                     str(tmp_path / "coco")]) == 0
    assert cli.main(["dataset", "create", "--task", "nope", "--from", "x", "--out", "y"]) == 2
    assert "not a task" in capsys.readouterr().err


@pytest.mark.parametrize("task, stats", [
    ("image_classification/classification",
     {"n_images": 800, "splits": {"train": 600}, "median_size": [512, 384], "channels": 3,
      "classes": ["a", "b", "c"], "imbalance_ratio": 25.0, "channel_mean": [0.5, 0.4, 0.3],
      "channel_std": [0.2, 0.2, 0.2]}),
    ("semantic_segmentation/segmentation",
     {"n_images": 300, "splits": {"train": 200}, "median_size": [256, 256], "channels": 11}),
])
def test_every_suggested_choice_carries_a_comment(task, stats):
    """The suggestion is a normal YAML config with the reason for each choice beside it."""
    import yaml
    text = creator.suggest_config(stats, creator.find_task(task), "/data/manifest.json", num_classes=2)
    trugrade.config.from_mapping(yaml.safe_load(text))
    valued = [line for line in text.splitlines()
              if ":" in line and not line.lstrip().startswith("#") and line.split("#")[0].split(":", 1)[1].strip()]
    choices = [line for line in valued if not line.lstrip().startswith("params:")]
    assert len(choices) >= 10
    uncommented = [line for line in choices if "#" not in line or not line.split("#", 1)[1].strip()]
    assert uncommented == [], uncommented
