"""trugrade.seg_metrics against plain numpy computations written out here."""
import numpy as np
import pytest

from trugrade import seg_metrics as S


def _plain(pred, target, classes):
    out = {k: [] for k in ("iou", "dice", "precision", "recall")}
    for c in range(classes):
        p, t = pred == c, target == c
        tp, fp, fn = np.sum(p & t), np.sum(p & ~t), np.sum(~p & t)
        out["iou"].append(tp / (tp + fp + fn) if tp + fp + fn else np.nan)
        out["dice"].append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else np.nan)
        out["precision"].append(tp / (tp + fp) if tp + fp else np.nan)
        out["recall"].append(tp / (tp + fn) if tp + fn else np.nan)
    out["pixel_accuracy"] = np.mean(pred == target)
    return out


@pytest.mark.parametrize("classes", [2, 4])
def test_metrics_match_numpy(classes):
    rng = np.random.default_rng(classes)
    target = rng.integers(0, classes, (3, 17, 23))
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, classes, target.shape))
    if classes == 4:
        pred[pred == 3] = 0   # class 3 never predicted
        target[target == 3] = 1   # ... and absent: undefined, left out of the means
    report = S.segmentation_metrics(pred, target, classes)
    plain = _plain(pred, target, classes)
    for key in ("iou", "dice", "precision", "recall"):
        np.testing.assert_allclose(report[key], plain[key], rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(report["m" + key if key != "iou" else "miou"], np.nanmean(plain[key]), rtol=1e-12)
    np.testing.assert_allclose(report["pixel_accuracy"], plain["pixel_accuracy"], rtol=1e-12)
    np.testing.assert_array_equal(report["f1"], report["dice"])


def test_ignore_index():
    target = np.array([0, 1, 255, 1])
    pred = np.array([0, 1, 1, 0])
    cm = S.confusion_matrix(pred, target, 2, ignore_index=255)
    np.testing.assert_array_equal(cm, [[1, 0], [1, 1]])


def test_precision_recall_curve_and_threshold():
    rng = np.random.default_rng(5)
    positive = rng.random(5000) < 1 / 14
    prob = np.clip(np.where(positive, 0.65, 0.3) + rng.normal(0, 0.15, positive.size), 0, 1)
    thresholds = np.linspace(0, 1, 41)
    curve = S.precision_recall_curve(prob, positive, thresholds)
    for i, t in enumerate(thresholds):
        pred = prob >= t
        tp, fp, fn = np.sum(pred & positive), np.sum(pred & ~positive), np.sum(~pred & positive)
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        assert (curve["tp"][i], curve["fp"][i], curve["fn"][i]) == (tp, fp, fn)
        np.testing.assert_allclose([curve["precision"][i], curve["recall"][i], curve["f1"][i]], [precision, recall, f1])
    threshold, f1 = S.best_f1_threshold(prob, positive, thresholds)
    assert f1 == pytest.approx(curve["f1"].max())
    assert 0.35 < threshold < 0.65   # between the two class means
    # the chooser against a brute-force numpy search over the same thresholds (lowest on ties)
    brute = []
    for t in thresholds:
        pred = prob >= t
        tp, fp, fn = np.sum(pred & positive), np.sum(pred & ~positive), np.sum(~pred & positive)
        brute.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    assert threshold == thresholds[int(np.argmax(brute))] and f1 == pytest.approx(max(brute), rel=1e-12)
    # unsorted, repeated probabilities and a threshold grid that does not hit them
    prob = np.round(rng.random(300), 1)
    positive = rng.random(300) < prob
    grid = rng.random(17)
    curve = S.precision_recall_curve(prob, positive, grid)
    for i, t in enumerate(grid):
        assert curve["tp"][i] == np.sum((prob >= t) & positive) and curve["fp"][i] == np.sum((prob >= t) & ~positive)


def test_foreground_probability():
    logits = np.random.default_rng(0).normal(size=(2, 3, 4, 5)) * 10
    e = np.exp(logits)
    np.testing.assert_allclose(S.foreground_probability(logits, 2), e[:, 2] / e.sum(1), rtol=1e-6)
