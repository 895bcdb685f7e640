"""The segmentation side of trugrade.train: data, model, validation, test and report for a
segmentation dataset (an images/ + masks/ folder or a segmentation manifest).

train.py calls these where a run's task is segmentation; the epoch loop, checkpoints,
early stopping and resume are train.py's own and shared with classification.

- data: the training split streams through the C loader (image and mask augmented with
  the same draws); val/test are decoded once to arrays (float32 images normalised, int64
  masks (N, H, W)) with the evaluation transforms.
- model: the config's loss (loss.name combined -> weights {dice, focal, wce, cross_entropy};
  cross_entropy; focal; dice) with loss.focal_gamma, loss.focal_alpha (the foreground
  classes' factor, 1 - alpha for class 0; null: none) and loss.dice_smooth passed to the
  C losses, and train.class_weights (a list, or "auto": inverse pixel frequency of the
  training masks) for the cross-entropy term.
- metrics: val_loss, val_iou and val_f1 (the foreground class's for 2 classes, the class
  mean otherwise), val_miou, val_mdice, val_pixel_accuracy, val_precision, val_recall and
  val_iou_<class> per class."""
import os

import numpy as np

from . import models
from . import seg_metrics
from .errors import ConfigError, UnsupportedError


def segmentation_dataset(cfg):
    """The scanned Dataset when cfg.data.path is a segmentation folder or manifest
    (trugrade.data.scan's task), else None. NOTE: only a folder that may hold one is
    scanned (data.format seg_folders or manifest, a masks/ folder, or a manifest.json of
    task segmentation), so classification folders are not scanned twice."""
    path, fmt = cfg.data.path, cfg.data.format
    if fmt in ("imagefolder", "csv", "idx"):
        return None
    if fmt == "auto" and not _may_be_segmentation(path):
        return None
    dataset = _scan(cfg)
    return dataset if dataset.task == "segmentation" else None


def _may_be_segmentation(path):
    if os.path.isdir(os.path.join(path, "masks")):
        return True
    manifest = path if os.path.isfile(path) else os.path.join(path, "manifest.json")
    if os.path.isfile(manifest):
        import json
        try:
            with open(manifest) as f:
                return json.load(f).get("task") == "segmentation"
        except (OSError, ValueError, AttributeError):
            return False
    return False


def _scan(cfg):
    from .train import open_dataset
    return open_dataset(cfg)


def class_names(dataset, num_classes):
    names = [str(c) for c in (dataset.classes or [])]
    if len(names) != num_classes:
        names = ["background", "foreground"] if num_classes == 2 else [str(c) for c in range(num_classes)]
    return names


def load_segmentation(cfg, dataset, check=True):
    """({"train": Loader, "val"/"test": (images float32 (N, C, H, W) normalised, masks int64
    (N, H, W))}, class names) of the scanned `dataset`."""
    from . import data as datalib
    from .train import augment_entries, normalization
    from .validator import preflight
    preflight(dataset, allow=not (check and cfg.data.preflight), num_classes=cfg.model.num_classes)
    size = cfg.model.input_size if isinstance(cfg.model.input_size, int) else cfg.model.input_size[0]
    train_entries, eval_entries = augment_entries(cfg, True), augment_entries(cfg, False)
    for entries in (train_entries, eval_entries):
        if not any(e["name"] in ("resize", "center_crop", "random_resized_crop", "letterbox") for e in entries):
            entries.insert(0, {"name": "resize", "size": size})
        if not any(e["name"] == "normalize" for e in entries):
            mean, std = normalization(cfg)
            entries.append({"name": "normalize", "mean": mean, "std": std})
    common = dict(batch_size=cfg.data.batch_size, workers=max(cfg.data.num_workers, 1), seed=cfg.train.seed,
                  cache_mb=cfg.data.cache_mb, on_bad_file=cfg.data.on_bad_file, channels=cfg.model.in_channels)
    out = {"train": datalib.Loader(dataset, split="train", pipeline=train_entries, sampler="shuffle", **common)}
    for name in ("val", "test"):
        if not dataset.split(name):
            continue
        loader = datalib.Loader(dataset, split=name, pipeline=eval_entries, sampler="sequential", **common)
        batches = list(loader.epoch(0))
        out[name] = (np.ascontiguousarray(np.concatenate([b[0] for b in batches])),
                     np.ascontiguousarray(np.concatenate([b[1] for b in batches]).astype(np.int64)))
    masks = out.get("val", (None, np.zeros((0,), np.int64)))[1]
    if masks.size and int(masks.max()) >= cfg.model.num_classes:
        raise ConfigError(f"model.num_classes is {cfg.model.num_classes} but the masks of {cfg.data.path} hold class "
                          f"{int(masks.max())}; set model.num_classes to at least {int(masks.max()) + 1}")
    return out, class_names(dataset, cfg.model.num_classes)


def training_masks(dataset):
    """The training split's masks as decoded (H, W) arrays, for class frequencies."""
    from .data import read_image
    return [np.asarray(read_image(os.path.join(dataset.root, s["mask"])))[0] for s in dataset.split("train")]


def loss_terms(cfg):
    """The model's loss terms {"dice", "focal", "wce" | "ce"} and settings {"gamma", "alpha"
    (focal), "smooth" (dice)} from the config's loss section, and whether the cross-entropy
    term takes the class weights."""
    loss = cfg.loss
    focal = {"gamma": float(loss.focal_gamma), "alpha": None if loss.focal_alpha is None else float(loss.focal_alpha)}
    dice = {"smooth": float(loss.dice_smooth)}
    if loss.name == "cross_entropy":
        return {"ce": 1.0}, True
    if loss.name == "focal":
        return {"focal": 1.0, **focal}, False
    if loss.name == "dice":
        return {"dice": 1.0, **dice}, False
    weights = dict(loss.weights.to_dict() if hasattr(loss.weights, "to_dict") else loss.weights)
    ce, wce = float(weights.get("cross_entropy", 0.0)), float(weights.get("wce", 0.0))
    if ce > 0 and wce > 0:
        raise UnsupportedError("loss.weights: the model has one cross-entropy term; give cross_entropy (unweighted) "
                               "or wce (with train.class_weights), not both")
    terms = {"dice": float(weights.get("dice", 0.0)), "focal": float(weights.get("focal", 0.0)), **focal, **dice}
    if wce > 0:
        terms["wce"] = wce
    elif ce > 0:
        terms["ce"] = ce
    return terms, wce > 0


def resolve_class_weights(cfg, dataset):
    """train.class_weights as a list (None when unset); "auto" from the training masks."""
    weights = cfg.train.class_weights
    if weights is None:
        return None
    if weights == "auto":
        return [float(w) for w in models.class_weights_from_masks(training_masks(dataset), cfg.model.num_classes)]
    return [float(w) for w in weights]


def create_model(cfg, dataset):
    """The segmentation model of the config with its loss and class weights."""
    if cfg.train.label_smoothing:
        raise UnsupportedError("train.label_smoothing: the segmentation losses have no label smoothing; set it to 0")
    terms, weighted = loss_terms(cfg)
    weights = resolve_class_weights(cfg, dataset) if weighted else None
    size = cfg.model.input_size if isinstance(cfg.model.input_size, int) else cfg.model.input_size[0]
    return models.create(cfg.model.arch, num_classes=cfg.model.num_classes, in_channels=cfg.model.in_channels,
                         input_size=size, seed=cfg.train.seed, loss=terms, class_weights=weights,
                         **({"encoder": cfg.model.encoder} if cfg.model.encoder else {}))


def softmax(logits):
    """softmax over axis 1 of logits (N, C, H, W), float32."""
    logits = np.asarray(logits, dtype=np.float32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def summarize(cm, classes, prefix):
    """The metric row of a confusion matrix: {prefix}iou, f1 (foreground for 2 classes, mean
    otherwise), miou, mdice, pixel_accuracy, precision, recall, iou_<class>. Undefined values
    (a class absent from prediction and truth) read 0."""
    report = seg_metrics.segmentation_report(cm)
    num = lambda v: float(np.nan_to_num(v, nan=0.0))
    binary = len(classes) == 2
    row = {f"{prefix}iou": num(report["iou"][1]) if binary else num(report["miou"]),
           f"{prefix}f1": num(report["f1"][1]) if binary else num(report["mdice"]),
           f"{prefix}precision": num(report["precision"][1]) if binary else num(report["mprecision"]),
           f"{prefix}recall": num(report["recall"][1]) if binary else num(report["mrecall"]),
           f"{prefix}miou": num(report["miou"]), f"{prefix}mdice": num(report["mdice"]),
           f"{prefix}pixel_accuracy": num(report["pixel_accuracy"])}
    row[f"{prefix}dice"] = row[f"{prefix}f1"]
    for name, value in zip(classes, report["iou"]):
        row[f"{prefix}iou_{name}"] = num(value)
    return row


def evaluate(trainer, images, masks, classes, prefix="val_"):
    """The metric row of (images, masks) in eval mode, with {prefix}loss."""
    logits, loss = trainer.evaluate(images, masks)
    predicted = np.asarray(logits).argmax(1)
    row = {f"{prefix}loss": float(loss)}
    row.update(summarize(seg_metrics.confusion_matrix(predicted, masks, len(classes)), classes, prefix))
    return row


def test(trainer, splits, classes):
    """run.test of the test split: the metrics, per-class iou/dice lists and, for 2 classes,
    the foreground threshold that maximises F1 on validation applied to test.
    Returns (test dict, foreground/class probabilities (N, C, H, W))."""
    images, masks = splits["test"]
    logits, loss = trainer.evaluate(images, masks)
    probabilities = softmax(logits)
    cm = seg_metrics.confusion_matrix(probabilities.argmax(1), masks, len(classes))
    report = seg_metrics.segmentation_report(cm)
    row = summarize(cm, classes, "")
    result = {"loss": float(loss), **row, "per_class_iou": [float(v) for v in np.nan_to_num(report["iou"])],
              "per_class_dice": [float(v) for v in np.nan_to_num(report["dice"])],
              "confusion_matrix": cm.tolist()}
    if len(classes) == 2 and "val" in splits:
        val_logits, _ = trainer.evaluate(*splits["val"])
        threshold, val_f1 = seg_metrics.best_f1_threshold(softmax(val_logits)[:, 1], splits["val"][1] == 1)
        chosen = seg_metrics.precision_recall_curve(probabilities[:, 1], masks == 1, [threshold])
        result.update(threshold=threshold, val_f1_at_threshold=val_f1, f1_at_threshold=float(chosen["f1"][0]))
    return result, probabilities


def write_report(run, classes, images, masks, probabilities, count=4):
    """run.dir/report.html: loss and metric curves and image / truth / prediction overlays of the
    first `count` test tiles (curves.png, overlays.png). Returns the page's path."""
    import html
    import json
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    folder = run.dir
    rows = run.metrics
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = [r["epoch"] + 1 for r in rows]
    axes[0].plot(epochs, [r["train_loss"] for r in rows], label="train loss")
    if any("val_loss" in r for r in rows):
        axes[0].plot([r["epoch"] + 1 for r in rows if "val_loss" in r], [r["val_loss"] for r in rows if "val_loss" in r],
                     label="val loss")
    for key in ("val_iou", "val_f1"):
        points = [(r["epoch"] + 1, r[key]) for r in rows if key in r]
        if points:
            axes[1].plot(*zip(*points), marker="o", label=key)
    for ax, title in zip(axes, ("loss", "validation")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "curves.png"), dpi=90)
    plt.close(fig)
    shown = min(count, len(images))
    fig, axes = plt.subplots(shown, 3, figsize=(9, 3 * shown), squeeze=False)
    predicted = probabilities.argmax(1)
    for i in range(shown):
        overlay_panels(axes[i], images[i], masks[i], predicted[i])
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "overlays.png"), dpi=80)
    plt.close(fig)
    test = {k: v for k, v in run.test.items() if isinstance(v, float)}
    numbers = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in test.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>trugrade run {html.escape(run.name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}td{{border:1px solid #ccc;padding:2px 6px}}img{{max-width:100%}}
</style></head><body><h1>Run {html.escape(run.name)} (segmentation, {html.escape(run.config.model.arch)})</h1>
<p>classes: {html.escape(", ".join(classes))}</p><h2>test</h2><table>{numbers}</table>
<h2>curves</h2><img src="curves.png"><h2>image / truth / prediction</h2><img src="overlays.png">
<h2>epochs</h2><pre>{html.escape(chr(10).join(json.dumps(r) for r in rows))}</pre></body></html>"""
    path = os.path.join(folder, "report.html")
    with open(path, "w") as f:
        f.write(page)
    return path


def display_image(image):
    """An (H, W) or (H, W, 3) view of a (C, H, W) tile for plotting: gray for 1 channel, the
    first three bands (reversed, as for visible bands ordered blue..red) otherwise, stretched
    to [0, 1] by the 2nd and 98th percentiles."""
    image = np.asarray(image, dtype=np.float32)
    view = image[0] if image.shape[0] < 3 else np.moveaxis(image[2::-1], 0, -1)
    lo, hi = np.percentile(view, (2, 98))
    return np.clip((view - lo) / max(hi - lo, 1e-6), 0, 1)


def overlay_panels(axes, image, mask, predicted):
    """Draws image, image + truth and image + prediction on three matplotlib axes."""
    view = display_image(image)
    for ax, overlay, title in zip(axes, (None, mask, predicted), ("image", "truth", "prediction")):
        ax.imshow(view, cmap="gray" if view.ndim == 2 else None)
        if overlay is not None:
            ax.imshow(np.ma.masked_where(overlay == 0, overlay), cmap="autumn", alpha=0.6, vmin=0,
                      vmax=max(int(overlay.max()), 1))
        ax.set_title(title, fontsize=8)
        ax.axis("off")
