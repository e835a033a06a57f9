"""Score a frame's later loads with the robust detector, as a deployment without enough labels does."""

from __future__ import annotations

import pandas as pd

from dqad.detect import DetectorConfig, LabelerConfig, label_history, score_new
from dqad.detect.features import build_features
from dqad.detect.model import ModelBundle, RobustDetector


def score_after(frame: pd.DataFrame, cfg: DetectorConfig, cut: str) -> pd.DataFrame:
    """Label the loads before ``cut`` as the labeler would, then score the rest with the robust detector."""
    hist = frame[frame["timestamp"] < cut]
    new = frame[frame["timestamp"] >= cut]
    labeled = label_history(hist, None, LabelerConfig(holidays=cfg.holidays))
    names = list(build_features(labeled.iloc[:50], cfg).columns)
    bundle = ModelBundle(RobustDetector(cfg), names, 0.5, cfg, "now", {}, "robust")
    return score_new(bundle, labeled, new)
