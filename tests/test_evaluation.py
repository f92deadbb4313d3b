"""The evaluation report: its numbers against a direct count, its pictures, and `fastmlp evaluate`."""

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from fastmlp import evaluation

LETTERS = tuple("ABCDEFGHIJ")


def hand_counted(true, predicted, k):
    """precision, recall, F1 and support of class k, counted one sample at a time."""
    tp = fp = fn = 0
    for t, p in zip(true.tolist(), predicted.tolist(), strict=True):
        tp += t == k and p == k
        fp += t != k and p == k
        fn += t == k and p != k
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1, tp + fn


@pytest.fixture(scope="module")
def report(trained_model, notmnist):
    return evaluation.report(trained_model, *notmnist.test)


def test_the_numbers_match_a_direct_count(report, trained_model, notmnist):
    X, y = notmnist.test
    predicted = trained_model.predict(X)
    np.testing.assert_array_equal(report.predicted, predicted)
    assert report.accuracy == pytest.approx(
        sum(int(a == b) for a, b in zip(y, predicted, strict=True)) / len(y), abs=1e-12
    )
    loss, accuracy = trained_model.evaluate(X, y)
    assert report.accuracy == pytest.approx(accuracy, abs=1e-6) and report.loss == pytest.approx(loss, rel=1e-6)
    assert 0.8 < report.accuracy < 0.95  # what this small network reaches on the sample
    for k in range(10):
        precision, recall, f1, support = hand_counted(y, predicted, k)
        assert report.precision[k] == pytest.approx(precision, abs=1e-12)
        assert report.recall[k] == pytest.approx(recall, abs=1e-12)
        assert report.f1[k] == pytest.approx(f1, abs=1e-12)
        assert report.support[k] == support
        for j in range(10):
            assert report.confusion[k, j] == sum(1 for t, p in zip(y, predicted, strict=True) if t == k and p == j)


def test_the_numbers_match_scikit_learn(report, notmnist):
    metrics = pytest.importorskip(
        "sklearn.metrics", reason="scikit-learn is not installed (the hand count above checks the same)"
    )
    y = notmnist.test[1]
    precision, recall, f1, _support = metrics.precision_recall_fscore_support(y, report.predicted, zero_division=0)
    np.testing.assert_allclose(report.precision, precision)
    np.testing.assert_allclose(report.recall, recall)
    np.testing.assert_allclose(report.f1, f1)
    np.testing.assert_array_equal(report.confusion, metrics.confusion_matrix(y, report.predicted))


def small_report():
    """Three classes, five samples; class "c" is never predicted. The predicted classes are
    0, 0, 1, 1, 1; their probabilities: sample 1 (wrong) 0.6, sample 3 (wrong) 0.9, sample 4 (wrong) 0.5."""
    labels = np.array([0, 2, 1, 2, 0])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [0.1, 0.7, 0.2], [0.05, 0.9, 0.05], [0.3, 0.5, 0.2]])
    return evaluation.Report(classes=("a", "b", "c"), labels=labels, probabilities=probabilities)


def test_a_class_never_predicted_has_precision_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = small_report()
        np.testing.assert_allclose(report.precision, [1 / 2, 1 / 3, 0])
        np.testing.assert_allclose(report.recall, [1 / 2, 1, 0])
        np.testing.assert_allclose(report.f1, [1 / 2, 1 / 2, 0])
    assert report.accuracy == pytest.approx(2 / 5)
    np.testing.assert_array_equal(report.confusion, [[1, 1, 0], [0, 1, 0], [1, 1, 0]])


def test_the_predictions_and_the_loss_come_from_the_probabilities():
    report = small_report()
    np.testing.assert_array_equal(report.predicted, [0, 0, 1, 1, 1])
    # -(log 0.8 + log 0.2 + log 0.7 + log 0.05 + log 0.3) / 5, the true classes' probabilities
    assert report.loss == pytest.approx(1.2777923, rel=1e-7)


def test_a_probability_that_underflowed_gives_a_finite_loss_without_warnings():
    """float32 probabilities of 0 (logits far apart): the loss is finite, at least -log of float32's smallest
    positive number for each such row."""
    probabilities = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = evaluation.Report(classes=("a", "b"), labels=np.array([0, 0]), probabilities=probabilities)
    assert report.loss == pytest.approx(-math.log(np.finfo(np.float32).smallest_subnormal) / 2)
    assert report.accuracy == 0.5


def test_the_most_confident_mistakes_come_first():
    np.testing.assert_array_equal(small_report().confident_mistakes(), [3, 1, 4])
    np.testing.assert_array_equal(small_report().confident_mistakes(2), [3, 1])


def test_the_table_shows_letters(report):
    lines = report.table().splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "f1", "support"]
    assert [line.split()[0] for line in lines[1:]] == [*LETTERS, "macro"]
    assert int(lines[-1].split()[-1]) == 2000


def test_the_macro_row_averages_the_letters_present_as_scikit_learn_does(trained_model, notmnist):
    """Images of the letters A-E read as one of A-E: F-J are neither in the labels nor predicted, and
    are left out of the macro averages (scikit-learn's labels=None), not averaged in as 0."""
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed")
    X, y = notmnist.test
    some = (y < 5) & (trained_model.predict(X) < 5)
    report = evaluation.report(trained_model, X[some], y[some])
    assert report.present.tolist() == [True] * 5 + [False] * 5
    expected = metrics.precision_recall_fscore_support(y[some], report.predicted, average="macro", zero_division=0)
    macro = report.to_dict()["macro"]
    assert [macro["precision"], macro["recall"], macro["f1"]] == pytest.approx(expected[:3], abs=1e-12)
    assert macro["classes"] == [LETTERS[k] for k in sorted(set(y[some]) | set(report.predicted))]
    assert macro["f1"] > 0.8 and report.accuracy > 0.8  # the letters present are read well
    table = report.table().splitlines()
    assert table[-2].split()[1:4] == [f"{macro['precision']:.4f}", f"{macro['recall']:.4f}", f"{macro['f1']:.4f}"]
    absent = [LETTERS[k] for k in range(10) if not report.present[k]]
    assert table[-1] == (
        f"(macro: the mean over the {10 - len(absent)} classes present; {', '.join(absent)} "
        f"{'is' if len(absent) == 1 else 'are'} neither in the labels nor predicted)"
    )


def test_a_class_absent_from_labels_and_predictions_is_left_out_of_the_macro_averages():
    probabilities = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    report = evaluation.Report(classes=("a", "b", "c"), labels=np.array([0, 1, 1, 1]), probabilities=probabilities)
    # a: precision 1/2, recall 1; b: precision 1, recall 2/3; c: absent, never predicted
    assert report.to_dict()["macro"] == {
        "precision": pytest.approx((1 / 2 + 1) / 2),
        "recall": pytest.approx((1 + 2 / 3) / 2),
        "f1": pytest.approx((2 / 3 + 4 / 5) / 2),
        "classes": ["a", "b"],
    }


def assert_png(path, size):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == size
        image.verify()


def test_the_report_files_are_valid_pngs_and_a_summary_listing_them(report, notmnist, tmp_path):
    (tmp_path / "model.npz").write_bytes(b"stand-in for a file written before")
    written = evaluation.write_report(
        report, tmp_path, images=notmnist.test[0], files={"model.npz": "the weights"}, title="test run"
    )
    assert written == ["confusion.png", "mistakes.png", "summary.json", "summary.txt"]
    assert_png(tmp_path / "confusion.png", (1100, 520))  # 11 x 5.2 inches at 100 dpi
    assert_png(tmp_path / "mistakes.png", (860, 600))  # 8.6 x 6 inches at 100 dpi
    summary = (tmp_path / "summary.txt").read_text()
    assert f"accuracy {report.accuracy:.4f}" in summary and "test run" in summary
    listed = [line.split()[0] for line in summary.split("files:\n")[1].splitlines()]
    assert sorted(listed) == sorted(p.name for p in tmp_path.iterdir())
    numbers = json.loads((tmp_path / "summary.json").read_text())
    assert numbers["accuracy"] == pytest.approx(report.accuracy) and numbers["classes"] == list(LETTERS)
    assert numbers["per_class"]["C"]["recall"] == pytest.approx(report.recall[2])
    assert np.array(numbers["confusion"]).sum() == 2000
    assert sorted(numbers["files"]) == sorted(listed)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_the_mistakes_grid_shows_the_images(report, notmnist, tmp_path):
    """The grid's top-left tile is the most confident mistake, drawn in grey levels."""
    evaluation.write_report(report, tmp_path, images=notmnist.test[0])
    with Image.open(tmp_path / "mistakes.png") as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 30  # not an empty picture: dark tiles with light letters on white
    assert (pixels < 20).mean() > 0.1


def fastmlp_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "fastmlp", *args], capture_output=True, text=True, timeout=180, cwd=cwd
    )


def test_evaluate_command_prints_and_writes_the_report(report, trained_model_file, sample_folder, tmp_path):
    out = tmp_path / "evaluation"
    result = fastmlp_cli("evaluate", str(trained_model_file), "--data", str(sample_folder), "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"Test Accuracy: {report.accuracy:.4f}" in lines and f"Test Loss: {report.loss:.4f}" in lines
    row_c = next(line for line in lines if line.startswith("C "))
    assert [float(v) for v in row_c.split()[1:4]] == pytest.approx(
        [report.precision[2], report.recall[2], report.f1[2]], abs=5e-5
    )
    assert sorted(p.name for p in out.iterdir()) == ["confusion.png", "mistakes.png", "summary.json", "summary.txt"]
    assert_png(out / "confusion.png", (1100, 520))


def test_evaluate_command_without_out_writes_under_runs(trained_model_file, sample_folder, tmp_path):
    result = fastmlp_cli("evaluate", str(trained_model_file), "--data", str(sample_folder), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [folder] = list((tmp_path / "runs").iterdir())
    assert folder.name.endswith("-evaluate") and (folder / "summary.txt").is_file()


def test_evaluate_command_refuses_what_is_not_a_model(sample_folder, tmp_path):
    (tmp_path / "notes.npz").write_text("hello")
    for model, fragment in (
        (tmp_path / "notes.npz", "not a fastmlp weights file"),
        (tmp_path / "missing.npz", "does not exist"),
    ):
        result = fastmlp_cli("evaluate", str(model), "--data", str(sample_folder), "--out", str(tmp_path / "out"))
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith("fastmlp: error: ") and fragment in result.stderr
        assert len(result.stderr.splitlines()) == 1
        assert not (tmp_path / "out").exists()
