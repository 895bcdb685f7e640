"""trugrade.metrics against scikit-learn on the same predictions."""
import numpy as np
import pytest
from sklearn import metrics as skm

from trugrade import metrics


@pytest.fixture(params=[0, 1, 2])
def predictions(request):
    rng = np.random.default_rng(request.param)
    n, classes = 500, 6
    y = rng.integers(0, classes, n)
    logits = rng.standard_normal((n, classes)) + 2.0 * np.eye(classes)[y] * rng.uniform(0, 1.5, (n, 1))
    if request.param == 2:
        logits = np.round(logits, 1)  # ties in scores
    return y, metrics.softmax(logits)


def test_accuracy_confusion_and_topk(predictions):
    y, p = predictions
    pred = p.argmax(1)
    assert metrics.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred))
    np.testing.assert_array_equal(metrics.confusion_matrix(y, pred, 6), skm.confusion_matrix(y, pred, labels=range(6)))
    for k in (1, 2, 3):
        assert metrics.top_k_accuracy(y, p, k) == pytest.approx(skm.top_k_accuracy_score(y, p, k=k, labels=range(6)))


def test_precision_recall_f1(predictions):
    y, p = predictions
    pred = p.argmax(1)
    ours = metrics.precision_recall_f1(y, pred, 6)
    pr, rc, f1, support = skm.precision_recall_fscore_support(y, pred, labels=range(6), zero_division=0)
    np.testing.assert_allclose(ours["precision"], pr)
    np.testing.assert_allclose(ours["recall"], rc)
    np.testing.assert_allclose(ours["f1"], f1)
    np.testing.assert_array_equal(ours["support"], support)
    for avg in ("macro", "weighted"):
        ref = skm.precision_recall_fscore_support(y, pred, labels=range(6), average=avg, zero_division=0)
        assert ours[avg]["precision"] == pytest.approx(ref[0])
        assert ours[avg]["recall"] == pytest.approx(ref[1])
        assert ours[avg]["f1"] == pytest.approx(ref[2])


def test_roc_and_pr(predictions):
    y, p = predictions
    per_class, macro = metrics.roc_auc_ovr(y, p)
    assert macro == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    for c in range(6):
        fpr, tpr, thr = metrics.roc_curve(y == c, p[:, c])
        rfpr, rtpr, rthr = skm.roc_curve(y == c, p[:, c], drop_intermediate=False)
        np.testing.assert_allclose(fpr, rfpr)
        np.testing.assert_allclose(tpr, rtpr)
        pr, rc, th = metrics.precision_recall_curve(y == c, p[:, c])
        rpr, rrc, rth = skm.precision_recall_curve(y == c, p[:, c])
        np.testing.assert_allclose(pr, rpr)
        np.testing.assert_allclose(rc, rrc)
        np.testing.assert_allclose(th, rth)
        assert metrics.average_precision(y == c, p[:, c]) == pytest.approx(skm.average_precision_score(y == c, p[:, c]))


def test_ece_against_the_formula(predictions):
    y, p = predictions
    conf, correct = p.max(1), p.argmax(1) == y
    bins = np.minimum((np.ceil(conf * 15) - 1).astype(int), 14)
    expected = sum(abs(correct[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean()
                   for b in range(15) if (bins == b).any())
    assert metrics.expected_calibration_error(y, p) == pytest.approx(expected)


def test_report_has_everything(predictions):
    y, p = predictions
    report = metrics.classification_report(y, p)
    assert report["confusion_matrix"].sum() == len(y)
    assert 0 <= report["ece"] <= 1 and 0 <= report["roc_auc_macro"] <= 1
