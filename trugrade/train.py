"""trugrade.train: a training run from a config, end to end.

    run = trugrade.train("configs/fashion_mnist_cnn.yaml", overrides={"train.epochs": 1})
    run.metrics[-1]["val_accuracy"], run.best_checkpoint, run.report_path

Python reads the config and the data, then hands each epoch to the C training loop
(trugrade._C.Trainer: no Python per step). Between epochs it validates, writes
metrics (metrics.jsonl, TensorBoard), checkpoints (safetensors, written atomically),
applies early stopping, and at the end evaluates the test split and draws the report.
A run folder runs/<name>/ holds config.yaml, run.json, metrics.jsonl, checkpoints/,
tensorboard/ and report.html.

Resume (resume="runs/<name>" or a run name) restores the last checkpoint (weights,
optimizer, schedule, data order and dropout counters) and continues so that losses and
final weights are bit-identical to a run that was never interrupted.
"""
import glob
import json
import os
import threading
import time

import numpy as np

from . import _C
from . import config as configlib
from . import metrics as metriclib
from . import models
from . import safetensors
from . import train_segmentation as segmentation
from .errors import ConfigError, DatasetError, TrugradeError, UnsupportedError
from .tracking import RunRecorder

LAST = "last.safetensors"
BEST = "best.safetensors"
# config keys a resume may change without being told: the run may be extended
RESUMABLE_CHANGES = ("train.epochs",)


class Run:
    """The result of train(): where its files are and what it measured."""

    def __init__(self, directory, config):
        self.dir = directory
        self.name = os.path.basename(os.path.normpath(directory))
        self.config = config
        self.metrics = []          # one dict per epoch
        self.test = None           # metrics of the test split, when there is one
        self.status = "running"
        self.report_path = None
        self.best_checkpoint = None
        self.last_checkpoint = None
        self.error = None
        self.label_issues = None   # likely label errors after training (folder datasets), see validator

    def __repr__(self):
        last = self.metrics[-1] if self.metrics else {}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if isinstance(v, float))
        return f"<trugrade Run {self.name} {self.status}: {shown}>"


# --------------------------------------------------------------------------- data

IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find_idx(folder, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    return None


def _stratified_split(labels, fractions, seed):
    """Indices of each split (train, val, test) per class, deterministic by seed."""
    rng = np.random.default_rng(seed)
    parts = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[rng.permutation(len(members))]
        n_val = int(round(fractions["val"] * len(members)))
        n_test = int(round(fractions["test"] * len(members)))
        parts["val"].append(members[:n_val])
        parts["test"].append(members[n_val:n_val + n_test])
        parts["train"].append(members[n_val + n_test:])
    return {k: np.sort(np.concatenate(v)) if v else np.zeros(0, np.int64) for k, v in parts.items()}


def manifest_path(path):
    """The manifest file data.path names (a .json file, or a folder made by `trugrade dataset
    create` with manifest.json inside), else None."""
    if os.path.isfile(path) and path.endswith(".json"):
        return path
    inside = os.path.join(path, "manifest.json")
    return inside if os.path.isdir(path) and os.path.isfile(inside) else None


def open_dataset(cfg):
    """The Dataset of data.path: its manifest (with the manifest's own splits) or a scan of the folder."""
    from . import data as datalib
    manifest = manifest_path(cfg.data.path)
    if manifest is not None and cfg.data.format in ("auto", "manifest"):
        return datalib.load_manifest(manifest)
    split = cfg.data.split
    return datalib.scan(cfg.data.path, split=(split.train, split.val, split.test), seed=cfg.data.seed)


def data_format(cfg):
    """The config's data.format, with auto resolved: idx when the folder holds IDX files."""
    if not os.path.isdir(cfg.data.path) and manifest_path(cfg.data.path) is None:
        raise DatasetError(f"data.path '{cfg.data.path}' is not a folder nor a manifest (.json): point data.path at "
                           "the dataset")
    if manifest_path(cfg.data.path) is not None and cfg.data.format in ("auto", "manifest"):
        return "manifest"
    fmt = cfg.data.format
    if fmt == "auto":
        fmt = "idx" if _find_idx(cfg.data.path, IDX_FILES["train"][0]) else "folder"
    return fmt


def load_data(cfg):
    """{"train"|"val"|"test": (images uint8 [N, C, H, W], labels int64 [N])} and the class names."""
    data = cfg.data
    path = data.path
    fmt = data_format(cfg)
    if fmt != "idx":
        return load_folder(cfg)
    from .data import read_idx
    arrays = {}
    for split, (images_stem, labels_stem) in IDX_FILES.items():
        images_path, labels_path = _find_idx(path, images_stem), _find_idx(path, labels_stem)
        if images_path is None or labels_path is None:
            if split == "train":
                raise DatasetError(f"{path}: no {images_stem}[.gz] and {labels_stem}[.gz]; an IDX dataset folder "
                                   "needs both")
            continue
        images = read_idx(images_path)
        labels = read_idx(labels_path).astype(np.int64)
        if len(images) != len(labels):
            raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
        arrays[split] = (np.ascontiguousarray(images.reshape(len(images), 1, *images.shape[-2:])), labels)
    images, labels = arrays["train"]
    fractions = dict(data.split.to_dict())
    if "test" in arrays:  # the dataset's own test split: divide the training file into train and val only
        fractions = {"train": fractions["train"], "val": fractions["val"] + fractions["test"], "test": 0.0}
    parts = _stratified_split(labels, fractions, data.seed)
    out = {split: (images[idx], labels[idx]) for split, idx in parts.items() if len(idx)}
    if "test" in arrays:
        out["test"] = arrays["test"]
    classes = [str(c) for c in range(int(max(int(labels.max()) + 1, cfg.model.num_classes)))]
    if int(labels.max()) >= cfg.model.num_classes:
        raise ConfigError(f"model.num_classes is {cfg.model.num_classes} but {path} has labels up to "
                          f"{int(labels.max())}; set model.num_classes to {int(labels.max()) + 1}")
    return out, classes


def load_folder(cfg, check=True):
    """A folder dataset (class folders, split folders, CSV, manifest): scanned, checked by the
    validator's preflight (fatal findings stop the run unless check is False), then the
    training split streams through the C loader and val/test are decoded once to arrays
    with the evaluation transforms. Returns ({"train": Loader, "val"/"test": (images
    float32 normalised, labels)}, classes)."""
    from . import data as datalib
    from .validator import dataset_info, preflight
    dataset = open_dataset(cfg)
    if dataset.task != "classification":
        raise UnsupportedError(f"{cfg.data.path} is a {dataset.task} dataset; this build's training loop trains "
                               "classifiers")
    preflight(dataset, allow=not (check and cfg.data.preflight), num_classes=cfg.model.num_classes,
              info=dataset_info(cfg.data.path))
    classes = list(dataset.classes)
    if len(classes) != cfg.model.num_classes:
        raise ConfigError(f"model.num_classes is {cfg.model.num_classes} but {cfg.data.path} has {len(classes)} "
                          f"classes ({', '.join(classes[:8])}{'...' if len(classes) > 8 else ''})")
    train_entries, eval_entries = augment_entries(cfg, True), augment_entries(cfg, False)
    for entries, which in ((train_entries, "training"), (eval_entries, "evaluation")):
        if not any(e["name"] in ("resize", "center_crop", "random_resized_crop", "letterbox") for e in entries):
            entries.insert(0, {"name": "resize", "size": cfg.model.input_size})
        if not any(e["name"] == "normalize" for e in entries):
            mean, std = normalization(cfg)
            entries.append({"name": "normalize", "mean": mean, "std": std})
    common = dict(batch_size=cfg.data.batch_size, workers=max(cfg.data.num_workers, 1), seed=cfg.train.seed,
                  cache_mb=cfg.data.cache_mb, on_bad_file=cfg.data.on_bad_file, channels=cfg.model.in_channels)
    out = {"train": datalib.Loader(dataset, split="train", pipeline=train_entries, sampler=cfg.data.sampler,
                                   **common)}
    out["train"].label_issue_source = (dataset, eval_entries, cfg.model.in_channels)  # for run_label_issues
    out["train"].labels = np.array([s["label"] for s in dataset.split("train")], np.int64)  # class frequencies
    for name in ("val", "test"):
        if not dataset.split(name):
            continue
        loader = datalib.Loader(dataset, split=name, pipeline=eval_entries, sampler="sequential", **common)
        batches = list(loader.epoch(0))
        out[name] = (np.ascontiguousarray(np.concatenate([b[0] for b in batches])),
                     np.concatenate([b[1] for b in batches]).astype(np.int64))
    return out, classes


# config augmentation name -> (trugrade.augment name, {config param: augment param})
AUGMENT_NAMES = {"rotate90": ("rot90", {}), "rotate": ("affine", {})}


def augment_entries(cfg, training):
    """The config's augmentation list as trugrade.augment transforms; evaluation keeps
    only resize, center_crop and normalize."""
    from .config_schema import AUGMENT_EVERY_SPLIT
    entries = []
    for item in cfg.data.augment:
        name, params = item["name"], dict(item.get("params") or {})
        if not training and name not in AUGMENT_EVERY_SPLIT:
            continue
        target, renames = AUGMENT_NAMES.get(name, (name, {}))
        entries.append({"name": target, **{renames.get(k, k): v for k, v in params.items()}})
    return entries


AUTO_NORMALIZE_IMAGES = 2000


def resolve_normalization(cfg):
    """cfg with a normalize step's mean and std "auto" replaced by the per-channel mean and
    standard deviation of the training split's images (all pixels, scaled by the image type's
    range as normalize scales them: uint8 / 255, uint16 / 65535, float as stored; at most
    AUTO_NORMALIZE_IMAGES images, evenly spaced), 6 significant digits; cfg itself when no
    step says auto. NOTE: the numbers then stand in the run's config.yaml, checkpoints and
    registry entries, so prediction and resume use the same ones."""
    steps = [i for i, item in enumerate(cfg.data.augment)
             if item["name"] == "normalize" and item["params"]["mean"] == "auto"]
    if not steps:
        return cfg
    if data_format(cfg) == "idx":
        raise ConfigError("data.augment normalize: mean/std auto needs an image dataset (folders or a manifest); "
                          "for IDX files give the numbers")
    from . import data as datalib
    split = cfg.data.split
    dataset = datalib.scan(cfg.data.path, split=(split.train, split.val, split.test), seed=cfg.data.seed)
    samples = dataset.split("train")
    if not samples:
        raise ConfigError(f"data.augment normalize: mean/std auto found no training images in {cfg.data.path}")
    samples = [samples[i] for i in np.unique(np.linspace(0, len(samples) - 1, AUTO_NORMALIZE_IMAGES).astype(int))]
    channels = cfg.model.in_channels
    total, sums, squares = 0, np.zeros(channels), np.zeros(channels)
    for sample in samples:
        image = datalib.read_image(os.path.join(dataset.root, sample["path"]))
        scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(image.dtype, 1.0)
        pixels = image.reshape(image.shape[0], -1).astype(np.float64) / scale   # [C, H * W]
        if pixels.shape[0] != channels:
            raise ConfigError(f"data.augment normalize auto: {sample['path']} has {pixels.shape[0]} channels but "
                              f"model.in_channels is {channels}")
        total += pixels.shape[1]
        sums += pixels.sum(1)
        squares += (pixels * pixels).sum(1)
    mean = sums / total
    std = np.sqrt(np.maximum(squares / total - mean * mean, 0.0))
    std = np.maximum(std, 1e-6 * np.maximum(np.abs(mean), 1.0))   # a constant channel: no division by 0
    data = cfg.to_dict()
    for i in steps:
        data["data"]["augment"][i]["params"] = {"mean": [float(f"{v:.6g}") for v in mean],
                                                "std": [float(f"{v:.6g}") for v in std]}
    return configlib.from_mapping(data, origin=cfg.data.path)


def normalization(cfg):
    """(mean, std) per channel from the config's normalize step (scaled to [0, 1]), else (0, 1)."""
    for item in cfg.data.augment:
        if item["name"] == "normalize":
            return list(item["params"]["mean"]), list(item["params"]["std"])
    return [0.0] * cfg.model.in_channels, [1.0] * cfg.model.in_channels


# --------------------------------------------------------------------------- the model and its loss


def balanced_class_weights(labels, num_classes):
    """Inverse class frequency, scikit-learn's 'balanced': w_c = n / (num_classes * count_c);
    a class absent from the labels counts as one sample."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    counts = np.bincount(labels[(labels >= 0) & (labels < num_classes)], minlength=num_classes)[:num_classes]
    return (len(labels) / (num_classes * np.maximum(counts, 1).astype(np.float64))).astype(np.float32)


def classifier_loss(cfg, train_split):
    """(loss terms, class weights or None, label smoothing) of a classifier from the config:
    loss.name picks cross-entropy, focal, dice or their weighted combination; train.class_weights
    (a list, or auto from the training split's labels) weights the cross-entropy term and
    train.label_smoothing smooths it."""
    terms, weighted = segmentation.loss_terms(cfg)
    smoothing = float(cfg.train.label_smoothing)
    has_ce = terms.get("ce", 0.0) > 0 or terms.get("wce", 0.0) > 0
    if smoothing and not has_ce:
        raise ConfigError(f"train.label_smoothing {smoothing} smooths the cross-entropy term but loss.name "
                          f"{cfg.loss.name} has none; set train.label_smoothing 0 or add cross_entropy to the loss")
    weights = cfg.train.class_weights
    if weights is not None and not weighted:
        raise ConfigError(f"train.class_weights weights the cross-entropy term but loss.name {cfg.loss.name} has "
                          "none (combined: give it as wce); set train.class_weights null or use cross_entropy")
    if weights == "auto":
        labels = train_split[1] if isinstance(train_split, tuple) else train_split.labels
        weights = balanced_class_weights(labels, cfg.model.num_classes)
    elif weights is not None:
        weights = np.asarray(weights, np.float32)
    return terms, weights, smoothing


def create_classifier(cfg, train_split):
    """The config's classifier with its loss (see classifier_loss)."""
    terms, weights, smoothing = classifier_loss(cfg, train_split)
    size = cfg.model.input_size if isinstance(cfg.model.input_size, int) else cfg.model.input_size[0]
    return models.create(cfg.model.arch, num_classes=cfg.model.num_classes, in_channels=cfg.model.in_channels,
                         input_size=size, dropout=cfg.model.dropout, seed=cfg.train.seed, loss=terms,
                         class_weights=weights, label_smoothing=smoothing)


# --------------------------------------------------------------------------- checkpoints


def _fsync_folder(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_tensors(model, trainer):
    """The tensors of a checkpoint: the model's under their own names, the trainer's state
    under trainer.*. With a weight EMA the model's names hold the EMA weights (what
    evaluation, load_model and export use) and trainer.live.<name> the weights training
    continues from."""
    arrays, counters = trainer.state()
    tensors = {k: np.asarray(v) for k, v in model.state_dict().items()}
    for key in [k for k in arrays if k.startswith("ema.")]:
        name = key[len("ema."):]
        live = tensors[name]
        tensors[f"trainer.live.{name}"] = live
        tensors[name] = np.asarray(arrays.pop(key)).reshape(live.shape)
    tensors.update({f"trainer.{k}": np.asarray(v) for k, v in arrays.items()})
    return tensors, counters


def restore_checkpoint(model, trainer, tensors, counters):
    """Loads a checkpoint's weights and trainer state (the inverse of checkpoint_tensors)."""
    live = {k[len("trainer.live."):]: v for k, v in tensors.items() if k.startswith("trainer.live.")}
    arrays = {k[len("trainer."):]: v for k, v in tensors.items()
              if k.startswith("trainer.") and not k.startswith("trainer.live.")}
    weights = {k: v for k, v in tensors.items() if not k.startswith("trainer.")}
    arrays.update({f"ema.{name}": np.ascontiguousarray(weights[name]).reshape(-1) for name in live})
    model.load_state_dict({**weights, **live})
    trainer.load_state(arrays, counters)


def save_checkpoint(path, model, trainer, cfg, classes, extra=None):
    """Weights, buffers, optimizer state and counters in one safetensors file, written to a
    temporary name, fsynced, renamed, and the folder fsynced."""
    tensors, counters = checkpoint_tensors(model, trainer)
    mean, std = normalization(cfg)
    metadata = {
        "format": "trugrade.checkpoint.v1", "trugrade_version": _version(), "config_hash": configlib.config_hash(cfg),
        "config": json.dumps(cfg.to_dict()), "arch": cfg.model.arch, "num_classes": cfg.model.num_classes,
        "in_channels": cfg.model.in_channels, "input_size": cfg.model.input_size, "classes": json.dumps(classes),
        "normalization": json.dumps({"mean": mean, "std": std}), "counters": json.dumps(counters),
    }
    metadata.update(extra or {})
    safetensors.save(path, tensors, metadata)
    _fsync_folder(os.path.dirname(os.path.abspath(path)))


def load_checkpoint(path):
    """(tensors, metadata) with metadata's JSON fields decoded."""
    tensors, metadata = safetensors.load(path)
    for key in ("config", "classes", "normalization", "counters", "metrics"):
        if key in metadata:
            metadata[key] = json.loads(metadata[key])
    return tensors, metadata


def _version():
    from . import __version__
    return __version__


# --------------------------------------------------------------------------- progress


class _Progress:
    """A tqdm bar per epoch fed by polling the C loop's counters from the main thread."""

    def __init__(self, enabled, epochs, steps_per_epoch, batch_size):
        self.enabled = enabled
        self.epochs, self.steps, self.batch = epochs, steps_per_epoch, batch_size
        self.bar = None
        self.val_seconds = 0.0

    def start(self, epoch, done):
        if not self.enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.enabled = False
            return
        self.bar = tqdm(total=self.steps, initial=done, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step",
                        leave=True, dynamic_ncols=True)
        self.epoch = epoch
        self.started, self.start_step = time.perf_counter(), done

    def update(self, p):
        if not self.bar:
            return
        # once the epoch is over the C loop's counters already point at the next one
        step = self.steps if p["epoch"] > self.epoch else p["step_in_epoch"]
        self.bar.n = step
        elapsed = time.perf_counter() - self.started
        done = step - self.start_step
        rate = done * self.batch / elapsed if elapsed > 0 else 0.0
        remaining_epochs = self.epochs - self.epoch - 1
        step_time = elapsed / done if done else 0.0
        eta = (self.steps - step) * step_time + remaining_epochs * (self.steps * step_time + self.val_seconds)
        self.bar.set_postfix_str(f"loss {p['loss']:.4f} lr {p['lr']:.2e} {rate:,.0f} img/s eta {eta:,.0f}s",
                                 refresh=False)
        self.bar.refresh()

    def close(self):
        if self.bar:
            self.bar.close()
            self.bar = None


def _run_epoch_polled(trainer, progress):
    """Runs one epoch in a worker thread while this thread updates the bar; Ctrl-C here
    asks the C loop to stop at the next step and re-raises once it has."""
    outcome = {}

    def work():
        try:
            outcome["loss"] = trainer.run_epoch(catch_sigint=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=work, name="trugrade-epoch", daemon=True)
    thread.start()
    interrupted = False
    while thread.is_alive():
        try:
            thread.join(0.2)
            progress.update(trainer.progress())
        except KeyboardInterrupt:
            interrupted = True
            _C.interrupt()
    progress.update(trainer.progress())
    if "error" in outcome:
        raise outcome["error"]
    if interrupted:
        raise KeyboardInterrupt
    return outcome["loss"]


def _resources(previous):
    """CPU %, RSS and disk I/O since `previous` (a snapshot dict)."""
    now = {"wall": time.time(), "cpu": sum(os.times()[:2])}
    try:
        with open("/proc/self/statm") as f:
            now["rss"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        with open("/proc/self/io") as f:
            io = dict(line.split(": ") for line in f.read().splitlines())
        now["read"], now["write"] = int(io["read_bytes"]), int(io["write_bytes"])
    except (OSError, KeyError, ValueError):
        now.update(rss=0, read=0, write=0)
    if not previous:
        return now, {}
    wall = max(now["wall"] - previous["wall"], 1e-9)
    return now, {"cpu_percent": 100.0 * (now["cpu"] - previous["cpu"]) / wall, "rss_mb": now["rss"] / 2**20,
                 "disk_read_mb": (now["read"] - previous["read"]) / 2**20,
                 "disk_write_mb": (now["write"] - previous["write"]) / 2**20}


# --------------------------------------------------------------------------- the run


def _resolve(config, overrides, preset):
    if isinstance(config, configlib.Config):
        return config
    if isinstance(overrides, dict):
        overrides = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()]
    if isinstance(config, dict):
        return configlib.from_mapping(config, overrides=overrides, preset=preset)
    return configlib.load(config, overrides=overrides, preset=preset)


def _run_folder(cfg, name):
    base = cfg.run.dir
    name = name or cfg.run.name
    folder = os.path.join(base, name)
    suffix = 2
    while os.path.exists(folder):
        folder = os.path.join(base, f"{name}-{suffix}")
        suffix += 1
    return folder


def _find_run(resume, run_dir):
    for candidate in (resume, os.path.join(run_dir, resume)):
        if os.path.isfile(os.path.join(candidate, "config.yaml")):
            return candidate
    raise TrugradeError(f"resume: no run folder '{resume}' (looked for config.yaml in it and under {run_dir}/)")


def _comparable(cfg):
    d = cfg.to_dict()
    for key in RESUMABLE_CHANGES:
        section, field = key.split(".")
        d[section].pop(field, None)
    return configlib.config_hash(d)


def _better(metric, mode, value, best):
    if best is None:
        return True
    if mode == "auto":
        mode = "min" if metric.endswith("loss") else "max"
    return value < best if mode == "min" else value > best


def _truncate_metrics(path, global_step, epoch):
    """Drops metrics.jsonl lines written after the checkpoint a resume starts from."""
    if not os.path.exists(path):
        return
    kept = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "step" in row and row["step"] > global_step:
                continue
            if "step" not in row and row.get("epoch", -1) >= epoch:
                continue
            kept.append(line if line.endswith("\n") else line + "\n")
    with open(path, "w") as f:
        f.writelines(kept)


def train(config, overrides=(), preset=None, name=None, resume=None, progress=True, allow_config_change=False,
          threads=None, check_dataset=True):
    """Trains a model from a config (a YAML path, a mapping or a Config) and returns a Run.

    overrides: ["optim.lr=0.01", ...] or {"optim.lr": 0.01}; resume: a run folder or name
    to continue; allow_config_change: resume even when the config differs from the run's
    (beyond train.epochs, which may always be raised); check_dataset=False (or data.preflight:
    false) trains even when the dataset preflight finds fatal problems (they are printed).
    Folder datasets: after the final evaluation the model scores the train and val images and
    the likely label errors go to label_issues.json (data.label_issues). Ctrl-C stops at the next step,
    saves a checkpoint and returns the Run with status "interrupted".
    """
    if resume:
        folder = _find_run(resume, "runs" if config is None else _resolve(config, overrides, preset).run.dir)
        saved = configlib.load(os.path.join(folder, "config.yaml"))
        cfg = saved if config is None and not overrides else resolve_normalization(_resolve(
            config if config is not None else os.path.join(folder, "config.yaml"), overrides, preset))
        if _comparable(cfg) != _comparable(saved) and not allow_config_change:
            raise ConfigError(f"resume {folder}: the config differs from the run's own config.yaml (beyond "
                              f"{', '.join(RESUMABLE_CHANGES)}); pass allow_config_change=True (--allow-config-change) "
                              "to resume anyway")
    else:
        cfg = resolve_normalization(_resolve(config, overrides, preset))
        folder = _run_folder(cfg, name)
    os.makedirs(os.path.join(folder, "checkpoints"), exist_ok=True)
    configlib.save_resolved(cfg, os.path.join(folder, "config.yaml"))
    if threads or cfg.train.threads:
        _C.set_num_threads(int(threads or cfg.train.threads))
    run = Run(folder, cfg)
    seg_dataset = segmentation.segmentation_dataset(cfg) if data_format(cfg) != "idx" else None
    if seg_dataset is not None:
        splits, classes = segmentation.load_segmentation(cfg, seg_dataset, check=check_dataset)
    else:
        splits, classes = load_data(cfg) if data_format(cfg) == "idx" else load_folder(cfg, check=check_dataset)
    if seg_dataset is not None:
        model = segmentation.create_model(cfg, seg_dataset)
    else:
        model = create_classifier(cfg, splits["train"])
    if cfg.model.pretrained:
        model.load_state_dict(cfg.model.pretrained, strict=False)
    if cfg.model.freeze:
        model.freeze(list(cfg.model.freeze))
    mean, std = normalization(cfg)
    streamed = not isinstance(splits["train"], tuple)
    if streamed:  # the C loader decodes, augments and normalises; evaluation arrays come normalised
        x_train, y_train = splits["train"]._loader, None
        n_train = splits["train"].info["size"] if "size" in splits["train"].info else None
        pipeline, mean, std = None, [0.0] * cfg.model.in_channels, [1.0] * cfg.model.in_channels
    else:
        x_train, y_train = splits["train"]
        n_train = len(x_train)
        entries = augment_entries(cfg, training=True)
        pipeline = None
        if any(e["name"] != "normalize" for e in entries):
            from .augment import Pipeline
            pipeline = Pipeline(entries)._pipeline
    o, s = cfg.optim, cfg.schedule
    schedule = {"none": "constant"}.get(s.name, s.name)
    trainer = _C.Trainer(
        model._c, x_train, y_train, epochs=cfg.train.epochs, batch_size=cfg.data.batch_size, seed=cfg.train.seed,
        shuffle=True, accumulate=cfg.train.accumulate, grad_clip_norm=cfg.train.grad_clip_norm or 0.0,
        grad_clip_value=cfg.train.grad_clip_value or 0.0, lr=o.lr, optimizer=o.name, momentum=o.momentum,
        nesterov=o.nesterov, beta1=o.betas[0], beta2=o.betas[1], eps=o.eps, weight_decay=o.weight_decay,
        decay_norm_and_bias=not o.no_decay_on_norm_and_bias, schedule=schedule, gamma=s.gamma,
        step_size=s.step_size, milestones=list(s.milestones), min_lr=s.min_lr, warmup_epochs=s.warmup_epochs,
        pct_start=s.pct_start, factor=s.factor, patience=s.patience, **({"max_lr": s.max_lr} if s.max_lr else {}),
        mean=mean, std=std, pipeline=pipeline, ema_decay=cfg.train.ema_decay,
        bf16=cfg.train.bf16)
    for group in o.param_groups:
        if trainer.set_lr_scale(group["pattern"], group["lr"] / o.lr) == 0:
            raise ConfigError(f"optim.param_groups: pattern '{group['pattern']}' matches no parameter of "
                              f"{cfg.model.arch} (names look like {sorted(model.state_dict())[0]!r})")
    checkpoints = os.path.join(folder, "checkpoints")
    best_metric, best_value, stale = cfg.checkpoint.best_metric, None, 0
    stopper = cfg.train.early_stopping
    if resume:
        tensors, meta = load_checkpoint(os.path.join(checkpoints, LAST))
        restore_checkpoint(model, trainer, tensors, meta["counters"])
        best_value, stale = meta.get("best_value"), int(meta.get("stale", 0))
        best_value = None if best_value in (None, "None") else float(best_value)
        _truncate_metrics(os.path.join(folder, "metrics.jsonl"), meta["counters"]["global_step"],
                          meta["counters"]["epoch"])
        metrics_path = os.path.join(folder, "metrics.jsonl")
        if os.path.exists(metrics_path):
            with open(metrics_path) as f:
                run.metrics = [json.loads(line) for line in f if '"train_loss"' in line]
    steps_per_epoch = trainer.progress()["steps_per_epoch"]
    bar = _Progress(progress, cfg.train.epochs, steps_per_epoch, cfg.data.batch_size)
    recorder = RunRecorder(folder, cfg, threads=_C.get_num_threads())
    snapshot, _ = _resources(None)

    def checkpoint_extra():
        return {"best_value": str(best_value), "stale": str(stale),
                "task": "classification" if seg_dataset is None else "segmentation"}

    def validate(images, labels, prefix):
        if seg_dataset is not None:
            return segmentation.evaluate(trainer, images, labels, classes, prefix=prefix)
        return _evaluate(trainer, images, labels, prefix=prefix)

    try:
        while trainer.progress()["epoch"] < cfg.train.epochs:
            state = trainer.progress()
            epoch, done = state["epoch"], state["step_in_epoch"]
            bar.start(epoch, done)
            started = time.perf_counter()
            try:
                train_loss = _run_epoch_polled(trainer, bar)
            except KeyboardInterrupt:
                bar.close()
                save_checkpoint(os.path.join(checkpoints, LAST), model, trainer, cfg, classes, checkpoint_extra())
                run.status = "interrupted"
                run.last_checkpoint = os.path.join(checkpoints, LAST)
                if trainer.progress()["step_in_epoch"] > done:
                    _log_steps(recorder, trainer, epoch, done, steps_per_epoch)
                recorder.finish("interrupted")
                return run
            finally:
                bar.close()
            train_seconds = time.perf_counter() - started
            _log_steps(recorder, trainer, epoch, done, steps_per_epoch)
            row = {"epoch": epoch, "train_loss": float(train_loss), "epoch_seconds": train_seconds,
                   "images_per_second": (n_train or steps_per_epoch * cfg.data.batch_size) / train_seconds
                   if train_seconds else 0.0}
            if "val" in splits and ((epoch + 1) % cfg.train.val_every == 0 or epoch + 1 == cfg.train.epochs):
                started = time.perf_counter()
                row.update(validate(*splits["val"], prefix="val_"))
                bar.val_seconds = time.perf_counter() - started
                trainer.observe(row.get(s.metric, row["val_loss"]))
            snapshot, usage = _resources(snapshot)
            row.update(usage)
            run.metrics.append(row)
            recorder.log_metrics(epoch=epoch, **{k: v for k, v in row.items() if k != "epoch"})
            if best_metric and best_metric in row and _better(best_metric, cfg.checkpoint.best_mode, row[best_metric],
                                                              best_value):
                best_value = row[best_metric]
                save_checkpoint(os.path.join(checkpoints, BEST), model, trainer, cfg, classes,
                                {**checkpoint_extra(), "metrics": json.dumps(row)})
                run.best_checkpoint = os.path.join(checkpoints, BEST)
            if stopper and stopper.metric in row:
                stale = _early_stop_update(stopper, row[stopper.metric], run.metrics, stale)
            every = cfg.checkpoint.every
            if every and (epoch + 1) % every == 0:
                save_checkpoint(os.path.join(checkpoints, f"epoch-{epoch + 1:04d}.safetensors"), model, trainer, cfg,
                                classes, checkpoint_extra())
                _keep_last(checkpoints, cfg.checkpoint.keep_last)
            save_checkpoint(os.path.join(checkpoints, LAST), model, trainer, cfg, classes, checkpoint_extra())
            run.last_checkpoint = os.path.join(checkpoints, LAST)
            if stopper and stale >= stopper.patience:
                break
        run.status = "completed"
    except TrugradeError as exc:
        run.status, run.error = "failed", str(exc)
        recorder.finish("failed", error=str(exc))
        raise
    if run.best_checkpoint is None and os.path.exists(os.path.join(checkpoints, BEST)):
        run.best_checkpoint = os.path.join(checkpoints, BEST)
    if run.best_checkpoint:
        trainer.set_ema_eval(False)  # the best checkpoint's weights are its EMA weights already
    if "test" in splits and seg_dataset is not None:
        _test_segmentation(run, trainer, model, splits, classes, recorder)
    elif "test" in splits:
        if run.best_checkpoint:
            tensors, _ = load_checkpoint(run.best_checkpoint)
            model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("trainer.")})
        x_test, y_test = splits["test"]
        logits, test_loss = trainer.evaluate(x_test, y_test)
        probabilities = metriclib.softmax(np.asarray(logits))
        run.test = metriclib.classification_report(y_test, probabilities, cfg.model.num_classes)
        run.test["loss"] = float(test_loss)
        recorder.log_metrics(epoch=len(run.metrics), test_loss=float(test_loss), test_accuracy=run.test["accuracy"])
        from .report import write_report
        run.report_path = write_report(run, classes, x_test, y_test, probabilities, mean, std)
    source = getattr(splits["train"], "label_issue_source", None)
    if cfg.data.label_issues and source is not None:
        from .validator import run_label_issues
        dataset, entries, channels = source
        run.label_issues = run_label_issues(folder, dataset, ("train", "val"), lambda x: model.forward(x), entries,
                                            channels, batch_size=cfg.data.batch_size)
    recorder.finish("completed")
    return run


def _test_segmentation(run, trainer, model, splits, classes, recorder):
    """run.test and the report of a segmentation run, with the best checkpoint's weights."""
    if run.best_checkpoint:
        tensors, _ = load_checkpoint(run.best_checkpoint)
        model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("trainer.")})
    run.test, probabilities = segmentation.test(trainer, splits, classes)
    recorder.log_metrics(epoch=len(run.metrics), test_loss=run.test["loss"], test_iou=run.test["iou"],
                         test_f1=run.test["f1"])
    images, masks = splits["test"]
    try:
        run.report_path = segmentation.write_report(run, classes, images, masks, probabilities)
    except ImportError:
        run.report_path = None


def _evaluate(trainer, images, labels, prefix):
    logits, loss = trainer.evaluate(images, labels)
    probabilities = metriclib.softmax(np.asarray(logits))
    predicted = probabilities.argmax(1)
    prf = metriclib.precision_recall_f1(labels, predicted, probabilities.shape[1])
    return {f"{prefix}loss": float(loss), f"{prefix}accuracy": metriclib.accuracy(labels, predicted),
            f"{prefix}f1": prf["macro"]["f1"], f"{prefix}precision": prf["macro"]["precision"],
            f"{prefix}recall": prf["macro"]["recall"]}


def _log_steps(recorder, trainer, epoch, first, steps_per_epoch):
    """Writes the loss and lr of this epoch's batches from index `first` on (those before
    were logged by the run a resume continues)."""
    losses, lrs = (np.asarray(a) for a in trainer.step_log())
    for i in range(first, len(losses)):
        recorder.log_metrics(step=epoch * steps_per_epoch + i + 1, epoch=epoch, loss=float(losses[i]),
                             lr=float(lrs[i]))


def _early_stop_update(stopper, value, history, stale):
    metric, mode = stopper.metric, stopper.mode
    if mode == "auto":
        mode = "min" if metric.endswith("loss") else "max"
    previous = [row[metric] for row in history[:-1] if metric in row]
    if not previous:
        return 0
    best = min(previous) if mode == "min" else max(previous)
    improved = value < best - stopper.min_delta if mode == "min" else value > best + stopper.min_delta
    return 0 if improved else stale + 1


def _keep_last(folder, keep):
    if not keep:
        return
    periodic = sorted(glob.glob(os.path.join(folder, "epoch-*.safetensors")))
    for path in periodic[:-keep]:
        os.remove(path)
