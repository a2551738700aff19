"""The linear head of the fixed-feature models: StandardScaler + L2 logistic regression.

MiniRocket's random-convolution features and a frozen foundation model's embeddings are
both thousands of unlearned columns over a few hundred windows: what they share is a head
that must stay sane there (scaled inputs, strong L2, balanced classes) and give
``predict_proba`` for calibration, stacking and gates. One builder, so the two controls
differ only in their features.
"""

from __future__ import annotations

from typing import Any

__all__ = ["scaled_logistic"]


def scaled_logistic(*, C: float, class_weight: str | None, random_state: int) -> Any:
    """An unfitted ``Pipeline(StandardScaler, LogisticRegression)`` (L2, up to 2,000
    iterations)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [
            ("scale", StandardScaler()),
            (
                "model",
                LogisticRegression(
                    C=float(C),
                    class_weight=class_weight,
                    max_iter=2_000,
                    random_state=int(random_state),
                ),
            ),
        ]
    )
