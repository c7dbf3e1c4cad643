"""A trained run as a self-contained artifact: one exported function, its weights, and a loader.

    metarec export runs/melu_ml1m --out exported/melu1 --method melu1     # or export_run(...)

    from metarec_jax.export import load_artifact                          # jax, numpy, json: nothing else
    art = load_artifact("exported/melu1")
    items, scores = art.recommend([1193, 661, 914], [5, 3, 4], k=10, user={"gender": 1})

The artifact folder::

    artifact.json          what it is: format version, method, seed, run config, item count,
                           rating scale, user fields, support buckets, k_max, weight leaves,
                           the data set's raw item ids (when the data set has them)
    function.stablehlo     jax.export serialization (StableHLO) of one function:
                           adapt to the support set + score every item + top k_max
                           (with a fixed-length export instead: function_<B>.stablehlo per bucket)
    weights.npz            the function's weights: meta params, item feature tables, cached item
                           features, inner rate (numpy arrays, one per pytree leaf)
    metarec_artifact.py    a copy of this module: ``sys.path.insert(0, DIR); import metarec_artifact``
                           loads the artifact where metarec-jax is not installed
    metarec_server.py      a copy of `server`: ``python DIR/metarec_server.py --port 8000``

The exported function is the `serving.Recommender`'s own adapt and top-k
(the same jitted closures, composed into one call)::

    f(weights: [leaves], items: int32[b], ratings: float32[b], mask: bool[b],
      user: (one array per user field), exclude_seen: bool) -> (item rows int32[k_max], scores float32[k_max])

with ``b`` a symbolic dimension (jax.export shape polymorphism: the inner
loop's masked losses and gradients need no fixed support length), so one
serialized module serves every support length. The loader still pads the
support set to power-of-two buckets (``artifact.json`` ``support.buckets``,
32 .. ``max_support``): each new length would otherwise compile anew.
Where a model does not export with a symbolic length, `export_recommender`
exports one fixed-length function per bucket instead (same interface).

Weights are explicit inputs, not constants baked into the StableHLO: one
copy serves every bucket (and every platform the function was lowered for),
the module stays small and fast to deserialize, the weights can be read with
numpy alone (and swapped for another seed's of the same shapes), and an
accelerator holds them once, put there at load. What a model closes over
that is not a param (e.g. MetaHIN's meta-path tables) is baked in as a constant.

Top-k runs at a fixed ``k_max`` (default 100, at most the item count) and is
sliced to the request's ``k``: one program per bucket, whatever ``k``.

This module imports nothing of metarec-jax at module level: the loader path
(`load_artifact`, `Artifact`) needs jax, numpy and the standard library only.
Only `export_run` / `export_recommender` import the framework (inside them).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
import shutil
import threading
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = "metarec-export"
FORMAT_VERSION = 1
MANIFEST = "artifact.json"
FUNCTION = "function.stablehlo"
WEIGHTS = "weights.npz"
LOADER_COPY = "metarec_artifact.py"
SERVER_COPY = "metarec_server.py"
DEFAULT_K_MAX = 100
DEFAULT_MAX_SUPPORT = 1024
MIN_BUCKET = 32  # serving.MIN_BUCKET (not imported: the loader imports nothing of the framework)
DEFAULT_PLATFORMS = ("cpu", "cuda")


class _Unserializable(Exception):
  """jax cannot serialize (a missing package): no fallback helps."""


class RequestError(ValueError):
  """A request the artifact cannot answer (unknown item, rating out of scale, bad k, ...): the client's fault."""


def support_buckets(max_support: int, minimum: int = MIN_BUCKET) -> list[int]:
  """The padded support lengths up to ``max_support``: powers of two from ``minimum``, the last >= ``max_support``."""
  sizes = [minimum]
  while sizes[-1] < max_support:
    sizes.append(sizes[-1] * 2)
  return sizes


# ====================================================================== export (needs the framework)


def export_run(workdir: str | os.PathLike, out: str | os.PathLike, *, method: str | None = None,
               seed: int | None = None, k_max: int = DEFAULT_K_MAX, max_support: int = DEFAULT_MAX_SUPPORT,
               platforms: Sequence[str] = DEFAULT_PLATFORMS, symbolic: bool = True,
               verify: bool = True) -> dict[str, Any]:
  """Exports one learned method of a finished run (its validation-selected params) to the folder ``out``.

  Args:
    workdir: the run folder (``metarec run ... --workdir``).
    out: the artifact folder (created; an earlier artifact there is replaced).
    method: a learned method of the run (default: the first in ``config.methods``).
    seed: which seed's checkpoint (default: ``config.seed``).
    k_max: the most items a request may ask for (capped at the item count).
    max_support: the most ratings a request may give (the largest bucket is the next power of two).
    platforms: what the function is lowered for (the loader refuses others).
    symbolic: try a symbolic support length first (else: one function per bucket).
    verify: load the artifact back and check its top items against the `serving.Recommender`'s.

  Returns:
    the manifest written to ``artifact.json``.

  Raises:
    FileNotFoundError: not a run folder, or the method has no finished checkpoint.
    ValueError: a baseline or unknown method, a bad argument, or ``out`` holds something else.
  """
  from metarec_jax import config as cfg_lib
  from metarec_jax.serving import load_with_context

  _check_out(pathlib.Path(out))  # before the (slower) loading
  rec, ctx = load_with_context(workdir, method, seed)
  data = ctx.prep.data
  scale = data.rating_scale
  if scale is None or len(scale) != 2:  # a RecBole data set read without data.rating_scale: the observed range
    values = data.interactions.rating
    scale = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
  about = {"run": str(pathlib.Path(workdir).resolve()), "seed": ctx.seed, "dataset": data.name,
           "feedback": data.feedback, "config": json.loads(cfg_lib.to_json(ctx.config))}
  return export_recommender(rec, out, k_max=k_max, max_support=max_support, rating_scale=scale,
                            item_raw_ids=data.item_raw_ids, platforms=platforms, symbolic=symbolic,
                            verify=verify, about=about)


def export_recommender(rec: Any, out: str | os.PathLike, *, k_max: int = DEFAULT_K_MAX,
                       max_support: int = DEFAULT_MAX_SUPPORT, rating_scale: Sequence[float] = (1.0, 5.0),
                       item_raw_ids: Sequence[Any] | None = None, platforms: Sequence[str] = DEFAULT_PLATFORMS,
                       symbolic: bool = True, verify: bool = True,
                       about: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """Exports a `serving.Recommender` (any: loaded from a run, or built in code) to the folder ``out``.

  Args:
    rec: the recommender.
    out: the artifact folder (created; an earlier artifact there is replaced).
    k_max, max_support, platforms, symbolic, verify: see `export_run`.
    rating_scale: ``(min, max)`` of the ratings a request may give.
    item_raw_ids: the data set's id of each item row (``Dataset.item_raw_ids``); requests and
      answers then use them. None: item rows.
    about: more manifest entries (``run``, ``seed``, ``dataset``, ``feedback``, ``config``).

  Returns:
    the manifest written to ``artifact.json``.
  """
  from jax import export as jax_export

  out = pathlib.Path(out)
  num_items = int(rec.num_items)
  if k_max < 1:
    raise ValueError(f"k_max must be >= 1, got {k_max}")
  if max_support < 1:
    raise ValueError(f"max_support must be >= 1, got {max_support}")
  lo, hi = (float(x) for x in rating_scale)
  if not lo <= hi:
    raise ValueError(f"rating_scale must be (min, max), got {tuple(rating_scale)}")
  platforms = tuple(dict.fromkeys(p.strip().lower() for p in platforms if p.strip()))
  if not platforms:
    raise ValueError("platforms: give at least one (cpu, cuda, rocm, tpu)")
  _check_out(out)
  k_max = min(int(k_max), num_items)
  buckets = support_buckets(int(max_support), rec.min_bucket)
  ids = _raw_ids(item_raw_ids, num_items)

  # The function's inputs: the weights as one flat list (leaf order = artifact.json "weights"), then the request.
  weights = {"meta": rec.meta, "item_tables": dict(rec.features.item), "item_features": rec.item_features,
             "inner_lr": np.float32(rec.inner_lr)}
  paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(weights)
  names = [_leaf_name(path) for path, _ in paths_leaves]
  leaves = [np.asarray(leaf) for _, leaf in paths_leaves]
  row = rec.user_row()
  fields = [s.name for s in rec.user_fields]
  user_specs = tuple(jax.ShapeDtypeStruct(row[f].shape, row[f].dtype) for f in fields)

  def serve(weight_leaves, items, ratings, mask, user, exclude):
    w = jax.tree_util.tree_unflatten(treedef, weight_leaves)
    user_row = dict(zip(fields, user))
    params = rec._adapt(w["meta"], w["item_tables"], user_row, items, ratings, mask, w["inner_lr"])
    return rec._top_k(params, w["item_tables"], w["item_features"], user_row, (items, ratings, mask), exclude,
                      k=k_max)

  leaf_specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]

  def lower(length) -> bytes:
    spec = lambda dtype: jax.ShapeDtypeStruct((length,), dtype)
    exported = jax_export.export(jax.jit(serve), platforms=platforms)(
        leaf_specs, spec(jnp.int32), spec(jnp.float32), spec(jnp.bool_), user_specs,
        jax.ShapeDtypeStruct((), jnp.bool_))
    try:
      return bytes(exported.serialize())
    except ImportError as e:  # jax needs the flatbuffers package to serialize
      raise _Unserializable(f"{e} (pip install flatbuffers)") from None

  functions: dict[str, bytes] = {}
  symbolic_error = None
  if symbolic:
    try:
      functions[FUNCTION] = lower(jax_export.symbolic_shape("b", constraints=(f"b >= {buckets[0]}",))[0])
    except _Unserializable as e:
      raise ValueError(str(e)) from None
    except Exception as e:  # noqa: BLE001  (shape polymorphism refused: fall back to fixed lengths)
      text = str(e).strip()
      symbolic_error = f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
  if not functions:
    try:
      functions = {_bucket_file(b): lower(b) for b in buckets}
    except _Unserializable as e:
      raise ValueError(str(e)) from None
    except Exception as e:  # noqa: BLE001
      text = str(e).strip()
      raise ValueError(f"lowering {rec.name} for {', '.join(platforms)} failed ({type(e).__name__}: "
                       f"{text.splitlines()[0] if text else ''}); if a platform is the cause, leave it out with "
                       "--platforms") from e

  stored, leaf_info = {}, []
  for i, (name, leaf) in enumerate(zip(names, leaves)):
    dtype = str(leaf.dtype)
    if not _plain_numpy(leaf.dtype):  # bfloat16 & co: stored as same-width unsigned ints
      leaf = leaf.view(f"u{leaf.dtype.itemsize}")
    stored[f"w{i:04d}"] = leaf
    leaf_info.append({"key": f"w{i:04d}", "name": name, "shape": list(leaf.shape), "dtype": dtype})

  manifest = {
      "format": FORMAT,
      "format_version": FORMAT_VERSION,
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "jax_version": jax.__version__,
      "metarec_version": _framework_version(),
      "method": rec.name,
      "learner": {"name": rec.spec.name, "adapt": rec.spec.adapt, "inner_steps": int(rec.spec.inner_steps),
                  "inner_lr": float(rec.inner_lr)},
      "seed": None, "dataset": None, "feedback": "rating", "run": None,
      "num_items": num_items,
      "rating_scale": [lo, hi],
      "k_max": k_max,
      "support": {"symbolic": FUNCTION in functions, "buckets": buckets, "max": int(max_support),
                  "symbolic_error": symbolic_error},
      "platforms": list(platforms),
      "functions": {("*" if name == FUNCTION else name[len("function_"):-len(".stablehlo")]): name
                    for name in functions},
      "user_fields": [{"name": s.name, "kind": s.kind, "vocab_size": int(s.vocab_size), "width": int(s.width),
                       "shape": list(row[s.name].shape), "dtype": str(row[s.name].dtype)} for s in rec.user_fields],
      "item_ids": {"kind": "raw" if ids is not None else "row", "raw": ids},
      "weights": {"file": WEIGHTS, "leaves": leaf_info},
      "scores": "the model's predicted ratings (not clipped to the rating scale), best first",
      "config": None,
  }
  manifest.update(dict(about or {}))

  tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir(parents=True)
  try:
    for name, blob in functions.items():
      (tmp / name).write_bytes(blob)
    np.savez(tmp / WEIGHTS, **stored)
    here = pathlib.Path(__file__).parent
    shutil.copyfile(here / "export.py", tmp / LOADER_COPY)
    shutil.copyfile(here / "server.py", tmp / SERVER_COPY)
    (tmp / MANIFEST).write_text(_manifest_text(manifest))
    if verify:
      _verify(rec, load_artifact(tmp), manifest)
    if out.exists():
      shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return manifest


def _check_out(out: pathlib.Path) -> None:
  if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
    raise ValueError(f"{out} exists and is not an artifact folder; choose an empty or new folder")


def _manifest_text(manifest: Mapping[str, Any]) -> str:
  """``artifact.json``: indented, with the (long) raw item id list on one line."""
  raw = manifest["item_ids"]["raw"]
  mark = "@@raw item ids@@"
  text = json.dumps({**manifest, "item_ids": {**manifest["item_ids"], "raw": mark}}, indent=1)
  return text.replace(json.dumps(mark), json.dumps(raw)) + "\n"


def _verify(rec: Any, art: "Artifact", manifest: Mapping[str, Any]) -> None:
  """The artifact's top items for a probe user are the recommender's (ids equal, scores close)."""
  n = min(8, rec.num_items - 1, manifest["support"]["max"])
  rng = np.random.default_rng(0)
  rows = rng.choice(rec.num_items, size=n, replace=False)
  lo, hi = manifest["rating_scale"]
  ratings = np.round(rng.uniform(lo, hi, size=n)).clip(lo, hi).astype(np.float32)
  k = min(art.k_max, rec.num_items - n)
  want_ids, want_scores = rec.adapt(rows, ratings).top_k(k)
  got_ids, got_scores = art.recommend_rows(rows, ratings, k)
  if not (np.array_equal(want_ids, got_ids) and np.allclose(want_scores, got_scores, rtol=1e-4, atol=1e-4)):
    raise ValueError(f"the exported function disagrees with the recommender on a probe user "
                     f"(items {got_ids.tolist()} vs {want_ids.tolist()}); please report this")


def _leaf_name(path) -> str:
  parts = []
  for key in path:
    for attr in ("key", "idx", "name"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def _plain_numpy(dtype: np.dtype) -> bool:
  return dtype.kind in "biuf" and dtype.name in {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                                                 "uint32", "uint64", "float16", "float32", "float64"}


def _bucket_file(length: int) -> str:
  return f"function_{length}.stablehlo"


def _raw_ids(item_raw_ids: Sequence[Any] | None, num_items: int) -> list | None:
  """The raw ids as JSON values (ints or strings), or None when absent, of the wrong length or not unique."""
  if item_raw_ids is None:
    return None
  ids = np.asarray(item_raw_ids)
  if ids.shape != (num_items,):
    return None
  values = [int(v) for v in ids] if ids.dtype.kind in "iu" else [str(v) for v in ids]
  return values if len(set(values)) == len(values) else None


def _framework_version() -> str:
  from importlib.metadata import PackageNotFoundError, version
  try:
    return version("metarec-jax")
  except PackageNotFoundError:
    return "0+unknown"


# ====================================================================== loading (jax + numpy + json only)


@dataclasses.dataclass(frozen=True)
class UserField:
  """A user side-feature field a request may give: ``categorical`` (one id), ``multi`` / ``tokens``
  (a list of at most ``width`` ids) or ``dense`` (``width`` numbers); ids lie in ``[0, vocab_size)``, 0 unknown."""

  name: str
  kind: str
  vocab_size: int
  width: int
  shape: tuple[int, ...]
  dtype: str


class Artifact:
  """An exported recommender, loaded: adapts to a new user's ratings and ranks every item in one call.

  Use `load_artifact`. Thread-safe: the server calls `recommend` from many threads.

  Attributes:
    path: the artifact folder.
    manifest: ``artifact.json``.
    method: the exported method.
    num_items: items in the catalogue.
    k_max: the most items one request may ask for.
    max_support: the most ratings one request may give.
    buckets: the padded support lengths.
    rating_scale: ``(min, max)`` of valid ratings.
    user_fields: field name -> `UserField`.
    raw_ids: the data set's id of each item row (``None``: requests use item rows).
  """

  def __init__(self, path: pathlib.Path, manifest: dict[str, Any], functions: dict[int | str, Any],
               weights: list[jax.Array]):
    self.path = path
    self.manifest = manifest
    self.method = manifest["method"]
    self.num_items = int(manifest["num_items"])
    self.k_max = int(manifest["k_max"])
    self.max_support = int(manifest["support"]["max"])
    self.buckets = [int(b) for b in manifest["support"]["buckets"]]
    self.rating_scale = tuple(float(x) for x in manifest["rating_scale"])
    self.user_fields = {f["name"]: UserField(f["name"], f["kind"], int(f["vocab_size"]), int(f["width"]),
                                             tuple(f["shape"]), f["dtype"]) for f in manifest["user_fields"]}
    raw = manifest["item_ids"].get("raw")
    self.raw_ids = None if raw is None else np.asarray(raw)
    self._rows = None if raw is None else {v: i for i, v in enumerate(raw)}
    self._raw_kind = None if raw is None else (str if raw and isinstance(raw[0], str) else int)
    self._functions = functions
    self._weights = weights
    self._warm_lock = threading.Lock()

  def __repr__(self) -> str:
    return (f"Artifact({str(self.path)!r}, method={self.method!r}, items={self.num_items}, k_max={self.k_max}, "
            f"buckets={self.buckets})")

  # ------------------------------------------------------------------ requests

  def recommend(self, items: Sequence[Any], ratings: Sequence[float], k: int = 10,
                user: Mapping[str, Any] | None = None, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Adapts to one new user's ratings and returns their ``k`` best-scored items, best first.

    Args:
      items: the rated items: the data set's item ids when the artifact has them
        (``artifact.json`` ``item_ids.kind`` is ``raw``), else item rows. Not empty,
        no repeats, at most ``max_support``.
      ratings: their ratings, within ``rating_scale``.
      k: how many items: ``1 <= k <= k_max``, and at most the catalogue less the rated items.
      user: side features by field name (see `user_fields`); fields not given are unknown (id 0).
      exclude_seen: leave out the rated items.

    Returns:
      ``(item ids [k], scores [k])``, ids of the same kind as ``items``; scores are predicted ratings.

    Raises:
      RequestError: anything wrong with the request, with the reason.
    """
    ids, scores = self.recommend_rows(self.item_rows(items), ratings, k, user, exclude_seen)
    return (self.raw_ids[ids] if self.raw_ids is not None else ids), scores

  def item_rows(self, items: Sequence[Any]) -> np.ndarray:
    """Item ids (raw when the artifact has them, else rows) -> item rows; `RequestError` on unknown ones."""
    items = _sequence(items, "items")
    if self._rows is None:
      rows = [_int(x, f"items[{i}]") for i, x in enumerate(items)]
      bad = [r for r in rows if not 0 <= r < self.num_items]
      if bad:
        raise RequestError(f"unknown item id {bad[0]} (item rows lie in [0, {self.num_items}))")
      return np.asarray(rows, np.int32)
    rows = []
    for i, x in enumerate(items):
      if self._raw_kind is int:
        x = _int(x, f"items[{i}]")
      elif not isinstance(x, str):
        raise RequestError(f"items[{i}] must be a string item id, got {_typename(x)}")
      row = self._rows.get(x)
      if row is None:
        raise RequestError(f"unknown item id {x!r}")
      rows.append(row)
    return np.asarray(rows, np.int32)

  def recommend_rows(self, rows: Sequence[int] | np.ndarray, ratings: Sequence[float], k: int = 10,
                     user: Mapping[str, Any] | None = None,
                     exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """`recommend` with item rows in and out (the ids `serving.Recommender` uses)."""
    rows = np.asarray(rows)
    if rows.ndim != 1 or (len(rows) and rows.dtype.kind not in "iu"):
      raise RequestError("items must be a list of item rows")
    n = len(rows)
    if n == 0:
      raise RequestError("items is empty: give at least one rated item")
    if n > self.max_support:
      raise RequestError(f"too many rated items: {n} > {self.max_support} (max_support)")
    if rows.min() < 0 or rows.max() >= self.num_items:
      raise RequestError(f"item rows must lie in [0, {self.num_items})")
    if len(np.unique(rows)) != n:
      dup = rows[np.flatnonzero(np.bincount(rows, minlength=self.num_items)[rows] > 1)[0]]
      raise RequestError(f"item {self._show(int(dup))} appears more than once in items")
    values = self._ratings(ratings, n)
    if not isinstance(exclude_seen, (bool, np.bool_)):
      raise RequestError(f"exclude_seen must be true or false, got {_typename(exclude_seen)}")
    k = _int(k, "k")
    available = min(self.k_max, self.num_items - (n if exclude_seen else 0))
    if not 1 <= k <= available:
      why = ("k_max" if available == self.k_max else
             f"the catalogue's {self.num_items} items less the {n} rated ones" if exclude_seen else "the catalogue")
      raise RequestError(f"k must lie in [1, {available}] ({why}), got {k}")
    user_row = self.user_row(user)
    size = next(b for b in self.buckets if b >= n)
    padded_items = np.zeros(size, np.int32)
    padded_items[:n] = rows
    padded_ratings = np.zeros(size, np.float32)
    padded_ratings[:n] = values
    mask = np.arange(size) < n
    ids, scores = self._call(size, padded_items, padded_ratings, mask, user_row, bool(exclude_seen))
    return np.asarray(ids)[:k], np.asarray(scores)[:k]

  def user_row(self, user: Mapping[str, Any] | None = None) -> tuple[np.ndarray, ...]:
    """A new user's feature row (the function's ``user`` input): given fields over unknowns (id 0)."""
    if user is not None and not isinstance(user, Mapping):
      raise RequestError(f"user must be an object of field -> value, got {_typename(user)}")
    user = dict(user or {})
    unknown = sorted(set(user) - set(self.user_fields))
    if unknown:
      raise RequestError(f"unknown user field {unknown[0]!r}; fields: {sorted(self.user_fields)}")
    return tuple(_field_value(f, user.get(name)) for name, f in self.user_fields.items())

  def _ratings(self, ratings: Sequence[float], n: int) -> np.ndarray:
    ratings = _sequence(ratings, "ratings")
    if len(ratings) != n:
      raise RequestError(f"{n} items but {len(ratings)} ratings")
    values = np.asarray([_number(r, f"ratings[{i}]") for i, r in enumerate(ratings)], np.float64)
    lo, hi = self.rating_scale
    bad = np.flatnonzero(~np.isfinite(values) | (values < lo) | (values > hi))
    if len(bad):
      raise RequestError(f"ratings[{bad[0]}] = {values[bad[0]]:g} is outside the rating scale [{lo:g}, {hi:g}]")
    return values.astype(np.float32)

  def _show(self, row: int) -> str:
    return repr(self.raw_ids[row].item()) if self.raw_ids is not None else str(row)

  # ------------------------------------------------------------------ the function

  def _call(self, size: int, items, ratings, mask, user, exclude: bool):
    fn = self._functions.get(size, self._functions.get("*"))
    return fn(self._weights, items, ratings, mask, user, np.bool_(exclude))

  def warmup(self, buckets: Sequence[int] | None = None) -> None:
    """Compiles the function for ``buckets`` (default: all) now, not at the first request of each length."""
    with self._warm_lock:
      for size in buckets or self.buckets:
        mask = np.zeros(size, bool)
        mask[0] = True
        out = self._call(size, np.zeros(size, np.int32), np.zeros(size, np.float32), mask, self.user_row(), True)
        jax.block_until_ready(out)


def load_artifact(path: str | os.PathLike, *, warmup: bool = False) -> Artifact:
  """Loads an artifact written by `export_run` (``metarec export``): jax, numpy and json only.

  Args:
    path: the artifact folder.
    warmup: compile every support bucket now (else each compiles at its first request).

  Raises:
    FileNotFoundError: not an artifact folder, or a file of it is missing.
    ValueError: another format or a newer version, or not lowered for this machine's platform.
  """
  from jax import export as jax_export

  path = pathlib.Path(path)
  if not (path / MANIFEST).is_file():
    raise FileNotFoundError(f"{path}: not an exported artifact (no {MANIFEST}); write one with `metarec export RUN "
                            "--out DIR`")
  manifest = json.loads((path / MANIFEST).read_text())
  if manifest.get("format") != FORMAT:
    raise ValueError(f"{path / MANIFEST}: not a {FORMAT} manifest (format {manifest.get('format')!r})")
  if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
    raise ValueError(f"{path}: format version {manifest['format_version']} is newer than this loader's "
                     f"({FORMAT_VERSION}); load it with a newer metarec-jax (or the artifact's own {LOADER_COPY})")
  platform = jax_export.default_export_platform()
  if platform not in manifest["platforms"]:
    raise ValueError(f"{path}: exported for {', '.join(manifest['platforms'])}, but this machine's jax runs on "
                     f"{platform}; export again with --platforms {','.join(manifest['platforms'] + [platform])}")
  stored = path / manifest["weights"]["file"]
  if not stored.is_file():
    raise FileNotFoundError(f"{stored}: the artifact's weights file is missing")
  weights = []
  with np.load(stored, allow_pickle=False) as z:
    for leaf in manifest["weights"]["leaves"]:
      value = z[leaf["key"]]
      if str(value.dtype) != leaf["dtype"]:
        value = value.view(jnp.dtype(leaf["dtype"]))
      weights.append(jax.device_put(value))
  functions: dict[int | str, Any] = {}
  for key, name in manifest["functions"].items():
    if not (path / name).is_file():
      raise FileNotFoundError(f"{path / name}: the artifact's exported function is missing")
    exported = jax_export.deserialize(bytearray((path / name).read_bytes()))
    got = [tuple(a.shape) for a in exported.in_avals[:len(weights)]]
    want = [tuple(w.shape) for w in weights]
    if got != want:
      raise ValueError(f"{path}: {manifest['weights']['file']} does not match {name}'s inputs")
    functions["*" if key == "*" else int(key)] = jax.jit(exported.call)
  art = Artifact(path, manifest, functions, weights)
  if warmup:
    art.warmup()
  return art


# ---------------------------------------------------------------------- request checks


def _typename(x: Any) -> str:
  return {bool: "a boolean", str: "a string", type(None): "null", dict: "an object", list: "a list",
          float: "a number", int: "an integer"}.get(type(x), type(x).__name__)


def _sequence(x: Any, what: str) -> Sequence[Any]:
  if isinstance(x, np.ndarray) and x.ndim == 1:
    return x.tolist()
  if not isinstance(x, (list, tuple)):
    raise RequestError(f"{what} must be a list, got {_typename(x)}")
  return x


def _int(x: Any, what: str) -> int:
  if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
    raise RequestError(f"{what} must be an integer, got {_typename(x)}")
  return int(x)


def _number(x: Any, what: str) -> float:
  if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
    raise RequestError(f"{what} must be a number, got {_typename(x)}")
  return float(x)


def _field_value(field: UserField, value: Any) -> np.ndarray:
  """One user field's value as the function's input; None: unknown (zeros)."""
  out = np.zeros(field.shape, field.dtype)
  if value is None:
    return out
  what = f"user field {field.name!r}"
  if field.kind == "dense":
    values = [value] if not isinstance(value, (list, tuple)) else list(value)
    numbers = [_number(v, what) for v in values]
    if len(numbers) != max(out.size, 1) or not all(math.isfinite(v) for v in numbers):
      raise RequestError(f"{what} must be {out.size} finite number(s)")
    return np.asarray(numbers, field.dtype).reshape(field.shape)
  ids = [value] if not isinstance(value, (list, tuple)) else list(value)
  ids = [_int(v, what) for v in ids]
  capacity = max(out.size, 1)
  if len(ids) > capacity or (field.kind == "categorical" and len(ids) != 1):
    raise RequestError(f"{what} takes {'one id' if field.kind == 'categorical' else f'at most {capacity} ids'}, "
                       f"got {len(ids)}")
  bad = [v for v in ids if not 0 <= v < field.vocab_size]
  if bad:
    raise RequestError(f"{what}: id {bad[0]} outside [0, {field.vocab_size})")
  flat = out.reshape(-1)
  flat[:len(ids)] = ids
  return flat.reshape(field.shape)
