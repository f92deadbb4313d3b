"""How a trained model does on labelled data: accuracy, per-class precision / recall / F1, the
confusion matrix and the most confidently wrong images, and the files that show them.

:func:`report` runs the model once over the data (one forward pass, one copy of the probabilities
to the host) and returns a :class:`Report`, whose every measure NumPy derives from those
probabilities and the labels; :func:`write_report` writes its pictures and summaries into a given
folder, each file atomically::

    report = evaluation.report(model, X_test, y_test)
    print(report.table())
    write_report(report, "runs/today", images=X_test)   # confusion.png, mistakes.png, summary.txt/.json

Conventions, scikit-learn's (``precision_recall_fscore_support`` with ``labels=None`` and
``zero_division=0``): the predicted class is the most probable one (the first of equal maxima); the
confusion matrix counts true classes in rows and predicted classes in columns; a class that is
never predicted has precision 0 (no division by zero), one that never occurs has recall 0; F1 is
the harmonic mean of precision and recall (0 when both are 0); the macro averages weight equally
every class that occurs in the labels or the predictions: a class absent from both (a letter the
data do not hold, never predicted) is left out of them, not averaged in as 0.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import plotting
from .arguments import check_labels
from .errors import InvalidInputError
from .files import write_json, write_text

if TYPE_CHECKING:
    from .mlp import MLP

__all__ = ["Report", "report", "write_report"]


def _ratio(numerator, denominator):
    """numerator / denominator element-wise, 0 where the denominator is 0."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _cross_entropy(probabilities, labels):
    """-(1/N) sum_n log P[n, label[n]], in float64. A probability that underflowed to 0 counts as
    the smallest positive number of its dtype, so the loss stays finite (a lower bound then)."""
    picked = probabilities[np.arange(len(labels)), labels]  # (N,) the true class's probability
    floor = np.finfo(probabilities.dtype).smallest_subnormal
    return float(-np.mean(np.log(np.maximum(picked, floor), dtype=np.float64)))


@dataclass(eq=False)
class Report:
    """A model's class probabilities on labelled data, and the measures derived from them."""

    classes: tuple[str, ...]  # the name of each class, K
    labels: np.ndarray  # (N,) true class indices
    probabilities: np.ndarray  # (N, K) the model's class probabilities
    predicted: np.ndarray = field(init=False)  # (N,) the most probable class (the first of equal maxima)
    loss: float = field(init=False)  # average cross-entropy
    confusion: np.ndarray = field(init=False)  # (K, K) counts: row = true class, column = predicted

    def __post_init__(self) -> None:
        K = len(self.classes)
        self.predicted = np.argmax(self.probabilities, axis=1)
        self.loss = _cross_entropy(self.probabilities, self.labels)
        self.confusion = np.zeros((K, K), dtype=np.int64)
        np.add.at(self.confusion, (self.labels, self.predicted), 1)

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / self.n)

    @property
    def support(self) -> np.ndarray:
        """(K,) how many samples of each true class."""
        return self.confusion.sum(axis=1)

    @property
    def precision(self) -> np.ndarray:
        """(K,) of the samples predicted as class k, the fraction that are k."""
        return _ratio(np.diag(self.confusion), self.confusion.sum(axis=0))

    @property
    def recall(self) -> np.ndarray:
        """(K,) of the samples of class k, the fraction predicted as k."""
        return _ratio(np.diag(self.confusion), self.support)

    @property
    def f1(self) -> np.ndarray:
        precision, recall = self.precision, self.recall
        return _ratio(2 * precision * recall, precision + recall)

    @property
    def present(self) -> np.ndarray:
        """(K,) bool: the classes the macro averages cover, those in the labels or the predictions."""
        return (self.confusion.sum(axis=0) + self.confusion.sum(axis=1)) > 0

    def macro(self, measure: np.ndarray) -> float:
        """The mean of a per-class ``measure`` over the classes present (see the module's conventions)."""
        return float(measure[self.present].mean())

    def confident_mistakes(self, count: int = plotting.MISTAKES_SHOWN) -> np.ndarray:
        """Indices of up to ``count`` wrong predictions, the most confident (highest probability) first."""
        wrong = np.flatnonzero(self.predicted != self.labels)
        confidence = self.probabilities[wrong, self.predicted[wrong]]
        return wrong[np.argsort(-confidence, kind="stable")[:count]]

    def table(self) -> str:
        """Per-class precision, recall, F1 and support, then the macro averages, as aligned text."""
        width = max(5, *(len(name) for name in self.classes))
        lines = [f"{'class':<{width}}  precision  recall      f1  support"]
        for k, name in enumerate(self.classes):
            lines.append(
                f"{name:<{width}}  {self.precision[k]:9.4f}  {self.recall[k]:6.4f}  "
                f"{self.f1[k]:6.4f}  {self.support[k]:7d}"
            )
        lines.append(
            f"{'macro':<{width}}  {self.macro(self.precision):9.4f}  {self.macro(self.recall):6.4f}  "
            f"{self.macro(self.f1):6.4f}  {self.n:7d}"
        )
        absent = [name for name, here in zip(self.classes, self.present, strict=True) if not here]
        if absent:
            lines.append(f"(macro: the mean over the {int(self.present.sum())} classes present; {_absent(absent)})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The measures as JSON-ready Python values."""
        per_class = {
            name: {
                "precision": float(self.precision[k]),
                "recall": float(self.recall[k]),
                "f1": float(self.f1[k]),
                "support": int(self.support[k]),
            }
            for k, name in enumerate(self.classes)
        }
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "classes": list(self.classes),
            "per_class": per_class,
            "macro": {
                "precision": self.macro(self.precision),
                "recall": self.macro(self.recall),
                "f1": self.macro(self.f1),
                "classes": [name for name, here in zip(self.classes, self.present, strict=True) if here],
            },
            "confusion": self.confusion.tolist(),
        }


def _absent(names):
    return f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} neither in the labels nor predicted"


def report(model: MLP, X: Any, y: Any) -> Report:
    """Run ``model`` (an :class:`~fastmlp.MLP`) on (X, y) -> :class:`Report`.

    One forward pass and one copy to the host (the class probabilities); the rest is NumPy."""
    labels = check_labels(y, model.n_out, n_samples=len(X), classes=model.classes)
    return Report(classes=tuple(model.classes), labels=labels, probabilities=model.predict_proba(X))


def _as_images(X):
    """(N, D) rows -> (N, s, s) square images, for the mistakes grid."""
    X = np.asarray(X)
    side = math.isqrt(X[0].size)
    if side * side != X[0].size:
        raise InvalidInputError(f"cannot draw rows of {X[0].size} features as square images")
    return X.reshape(len(X), side, side)


def write_report(
    report: Report,
    folder: str | os.PathLike[str],
    *,
    images: Any = None,
    files: Mapping[str, str] | None = None,
    title: str = "",
) -> list[str]:
    """Write the report's files into ``folder`` (made if missing); returns their names.

    confusion.png (counts and row-normalised), mistakes.png (only with ``images``, the (N, D) rows
    the report was computed on), summary.json (every measure) and summary.txt (the numbers and a
    list of every file in the folder: ``files`` maps the names of other files already there, e.g.
    the training curves, to a description).
    """
    os.makedirs(folder, exist_ok=True)
    written = {"confusion.png": "confusion matrix on the evaluation data: counts, and each row divided by its total"}
    plotting.plot_confusion(report.confusion, report.classes, os.path.join(folder, "confusion.png"), title=title)
    if images is not None:
        shown = report.confident_mistakes()
        plotting.plot_mistakes(
            _as_images(images)[shown],
            [report.classes[k] for k in report.labels[shown]],
            [report.classes[k] for k in report.predicted[shown]],
            report.probabilities[shown, report.predicted[shown]],
            os.path.join(folder, "mistakes.png"),
            title=title,
        )
        written["mistakes.png"] = (
            f"the {len(shown)} most confidently wrong images: true letter -> predicted letter and its probability"
        )
    written["summary.json"] = "every number of this summary, machine-readable"
    written["summary.txt"] = "this file"
    listing = {**(files or {}), **written}
    write_json(os.path.join(folder, "summary.json"), {"title": title, **report.to_dict(), "files": listing})
    write_text(os.path.join(folder, "summary.txt"), _summary_text(report, listing, title))
    return list(written)


def _summary_text(report, listing, title):
    lines = [title] if title else []
    correct = int(np.trace(report.confusion))
    lines += [
        f"accuracy {report.accuracy:.4f} ({correct} of {report.n}), loss {report.loss:.4f}",
        "",
        report.table(),
        "",
        "files:",
    ]
    width = max(len(name) for name in listing)
    lines += [f"  {name:<{width}}  {description}" for name, description in listing.items()]
    return "\n".join(lines) + "\n"
