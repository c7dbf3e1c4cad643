"""Serving a trained run: adapt to a new user's ratings, rank every item.

    rec = Recommender.load("runs/quickstart")           # the validation-selected params
    scorer = rec.adapt(item_ids=[12, 40, 7], ratings=[5, 3, 4])
    items, scores = scorer.top_k(10)                    # best unseen items first

`Recommender.adapt` runs the learner's inner loop on the given ratings (the
support set), exactly as evaluation does, in one jitted call: the support set
is padded to a bucket length (powers of two, at least 32), so new users with
other numbers of ratings do not recompile. `Scorer.top_k` scores all items
and ranks them in one jitted call (one compile per ``k``). Scores are the
model's predicted ratings, not clipped to the rating scale (clipping would
tie the top items).

Item ids are the rows of the data set's item table (``Dataset.items``), the
ids the engine uses; a new user's side features are given by field name, or
taken from an existing user row, or left unknown (id 0).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metarec_jax.meta.inner import partition
from metarec_jax.meta.learners import LearnerSpec, adapt_task
from metarec_jax.models.model import make_predict
from metarec_jax.types import Features, MetaParams, PredictFn

MIN_BUCKET = 32


def bucket_length(n: int, minimum: int = MIN_BUCKET) -> int:
  """The padded support length for ``n`` ratings: the next power of two, at least ``minimum``."""
  size = minimum
  while size < n:
    size *= 2
  return size


@dataclasses.dataclass(frozen=True)
class Scorer:
  """A recommender personalised to one user's support set.

  Attributes:
    recommender: the recommender it was adapted from.
    params: the adapted model params.
    user_row: the user's feature row (field -> array).
    seen_items: ``[B]`` padded support item ids.
    seen_ratings: ``[B]`` their ratings.
    seen_mask: ``[B]`` which of them are real.
  """

  recommender: "Recommender"
  params: Any
  user_row: dict[str, np.ndarray]
  seen_items: np.ndarray
  seen_ratings: np.ndarray
  seen_mask: np.ndarray

  @property
  def support(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return self.seen_items, self.seen_ratings, self.seen_mask

  @property
  def seen(self) -> np.ndarray:
    """The support item ids."""
    return self.seen_items[self.seen_mask]

  def scores(self) -> np.ndarray:
    """Predicted ratings of every item, ``[num_items]`` (item id = index)."""
    r = self.recommender
    return np.asarray(r._score_all(self.params, r.features.item, r.item_features, self.user_row, self.support))

  def top_k(self, k: int, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best-scored items, best first: ``(item ids [k], scores [k])``.

    Args:
      k: how many items (at most the number of items, less the seen ones when
        they are excluded).
      exclude_seen: leave out the items of the support set.
    """
    r = self.recommender
    available = r.num_items - (len(np.unique(self.seen)) if exclude_seen else 0)
    if not 1 <= k <= available:
      raise ValueError(f"top_k: k must lie in [1, {available}], got {k}")
    ids, vals = r._top_k(self.params, r.features.item, r.item_features, self.user_row, self.support,
                         np.bool_(exclude_seen), k=int(k))
    return np.asarray(ids), np.asarray(vals)


class Recommender:
  """Adapts a meta-learned model to new users and ranks all items for them.

  Args:
    model: the recommender model (a `RecModel`, or any model with its
      ``embed`` / ``score_features`` / ``item_side`` methods, e.g. a distilled one).
    spec: the learner (which params adapt, inner steps and rate).
    meta: meta params (``{"model": ..., ["inner_lr": ...]}``).
    features: device-resident user and item feature tables.
    predict: the model's predict function (default: `make_predict` with
      ``residual`` and ``bias_reg``).
    inner_lr: inner rate used when adapting (the learner's, unless tuned).
    residual: the model predicts residuals over the item-mean + user-bias
      baseline (``model.residual``); ``bias_reg`` is the user bias shrinkage.
    bias_reg: see ``residual``.
    name: method name (for messages).
    min_bucket: the shortest padded support length.

  Scores are the engine's ``predict`` of the adapted params (with the support
  set, for support-vector and residual models). When the scores do not
  depend on the support set and no item-side param adapts (MeLU, ANIL), the
  item features are computed once at construction and each user's scores
  are the model's head on them (the MLP head's first layer computes the
  user half once): the same numbers, fewer FLOPs per user.
  """

  def __init__(self, model: Any, spec: LearnerSpec, meta: MetaParams, features: Features, *,
               predict: PredictFn | None = None, inner_lr: float | None = None, residual: bool = False,
               bias_reg: float = 5.0, name: str = "", min_bucket: int = MIN_BUCKET):
    self.model = model
    self.spec = spec
    self.meta = meta
    self.features = features
    self.predict = predict if predict is not None else make_predict(model, residual=residual, bias_reg=bias_reg)
    self.inner_lr = spec.inner_lr if inner_lr is None else float(inner_lr)
    self.name = name or spec.name
    self.min_bucket = min_bucket
    self.user_fields = tuple(s for s in model.user_specs)
    self.num_items = int(next(iter(features.item.values())).shape[0])
    self.num_users = int(next(iter(features.user.values())).shape[0])
    self._user_tables = {s.name: np.asarray(features.user[s.name]) for s in self.user_fields}
    predict = self.predict
    all_items = jnp.arange(self.num_items, dtype=jnp.int32)
    adapted, _ = partition(meta["model"], spec.adapt)
    plain = not predict.uses_support and getattr(model, "dtype", None) is None
    self.caches_items = plain and not any(model.item_side(k) for k in adapted)

    def one_user(item_tables, user_row):
      return Features(user={k: v[None] for k, v in user_row.items()}, item=item_tables)

    def towers(params, item_tables, user_row, items):
      user_cols = {s.name: user_row[s.name] for s in model.user_specs}
      item_cols = {s.name: item_tables[s.name][items] for s in model.item_specs}
      return model.embed(params, user_cols, item_cols)

    @jax.jit
    def adapt_fn(meta, item_tables, user_row, items, ratings, mask, lr):
      params, _ = adapt_task(spec, predict, meta, one_user(item_tables, user_row), jnp.int32(0), items,
                             ratings, mask, inner_lr=lr)
      return params

    def score_all(params, item_tables, item_features, user_row, support):
      if not self.caches_items:  # the engine's predict, all items at once
        return predict(params, one_user(item_tables, user_row), jnp.int32(0), all_items, support)
      f_u, _ = towers(params, item_tables, user_row, all_items[:1])
      return model.score_features(params, f_u, item_features)

    @functools.partial(jax.jit, static_argnames=("k",))
    def top_k(params, item_tables, item_features, user_row, support, exclude, *, k):
      scores = score_all(params, item_tables, item_features, user_row, support)
      seen_items, _, seen_mask = support
      drop = jnp.where(seen_mask & exclude, seen_items, self.num_items)  # out of range: dropped
      scores = scores.at[drop].set(-jnp.inf, mode="drop")
      vals, ids = jax.lax.top_k(scores, k)
      return ids, vals

    self._adapt = adapt_fn
    self._score_all = jax.jit(score_all)
    self._top_k = top_k
    self.item_features = None
    if self.caches_items:
      zero_user = self.user_row()
      self.item_features = jax.jit(lambda p, t, u: towers(p, t, u, all_items)[1])(
          meta["model"], features.item, zero_user)

  # ------------------------------------------------------------------ loading

  @classmethod
  def load(cls, workdir: str | pathlib.Path, method: str | None = None, seed: int | None = None,
           **kwargs) -> "Recommender":
    """Rebuilds a method of a finished ``metarec run`` from its folder, with the validation-selected params.

    Args:
      workdir: the run's folder (``config.json``, ``checkpoints/``).
      method: a learned method of the run (default: the first in ``config.methods``).
      seed: which seed's checkpoint (default: ``config.seed``).
      **kwargs: passed to the constructor (``min_bucket``).

    Raises:
      FileNotFoundError: not a run folder, or the method has no finished checkpoint.
      ValueError: the method is unknown or a baseline.
    """
    return load_with_context(workdir, method, seed, **kwargs)[0]

  # ------------------------------------------------------------------ serving

  def user_row(self, user_id: int | None = None,
               user_features: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """A user's feature row: an existing user's, or given fields over unknowns (id 0)."""
    if user_id is not None:
      if not 0 <= user_id < self.num_users:
        raise ValueError(f"user_id must lie in [0, {self.num_users}), got {user_id}")
      row = {s.name: self._user_tables[s.name][user_id] for s in self.user_fields}
    else:
      row = {s.name: np.zeros(self._user_tables[s.name].shape[1:], self._user_tables[s.name].dtype)
             for s in self.user_fields}
    for name, value in (user_features or {}).items():
      if name not in row:
        raise KeyError(f"unknown user field {name!r}; fields: {sorted(row)}")
      value = np.asarray(value, row[name].dtype)
      if row[name].ndim and value.ndim == 1 and len(value) < len(row[name]):  # a short id list: pad with 0
        value = np.pad(value, (0, len(row[name]) - len(value)))
      row[name] = np.broadcast_to(value, row[name].shape).astype(row[name].dtype)
    return row

  def adapt(self, item_ids: Sequence[int], ratings: Sequence[float], *, user_id: int | None = None,
            user_features: Mapping[str, Any] | None = None) -> Scorer:
    """Adapts the model to one user's ratings; returns the personalised scorer.

    Args:
      item_ids: the rated items (item table rows).
      ratings: their ratings.
      user_id: an existing user whose side features to use.
      user_features: side features by field name (override ``user_id``'s);
        fields not given are unknown (id 0).
    """
    items = np.asarray(item_ids, np.int64).reshape(-1)
    values = np.asarray(ratings, np.float32).reshape(-1)
    if len(items) != len(values):
      raise ValueError(f"adapt: {len(items)} item ids but {len(values)} ratings")
    if len(items) and (items.min() < 0 or items.max() >= self.num_items):
      raise ValueError(f"adapt: item ids must lie in [0, {self.num_items}), got [{items.min()}, {items.max()}]")
    if not np.all(np.isfinite(values)):
      raise ValueError("adapt: ratings must be finite")
    size = bucket_length(len(items), self.min_bucket)
    mask = np.arange(size) < len(items)
    padded_items = np.zeros(size, np.int32)
    padded_items[:len(items)] = items
    padded_ratings = np.zeros(size, np.float32)
    padded_ratings[:len(items)] = values
    row = self.user_row(user_id, user_features)
    params = self._adapt(self.meta, self.features.item, row, padded_items, padded_ratings, mask,
                         np.float32(self.inner_lr))
    return Scorer(self, params, row, padded_items, padded_ratings, mask)


def load_with_context(workdir: str | pathlib.Path, method: str | None = None, seed: int | None = None,
                      **kwargs) -> tuple[Recommender, Any]:
  """`Recommender.load`, also returning the seed's `methods.FitContext`.

  The context holds what a recommender does not: the run config
  (``ctx.config``), the seed and its prepared data (``ctx.prep.data``: the
  data set's raw item ids and rating scale), which `export.export_run`
  writes beside the exported function. Arguments and errors as `Recommender.load`.
  """
  from metarec_jax.methods import FitContext, resolve_all
  from metarec_jax.prepared import prepare
  from metarec_jax.rundir import RunDir

  run = RunDir.open(workdir)
  config = run.config
  methods = {m.name: m for m in resolve_all(config)}
  learned = [name for name, m in methods.items() if m.servable]
  if method is None:
    if not learned:
      raise ValueError(f"{run.path}: the run has no learned method to serve (methods: {list(config.methods)})")
    method = learned[0]
  if method not in learned:
    kind = "is a baseline, not a learned method" if method in methods else "is not a method of this run"
    raise ValueError(f"{run.path}: {method!r} {kind}; choose one of {learned}")
  seed = config.seed if seed is None else int(seed)
  ctx = FitContext(config, prepare(config, seed), seed, run=run, progress=False, restore_only=True,
                   methods=methods)
  return ctx.fit(method).recommender(**kwargs), ctx
