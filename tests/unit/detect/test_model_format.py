"""The model file (dqad.detect.model_format): every kind round-trips to identical scores, and a file
that is not what the trainer writes (a pickle, an untrusted class, an object array, a tree pointing
outside itself) is refused with a clear error, without running anything."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dqad.detect import DetectorConfig, LabelerConfig, build_features, label_history, score_new, train_candidates
from dqad.detect import model_format as mf
from dqad.detect.model import ModelBundle, _fit, make_estimator

CFG = DetectorConfig(
    n_estimators=10,
    cv_folds=2,
    min_positive=5,
    holidays=("2024-02-14",),
    controls=({"metric": "*row_count", "direction": "down", "max": 1e9},),
)
KINDS = ("robust", "random_forest", "gradient_boosting", "logistic")
CUT = pd.Timestamp("2024-04-01")


@pytest.fixture(scope="module")
def history() -> tuple[pd.DataFrame, pd.DataFrame]:
    from tests.unit.detect.conftest import make_loads

    df = make_loads(days=120, tables=3)
    rng = np.random.default_rng(1)
    idx = rng.choice(df.index[df["timestamp"] > pd.Timestamp("2024-01-20")], 30, replace=False)
    df.loc[idx, "value"] *= rng.choice([0.1, 3.0], 30)
    feedback = df.loc[idx, ["series", "timestamp"]].assign(label="anomaly")
    return df, label_history(df, feedback, LabelerConfig(holidays=CFG.holidays))


@pytest.fixture(scope="module")
def bundles(history) -> dict[str, ModelBundle]:
    """One bundle per kind: the trainer's own bundle (calibration included) with each estimator in turn."""
    _, labeled = history
    base = train_candidates(labeled, CFG).bundle
    assert base.calibration is not None and base.calibration.thresholds
    X = build_features(labeled, CFG)
    y = labeled["label"].to_numpy().astype(int)
    out = {"robust": dataclasses.replace(base, estimator=make_estimator("robust", CFG, len(y)), kind="robust")}
    for kind in KINDS[1:]:
        est = make_estimator(kind, CFG, len(y))
        if kind == "random_forest":
            est.set_params(n_jobs=1)  # threads add the trees' votes in any order: the last bit would vary
        _fit(est, kind, X, y, np.ones(len(y)))
        out[kind] = dataclasses.replace(base, estimator=est, feature_names=list(X.columns), kind=kind)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_round_trips_to_identical_scores_and_alarms(kind, bundles, history, tmp_path: Path) -> None:
    df, labeled = history
    bundle = bundles[kind]
    path = tmp_path / mf.MODEL_FILE
    mf.write(bundle, path)
    back = mf.read(path)
    assert type(back.estimator) is type(bundle.estimator) and back.kind == kind
    assert back.cfg == bundle.cfg and back.cfg.controls == CFG.controls and back.cfg.holidays == CFG.holidays
    assert back.calibration == bundle.calibration
    assert (back.threshold, back.trained_at, back.feature_names) == (
        bundle.threshold, bundle.trained_at, bundle.feature_names
    )  # fmt: skip
    assert json.dumps(back.metrics, sort_keys=True) == json.dumps(bundle.metrics, sort_keys=True)  # NaN too
    X = build_features(labeled, CFG)
    np.testing.assert_array_equal(back.predict_score(X), bundle.predict_score(X))
    hist, new = labeled[labeled["timestamp"] < CUT], df[df["timestamp"] >= CUT]
    pd.testing.assert_frame_equal(score_new(back, hist, new), score_new(bundle, hist, new))
    assert mf.dumps(back) == mf.dumps(bundle), "the same bundle always gives the same bytes"


def test_a_model_file_holds_json_and_plain_arrays(bundles) -> None:
    with zipfile.ZipFile(io.BytesIO(mf.dumps(bundles["random_forest"]))) as zf:
        assert sorted(zf.namelist()) == ["arrays.bin", "bundle.json"]
        doc = json.loads(zf.read("bundle.json"))
    assert doc["format"] == "dqad-model" and doc["format_version"] == 1
    assert doc["bundle"]["kind"] == "random_forest"
    assert doc["bundle"]["cfg"]["config"]["dict"]["holidays"] == ["2024-02-14"]
    assert not any("O" in json.dumps(descr) for descr, *_ in doc["arrays"])


# -- what is refused ---------------------------------------------------------------------------------
class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _rewrite(data: bytes, edit) -> bytes:  # type: ignore[no-untyped-def]
    """The model file with its bundle.json (and array table) changed by ``edit(doc)``."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        doc = json.loads(zf.read("bundle.json"))
        blob = zf.read("arrays.bin")
    edit(doc)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("bundle.json", json.dumps(doc))
        zf.writestr("arrays.bin", blob)
    return out.getvalue()


def test_a_pickle_or_joblib_file_is_refused_and_runs_nothing(bundles, tmp_path: Path) -> None:
    import joblib

    marker = tmp_path / "pwned"
    evil = pickle.dumps(_RunsACommand(marker))
    buf = io.BytesIO()
    joblib.dump(bundles["robust"], buf)
    for data in (evil, buf.getvalue(), b"cos\nsystem\n(S'echo pwned'\ntR."):
        with pytest.raises(mf.ModelFormatError, match=r"not a model\.dqad model file .*pickle or joblib"):
            mf.loads(data)
    assert not marker.exists()


def test_a_pickle_inside_the_archive_is_refused(bundles, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = mf.dumps(bundles["robust"])
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as zf:
        for name in src.namelist():
            zf.writestr(name, src.read(name))
        zf.writestr("estimator.pkl", pickle.dumps(_RunsACommand(marker)))
    with pytest.raises(mf.ModelFormatError, match="it holds"):
        mf.loads(out.getvalue())
    assert not marker.exists()


@pytest.mark.parametrize("name", ["posix.system", "builtins.eval", "sklearn.ensemble._iforest.IsolationForest"])
def test_a_class_outside_the_trusted_list_is_never_built(bundles, tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    evil = {"object": {"class": name, "call": True, "args": [f"touch {marker}"], "state": None}}
    data = _rewrite(mf.dumps(bundles["robust"]), lambda doc: doc["bundle"].update(estimator=evil))
    with pytest.raises(mf.ModelFormatError, match="is not trusted; refusing to build it"):
        mf.loads(data)
    assert not marker.exists()


def test_an_object_array_is_refused(bundles) -> None:
    def to_object(doc: dict) -> None:
        doc["arrays"][0][0] = "|O"

    with pytest.raises(mf.ModelFormatError, match="needs pickle"):
        mf.loads(_rewrite(mf.dumps(bundles["random_forest"]), to_object))


def test_unknown_tags_fields_and_versions_are_refused(bundles) -> None:
    data = mf.dumps(bundles["robust"])
    cases = [
        (lambda d: d["bundle"].update(threshold={"eval": "1+1"}), "unknown tag 'eval'"),
        (lambda d: d["bundle"].update(extra=1), "fields this dqad does not know"),
        (lambda d: d.update(format_version=99), "format version 99"),
        (lambda d: d["bundle"]["cfg"]["config"]["dict"].update(windowz=[3]), "windowz"),
    ]
    for edit, message in cases:
        with pytest.raises(mf.ModelFormatError, match=message):
            mf.loads(_rewrite(data, edit))


def _first_tree_nodes(doc: dict) -> int:
    """Index in the array table of the first tree's nodes of a forest."""
    tree = doc["bundle"]["estimator"]["object"]["state"]["dict"]["estimators_"][0]["object"]
    return tree["state"]["dict"]["tree_"]["object"]["state"]["dict"]["nodes"]["array"]


def test_a_tree_pointing_outside_itself_is_refused(bundles) -> None:
    data = mf.dumps(bundles["random_forest"])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        doc = json.loads(zf.read("bundle.json"))
        blob = bytearray(zf.read("arrays.bin"))
    descr, shape, offset, _ = doc["arrays"][_first_tree_nodes(doc)]
    nodes = np.frombuffer(blob, dtype=np.lib.format.descr_to_dtype([tuple(f) for f in descr]), count=shape[0],
                          offset=offset)  # fmt: skip
    for field, value, message in (("left_child", 10**6, "outside the tree"), ("feature", 999, "outside the bundle")):
        bad = bytearray(blob)
        view = np.frombuffer(bad, dtype=nodes.dtype, count=shape[0], offset=offset)
        view[field][0] = value
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            zf.writestr("bundle.json", json.dumps(doc))
            zf.writestr("arrays.bin", bytes(bad))
        with pytest.raises(mf.ModelFormatError, match=message):
            mf.loads(out.getvalue())


def test_writing_refuses_what_it_cannot_express(bundles) -> None:
    from sklearn.ensemble import IsolationForest

    bundle = bundles["robust"]
    with pytest.raises(mf.ModelFormatError, match="IsolationForest is not a trusted model class"):
        mf.dumps(dataclasses.replace(bundle, estimator=IsolationForest(), kind="iforest"))
    with pytest.raises(mf.ModelFormatError, match="Python objects"):
        mf.dumps(dataclasses.replace(bundle, metrics={"x": np.array([object()])}))  # type: ignore[dict-item]
