"""Segmentation metrics on integer masks (numpy only): a confusion matrix over pixels, then
per-class and mean IoU, Dice/F1, precision, recall and pixel accuracy; for a binary
(background / foreground) task, precision-recall over thresholds of the foreground
probability and the threshold that maximises F1 on validation data.

    cm = confusion_matrix(pred, target, num_classes)   # pred, target: int (..., H, W)
    report = segmentation_report(cm)                   # {"iou": [...], "miou": ..., ...}
    pr = precision_recall_curve(prob_fg, target == 1)
    threshold, f1 = best_f1_threshold(prob_fg, target == 1)

Conventions: a class absent from both prediction and target has an undefined IoU/Dice
(NaN) and is left out of the means (nanmean); pixels whose target is `ignore_index` count
nowhere."""
import numpy as np


def confusion_matrix(pred, target, num_classes, ignore_index=None):
    """[num_classes, num_classes] int64 counts: row = target class, column = predicted class."""
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    target = np.asarray(target).reshape(-1).astype(np.int64)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have as many pixels, got {pred.size} and {target.size}")
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    pred, target = pred[keep], target[keep]
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"pred has class indices outside [0, {num_classes})")
    return np.bincount(target * num_classes + pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes).astype(np.int64)


def _ratio(numerator, denominator):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def segmentation_report(cm):
    """Per-class iou, dice (= F1), precision, recall (NaN where undefined), their nan-means
    (miou, mdice, mprecision, mrecall) and pixel_accuracy, from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    iou = _ratio(tp, tp + fp + fn)
    dice = _ratio(2 * tp, 2 * tp + fp + fn)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    mean = lambda v: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    total = cm.sum()
    return {
        "iou": iou, "dice": dice, "f1": dice, "precision": precision, "recall": recall,
        "miou": mean(iou), "mdice": mean(dice), "mprecision": mean(precision), "mrecall": mean(recall),
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
    }


def segmentation_metrics(pred, target, num_classes, ignore_index=None):
    """segmentation_report of the confusion matrix of pred against target."""
    return segmentation_report(confusion_matrix(pred, target, num_classes, ignore_index))


def precision_recall_curve(prob, positive, thresholds=None):
    """Precision, recall and F1 of `prob >= t` against the boolean `positive` for each
    threshold t (default: 101 evenly spaced in [0, 1]). Precision is 1 where nothing is
    predicted positive; F1 is 0 where precision + recall is 0.
    Returns {"thresholds", "precision", "recall", "f1", "tp", "fp", "fn"} (arrays)."""
    prob = np.asarray(prob, dtype=np.float64).reshape(-1)
    positive = np.asarray(positive, dtype=bool).reshape(-1)
    if prob.shape != positive.shape:
        raise ValueError(f"prob and positive must have as many pixels, got {prob.size} and {positive.size}")
    thresholds = np.linspace(0.0, 1.0, 101) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    # counts of prob >= t by sorting once: positives / negatives at or above each threshold
    order = np.argsort(prob, kind="stable")
    sorted_prob, sorted_pos = prob[order], positive[order]
    pos_above = np.concatenate([np.cumsum(sorted_pos[::-1])[::-1], [0]])       # [n + 1]
    neg_above = np.concatenate([np.cumsum(~sorted_pos[::-1])[::-1], [0]])
    first = np.searchsorted(sorted_prob, thresholds, side="left")               # first index with prob >= t
    tp = pos_above[first].astype(np.int64)
    fp = neg_above[first].astype(np.int64)
    fn = int(positive.sum()) - tp
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
    denom = precision + recall
    f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    return {"thresholds": thresholds, "precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def best_f1_threshold(prob, positive, thresholds=None):
    """(threshold, f1) of the threshold that maximises F1 (the lowest such threshold on ties),
    to choose on validation data and apply to test data."""
    curve = precision_recall_curve(prob, positive, thresholds)
    best = int(np.argmax(curve["f1"]))
    return float(curve["thresholds"][best]), float(curve["f1"][best])


def foreground_probability(logits, foreground=1):
    """softmax(logits, axis=1)[:, foreground] of logits (N, C, H, W), computed stably."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return (e[:, foreground] / e.sum(axis=1)).astype(np.float32)
