"""Detection core: labeler, causal features, trainer, scorer, evaluation (docs/architecture.md §6).

Names are resolved on first use (PEP 562): importing ``dqad.detect.config`` — which a Lambda
handler does at start — must not drag in scikit-learn and pandas through this package's
``__init__``; that import belongs to the first call that trains or scores.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DetectorConfig": "dqad.detect.config",
    "LabelerConfig": "dqad.detect.config",
    "build_features": "dqad.detect.features",
    "label_history": "dqad.detect.labeling",
    "ModelBundle": "dqad.detect.model",
    "TrainingResult": "dqad.detect.model",
    "train_candidates": "dqad.detect.model",
    "score_new": "dqad.detect.scoring",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dqad.detect' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
