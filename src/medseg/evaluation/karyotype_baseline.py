"""The classical floor of every karyotype report: a random forest on hand-made features per chromosome.

Every karyotype evaluation (``medseg evaluate`` of a run on ``mfish:karyotype`` or ``mfish:karyotype-upright``)
fits it on the chromosomes the learned model trained on (fold 0's training slides) and scores it on the same
held-out chromosomes, so the report shows the learned model beside the floor it must beat. Its input: the 17
numbers of :func:`medseg.data.karyotype_features.chromosome_features` (HDF5 ``features`` of the set), each divided
by the median of its own metaphase (:func:`~medseg.data.karyotype_features.per_metaphase`). The classifier:
scikit-learn's :class:`~sklearn.ensemble.RandomForestClassifier` (:data:`N_TREES` trees, class-balanced weights,
one thread, a fixed seed).

Persistence without pickle (medseg never unpickles a file it did not make): :meth:`KaryotypeBaseline.save` writes
the training features, classes, seed and tree count to an ``.npz`` read with ``allow_pickle=False``, and
:meth:`KaryotypeBaseline.load` refits the forest from them — deterministic (same seed, one thread), a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.data.karyotype_features import FEATURE_NAMES
from medseg.errors import DataValidationError

__all__ = ["BASELINE_FILE", "N_TREES", "KaryotypeBaseline"]

BASELINE_FILE = "karyotype_baseline.npz"
N_TREES = 300
N_CLASSES = 24  # 1-22, X (23), Y (24)


@dataclass
class KaryotypeBaseline:
    """A random forest over per-metaphase-normalised features. ``features`` (N, 17) and ``classes`` (N,) 1–24:
    its training chromosomes."""

    features: np.ndarray
    classes: np.ndarray
    seed: int = 0
    n_trees: int = N_TREES
    forest: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        from sklearn.ensemble import RandomForestClassifier

        self.features = np.asarray(self.features, np.float64)
        self.classes = np.asarray(self.classes, np.int64)
        if (
            self.features.ndim != 2
            or self.features.shape[1] != len(FEATURE_NAMES)
            or len(self.classes) != len(self.features)
        ):
            raise ValueError(
                f"features {self.features.shape} and classes {self.classes.shape}: expected (N, "
                f"{len(FEATURE_NAMES)}) and (N,)"
            )
        if len(self.classes) == 0 or self.classes.min() < 1 or self.classes.max() > N_CLASSES:
            raise ValueError(f"classes must be 1..{N_CLASSES} and at least one chromosome")
        self.forest = RandomForestClassifier(
            n_estimators=int(self.n_trees), class_weight="balanced", random_state=int(self.seed), n_jobs=1
        )
        self.forest.fit(self.features, self.classes)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(M, 24) class probabilities, column k for class k + 1 (a class absent from training gets 0)."""
        proba = self.forest.predict_proba(np.asarray(features, np.float64))
        out = np.zeros((len(proba), N_CLASSES))
        out[:, self.forest.classes_ - 1] = proba
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        np.savez(
            path,
            features=self.features,
            classes=self.classes,
            seed=self.seed,
            n_trees=self.n_trees,
            feature_names=np.array(FEATURE_NAMES),
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> KaryotypeBaseline:
        """Refit the forest saved at ``path`` (:meth:`save`); a file that is not one names itself in the error."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                names = [str(n) for n in z["feature_names"]]
                if names != list(FEATURE_NAMES):
                    raise DataValidationError(path, f"features {names} are not medseg's {list(FEATURE_NAMES)}")
                return cls(z["features"], z["classes"], int(z["seed"]), int(z["n_trees"]))
        except DataValidationError:
            raise
        except (OSError, KeyError, ValueError) as e:
            raise DataValidationError(
                path, f"not a karyotype baseline (.npz of features, classes, seed, n_trees): {e}"
            ) from e
