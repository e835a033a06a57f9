"""The model file (``model.dqad``): a :class:`ModelBundle` written and read without pickle.

Why: a joblib file is a pickle, and loading a pickle runs whatever code its author put in it. The
scorer checks the trainer's signature and the sha256 before it reads a byte (docs/security.md);
this format is the second wall behind them: whatever a file holds, reading it builds data, never
calls a function the file names.

Layout: a zip archive of

* ``bundle.json``: the format's name and version, the scikit-learn and numpy versions that wrote it,
  the bundle's fields in the tagged JSON described below, and the table of its arrays;
* ``arrays.bin``: the bytes of those numpy arrays, one after the other (64-byte aligned). Each entry
  of the table gives an array's dtype (numpy's ``.npy`` header form, read with
  ``numpy.lib.format.descr_to_dtype``), shape, offset and memory order. Only numbers, booleans,
  fixed-width strings and records of them are allowed: an array of Python objects needs pickle and
  is refused. (One member rather than one ``.npy`` per array: a forest holds hundreds of small
  arrays, and parsing as many ``.npy`` headers made loading three times slower than joblib.)

Tagged JSON: numbers, strings, booleans, null and lists stand for themselves; every other value is
a JSON object with exactly one key, its tag:

* ``{"tuple": [...]}``, ``{"dict": {...}}`` (string keys), ``{"array": n}`` (entry n of the table),
  ``{"strings": [...]}`` (a 1-d object array of str, e.g. ``feature_names_in_``),
  ``{"scalar": [dtype, value]}`` (a numpy number), ``{"config": {...}}``
  (``DetectorConfig.to_dict``, read back through ``DetectorConfig.from_dict`` and its checks),
  ``{"rng": {...}}`` (the state of a numpy PCG64 generator);
* ``{"object": {"class": name, "call": bool, "args": [...], "state": ...}}``: an instance of one
  of the classes in :func:`trusted_classes`, the fixed list of what the detector's models are made
  of. The class is looked up by its exact name in that list (nothing is imported by a name read from
  the file) and built the way pickle would build it, from data only: ``Class(*args)`` (``call``) or
  ``Class.__new__(Class)``, then ``__setstate__(state)`` (or the instance's ``__dict__``); a
  dataclass is built with ``Class(**state)``, so its own checks run.

Tree nodes are checked before a tree is built: every split's children come after it and inside the
tree, and every feature index inside the bundle's features, so prediction cannot read outside its
arrays or loop. Writing fails loudly (:class:`ModelFormatError`) on any value it cannot express; a
scikit-learn release that adds a new kind of attribute then fails the trainer's round-trip tests
instead of writing a file the scorer cannot read.

Cost against joblib (``python -m bench.run --only model_format``, BENCHMARKS.md): identical scores,
scoring as fast (the same scikit-learn objects are built), files a sixth to a seventh of the size
(deflated), loading within a few milliseconds of joblib's either way (faster from memory; the first
load of a process pays ~5-10 ms to inflate the arrays, less than the larger pickle takes to fetch).

skops (``skops.io`` with a trusted-types list) was measured too and not taken: its import walks
every scikit-learn estimator (+0.45 s on each cold start), and it loaded the forest 5x slower than
joblib in a file 2.8x larger, for three more packages in the scorer's and the job's images.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import zipfile
from typing import TYPE_CHECKING, Any

from dqad.detect.config import DetectorConfig

if TYPE_CHECKING:  # numpy is imported where arrays are: the trainer Lambda reads MODEL_FILE without it
    import numpy as np

#: the model file's name inside ``models/<dataset>/<version>/``
MODEL_FILE = "model.dqad"
FORMAT = "dqad-model"
FORMAT_VERSION = 1
BUNDLE_JSON = "bundle.json"
ARRAYS_BIN = "arrays.bin"
_ALIGN = 64
#: the most a model file may unpack to; the largest forest the trainer makes is a few MiB
MAX_UNPACKED_BYTES = 1 << 30
_ZIP_TIME = (2000, 1, 1, 0, 0, 0)  # fixed, so that one bundle always gives the same bytes (and sha256)


class ModelFormatError(ValueError):
    """A model file that is not a dqad model, or a bundle this format cannot express."""


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def trusted_classes() -> dict[str, type]:
    """The only classes a model file may instantiate: the candidates of ``make_estimator`` and their parts."""
    from sklearn._loss._loss import CyHalfBinomialLoss
    from sklearn._loss.link import Interval, LogitLink
    from sklearn._loss.loss import HalfBinomialLoss
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import LabelEncoder, StandardScaler
    from sklearn.tree import DecisionTreeClassifier
    from sklearn.tree._tree import Tree

    from dqad.detect.alarm import SeriesCalibration
    from dqad.detect.model import RobustDetector

    classes: list[type] = [
        RobustDetector,
        SeriesCalibration,
        RandomForestClassifier,
        DecisionTreeClassifier,
        Tree,
        HistGradientBoostingClassifier,
        _BinMapper,
        TreePredictor,
        LabelEncoder,
        HalfBinomialLoss,
        CyHalfBinomialLoss,
        LogitLink,
        Interval,
        Pipeline,
        StandardScaler,
        LogisticRegression,
    ]
    return {_name(c): c for c in classes}


# -- writing -------------------------------------------------------------------------------------
class _Writer:
    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []

    def enc(self, v: Any, where: str) -> Any:
        import numpy as np

        t = type(v)
        if v is None or t in (bool, int, float, str):
            return v
        if t is list:
            return [self.enc(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if t is tuple:
            return {"tuple": [self.enc(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if t is dict:
            bad = [k for k in v if type(k) is not str]
            if bad:
                raise ModelFormatError(f"{where}: dict keys must be strings, got {bad[:3]!r}")
            return {"dict": {k: self.enc(x, f"{where}.{k}") for k, x in v.items()}}
        if t is np.ndarray:
            return self._array(v, where)
        if isinstance(v, np.generic) and v.dtype.kind in "biuf":
            return {"scalar": [v.dtype.str, v.item()]}
        if t is DetectorConfig:
            return {"config": self.enc(v.to_dict(), f"{where}.cfg")}
        if t is np.random.Generator:
            if type(v.bit_generator) is not np.random.PCG64:
                raise ModelFormatError(f"{where}: only PCG64 generators are written, got {type(v.bit_generator)}")
            return {"rng": v.bit_generator.state}
        return self._object(v, where)

    def _array(self, a: np.ndarray, where: str) -> Any:

        if a.dtype.hasobject:
            if a.dtype == object and a.ndim == 1 and all(type(x) is str for x in a):
                return {"strings": a.tolist()}
            raise ModelFormatError(f"{where}: an array of Python objects ({a.dtype}) cannot be written without pickle")
        self.arrays.append(a)
        return {"array": len(self.arrays) - 1}

    def _object(self, v: Any, where: str) -> Any:
        cls = type(v)
        name = _name(cls)
        if trusted_classes().get(name) is not cls:
            raise ModelFormatError(f"{where}: {name} is not a trusted model class of dqad.detect.model_format")
        rv = v.__reduce_ex__(4)
        if not isinstance(rv, tuple) or len(rv) < 2 or any(x is not None for x in rv[3:]):
            raise ModelFormatError(f"{where}: {name} does not reduce to a class, arguments and a state")
        make, args = rv[0], rv[1]
        state = rv[2] if len(rv) > 2 else None
        if make is cls:
            call = True
        elif getattr(make, "__name__", "") == "__newobj__" and args == (cls,):
            call, args = False, ()
        else:
            raise ModelFormatError(f"{where}: {name} is rebuilt by {make!r}, which this format does not call")
        return {
            "object": {
                "class": name,
                "call": call,
                "args": [self.enc(x, f"{where}<arg {i}>") for i, x in enumerate(args)],
                "state": self.enc(state, f"{where}.{cls.__name__}"),
            }
        }


def _bundle_fields() -> list[str]:
    from dqad.detect.model import ModelBundle

    return [f.name for f in dataclasses.fields(ModelBundle)]


def dumps(bundle: Any) -> bytes:
    """The model file's bytes for ``bundle`` (deterministic: the same bundle gives the same bytes)."""
    import numpy as np
    import sklearn

    w = _Writer()
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "bundle": {name: w.enc(getattr(bundle, name), name) for name in _bundle_fields()},
    }
    table, blob = _pack(w.arrays)
    doc["arrays"] = table
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        _put(zf, BUNDLE_JSON, json.dumps(doc, separators=(",", ":")).encode())
        _put(zf, ARRAYS_BIN, blob)
    return out.getvalue()


def _pack(arrays: list[np.ndarray]) -> tuple[list[list[Any]], bytes]:
    import numpy as np

    table: list[list[Any]] = []
    parts: list[bytes] = []
    offset = 0
    for a in arrays:
        descr = np.lib.format.dtype_to_descr(a.dtype)
        if not isinstance(descr, str) and not all(len(f) == 2 and isinstance(f[1], str) for f in descr):
            raise ModelFormatError(f"arrays of nested record dtype {a.dtype} are not written")
        fortran = bool(a.flags.f_contiguous and not a.flags.c_contiguous)
        raw = (a.T if fortran else np.ascontiguousarray(a)).tobytes()
        pad = -offset % _ALIGN
        parts += [b"\0" * pad, raw]
        offset += pad
        table.append([descr, list(a.shape), offset, "F" if fortran else "C"])
        offset += len(raw)
    return table, b"".join(parts)


def _put(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    zf.writestr(info, data, compresslevel=1)


def write(bundle: Any, path: Any) -> None:
    """Write ``bundle`` to ``path`` (a str or Path)."""
    with open(path, "wb") as fh:
        fh.write(dumps(bundle))


# -- reading -------------------------------------------------------------------------------------
def _refuse_non_zip(data: bytes) -> None:
    if data[:4] != b"PK\x03\x04":
        raise ModelFormatError(
            f"not a {MODEL_FILE} model file (it is no zip archive); a pickle or joblib model is never "
            "loaded, because loading one runs code"
        )


class _Reader:
    def __init__(self, table: Any, blob: bytes, n_features: int | None) -> None:
        if type(table) is not list:
            raise ModelFormatError(f"{BUNDLE_JSON}: the array table must be a list")
        self.table = table
        self.buf = bytearray(blob)  # writable, so the arrays are too (as unpickled ones are)
        self.n_features = n_features
        self.built: list[Any] = []
        self._dtypes: dict[str, np.dtype] = {}

    def dec(self, v: Any, where: str) -> Any:
        import numpy as np

        if v is None or type(v) in (bool, int, float, str):
            return v
        if type(v) is list:
            return [self.dec(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if type(v) is not dict or len(v) != 1:
            raise ModelFormatError(f"{where}: expected a value or a one-key tag, got {str(v)[:80]}")
        [(tag, body)] = v.items()
        if tag == "tuple" and type(body) is list:
            return tuple(self.dec(x, f"{where}[{i}]") for i, x in enumerate(body))
        if tag == "dict" and type(body) is dict:
            return {k: self.dec(x, f"{where}.{k}") for k, x in body.items()}
        if tag == "array" and type(body) is int:
            return self._array(body, where)
        if tag == "strings" and type(body) is list and all(type(x) is str for x in body):
            return np.array(body, dtype=object)
        if tag == "scalar" and type(body) is list and len(body) == 2:
            dtype = np.dtype(str(body[0]))
            if dtype.kind not in "biuf" or type(body[1]) not in (bool, int, float):
                raise ModelFormatError(f"{where}: bad numpy scalar {body!r}")
            return dtype.type(body[1])
        if tag == "config":
            try:
                return DetectorConfig.from_dict(self.dec(body, where))
            except (TypeError, ValueError) as exc:
                raise ModelFormatError(f"{where}: bad detector configuration: {exc}") from exc
        if tag == "rng" and type(body) is dict and body.get("bit_generator") == "PCG64":
            rng = np.random.Generator(np.random.PCG64())
            try:
                rng.bit_generator.state = body
            except (TypeError, ValueError, KeyError) as exc:
                raise ModelFormatError(f"{where}: bad PCG64 state: {exc}") from exc
            return rng
        if tag == "object" and type(body) is dict:
            return self._object(body, where)
        raise ModelFormatError(f"{where}: unknown tag {tag!r}")

    def _array(self, i: int, where: str) -> np.ndarray:
        import numpy as np

        if not 0 <= i < len(self.table):
            raise ModelFormatError(f"{where}: array {i} is not in the file")
        entry = self.table[i]
        if type(entry) is not list or len(entry) != 4:
            raise ModelFormatError(f"{where}: malformed array entry {str(entry)[:80]}")
        descr, shape, offset, order = entry
        dtype = self._dtype(descr, where)
        if type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape) or order not in ("C", "F"):
            raise ModelFormatError(f"{where}: bad array shape {shape!r} or order {order!r}")
        count = int(np.prod(shape, dtype=np.int64))
        if type(offset) is not int or offset < 0 or offset + count * dtype.itemsize > len(self.buf):
            raise ModelFormatError(f"{where}: array {i} lies outside {ARRAYS_BIN}")
        flat = np.frombuffer(self.buf, dtype=dtype, count=count, offset=offset)
        return flat.reshape(shape[::-1]).T if order == "F" else flat.reshape(shape)

    def _dtype(self, descr: Any, where: str) -> np.dtype:
        import numpy as np

        key = json.dumps(descr)
        dtype = self._dtypes.get(key)
        if dtype is None:
            plain = isinstance(descr, str)
            fields = (
                not plain
                and type(descr) is list
                and all(type(f) is list and len(f) == 2 and all(type(x) is str for x in f) for f in descr)
            )
            if not (plain or fields):
                raise ModelFormatError(f"{where}: bad array dtype {key[:80]}")
            try:
                dtype = np.lib.format.descr_to_dtype(descr if plain else [tuple(f) for f in descr])
            except (TypeError, ValueError) as exc:
                raise ModelFormatError(f"{where}: bad array dtype {key[:80]}: {exc}") from exc
            if dtype.hasobject or dtype.itemsize == 0:
                raise ModelFormatError(f"{where}: an array of dtype {dtype} needs pickle; refused")
            self._dtypes[key] = dtype
        return dtype

    def _object(self, body: dict, where: str) -> Any:
        if set(body) != {"class", "call", "args", "state"} or type(body["args"]) is not list:
            raise ModelFormatError(f"{where}: malformed object {sorted(body)}")
        name = body["class"]
        cls = trusted_classes().get(name) if type(name) is str else None
        if cls is None:
            raise ModelFormatError(f"{where}: class {name!r} is not trusted; refusing to build it")
        args = [self.dec(x, f"{where}<arg {i}>") for i, x in enumerate(body["args"])]
        state = self.dec(body["state"], f"{where}.{cls.__name__}")
        check = _CHECKS.get(cls.__name__)
        if check is not None:
            check(self, args, state, where)
        try:
            if dataclasses.is_dataclass(cls):
                if args or type(state) is not dict:
                    raise ModelFormatError(f"{where}: a dataclass is built from its fields only")
                obj = cls(**state)
            else:
                obj = cls(*args) if body["call"] is True else cls.__new__(cls)  # type: ignore[call-overload]
                if state is not None:
                    setstate = getattr(type(obj), "__setstate__", None)
                    if setstate is not None:
                        obj.__setstate__(state)
                    elif type(state) is dict:
                        obj.__dict__.update(state)
                    else:
                        raise ModelFormatError(f"{where}: {name} takes a dict state")
        except ModelFormatError:
            raise
        except Exception as exc:  # a wrong argument or state: the library's own checks refused it
            raise ModelFormatError(f"{where}: {name} refused its state: {type(exc).__name__}: {exc}") from exc
        self.built.append(obj)
        return obj


def _fail(where: str, what: str) -> None:
    raise ModelFormatError(f"{where}: {what}")


def _check_tree(r: _Reader, args: list, state: Any, where: str) -> None:
    """A scikit-learn ``Tree``: children after their parent and inside the tree, features in range."""
    import numpy as np

    if (len(args) != 3 or type(args[0]) is not int or type(args[2]) is not int
            or not isinstance(args[1], np.ndarray) or args[1].dtype.kind != "i" or args[1].shape != (args[2],)
            or type(state) is not dict or not isinstance(state.get("nodes"), np.ndarray)):  # fmt: skip
        _fail(where, "a tree needs (n_features, n_classes, n_outputs) and a state with nodes")
    n_features = args[0]
    if r.n_features is not None and n_features != r.n_features:
        _fail(where, f"tree of {n_features} features in a bundle of {r.n_features}")
    nodes = state["nodes"]
    if nodes.dtype.names is None or not {"left_child", "right_child", "feature"} <= set(nodes.dtype.names):
        _fail(where, f"tree nodes of dtype {nodes.dtype}")
    if state.get("node_count") != len(nodes):
        _fail(where, "tree node_count does not match its nodes")
    left, right, feat = nodes["left_child"], nodes["right_child"], nodes["feature"]
    idx = np.arange(len(nodes))
    leaf = left == -1
    if not (np.array_equal(leaf, right == -1) and (left[~leaf] > idx[~leaf]).all() and (right[~leaf] > idx[~leaf]).all()
            and (left < len(nodes)).all() and (right < len(nodes)).all()):  # fmt: skip
        _fail(where, "tree nodes point outside the tree or backwards")
    if ((feat[~leaf] < 0) | (feat[~leaf] >= int(n_features))).any():
        _fail(where, "tree split on a feature outside the bundle's features")
    values = state.get("values")
    if not isinstance(values, np.ndarray) or values.ndim != 3 or len(values) != len(nodes):
        _fail(where, "tree values do not match its nodes")


def _check_predictor(r: _Reader, args: list, state: Any, where: str) -> None:
    """A HistGradientBoosting ``TreePredictor``: the same checks on its node records."""
    import numpy as np

    if type(state) is not dict or not isinstance(state.get("nodes"), np.ndarray):
        _fail(where, "a tree predictor needs a state with nodes")
    nodes = state["nodes"]
    need = {"left", "right", "feature_idx", "is_leaf", "is_categorical", "bitset_idx"}
    if nodes.dtype.names is None or not need <= set(nodes.dtype.names) or nodes.ndim != 1:
        _fail(where, f"tree predictor nodes of dtype {nodes.dtype}")
    split = nodes["is_leaf"] == 0
    idx = np.arange(len(nodes))
    left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
    if not ((left[split] > idx[split]).all() and (right[split] > idx[split]).all()
            and (left[split] < len(nodes)).all() and (right[split] < len(nodes)).all()):  # fmt: skip
        _fail(where, "tree predictor nodes point outside the tree or backwards")
    feat = nodes["feature_idx"][split]
    if (feat < 0).any() or (r.n_features is not None and (feat >= r.n_features).any()):
        _fail(where, "tree predictor split on a feature outside the bundle's features")
    cat = split & (nodes["is_categorical"] != 0)
    if cat.any():
        for key in ("binned_left_cat_bitsets", "raw_left_cat_bitsets"):
            bits = state.get(key)
            if not isinstance(bits, np.ndarray) or (nodes["bitset_idx"][cat] >= len(bits)).any():
                _fail(where, f"tree predictor categorical split outside its {key}")


_CHECKS = {"Tree": _check_tree, "TreePredictor": _check_predictor}


def loads(data: bytes) -> Any:
    """The bundle in a model file's bytes; :class:`ModelFormatError` for anything else.

    Only call it on bytes whose trainer signature and sha256 were checked (dqad_scorer.domain.load_model):
    this reader builds data, never runs the file's code, but a model from elsewhere still decides alarms.
    """
    from dqad.detect.model import ModelBundle

    _refuse_non_zip(data)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ModelFormatError(f"not a {MODEL_FILE} model file: {exc}") from exc
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if sorted(names) != sorted({BUNDLE_JSON, ARRAYS_BIN}):
            raise ModelFormatError(f"not a {MODEL_FILE} model file: it holds {sorted(names)[:5]}")
        if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
            raise ModelFormatError(f"model file unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB")
        try:
            doc = json.loads(zf.read(BUNDLE_JSON))
        except (ValueError, zipfile.BadZipFile) as exc:
            raise ModelFormatError(f"{BUNDLE_JSON}: {exc}") from exc
        if type(doc) is not dict or doc.get("format") != FORMAT or type(doc.get("bundle")) is not dict:
            raise ModelFormatError(f"{BUNDLE_JSON} is not a {FORMAT} document")
        if doc.get("format_version") != FORMAT_VERSION:
            raise ModelFormatError(
                f"model file format version {doc.get('format_version')!r}; this dqad reads {FORMAT_VERSION}"
            )
        fields = doc["bundle"]
        unknown = sorted(set(fields) - set(_bundle_fields()))
        if unknown:
            raise ModelFormatError(f"model file has bundle fields this dqad does not know: {unknown}")
        names_in = fields.get("feature_names")
        if type(names_in) is not list or not all(type(n) is str for n in names_in):
            raise ModelFormatError("model file: feature_names must be a list of strings")
        try:
            blob = zf.read(ARRAYS_BIN)
        except zipfile.BadZipFile as exc:
            raise ModelFormatError(f"model file damaged: {exc}") from exc
    reader = _Reader(doc.get("arrays"), blob, len(names_in))
    values = {k: reader.dec(v, k) for k, v in fields.items()}
    for obj in reader.built:
        n_in = getattr(obj, "n_features_in_", None)
        if n_in is not None and int(n_in) != len(names_in):
            raise ModelFormatError(f"{type(obj).__name__} takes {n_in} features, the bundle names {len(names_in)}")
    try:
        bundle = ModelBundle(**values)
    except TypeError as exc:
        raise ModelFormatError(f"model file: {exc}") from exc
    if bundle.kind == "robust" and type(bundle.estimator).__name__ != "RobustDetector":
        raise ModelFormatError("model file: a robust bundle must hold the robust detector")
    return bundle


def read(path: Any) -> Any:
    """The bundle in the model file at ``path``."""
    with open(path, "rb") as fh:
        return loads(fh.read())
