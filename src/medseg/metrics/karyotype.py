"""Chromosome classification by a per-pixel classifier: the vote over a chromosome's pixels, and per-class
accuracy of the chromosomes (the set: :mod:`medseg.data.mfish_karyotype`).

A karyotyping model here is a segmentation model of the cut-out (0 background, 1–24 the chromosome classes),
trained by medseg's one training loop. A chromosome is one object, so it gets one class:

* ``soft`` (default) — the argmax over classes 1..C-1 of the mean softmax probability over its mask pixels;
  its **confidence** is that mean probability (of the full softmax, background included, so it is in [0, 1] and
  drops where the model puts mass on the background);
* ``majority`` — the most frequent per-pixel argmax over classes 1..C-1 (background left out of the argmax);
  ties go to the lower class; its confidence is the share of the mask's pixels that voted for it.

:class:`ChromosomeClassAccuracy` counts chromosomes, not pixels: per class the number of true chromosomes, the
number classified right (per-class accuracy = recall), how many were predicted as that class (precision);
overall accuracy, balanced accuracy (mean per-class accuracy over the classes present) and the confusion matrix
(rows true class, columns predicted, classes 1..C-1). A class with no true chromosome has accuracy None and is
left out of the balanced accuracy (never counted as 0 or 1). Shapes: probabilities (C, H, W) per chromosome or
(N, C, H, W) per batch, labels (H, W) / (N, H, W).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["VOTES", "ChromosomeClassAccuracy", "class_probabilities", "vote"]

VOTES = ("soft", "majority")


def vote(
    proba: np.ndarray, mask: np.ndarray, method: str = "soft", *, background: int = 0
) -> tuple[int, float, np.ndarray]:
    """The class of one chromosome from per-pixel probabilities ``proba`` (C, H, W) over its ``mask`` (H, W) bool:
    (class index in 1..C-1, confidence, per-class score (C,) with the background's set to 0). ``soft``: the score
    is the mean probability over the mask; ``majority``: the share of mask pixels whose argmax over the
    non-background classes is that class (see the module docstring)."""
    if method not in VOTES:
        raise ValueError(f"unknown vote {method!r}; use {' or '.join(VOTES)}")
    proba, mask = np.asarray(proba, np.float64), np.asarray(mask, bool)
    if proba.ndim != 3 or proba.shape[1:] != mask.shape:
        raise ValueError(f"probabilities {proba.shape} must be (C, H, W) over the mask's {mask.shape}")
    if not mask.any():
        raise ValueError("empty mask: no chromosome to classify")
    n_classes = proba.shape[0]
    pixels = proba[:, mask]  # (C, P)
    if method == "soft":
        score = pixels.mean(axis=1)
    else:
        others = np.delete(np.arange(n_classes), background)
        winners = others[np.argmax(pixels[others], axis=0)]
        score = np.bincount(winners, minlength=n_classes) / pixels.shape[1]
    score = score.copy()
    score[background] = 0.0
    cls = int(np.argmax(score))  # first maximum: ties to the lower class
    return cls, float(score[cls]), score


def class_probabilities(
    proba: np.ndarray, labels: np.ndarray, method: str = "soft", *, background: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Per chromosome (one per image, as :meth:`ChromosomeClassAccuracy.update` reads them): its true class (the
    most frequent label of its mask) and the vote's scores over the chromosome classes normalised to sum 1
    ((N, C − 1), column k for the k-th non-background class): the input of a per-cell assignment
    (:mod:`medseg.metrics.karyotype_assignment`). Images without a chromosome pixel are skipped."""
    proba, labels = np.asarray(proba), np.asarray(labels)
    true, rows = [], []
    for p, lab in zip(proba, labels, strict=True):
        mask = lab != background
        if not mask.any():
            continue
        true.append(int(np.bincount(lab[mask].ravel().astype(np.int64)).argmax()))
        score = np.delete(vote(p, mask, method, background=background)[2], background)
        rows.append(score / max(float(score.sum()), 1e-12))
    return np.array(true, np.int64), np.array(rows, np.float64).reshape(len(rows), proba.shape[1] - 1)


class ChromosomeClassAccuracy:
    """Cumulative per-chromosome classification counts (see the module docstring).

    ``class_names`` holds every class, background included (``background`` its index); the chromosome classes
    are the others, in order. Feed it with :meth:`add` (one chromosome's true and predicted class), or with
    :meth:`update` (probabilities and label maps; each image's chromosome is its non-background pixels, its true
    class their most frequent label — one chromosome per image, as the karyotyping set holds)."""

    def __init__(self, class_names: Sequence[str], *, background: int = 0, vote: str = "soft"):
        if vote not in VOTES:
            raise ValueError(f"unknown vote {vote!r}; use {' or '.join(VOTES)}")
        self.class_names = [str(c) for c in class_names]
        self.background = int(background)
        self.vote = vote
        self.classes = [c for c in range(len(self.class_names)) if c != self.background]
        self._index = {c: k for k, c in enumerate(self.classes)}
        self.matrix = np.zeros((len(self.classes),) * 2, np.int64)
        self.confidences: list[tuple[bool, float]] = []

    def add(self, true_cls: int, pred_cls: int, confidence: float | None = None) -> None:
        """Count one chromosome of class ``true_cls`` classified as ``pred_cls`` (class indices, not background)."""
        for c in (true_cls, pred_cls):
            if int(c) not in self._index:
                raise ValueError(
                    f"class {c} is not a chromosome class (1..{len(self.class_names) - 1} but {self.background})"
                )
        self.matrix[self._index[int(true_cls)], self._index[int(pred_cls)]] += 1
        if confidence is not None:
            self.confidences.append((int(true_cls) == int(pred_cls), float(confidence)))

    def update(self, proba: np.ndarray, labels: np.ndarray) -> list[tuple[int, int, float]]:
        """Classify the chromosome of every image (``proba`` (N, C, H, W), ``labels`` (N, H, W)) by the vote and
        count it; images without a chromosome pixel are skipped. Returns (true, predicted, confidence) per
        chromosome counted."""
        proba, labels = np.asarray(proba), np.asarray(labels)
        if proba.ndim != 4 or labels.shape != (proba.shape[0], *proba.shape[2:]):
            raise ValueError(
                f"probabilities {proba.shape} and labels {labels.shape}: expected (N, C, H, W) and (N, H, W)"
            )
        out = []
        for p, lab in zip(proba, labels, strict=True):
            mask = lab != self.background
            if not mask.any():
                continue
            true_cls = int(np.bincount(lab[mask].ravel().astype(np.int64)).argmax())
            pred_cls, confidence, _ = vote(p, mask, self.vote, background=self.background)
            self.add(true_cls, pred_cls, confidence)
            out.append((true_cls, pred_cls, confidence))
        return out

    def merge(self, other: ChromosomeClassAccuracy) -> None:
        """Add another counter's chromosomes (the same classes): folds' validation sets pooled."""
        if other.class_names != self.class_names or other.background != self.background:
            raise ValueError("cannot merge counters of different classes")
        self.matrix += other.matrix
        self.confidences += other.confidences

    def confusion(self) -> np.ndarray:
        """(K, K) counts over the chromosome classes, rows true, columns predicted."""
        return self.matrix.copy()

    def aggregate(self) -> dict:
        m = self.matrix
        n_true, n_pred, right = m.sum(axis=1), m.sum(axis=0), np.diag(m)
        total = int(m.sum())
        per_class = {}
        for k, c in enumerate(self.classes):
            row = m[k].copy()
            row[k] = 0
            confused = int(np.argmax(row)) if row.any() else None
            per_class[self.class_names[c]] = {
                "n": int(n_true[k]),
                "correct": int(right[k]),
                "accuracy": float(right[k] / n_true[k]) if n_true[k] else None,
                "n_predicted": int(n_pred[k]),
                "precision": float(right[k] / n_pred[k]) if n_pred[k] else None,
                "most_confused_with": None if confused is None else self.class_names[self.classes[confused]],
                "n_most_confused": 0 if confused is None else int(row[confused]),
            }
        present = [v["accuracy"] for v in per_class.values() if v["accuracy"] is not None]
        conf_right = [c for ok, c in self.confidences if ok]
        conf_wrong = [c for ok, c in self.confidences if not ok]
        return {
            "vote": self.vote,
            "n": total,
            "correct": int(right.sum()),
            "accuracy": float(right.sum() / total) if total else None,
            "balanced_accuracy": float(np.mean(present)) if present else None,
            "n_classes_present": len(present),
            "per_class": per_class,
            "class_names": [self.class_names[c] for c in self.classes],
            "confusion_matrix": m.tolist(),
            "mean_confidence_correct": float(np.mean(conf_right)) if conf_right else None,
            "mean_confidence_wrong": float(np.mean(conf_wrong)) if conf_wrong else None,
        }
