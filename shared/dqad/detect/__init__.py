"""Detection core: labeler, causal features, trainer, scorer, evaluation (DESIGN §6)."""

from dqad.detect.config import DetectorConfig, LabelerConfig
from dqad.detect.features import build_features
from dqad.detect.labeling import label_history
from dqad.detect.model import ModelBundle, TrainingResult, train_candidates
from dqad.detect.scoring import score_new

__all__ = [
    "DetectorConfig",
    "LabelerConfig",
    "ModelBundle",
    "TrainingResult",
    "build_features",
    "label_history",
    "score_new",
    "train_candidates",
]
