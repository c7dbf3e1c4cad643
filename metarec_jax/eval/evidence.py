"""Which items a new user is asked to rate: random, popular, or MeLU's evidence candidates.

The support-size curve (``eval.support_sizes``) scores every test user with
exactly K support ratings. ``eval.support_choice`` says how those K are
chosen among the user's own ratings that are not in the query set:

* ``random``: K random ones (`data.tasks.split_tasks`, unchanged);
* ``popularity``: the K the most meta-training users rated;
* ``evidence``: the K with the highest evidence score of MeLU §3.3
  ("evidence candidate selection"; Lee et al., KDD 2019).

Every choice keeps the query set of ``random`` (the same key draws it, and
query items are never candidates), so the rows of one K differ only in which
support ratings the model adapts on. Ties (every item nobody in training rated
scores 0: all of an item-cold user's items) are broken by the random order,
so a user whose items all tie gets exactly the ``random`` support.

Evidence (MeLU's reference code, hoyeoplee/MeLU ``evidence_candidate.py`` and
``MeLU.get_weight_avg_norm``; defaults there: one local update, warm-state
users). For every rating ``(u, i, r)`` of a meta-training user, the loss of
the personalisation (local update) on that one rating alone, at the fitted
meta params ``θ``, gives a gradient norm

    g(u, i) = Σ_k ‖∇_{θ_k} ℓ̃(u, i)‖_F,   ℓ̃ = ℓ / sg(ℓ)  (``unit``, the reference)  or  ℓ̃ = ℓ  (``plain``)

summed over the parameter tensors ``θ_k`` the learner adapts (``sg`` stops
the gradient: the reference divides the loss by its own value, "unit loss").
Per item, with ``U_i`` the meta-training users who rated ``i``:

    d_i = mean_{u ∈ U_i} g(u, i),   p_i = |U_i|,
    evidence_i = (d_i / max_j d_j) · (p_i / max_j p_j).

Since both divisors are constants, evidence ranks items by
``d_i p_i = Σ_{u ∈ U_i} g(u, i)``, the item's summed gradient norm.

Deviations from the reference code, all deliberate:

* Gradients are taken w.r.t. the leaves the method's learner adapts
  (``meta.adapt``; MeLU: the decision layers), not every model parameter:
  the reference sums the norms over all tensors, embedding tables included,
  though only the decision layers personalise. For learners that adapt all
  params (MAML) the two agree; adapted embedding tables are localised to
  the rating's rows (`meta.local`), which leaves every norm unchanged.
* The loss of one rating is the learner's inner loss ``set_loss`` on a
  support set of that rating (leave-one-out for support-conditioned models),
  exactly what the local update minimises; Meta-SGD's learned rates do not
  scale the gradient (the reference has none).
* ``unit`` divides by ``max(ℓ, 1e-12)`` (the reference divides by ``ℓ`` and
  gives NaN at ``ℓ = 0``). Note that for squared error ``g = 2‖∇ŷ‖ / |ŷ - r|``
  under ``unit``: ratings the model already predicts well weigh most. With
  ``plain``, ``g = 2 |ŷ - r| ‖∇ŷ‖``: ratings it predicts badly weigh most.
* Every rating of every meta-training task counts (the reference reads the
  warm-state support sets: each training user's ratings but the last 10).
* The reference's loop over ratings does not restore the model's weights
  when ``inner > 1``; with its default ``inner = 1`` it computes the gradient
  at ``θ``, as here. We take the gradient at ``θ`` only.

Methods without a model (the baselines ``global_mean``,
``item_mean_user_bias``, ``popularity``) have no gradient: they get no
``evidence`` rows (``random`` and ``popularity`` rows only).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metarec_jax.meta.inner import merge, partition, set_loss
from metarec_jax.meta.learners import LearnerSpec
from metarec_jax.meta.local import local_table_paths, localise
from metarec_jax.types import Features, PredictFn, TaskBatch, TaskSet

SUPPORT_CHOICES = ("random", "popularity", "evidence")
EVIDENCE_LOSSES = ("unit", "plain")
RANDOM = "random"
_EPS = 1e-12


# --------------------------------------------------------------------------- item scores


def training_ratings(tasks: TaskSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Every valid rating of ``tasks`` as flat host arrays ``(user, item, rating)``."""
  items = np.asarray(tasks.items)
  valid = np.arange(items.shape[1])[None, :] < np.asarray(tasks.lengths)[:, None]
  users = np.broadcast_to(np.asarray(tasks.user)[:, None], items.shape)
  return users[valid], items[valid], np.asarray(tasks.ratings)[valid]


def popularity(tasks: TaskSet, num_items: int) -> np.ndarray:
  """Training ratings per item ``[num_items]`` (float64): how many users of ``tasks`` rated it."""
  _, items, _ = training_ratings(tasks)
  return np.bincount(items, minlength=num_items).astype(np.float64)


def normalise_by_max(x: np.ndarray) -> np.ndarray:
  """``x / max(x)`` (MeLU's normalisation); all zeros stay zeros."""
  x = np.asarray(x, np.float64)
  top = float(x.max()) if x.size else 0.0
  return x / top if top > 0 else np.zeros_like(x)


def rating_grad_norm(spec: LearnerSpec, predict: PredictFn, model_params: Any, features: Features, user,
                     item, rating, unit: bool = True) -> jax.Array:
  """``g(u, i)``: the summed Frobenius norms of the local-update gradient of one rating.

  Args:
    spec: the learner (which leaves adapt, the loss).
    predict: the model's predict function.
    model_params: the model params at which the gradient is taken (``meta["model"]``).
    features: the feature tables.
    user: the user id (scalar).
    item: the item id (scalar).
    rating: the rating (scalar).
    unit: divide the loss by its own (stopped) value first, as MeLU's code does.

  Returns:
    A scalar: ``Σ_k ‖∇_{θ_k} ℓ̃‖_F`` over the adapted leaves ``θ_k``.
  """
  adapted, frozen = partition(model_params, spec.adapt)
  items = jnp.reshape(item, (1,)).astype(jnp.int32)
  ratings = jnp.reshape(rating, (1,)).astype(jnp.float32)
  mask = jnp.ones((1,), bool)
  paths = local_table_paths(adapted, features)
  if paths:  # adapted tables: the rating's own rows (same norms, no per-rating copy of a table)
    local = localise(features, user, (items,), paths, {p: adapted[p].shape[0] for p in paths})
    adapted = local.gather(adapted)
    features, user, (items,) = local.features, local.user, local.item_groups

  def loss(fast):
    value = set_loss(predict, merge(fast, frozen), features, user, items, ratings, mask,
                     support=(items, ratings, mask), loo=True, loss_fn=spec.loss_fn)
    return value / jax.lax.stop_gradient(jnp.maximum(value, _EPS)) if unit else value

  grads = jax.grad(loss)(adapted)
  return sum(jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.float32)))) for g in grads.values())


def _build_norms_fn(spec: LearnerSpec, predict: PredictFn, unit: bool):
  one = lambda params, features, u, i, r: rating_grad_norm(spec, predict, params, features, u, i, r, unit)
  return jax.jit(jax.vmap(one, in_axes=(None, None, 0, 0, 0)))


_cached_norms_fn = functools.lru_cache(maxsize=32)(_build_norms_fn)


def _norms_fn(spec: LearnerSpec, predict: PredictFn, unit: bool):
  """The jitted, vmapped `rating_grad_norm` (one per learner and predict function when they hash)."""
  try:
    return _cached_norms_fn(spec, predict, unit)
  except TypeError:  # an unhashable predict function: compile per call
    return _build_norms_fn(spec, predict, unit)


def rating_grad_norms(spec: LearnerSpec, predict: PredictFn, model_params: Any, features: Features,
                      users: np.ndarray, items: np.ndarray, ratings: np.ndarray, *, unit: bool = True,
                      chunk: int = 1024) -> np.ndarray:
  """`rating_grad_norm` of many ratings: one jitted vmap over fixed-size chunks (one compile).

  Returns:
    ``[N]`` float32 norms, in the order of the inputs.
  """
  n = len(items)
  if n == 0:
    return np.zeros((0,), np.float32)
  chunk = max(1, min(int(chunk), n))
  pad = -n % chunk
  fill = lambda x, dtype: np.concatenate([np.asarray(x, dtype), np.repeat(np.asarray(x, dtype)[:1], pad)])
  u, i, r = fill(users, np.int32), fill(items, np.int32), fill(ratings, np.float32)
  fn = _norms_fn(spec, predict, bool(unit))
  out = [np.asarray(fn(model_params, features, u[s:s + chunk], i[s:s + chunk], r[s:s + chunk]))
         for s in range(0, n + pad, chunk)]
  return np.concatenate(out)[:n]


@dataclasses.dataclass(frozen=True)
class EvidenceScores:
  """MeLU's per-item evidence and its two factors (length ``num_items``, float64).

  Attributes:
    discriminative: ``d_i``, the mean gradient norm over the training users who rated ``i`` (0: none).
    popularity: ``p_i``, their number.
    score: ``(d_i / max d) · (p_i / max p)``.
  """

  discriminative: np.ndarray
  popularity: np.ndarray
  score: np.ndarray


def evidence_from_norms(items: np.ndarray, norms: np.ndarray, num_items: int) -> EvidenceScores:
  """The per-item evidence of per-rating gradient norms ``norms`` of ratings on ``items``."""
  count = np.bincount(items, minlength=num_items).astype(np.float64)
  total = np.bincount(items, weights=np.asarray(norms, np.float64), minlength=num_items)
  disc = np.where(count > 0, total / np.maximum(count, 1.0), 0.0)
  return EvidenceScores(disc, count, normalise_by_max(disc) * normalise_by_max(count))


def evidence_scores(spec: LearnerSpec, predict: PredictFn, model_params: Any, features: Features, tasks: TaskSet,
                    num_items: int, *, unit: bool = True, chunk: int = 1024) -> EvidenceScores:
  """MeLU's evidence of every item from the meta-training ``tasks`` (see the module docstring)."""
  users, items, ratings = training_ratings(tasks)
  norms = rating_grad_norms(spec, predict, model_params, features, users, items, ratings, unit=unit, chunk=chunk)
  if not np.all(np.isfinite(norms)):
    raise FloatingPointError(f"evidence: {int((~np.isfinite(norms)).sum())} non-finite gradient norms")
  return evidence_from_norms(items, norms, num_items)


def model_of(fitted, valid_set: str):
  """``(spec, predict, model params, features)`` of a fitted method with a model, else None (a baseline)."""
  params = getattr(fitted, "params", None)
  adaptation = getattr(fitted, "adaptation", None)
  if not isinstance(params, dict) or not isinstance(adaptation, dict) or valid_set not in params:
    return None
  return adaptation[valid_set].spec, fitted.predict, params[valid_set]["model"], fitted.features


# --------------------------------------------------------------------------- choosing the support set


def _choose_one(key, items, ratings, length, scores, query_size: int, support_size: int):
  positions = jnp.arange(items.shape[0])
  # The same uniform per position as `split_tasks`: the same query set, and the random order breaks ties.
  u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(positions)
  u = jnp.where(positions < length, u, 2.0)
  rank = jnp.argsort(jnp.argsort(u))  # each position's place in the random order
  q_idx = jnp.argsort(u)[:query_size]
  candidate = (rank >= query_size) & (positions < length)  # the user's own non-query ratings
  primary = jnp.where(candidate, -scores[items], jnp.inf)
  order = jnp.lexsort((rank, primary))  # highest score first, ties in the random order
  s_idx = order[:support_size]
  q_mask = jnp.arange(query_size) < length
  s_mask = query_size + jnp.arange(support_size) < length
  pad = support_size - s_idx.shape[0]
  if pad > 0:  # the task is shorter than the support slots: masked rows
    s_idx = jnp.concatenate([s_idx, jnp.zeros((pad,), s_idx.dtype)])
  return (jnp.where(s_mask, items[s_idx], 0), jnp.where(s_mask, ratings[s_idx], 0.0), s_mask,
          jnp.where(q_mask, items[q_idx], 0), jnp.where(q_mask, ratings[q_idx], 0.0), q_mask)


@functools.partial(jax.jit, static_argnames=("query_size", "support_size"))
def split_tasks_by_score(tasks: TaskSet, key: jax.Array, query_size: int, support_size: int,
                         item_scores: jax.Array) -> TaskBatch:
  """Like `data.tasks.split_tasks`, but the support set is the top-scored non-query ratings.

  Args:
    tasks: the tasks to split.
    key: PRNG key (the one `split_tasks` would get: the query sets are the same).
    query_size: query ratings per task.
    support_size: K: the task's K non-query ratings whose items score highest
      (all of them, masked past the end, when it has fewer).
    item_scores: ``[num_items]`` a score per item id (higher: asked first).

  Returns:
    A `TaskBatch` with one row per task.
  """
  keys = jax.vmap(lambda u: jax.random.fold_in(key, u))(tasks.user)
  scores = jnp.asarray(item_scores, jnp.float32)
  split = jax.vmap(_choose_one, in_axes=(0, 0, 0, 0, None, None, None))
  s_items, s_ratings, s_mask, q_items, q_ratings, q_mask = split(
      keys, tasks.items, tasks.ratings, tasks.lengths, scores, query_size, support_size)
  return TaskBatch(tasks.user, s_items, s_ratings, s_mask, q_items, q_ratings, q_mask)


class SupportChooser:
  """The support sets of one fitted method for every choice, with its item scores computed once.

  Args:
    fitted: the fitted method.
    prep: the seed's prepared data (meta-training tasks, test tasks, the evaluation key).
    query_size: ``data.query_size``.
    evidence_loss: ``unit`` or ``plain`` (``eval.evidence_loss``).
  """

  def __init__(self, fitted, prep, query_size: int, evidence_loss: str = "unit"):
    if evidence_loss not in EVIDENCE_LOSSES:
      raise ValueError(f"evidence_loss must be one of {EVIDENCE_LOSSES}, got {evidence_loss!r}")
    self.fitted, self.prep, self.query_size = fitted, prep, int(query_size)
    self.unit = evidence_loss == "unit"
    self.num_items = max(int(prep.data.num_items), *(int(np.asarray(t.items).max()) + 1
                                                     for t in [prep.train, *prep.test_tasks.values()]))
    self._scores: dict[tuple[str, str], np.ndarray | None] = {}

  def scores(self, choice: str, valid_set: str) -> np.ndarray | None:
    """Item scores of ``choice`` for the params selected on ``valid_set`` (None: the method has none)."""
    key = (choice, valid_set if choice == "evidence" else "")
    if key not in self._scores:
      if choice == "popularity":
        self._scores[key] = popularity(self.prep.train, self.num_items)
      elif choice == "evidence":
        model = model_of(self.fitted, valid_set)
        self._scores[key] = None if model is None else evidence_scores(
            *model, self.prep.train, self.num_items, unit=self.unit).score
      else:
        raise ValueError(f"support choice must be one of {SUPPORT_CHOICES}, got {choice!r}")
    return self._scores[key]

  def batch(self, choice: str, scenario: str, k: int) -> TaskBatch | None:
    """Scenario ``scenario``'s test tasks with K support ratings chosen by ``choice`` (None: not available)."""
    tasks = self.prep.test_tasks[scenario]
    if choice == RANDOM:
      from metarec_jax.data.tasks import split_tasks
      return split_tasks(tasks, self.prep.eval_key, self.query_size, int(k))
    scores = self.scores(choice, self.prep.selection[scenario])
    if scores is None:
      return None
    return split_tasks_by_score(tasks, self.prep.eval_key, self.query_size, int(k), jnp.asarray(scores, jnp.float32))


__all__ = ["SUPPORT_CHOICES", "EVIDENCE_LOSSES", "EvidenceScores", "SupportChooser", "evidence_from_norms",
           "evidence_scores", "model_of", "normalise_by_max", "popularity", "rating_grad_norm",
           "rating_grad_norms", "split_tasks_by_score", "training_ratings"]
