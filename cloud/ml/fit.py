"""Fitting: MLPs trained epoch by epoch (with progress and a time budget), the baselines, the anomaly threshold.

An MLP is trained with Adam one pass at a time (``partial_fit``) until its training loss has not improved by
``tol`` for ``patience`` passes, or ``max_epochs`` or ``budget_s`` is reached: scikit-learn's own stopping rule,
with a line of progress per pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from cloud.ml.progress import Progress

__all__ = ["FitParams", "best_f1_threshold", "fit_autoencoder", "fit_classifier", "isolation_forest",
           "quantile_threshold", "random_forest"]


@dataclass(frozen=True)
class FitParams:
    hidden: tuple[int, ...]
    alpha: float = 1e-4
    learning_rate: float = 1e-3
    batch_size: int = 200
    max_epochs: int = 200
    patience: int = 10
    tol: float = 1e-4
    budget_s: float = 600.0
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_card(self) -> dict[str, Any]:
        return {"hidden_layer_sizes": list(self.hidden), "alpha": self.alpha, "learning_rate_init":
                self.learning_rate, "batch_size": self.batch_size, "max_epochs": self.max_epochs, "patience":
                self.patience, "tol": self.tol, "seed": self.seed, **self.extra}


def _epochs(model: Any, x: npt.NDArray[Any], y: npt.NDArray[Any], params: FitParams, progress: Progress,
            first: dict[str, Any]) -> int:
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    start = time.monotonic()
    best, stale, epoch = np.inf, 0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        while epoch < params.max_epochs:
            model.partial_fit(x, y, **(first if epoch == 0 else {}))
            epoch += 1
            loss = float(model.loss_)
            stale = stale + 1 if loss > best - params.tol else 0
            best = min(best, loss)
            progress.step("fitting", epoch, params.max_epochs, f"epoch loss {loss:.5g}")
            if stale >= params.patience:
                progress.say(f"fitting: converged after {epoch} epochs (loss {best:.5g})")
                break
            if time.monotonic() - start > params.budget_s:
                progress.say(f"fitting: stopped at the time budget after {epoch} epochs (loss {best:.5g})")
                break
    return epoch


def fit_autoencoder(rows: npt.NDArray[np.float32], params: FitParams, progress: Progress) -> Any:
    """An ``MLPRegressor`` that reproduces the scaled (normal) rows."""
    from sklearn.neural_network import MLPRegressor

    model = MLPRegressor(hidden_layer_sizes=params.hidden, activation="relu", solver="adam", alpha=params.alpha,
                         learning_rate_init=params.learning_rate, batch_size=min(params.batch_size, len(rows)),
                         random_state=params.seed, shuffle=True)
    progress.say(f"fitting an autoencoder {list(params.hidden)} on {len(rows):,} rows")
    _epochs(model, rows, rows[:, 0] if rows.shape[1] == 1 else rows, params, progress, {})  # one column: 1-d y
    return model


def fit_classifier(rows: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], n_classes: int, params: FitParams,
                   progress: Progress) -> Any:
    """An ``MLPClassifier`` on scaled rows; ``labels`` are indices ``0..n_classes-1``."""
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(hidden_layer_sizes=params.hidden, activation="relu", solver="adam", alpha=params.alpha,
                          learning_rate_init=params.learning_rate, batch_size=min(params.batch_size, len(rows)),
                          random_state=params.seed, shuffle=True)
    progress.say(f"fitting a classifier {list(params.hidden)} on {len(rows):,} rows, {n_classes} classes")
    _epochs(model, rows, labels, params, progress, {"classes": np.arange(n_classes)})
    return model


def isolation_forest(rows: npt.NDArray[np.float32], seed: int = 0) -> Any:
    from sklearn.ensemble import IsolationForest

    return IsolationForest(n_estimators=200, random_state=seed, n_jobs=1).fit(rows)


def random_forest(rows: npt.NDArray[np.float32], labels: npt.NDArray[np.int64], seed: int = 0) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=1).fit(rows, labels)


def quantile_threshold(scores: npt.NDArray[Any], quantile: float) -> float:
    """The training scores' ``quantile``: that share of the normal training rows scores below the threshold."""
    return float(np.quantile(np.asarray(scores, np.float64), quantile))


def best_f1_threshold(scores: npt.NDArray[Any], anomalous: npt.NDArray[np.bool_]) -> float:
    """The score threshold (``score >= threshold`` is anomalous) with the best F1 on these labelled rows."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    ranked, hits = np.asarray(scores, np.float64)[order], anomalous[order].astype(np.float64)
    true_pos = np.cumsum(hits)
    flagged = np.arange(1, len(ranked) + 1)
    f1 = 2 * true_pos / (flagged + hits.sum())
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True]  # a threshold flags every row of equal score
    best = int(np.argmax(np.where(last_of_tie, f1, -1)))
    return float(ranked[best])
