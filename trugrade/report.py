"""report.html of a run: loss, metric and learning-rate curves, the confusion matrix,
ROC and PR curves and the worst-classified test samples, as PNG plots beside the page.

Plots need matplotlib (installed by `make`); without it the page still lists every
number and says that the plots were skipped."""
import html
import json
import os

import numpy as np

from . import metrics as metriclib


def _read_steps(run_dir):
    steps = []
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if "step" in row and "loss" in row:
                    steps.append(row)
    return steps


def _plots(run, classes, images, labels, probabilities, mean, std, folder):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = {}

    def save(fig, name):
        path = os.path.join(folder, name)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written[name] = path

    steps = _read_steps(run.dir)
    epochs = run.metrics
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    if steps:
        ax[0].plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.6, alpha=0.6, label="batch loss")
    spe = max(1, len(steps) // max(1, len(epochs))) if steps else 1
    ax[0].plot([(r["epoch"] + 1) * spe for r in epochs], [r["train_loss"] for r in epochs], "o-", label="train loss")
    if epochs and "val_loss" in epochs[-1]:
        ax[0].plot([(r["epoch"] + 1) * spe for r in epochs if "val_loss" in r],
                   [r["val_loss"] for r in epochs if "val_loss" in r], "s-", label="val loss")
    ax[0].set_xlabel("step")
    ax[0].legend()
    ax[0].set_title("loss")
    for key in ("val_accuracy", "val_f1"):
        pts = [(r["epoch"] + 1, r[key]) for r in epochs if key in r]
        if pts:
            ax[1].plot(*zip(*pts), "o-", label=key)
    ax[1].set_xlabel("epoch")
    ax[1].legend()
    ax[1].set_title("validation metrics")
    save(fig, "curves.png")
    if steps:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot([r["step"] for r in steps], [r["lr"] for r in steps])
        ax.set_xlabel("step")
        ax.set_title("learning rate")
        save(fig, "lr.png")
    cm = run.test["confusion_matrix"]
    fig, ax = plt.subplots(figsize=(6, 5))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=90)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.colorbar(im)
    ax.set_title("confusion matrix (test)")
    save(fig, "confusion.png")
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for c, name in enumerate(classes):
        positives = labels == c
        if 0 < positives.sum() < len(labels):
            fpr, tpr, _ = metriclib.roc_curve(positives, probabilities[:, c])
            ax[0].plot(fpr, tpr, lw=1, label=f"{name} (AUC {run.test['roc_auc'][c]:.3f})")
            precision, recall, _ = metriclib.precision_recall_curve(positives, probabilities[:, c])
            ax[1].plot(recall, precision, lw=1, label=f"{name} (AP {run.test['average_precision'][c]:.3f})")
    ax[0].set_title("ROC (one vs rest)")
    ax[0].set_xlabel("false positive rate")
    ax[0].set_ylabel("true positive rate")
    ax[1].set_title("precision-recall")
    ax[1].set_xlabel("recall")
    ax[1].set_ylabel("precision")
    ax[0].legend(fontsize=6)
    ax[1].legend(fontsize=6)
    save(fig, "roc_pr.png")
    true_probability = probabilities[np.arange(len(labels)), labels]
    worst = np.argsort(true_probability)[:16]
    fig, axes = plt.subplots(2, 8, figsize=(12, 3.6))
    for ax, i in zip(axes.ravel(), worst):
        image = images[i].astype(np.float32)
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-12)
        ax.imshow(image[0] if image.shape[0] == 1 else np.moveaxis(image[:3], 0, -1), cmap="gray")
        ax.set_title(f"true {classes[labels[i]]}\npred {classes[probabilities[i].argmax()]}", fontsize=7)
        ax.axis("off")
    save(fig, "worst.png")
    return written


def write_report(run, classes, images, labels, probabilities, mean, std):
    """Writes run.dir/report.html (and its PNGs); returns the page's path."""
    folder = run.dir
    try:
        plots = _plots(run, classes, images, labels, probabilities, mean, std, folder)
        note = ""
    except ImportError:
        plots, note = {}, "<p>Plots skipped: matplotlib is not installed (pip install matplotlib).</p>"
    test = run.test
    rows = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{test['precision'][i]:.4f}</td><td>{test['recall'][i]:.4f}</td>"
        f"<td>{test['f1'][i]:.4f}</td><td>{test['roc_auc'][i]:.4f}</td><td>{test['average_precision'][i]:.4f}</td>"
        f"<td>{test['support'][i]}</td></tr>" for i, c in enumerate(classes))
    epochs = "".join("<tr>" + "".join(f"<td>{v:.4f}</td>" if isinstance(v, float) else f"<td>{v}</td>"
                                      for v in row.values()) + "</tr>" for row in run.metrics)
    header = "".join(f"<th>{html.escape(k)}</th>" for k in (run.metrics[0] if run.metrics else {}))
    images_html = "".join(f'<h2>{html.escape(name[:-4])}</h2><img src="{name}">' for name in plots)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>trugrade run {html.escape(run.name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:2px 6px;font-size:12px}}img{{max-width:100%}}</style></head><body>
<h1>Run {html.escape(run.name)}</h1>
<p>{html.escape(run.config.model.arch)}: test accuracy <b>{test['accuracy']:.4f}</b>, macro F1 {test['macro']['f1']:.4f},
top-5 {test['top5_accuracy']:.4f}, ROC AUC (macro, one-vs-rest) {test['roc_auc_macro']:.4f}, mAP
{test['mean_average_precision']:.4f}, expected calibration error {test['ece']:.4f}, loss {test['loss']:.4f}.</p>
{note}{images_html}
<h2>per class (test)</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>ROC AUC</th>
<th>AP</th><th>support</th></tr>{rows}</table>
<h2>epochs</h2><table><tr>{header}</tr>{epochs}</table>
</body></html>"""
    path = os.path.join(folder, "report.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path
