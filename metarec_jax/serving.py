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
import json
import pathlib
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from metarec_jax.data.tasks import Features
from metarec_jax.eval.baselines import NON_LEARNED_BASELINES
from metarec_jax.meta.inner import partition
from metarec_jax.meta.learners import LearnerSpec, MetaParams, adapt_task, learner_spec
from metarec_jax.models.extractor import Extractor
from metarec_jax.models.heads import DotHead, MLPHead, RelationHead
from metarec_jax.models.model import RecModel, make_predict

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
    model: the recommender model.
    spec: the learner (which params adapt, inner steps and rate).
    meta: meta params (``{"model": ..., ["inner_lr": ...]}``).
    features: device-resident user and item feature tables.
    inner_lr: inner rate used when adapting (the learner's, unless tuned).
    residual: the model predicts residuals over the item-mean + user-bias
      baseline (``model.residual``); ``bias_reg`` is the user bias shrinkage.
    bias_reg: see ``residual``.
    name: method name (for messages).
    min_bucket: the shortest padded support length.

  Scores are the engine's ``predict`` of the adapted params (with the support
  set, for support-vector and residual models). For the plain MLP head whose
  item tower does not adapt (MeLU, ANIL) the item features are computed once
  at construction and the head's first layer is split into its user and item
  halves: the same numbers, fewer FLOPs per user.
  """

  def __init__(self, model: RecModel, spec: LearnerSpec, meta: MetaParams, features: Features, *,
               inner_lr: float | None = None, residual: bool = False, bias_reg: float = 5.0, name: str = "",
               min_bucket: int = MIN_BUCKET):
    self.model = model
    self.spec = spec
    self.meta = meta
    self.features = features
    self.predict = make_predict(model, residual=residual, bias_reg=bias_reg)
    self.inner_lr = spec.inner_lr if inner_lr is None else float(inner_lr)
    self.name = name or spec.name
    self.min_bucket = min_bucket
    self.user_fields = tuple(s for s in model.user_specs)
    self.num_items = int(next(iter(features.item.values())).shape[0])
    self.num_users = int(next(iter(features.user.values())).shape[0])
    self._user_tables = {s.name: np.asarray(features.user[s.name]) for s in self.user_fields}
    predict = self.predict
    all_items = jnp.arange(self.num_items, dtype=jnp.int32)
    extractor = Extractor(model.user_specs, model.item_specs, model.embed_dim, tuple(model.user_mlp),
                          tuple(model.item_mlp))
    head = _head_module(model)
    adapted, _ = partition(meta["model"], spec.adapt)
    # The item tower does not adapt for most learners (MeLU / ANIL adapt the head):
    # then every item's features are computed once here, not once per user.
    plain = (not residual and not getattr(model, "support_vector", False) and not getattr(model, "ridge_dim", 0)
             and getattr(model, "dtype", None) is None)
    self.caches_items = plain and not any(k.startswith("extractor/item") for k in adapted)

    def one_user(item_tables, user_row):
      return Features(user={k: v[None] for k, v in user_row.items()}, item=item_tables)

    def towers(params, item_tables, user_row, items):
      user_cols = {s.name: user_row[s.name] for s in model.user_specs}
      item_cols = {s.name: item_tables[s.name][items] for s in model.item_specs}
      return extractor.apply({"params": params["extractor"]}, user_cols, item_cols)

    @jax.jit
    def adapt_fn(meta, item_tables, user_row, items, ratings, mask, lr):
      params, _ = adapt_task(spec, predict, meta, one_user(item_tables, user_row), jnp.int32(0), items,
                             ratings, mask, inner_lr=lr)
      return params

    def score_all(params, item_tables, item_features, user_row, support):
      if not self.caches_items:  # the engine's predict, all items at once
        return predict(params, one_user(item_tables, user_row), jnp.int32(0), all_items, support)
      f_u, _ = towers(params, item_tables, user_row, all_items[:1])
      if model.head == "mlp":
        return _mlp_scores(params["head"], len(model.head_hidden), f_u, item_features)
      return head.apply({"params": params["head"]}, f_u, item_features)

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
    """Rebuilds a finished ``metarec run`` from its workdir, with the validation-selected params.

    Args:
      workdir: the run's folder (``config.json``, ``checkpoints/``).
      method: a learned method of the run (default: the first in ``config.methods``).
      seed: which seed's checkpoint (default: ``config.seed``).
      **kwargs: passed to the constructor (``min_bucket``).

    Raises:
      FileNotFoundError: not a workdir, or the method has no finished checkpoint.
      ValueError: the method is unknown or not learned.
    """
    from metarec_jax import config as cfg_lib
    from metarec_jax import experiment

    wd = pathlib.Path(workdir)
    path = wd / "config.json"
    if not path.exists():
      raise FileNotFoundError(f"{path} does not exist: {wd} is not a metarec workdir")
    config = cfg_lib.from_json(path.read_text())
    learned = [m for m in config.methods if m not in NON_LEARNED_BASELINES]
    if method is None:
      if not learned:
        raise ValueError(f"{wd}: the run has no learned method (methods: {list(config.methods)})")
      method = learned[0]
    if method not in learned:
      raise ValueError(f"{wd}: method {method!r} is not a learned method of this run; choose one of {learned}")
    seed = config.seed if seed is None else int(seed)
    mc = cfg_lib.method_config(config, method)
    prep = experiment.prepare(config, seed)
    train_name = "pooled" if method in ("pooled", "pooled_finetune") else method
    outcome = experiment.train_method(mc, prep, train_name, seed, progress=False, restore_only=True,
                                      ckpt_dir=wd / "checkpoints" / f"{train_name}__seed{seed}")
    spec, inner_lr = outcome.spec, None
    if method == "pooled_finetune":
      spec, inner_lr = _finetune_spec(wd, seed, mc)
    return cls(outcome.model, spec, outcome.params, prep.features, inner_lr=inner_lr,
               residual=bool(mc.model.get("residual", False)), bias_reg=float(mc.model.get("bias_reg", 5.0)),
               name=method, **kwargs)

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


def _finetune_spec(wd: pathlib.Path, seed: int, mc) -> tuple[LearnerSpec, float]:
  """The fine-tuning steps and rate ``pooled_finetune`` chose on the main validation users.

  Read from the run's ``parts/pooled_finetune__seed<seed>.json``: the setting
  with the lowest validation MAE among those tried (the first on ties, as the
  tuner keeps it).
  """
  from metarec_jax.experiment import MAIN_VALID
  part = wd / "parts" / f"pooled_finetune__seed{seed}.json"
  if not part.exists():
    raise FileNotFoundError(f"{part} does not exist: the run has not finished pooled_finetune for seed {seed}")
  sel = json.loads(part.read_text())["selection"]
  sel = sel.get(MAIN_VALID, sel)
  tried = sel["tried"]
  setting = min(tried, key=lambda k: tried[k])  # "steps=S,lr=R"
  values = dict(kv.split("=") for kv in setting.split(","))
  steps, lr = int(values["steps"]), float(values["lr"])
  spec = learner_spec("maml", inner_lr=lr, inner_steps=steps, adapt=mc.meta.adapt or "all")
  return spec, lr


def _head_module(model: RecModel):
  """The model's head as a stand-alone module (its params are ``params["head"]``)."""
  if model.head == "mlp":
    return MLPHead(tuple(model.head_hidden), model.offset)
  if model.head == "relation":
    return RelationHead(model.offset)
  if model.head == "dot":
    return DotHead(model.offset)
  raise ValueError(f"unknown head {model.head!r}")


def _mlp_scores(head: Any, layers: int, f_u: jax.Array, f_i: jax.Array) -> jax.Array:
  """`MLPHead` for one user and many items, its first layer split in two.

  ``concat(f_u, f_i) @ K = f_u @ K[:Du] + f_i @ K[Du:]``: the user's half is
  computed once instead of once per item (the same numbers up to rounding).
  """
  d_u = f_u.shape[-1]
  x = f_i
  for i in range(layers):
    kernel, bias = head[f"dense_{i}"]["kernel"], head[f"dense_{i}"]["bias"]
    if i == 0:
      x = f_u @ kernel[:d_u] + x @ kernel[d_u:] + bias
    else:
      x = x @ kernel + bias
    x = jax.nn.relu(x)
  if layers == 0:
    x = jnp.concatenate([jnp.broadcast_to(f_u, f_i.shape[:-1] + f_u.shape[-1:]), f_i], axis=-1)
  return (x @ head["out"]["kernel"] + head["out"]["bias"])[..., 0]
