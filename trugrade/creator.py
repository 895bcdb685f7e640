"""The dataset creator: from a task and a folder of images and annotations to a dataset folder.

    trugrade.creator.create("surface/damage_classification", "photos/", "datasets/surface")
    trugrade.creator.convert("coco_set/", "yolo_set/", to="yolo")
    trugrade.creator.stats("datasets/surface")

`create` writes into `out`:
  manifest.json   the manifest (trugrade.datasets format): every sample, its label, mask or
                  boxes and its split;
  splits/         train.txt, val.txt, test.txt: one sample path per line;
  dataset.json    the task (category, name, output type), the classes and the statistics;
  config.yaml     a suggested training config (trugrade.config format) with a comment on each
                  choice, derived from the statistics (see suggest_config).
The source is read by trugrade.datasets.scan, so every layout it knows is accepted (class
folders, CSV, COCO, YOLO, Pascal VOC, images/ + masks/); photometric stereo has its own layout
(see PHOTOMETRIC_LAYOUT). Images stay where they are unless copy=True.
Not here: checking the images (trugrade.validator does) or training.
"""
import json
import math
import os
import random
import shutil
from dataclasses import dataclass

import numpy as np

from . import _C
from .config import load as load_config
from .config_schema import CLASSIFICATION_ARCHS, SEGMENTATION_ARCHS
from .data import read_image
from .datasets import SPLITS, Dataset, load_manifest, scan
from .errors import DatasetError, TrugradeValueError

__all__ = ["CATEGORIES", "TASKS", "TaskSpec", "convert", "create", "find_task", "stats", "suggest_config"]

OUTPUT_TYPES = ("class", "score", "mask", "boxes", "normals", "map")
MANIFEST_TASK = {"class": "classification", "score": "classification", "mask": "segmentation",
                 "boxes": "detection", "normals": None, "map": None}
FORMATS = {
    "classification": ("folders", "csv"),
    "segmentation": ("masks",),
    "detection": ("coco", "yolo", "voc"),
    None: ("photometric",),
}
RATINGS = [str(r) for r in range(1, 11)]


@dataclass(frozen=True)
class TaskSpec:
    """One task: where it sits, what it predicts and from what."""
    category: str
    name: str
    title: str
    output: str                  # one of OUTPUT_TYPES
    classes: tuple = ()          # the task's own classes, () when the data names them
    architectures: tuple = ()    # from trugrade.config_schema, best fit first

    @property
    def key(self):
        return f"{self.category}/{self.name}"

    @property
    def manifest_task(self):
        return MANIFEST_TASK[self.output]

    @property
    def formats(self):
        """The annotation formats it accepts."""
        return FORMATS[self.manifest_task]


def _t(category, name, title, output, classes=(), archs=None):
    if archs is None:
        archs = {"class": ("resnet18", "efficientnet_b0", "mobilenet_v3_small", "smallcnn"),
                 "score": ("resnet18", "efficientnet_b0", "smallcnn"),
                 "mask": ("unet", "unet_se", "deeplabv3plus", "fpn"),
                 "boxes": ("fpn", "deeplabv3plus"),
                 "normals": ("unet", "unet_se"), "map": ("unet", "unet_se")}[output]
    return TaskSpec(category, name, title, output, tuple(classes), tuple(archs))


TASKS = {t.key: t for t in (
    _t("border_detection", "single_class", "Border detection (one class: the border)", "mask", ["border"]),
    _t("border_detection", "outer_and_graphical", "Border detection (outer and graphical border)", "mask",
       ["outer_border", "graphical_border"]),
    _t("corner_analysis", "quality_rating", "Corner quality rating 1-10", "score", RATINGS),
    _t("corner_analysis", "damage_detection", "Corner damage detection", "boxes", ["damage"]),
    _t("corner_analysis", "sharpness_rating", "Corner sharpness rating 1-10", "score", RATINGS),
    _t("edge_analysis", "wear_detection", "Edge wear detection", "boxes", ["wear"]),
    _t("edge_analysis", "quality_rating", "Edge quality rating 1-10", "score", RATINGS),
    _t("edge_analysis", "damage_segmentation", "Edge damage segmentation", "mask", ["damage"]),
    _t("surface_analysis", "defect_detection", "Surface defect detection", "boxes", ["defect"]),
    _t("surface_analysis", "quality_rating", "Surface quality rating 1-10", "score", RATINGS),
    _t("surface_analysis", "damage_classification", "Surface damage classification", "class",
       ["crease", "dent", "scratch", "stain", "wear"]),
    _t("photometric_stereo", "surface_normals", "Surface normals from images under known lights", "normals"),
    _t("photometric_stereo", "reflectance", "Reflectance (albedo) from images under known lights", "map"),
    _t("photometric_stereo", "depth", "Depth from images under known lights", "map"),
    _t("image_classification", "classification", "Image classification (e.g. X-ray conditions)", "class"),
    _t("semantic_segmentation", "segmentation", "Semantic segmentation (e.g. debris in multispectral tiles)",
       "mask"),
    _t("object_detection", "detection", "Object detection (e.g. species)", "boxes"),
    _t("experimental", "free_form", "Experimental: the output follows the data's layout", "class",
       archs=CLASSIFICATION_ARCHS + SEGMENTATION_ARCHS),
)}
CATEGORIES = {}
for _spec in TASKS.values():
    CATEGORIES.setdefault(_spec.category, []).append(_spec.name)

PHOTOMETRIC_LAYOUT = """photometric stereo layout: one folder per object, each with the images (PNG/JPEG, one per
light, sorted by name), lights.txt (one line "x y z" per image, the light direction, in the images' order)
or lights.json ([[x, y, z], ...]), and optionally the target: normals.png / normals.npy (surface normals),
albedo.png (reflectance) or depth.npy / depth.png (depth), and mask.png (the object's pixels)."""


def find_task(name):
    """The TaskSpec of "category/task", or of a task name that only one category has."""
    if name in TASKS:
        return TASKS[name]
    matches = [t for t in TASKS.values() if t.name == name or t.category == name and len(CATEGORIES[name]) == 1]
    if len(matches) == 1:
        return matches[0]
    choices = "\n  ".join(f"{k}: {t.title}" for k, t in TASKS.items())
    what = "is ambiguous" if matches else "is not a task"
    raise TrugradeValueError(f"dataset create: {name!r} {what}; the tasks are (category/task):\n  {choices}")


# --------------------------------------------------------------------------- statistics


def _probe(ds):
    columns = _C.validate_images([os.path.join(ds.root, s["path"]) for s in ds.samples], "header")
    ints = np.asarray(columns["ints"]).reshape(-1, 5)
    ok = np.array([st == "ok" for st in columns["status"]], dtype=bool)
    return ints[:, 2], ints[:, 3], ints[:, 4], ok


def _channel_moments(ds, limit=256, seed=0):
    """Per-channel mean and std of pixels scaled to [0, 1], from up to `limit` images."""
    rows = list(range(len(ds.samples)))
    random.Random(seed).shuffle(rows)
    sums = sq = None
    count = 0
    for i in rows[:limit]:
        try:
            image = read_image(os.path.join(ds.root, ds.samples[i]["path"]))
        except (DatasetError, OSError):
            continue
        scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(image.dtype, 1.0)
        x = image.reshape(image.shape[0], -1).astype(np.float64) / scale
        if sums is None:
            sums, sq = np.zeros(x.shape[0]), np.zeros(x.shape[0])
        if x.shape[0] != len(sums):
            continue
        sums += x.mean(1)
        sq += (x * x).mean(1)
        count += 1
    if not count:
        return None
    mean = sums / count
    std = np.sqrt(np.maximum(sq / count - mean * mean, 1e-8))
    return [round(float(v), 4) for v in mean], [round(float(max(v, 1e-3)), 4) for v in std]


def dataset_stats(ds, moments=True):
    """The statistics suggest_config reads, from a Dataset."""
    width, height, channels, ok = _probe(ds) if ds.samples else (np.zeros(0),) * 3 + (np.zeros(0, bool),)
    splits = {sp: sum(s["split"] == sp for s in ds.samples) for sp in SPLITS}
    out = {"task": ds.task, "layout": ds.layout, "n_images": len(ds.samples), "n_unreadable": int((~ok).sum()),
           "splits": splits, "classes": list(ds.classes), "n_classes": len(ds.classes)}
    if ok.any():
        out["median_size"] = [int(np.median(width[ok])), int(np.median(height[ok]))]
        out["min_size"] = [int(width[ok].min()), int(height[ok].min())]
        out["max_size"] = [int(width[ok].max()), int(height[ok].max())]
        values, counts = np.unique(channels[ok], return_counts=True)
        out["channels"] = int(values[np.argmax(counts)])
        out["channel_counts"] = {int(v): int(c) for v, c in zip(values, counts)}
    counts = np.zeros(len(ds.classes), dtype=np.int64)
    for s in ds.samples:
        if ds.task == "classification" and 0 <= s["label"] < len(ds.classes):
            counts[s["label"]] += 1
        for box in s.get("boxes", []) if ds.task == "detection" else ():
            if 0 <= box[0] < len(ds.classes):
                counts[box[0]] += 1
    if len(counts):
        out["class_counts"] = {c: int(n) for c, n in zip(ds.classes, counts)}
        present = counts[counts > 0]
        out["imbalance_ratio"] = round(float(present.max() / present.min()), 3) if len(present) else None
    if moments and ds.samples:
        m = _channel_moments(ds)
        if m:
            out["channel_mean"], out["channel_std"] = m
    return out


def stats(path, moments=True):
    """Statistics of a dataset folder (scanned), a manifest file or a created dataset folder."""
    ds, info = _open(path)
    out = dataset_stats(ds, moments=moments)
    if info.get("photometric"):
        out.update(info.get("stats", {}))
    return out


def _open(path):
    path = os.fspath(path)
    info_path = os.path.join(path, "dataset.json")
    info = json.load(open(info_path, encoding="utf-8")) if os.path.isfile(info_path) else {}
    if os.path.isfile(os.path.join(path, "manifest.json")):
        return load_manifest(os.path.join(path, "manifest.json")), info
    if os.path.isfile(path):
        return load_manifest(path), info
    return scan(path), info


# --------------------------------------------------------------------------- the suggested config


def _pow2_floor(n):
    return 1 << max(0, int(math.floor(math.log2(max(1, n)))))


def suggest_config(st, spec, data_path, num_classes=None):
    """A commented YAML config (text) for the statistics `st` of a dataset of task `spec`,
    training from `data_path` (the manifest). Every choice carries the reason in a comment;
    the text loads with trugrade.config.load."""
    n = max(1, st.get("n_images", 0))
    n_train = max(1, st.get("splits", {}).get("train", n))
    w, h = st.get("median_size", [224, 224])
    side = min(w, h)
    channels = st.get("channels", 3)
    imbalance = st.get("imbalance_ratio") or 1.0
    dense = spec.output in ("mask", "normals", "map", "boxes")
    lines = [f"# Suggested by trugrade dataset create for {spec.key} ({spec.title}).",
             f"# From the data: {n} images ({n_train} for training), median size {w}x{h}, {channels} channel(s)"
             + (f", {len(st.get('classes', []))} classes, imbalance ratio {imbalance:.1f}" if st.get("classes") else "")
             + ".", "# Edit freely: every key is documented by trugrade.config_schema.reference_markdown().", ""]
    if n < 1000:
        preset, why = "intensive", f"only {n} images: many passes (50 epochs) with early stopping"
    elif n < 20000:
        preset, why = "standard", f"{n} images: 25 epochs is the usual budget"
    else:
        preset, why = "quick", f"{n} images: each epoch is long, 5 epochs already see many samples"
    lines += [f"preset: {preset:<14} # {why}", ""]
    # model
    encoder = None
    if spec.output in ("class", "score"):
        if side <= 64:
            arch, input_size = "smallcnn", max(28, int(math.ceil(side / 4) * 4))
            arch_why = f"small {w}x{h} images: a small CNN, no resizing to ImageNet sizes"
        elif n < 20000:
            arch, input_size = "resnet18", 224 if side >= 224 else max(64, int(side // 32 * 32))
            arch_why = f"{n} images: resnet18 is large enough and trains fast on a CPU"
        else:
            arch, input_size = "resnet34", 224 if side >= 224 else max(64, int(side // 32 * 32))
            arch_why = f"{n} images: enough data for the deeper resnet34"
        classes = num_classes or len(st.get("classes") or spec.classes) or 2
    else:
        input_size = 256 if side >= 256 else max(32, int(side // 32 * 32))
        if spec.output == "boxes":
            arch, encoder = "fpn", "resnet18"
            arch_why = ("a feature pyramid over resnet18 (the schema has no box head yet: this trains the "
                        "dense per-pixel classes of the boxes)")
        elif channels > 3:
            arch, arch_why = "unet_se", f"{channels} bands: squeeze-excitation lets the U-Net weigh the channels"
        else:
            arch, arch_why = "unet", "the U-Net keeps full-resolution detail for dense outputs"
        if spec.output == "normals":
            classes = 3
        elif spec.output == "map":
            classes = 1
        else:
            classes = num_classes or (len(st.get("classes") or spec.classes) + 1)
    class_why = {"score": "ratings as ordered classes", "normals": "the three normal components (x, y, z)",
                 "map": "one value per pixel"}.get(spec.output, "classes" + (" including background" if dense else ""))
    lines += ["model:", f"  arch: {arch:<20} # {arch_why}"]
    if encoder:
        lines.append(f"  encoder: {encoder:<17} # a light backbone for a CPU")
    lines += [f"  num_classes: {classes:<13} # {class_why}",
              f"  in_channels: {channels:<13} # the images' channel count",
              f"  input_size: {input_size:<14} # from the median image side {side} px",
              ""]
    # data
    batch = 64 if input_size <= 64 else 32 if input_size <= 128 else 16 if input_size <= 256 else 8
    batch_cap = _pow2_floor(max(1, n_train // 4))
    batch_why = f"fits memory at {input_size} px"
    if batch > batch_cap:
        batch, batch_why = batch_cap, f"{n_train} training images: at least 4 steps per epoch"
    lines += ["data:", f"  path: {json.dumps(str(data_path))}   # the manifest written with this config",
              "  format: manifest          # samples, labels and splits from the manifest",
              f"  batch_size: {batch:<14} # {batch_why}",
              "  split: {train: 0.7, val: 0.15, test: 0.15}   # only used for data without splits; the "
              "manifest's own splits win"]
    sampler = "balanced" if spec.manifest_task == "classification" and imbalance > 10 else "shuffle"
    if sampler == "balanced":
        lines.append(f"  sampler: balanced         # imbalance ratio {imbalance:.1f}: draw classes equally often")
    augment = []
    if (w, h) != (input_size, input_size):
        augment.append(("resize", {"size": input_size}, f"images are {w}x{h}; the model takes {input_size}"))
    if spec.output not in ("normals", "map"):
        augment.append(("hflip", {"p": 0.5}, "mirrored images stay valid examples"))
    if spec.output == "mask" and channels > 3:
        augment.append(("rotate90", {"p": 0.5}, "tiles seen from above have no up or down"))
    if st.get("channel_mean") and len(st["channel_mean"]) == channels:
        augment.append(("normalize", {"mean": st["channel_mean"], "std": st["channel_std"]},
                        "per-channel mean and std measured on the images"))
    if augment:
        lines.append("  augment:")
        for name, params, why in augment:
            lines.append(f"    - name: {name:<18} # {why}")
            lines.append(f"      params: {json.dumps(params)}")
    lines.append("")
    lines += ["optim:", "  name: adamw               # adaptive steps need little tuning",
              "  lr: 1.0e-3                # the usual AdamW rate", "",
              "schedule:", "  name: cosine              # smooth decay over the run",
              "  min_lr: 1.0e-5            # a little learning in the last epochs", ""]
    lines.append("train:")
    if imbalance > 3 and spec.manifest_task in ("classification", "segmentation", "detection"):
        lines.append(f"  class_weights: auto       # imbalance ratio {imbalance:.1f}: weigh classes by inverse "
                     "frequency")
    if spec.output == "score":
        lines.append("  label_smoothing: 0.1      # neighbouring ratings are close: do not push them to zero")
    lines += ["  early_stopping:", "    metric: val_loss        # stop when validation stops improving",
              "    patience: 10            # validations without improvement", ""]
    if spec.output in ("class", "score"):
        if imbalance > 10:
            loss, loss_why = "focal", f"imbalance ratio {imbalance:.1f}: focal loss concentrates on the rare classes"
        else:
            loss, loss_why = "cross_entropy", "classes are " + ("fairly balanced" if imbalance <= 3 else
                                                                   "weighted by class_weights")
        lines += ["loss:", f"  name: {loss:<20} # {loss_why}", ""]
        best = "val_balanced_accuracy" if imbalance > 3 else "val_accuracy"
    else:
        lines += ["loss:", "  name: combined            # overlap and per-pixel terms together",
                  "  weights:", "    dice: 0.5               # overlap of predicted and true regions",
                  "    " + ("wce: 0.5                # class-weighted cross-entropy (class_weights)" if imbalance > 3
                            and spec.output in ("mask", "boxes") else
                            "cross_entropy: 0.5      # per-pixel classification"), ""]
        best = "val_dice" if spec.output in ("mask", "boxes") else "val_loss"
    if spec.output in ("normals", "map"):
        lines.insert(4, "# NOTE: the schema has no regression loss yet: the output is trained as classes of "
                        "quantized values.")
    lines += ["checkpoint:", f"  best_metric: {best:<13} # the model kept as best", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- create


def _write_common(out, ds, spec, info, num_classes):
    os.makedirs(os.path.join(out, "splits"), exist_ok=True)
    for sp in SPLITS:
        with open(os.path.join(out, "splits", f"{sp}.txt"), "w", encoding="utf-8") as f:
            f.writelines(s["path"] + "\n" for s in ds.samples if s["split"] == sp)
    with open(os.path.join(out, "dataset.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1, ensure_ascii=False)
    config_path = os.path.join(out, "config.yaml")
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(suggest_config(info["stats"], spec, os.path.abspath(os.path.join(out, "manifest.json")),
                               num_classes=num_classes))
    load_config(config_path)  # the suggestion must be a valid config
    return config_path


def _copy_files(ds, out):
    """Copies images, masks and annotation files under out/data; returns the new root."""
    data = os.path.abspath(os.path.join(out, "data"))
    rels = set()
    for s in ds.samples:
        rels.update(p for p in (s["path"], s.get("mask"), s.get("annotation")) if p)
    for rel in sorted(rels):
        src = os.path.join(ds.root, rel)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(data, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(data, rel))
    return data


def create(task, source, out, split=(0.7, 0.15, 0.15), seed=0, copy=False, num_classes=None):
    """Creates a dataset folder `out` for `task` ("category/task", see TASKS) from `source`.
    Returns a dict: paths of the manifest, config and dataset.json, and the statistics."""
    spec = find_task(task)
    source, out = os.fspath(source), os.fspath(out)
    if not os.path.isdir(source):
        raise DatasetError(f"dataset create: the source {source} is not a folder")
    os.makedirs(out, exist_ok=True)
    if spec.manifest_task is None:
        return _create_photometric(spec, source, out, split, seed, num_classes)
    ds = scan(source, split=split, seed=seed)
    if spec.category == "experimental":
        output = {"classification": "class", "segmentation": "mask", "detection": "boxes"}[ds.task]
        spec = TaskSpec(spec.category, spec.name, spec.title, output, (), spec.architectures)
    elif ds.task != spec.manifest_task:
        raise DatasetError(f"dataset create: {spec.key} needs {spec.manifest_task} data ({', '.join(spec.formats)}), "
                           f"but {source} reads as {ds.task} (layout {ds.layout}); pick a {ds.task} task or "
                           f"arrange the folder as {', '.join(spec.formats)}")
    if spec.output == "score":
        odd = [c for c in ds.classes if not c.strip().lstrip("-").isdigit()]
        if odd:
            raise DatasetError(f"dataset create: {spec.key} is a rating; class names must be the ratings "
                               f"(1..10), got {odd[:5]}; name the class folders (or CSV labels) by rating")
    if copy:
        data = dict(ds.data)
        data["root"] = _copy_files(ds, out)
        ds = Dataset(data)
    manifest_path = os.path.join(out, "manifest.json")
    ds.save(manifest_path)
    st = dataset_stats(ds)
    if spec.manifest_task == "segmentation" and num_classes is None:
        num_classes = len(spec.classes) + 1 if spec.classes else None
    info = {"category": spec.category, "task": spec.name, "title": spec.title, "output": spec.output,
            "formats": list(spec.formats), "architectures": list(spec.architectures), "source": os.path.abspath(source),
            "classes": list(ds.classes) or list(spec.classes), "task_classes": list(spec.classes),
            "num_classes": num_classes, "stats": st}
    config_path = _write_common(out, ds, spec, info, num_classes)
    return {"manifest": manifest_path, "config": config_path, "info": os.path.join(out, "dataset.json"),
            "stats": st, "task": spec.key}


# --------------------------------------------------------------------------- photometric stereo


def _read_lights(folder):
    txt, js = os.path.join(folder, "lights.txt"), os.path.join(folder, "lights.json")
    if os.path.isfile(js):
        lights = json.load(open(js, encoding="utf-8"))
    elif os.path.isfile(txt):
        lights = [[float(v) for v in line.split()] for line in open(txt, encoding="utf-8") if line.strip()]
    else:
        return None
    lights = np.asarray(lights, dtype=np.float64)
    if lights.ndim != 2 or lights.shape[1] != 3:
        raise DatasetError(f"dataset create: the lights of {folder} must be rows of 3 numbers (x y z), got shape "
                           f"{lights.shape}")
    norms = np.linalg.norm(lights, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise DatasetError(f"dataset create: a light direction of {folder} is (0, 0, 0); give a direction")
    return (lights / norms).round(6).tolist()


TARGETS = {"surface_normals": ("normals.png", "normals.npy"), "reflectance": ("albedo.png", "reflectance.png"),
           "depth": ("depth.npy", "depth.png")}


def _create_photometric(spec, source, out, split, seed, num_classes):
    objects = []
    for name in sorted(os.listdir(source)):
        folder = os.path.join(source, name)
        if not os.path.isdir(folder) or name.startswith("."):
            continue
        lights = _read_lights(folder)
        if lights is None:
            continue
        reserved = set(TARGETS[spec.name]) | {"mask.png"} | {f for t in TARGETS.values() for f in t}
        images = sorted(f for f in os.listdir(folder) if f.lower().endswith((".png", ".jpg", ".jpeg"))
                        and f not in reserved)
        if len(images) != len(lights):
            raise DatasetError(f"dataset create: {folder} has {len(images)} images but {len(lights)} lights; give "
                               f"one light direction per image (in the images' name order)")
        target = next((t for t in TARGETS[spec.name] if os.path.isfile(os.path.join(folder, t))), None)
        objects.append({"name": name, "images": [f"{name}/{f}" for f in images], "lights": lights,
                        "target": f"{name}/{target}" if target else None,
                        "mask": f"{name}/mask.png" if os.path.isfile(os.path.join(folder, "mask.png")) else None})
    if not objects:
        raise DatasetError(f"dataset create: no object folders with lights in {source}.\n{PHOTOMETRIC_LAYOUT}")
    order = list(range(len(objects)))
    random.Random(seed).shuffle(order)
    n_train = max(1, int(round(split[0] * len(objects))))
    n_val = int(round(split[1] * len(objects)))
    for rank, i in enumerate(order):
        objects[i]["split"] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    probe = _C.validate_images([os.path.join(source, o["images"][0]) for o in objects], "header")
    ints = np.asarray(probe["ints"]).reshape(-1, 5)
    n_lights = int(np.median([len(o["lights"]) for o in objects]))
    st = {"task": spec.output, "layout": "photometric", "n_images": len(objects),
          "splits": {sp: sum(o["split"] == sp for o in objects) for sp in SPLITS},
          "median_size": [int(np.median(ints[:, 2])), int(np.median(ints[:, 3]))], "channels": n_lights,
          "lights_per_object": n_lights, "with_target": sum(o["target"] is not None for o in objects)}
    manifest = {"version": 1, "root": os.path.abspath(source), "task": spec.name, "objects": objects}
    with open(os.path.join(out, "photometric.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    info = {"category": spec.category, "task": spec.name, "title": spec.title, "output": spec.output,
            "formats": list(spec.formats), "architectures": list(spec.architectures),
            "source": os.path.abspath(source), "photometric": True, "classes": [], "num_classes": None, "stats": st}
    ds = Dataset({"samples": [{"path": p, "split": o["split"]} for o in objects for p in o["images"][:1]]})
    os.makedirs(os.path.join(out, "splits"), exist_ok=True)
    config_path = _write_common(out, ds, spec, info, num_classes)
    text = open(config_path, encoding="utf-8").read().replace("manifest.json", "photometric.json")
    text = text.replace("# samples, labels and splits from the manifest",
                        "# objects, lights and splits (photometric.json)")
    open(config_path, "w", encoding="utf-8").write(text)
    return {"manifest": os.path.join(out, "photometric.json"), "config": config_path,
            "info": os.path.join(out, "dataset.json"), "stats": st, "task": spec.key}


# --------------------------------------------------------------------------- convert


def _flat_name(rel, used):
    base = os.path.basename(rel)
    name = base if base not in used else rel.replace("/", "__")
    used.add(name)
    return name


def convert(source, out, to):
    """Converts a detection dataset (COCO, YOLO or Pascal VOC, read by the scan) to `to`
    ("yolo" or "coco") in the folder `out`; images are copied into images/<split>/. Returns the
    number of images written. Box coordinates go through fractions of the image size, so a
    round trip keeps them up to float rounding."""
    if to not in ("yolo", "coco"):
        raise TrugradeValueError(f"dataset convert: to must be 'yolo' or 'coco', got {to!r}")
    ds = scan(os.fspath(source))
    if ds.task != "detection":
        raise DatasetError(f"dataset convert: {source} reads as {ds.task} (layout {ds.layout}); conversion "
                           f"between COCO and YOLO needs a detection dataset (COCO, YOLO or VOC)")
    out = os.fspath(out)
    width, height, _, ok = _probe(ds)
    used = {sp: set() for sp in SPLITS}
    per_split = {sp: [] for sp in SPLITS}
    for i, s in enumerate(ds.samples):
        if not ok[i]:
            raise DatasetError(f"dataset convert: {os.path.join(ds.root, s['path'])} cannot be read; its size is "
                               f"needed for the boxes (validate the dataset first)")
        name = _flat_name(s["path"], used[s["split"]])
        dst = os.path.join(out, "images", s["split"], name)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(os.path.join(ds.root, s["path"]), dst)
        per_split[s["split"]].append((name, s, int(width[i]), int(height[i])))
    if to == "yolo":
        with open(os.path.join(out, "data.yaml"), "w", encoding="utf-8") as f:
            f.write(f"path: .\ntrain: images/train\nval: images/val\ntest: images/test\n"
                    f"names: {json.dumps(list(ds.classes), ensure_ascii=False)}\n")
        for sp, items in per_split.items():
            for name, s, _, _ in items:
                path = os.path.join(out, "labels", sp, os.path.splitext(name)[0] + ".txt")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8") as f:
                    for label, x0, y0, x1, y1 in s["boxes"]:
                        f.write(f"{label} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}\n")
    else:
        os.makedirs(os.path.join(out, "annotations"), exist_ok=True)
        categories = [{"id": c + 1, "name": name} for c, name in enumerate(ds.classes)]
        for sp, items in per_split.items():
            if not items:
                continue
            images, annotations = [], []
            for k, (name, s, w, h) in enumerate(items):
                images.append({"id": k + 1, "file_name": name, "width": w, "height": h})
                for label, x0, y0, x1, y1 in s["boxes"]:
                    bw, bh = (x1 - x0) * w, (y1 - y0) * h
                    annotations.append({"id": len(annotations) + 1, "image_id": k + 1, "category_id": label + 1,
                                        "bbox": [round(x0 * w, 4), round(y0 * h, 4), round(bw, 4), round(bh, 4)],
                                        "area": round(bw * bh, 4), "iscrowd": 0})
            with open(os.path.join(out, "annotations", f"instances_{sp}.json"), "w", encoding="utf-8") as f:
                json.dump({"images": images, "annotations": annotations, "categories": categories}, f,
                          ensure_ascii=False)
    return sum(len(v) for v in per_split.values())
