"""Classification metrics from labels and predicted probabilities (or logits), in numpy.

Each follows scikit-learn's definition of the same name (the tests compare):
accuracy, top-k accuracy, confusion matrix, per-class precision/recall/F1 with macro
and weighted averages (zero_division=0), one-vs-rest ROC curves and AUC, precision-
recall curves and average precision, and the expected calibration error (equal-width
confidence bins, as Guo et al. 2017)."""
import numpy as np


def softmax(logits):
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def accuracy(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if y_true.size else 0.0


def top_k_accuracy(y_true, scores, k=5):
    """Fraction of samples whose true class is among the k highest scores. Ties rank the
    larger class index first, as scikit-learn's top_k_accuracy_score does."""
    y_true, scores = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    k = min(k, scores.shape[1])
    true_scores = scores[np.arange(len(y_true)), y_true][:, None]
    later = np.arange(scores.shape[1])[None, :] > y_true[:, None]
    ahead = ((scores > true_scores) | ((scores == true_scores) & later)).sum(axis=1)
    return float(np.mean(ahead < k))


def confusion_matrix(y_true, y_pred, num_classes):
    """Rows: true class; columns: predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def precision_recall_f1(y_true, y_pred, num_classes):
    """Per-class precision, recall, F1 and support, plus macro and weighted averages."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    weights = support / support.sum() if support.sum() else np.zeros_like(support)
    return {
        "precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64),
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())},
        "weighted": {"precision": float(precision @ weights), "recall": float(recall @ weights),
                     "f1": float(f1 @ weights)},
    }


def _binary_counts(y_binary, scores):
    """Cumulative true/false positives at each distinct score threshold, highest first."""
    order = np.argsort(-scores, kind="mergesort")
    scores, y_binary = scores[order], y_binary[order]
    distinct = np.where(np.diff(scores))[0]
    thresholds_idx = np.r_[distinct, y_binary.size - 1]
    tps = np.cumsum(y_binary)[thresholds_idx]
    fps = 1 + thresholds_idx - tps
    return fps.astype(np.float64), tps.astype(np.float64), scores[thresholds_idx]


def roc_curve(y_binary, scores):
    """(fpr, tpr, thresholds) like sklearn.metrics.roc_curve(drop_intermediate=False)."""
    fps, tps, thresholds = _binary_counts(np.asarray(y_binary).astype(np.int64), np.asarray(scores, dtype=np.float64))
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    thresholds = np.r_[np.inf, thresholds]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full_like(fps, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    return fpr, tpr, thresholds


def roc_auc(y_binary, scores):
    fpr, tpr, _ = roc_curve(y_binary, scores)
    return float(np.trapz(tpr, fpr)) if hasattr(np, "trapz") else float(np.trapezoid(tpr, fpr))


def roc_auc_ovr(y_true, probabilities):
    """Per-class one-vs-rest AUC and their macro mean (classes absent from y_true are skipped
    in the mean and reported as nan)."""
    y_true, probabilities = np.asarray(y_true), np.asarray(probabilities, dtype=np.float64)
    per_class = []
    for c in range(probabilities.shape[1]):
        positives = y_true == c
        per_class.append(roc_auc(positives, probabilities[:, c]) if 0 < positives.sum() < len(y_true) else np.nan)
    per_class = np.array(per_class)
    return per_class, float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan")


def precision_recall_curve(y_binary, scores):
    """(precision, recall, thresholds) like sklearn.metrics.precision_recall_curve."""
    fps, tps, thresholds = _binary_counts(np.asarray(y_binary).astype(np.int64), np.asarray(scores, dtype=np.float64))
    predicted = tps + fps
    precision = np.divide(tps, predicted, out=np.zeros_like(tps), where=predicted != 0)
    recall = tps / tps[-1] if tps[-1] > 0 else np.ones_like(tps)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def average_precision(y_binary, scores):
    """sum over thresholds of (R_n - R_{n-1}) P_n, like sklearn.metrics.average_precision_score."""
    precision, recall, _ = precision_recall_curve(y_binary, scores)
    return float(-np.sum(np.diff(recall) * np.array(precision)[:-1]))


def expected_calibration_error(y_true, probabilities, bins=15):
    """sum over equal-width confidence bins of |accuracy - confidence| weighted by the bin's share."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def classification_report(y_true, probabilities, num_classes=None):
    """Every metric above from labels and class probabilities (N, classes), as plain data."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_classes = num_classes or probabilities.shape[1]
    y_true = np.asarray(y_true)
    y_pred = probabilities.argmax(axis=1)
    prf = precision_recall_f1(y_true, y_pred, num_classes)
    auc_per_class, auc_macro = roc_auc_ovr(y_true, probabilities)
    ap = [average_precision(y_true == c, probabilities[:, c]) if (y_true == c).any() else float("nan")
          for c in range(num_classes)]
    return {
        "accuracy": accuracy(y_true, y_pred),
        "top5_accuracy": top_k_accuracy(y_true, probabilities, 5) if num_classes > 5 else 1.0,
        "confusion_matrix": confusion_matrix(y_true, y_pred, num_classes),
        "precision": prf["precision"], "recall": prf["recall"], "f1": prf["f1"], "support": prf["support"],
        "macro": prf["macro"], "weighted": prf["weighted"],
        "roc_auc": auc_per_class, "roc_auc_macro": auc_macro,
        "average_precision": np.array(ap), "mean_average_precision": float(np.nanmean(ap)),
        "ece": expected_calibration_error(y_true, probabilities),
    }
