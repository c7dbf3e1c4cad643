"""Evaluation: adapt on each test task's support set, score its query set.

A whole scenario is evaluated by one jitted, vmapped function applied to
fixed-size chunks of tasks (padded with masked tasks), so a scenario costs one
compile and no per-user Python loop. Predictions are clipped to the rating
scale for every method alike, and metrics are averaged over tasks.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from metarec_jax.data.tasks import Features, TaskBatch, pad_batch
from metarec_jax.eval.metrics import compute_metrics
from metarec_jax.meta.learners import LearnerSpec, MetaParams, adapt_on_support
from metarec_jax.models.model import PredictFn

BatchPredictor = Callable[[TaskBatch], jax.Array]


def make_adapted_predictor(spec: LearnerSpec, predict: PredictFn) -> Callable:
  """Returns jitted ``fn(meta, features, batch, inner_lr) -> query predictions [B, Q]``.

  Each task adapts on its support set as the learner does in training
  (``inner_steps`` at ``inner_lr``; Meta-SGD uses its learned rates).
  """

  def one(meta, features, task: TaskBatch, inner_lr):
    a = adapt_on_support(spec, predict, meta, features, task.user, task.support_items, task.support_ratings,
                         task.support_mask, task.query_items, inner_lr=inner_lr)
    return predict(a.params, a.features, a.user, a.query_items, a.support)

  @jax.jit
  def fn(meta: MetaParams, features: Features, batch: TaskBatch, inner_lr):
    return jax.vmap(one, in_axes=(None, None, 0, None))(meta, features, batch, inner_lr)

  return fn


def predict_in_chunks(predictor: BatchPredictor, batch: TaskBatch, chunk: int) -> jax.Array:
  """Applies ``predictor`` to fixed-size chunks of ``batch`` and joins the results."""
  padded, n = pad_batch(batch, chunk)
  outs = []
  for start in range(0, padded.num_tasks, chunk):
    part = jax.tree_util.tree_map(lambda x: x[start:start + chunk], padded)
    outs.append(np.asarray(predictor(part)))
  return np.concatenate(outs, axis=0)[:n]


@functools.partial(jax.jit, static_argnames=("metric_names", "rating_scale"))
def _per_task(pred, batch: TaskBatch, metric_names, rating_scale):
  lo, hi = rating_scale
  return compute_metrics(jnp.clip(pred, lo, hi), batch.query_ratings, batch.query_mask, metric_names)


def score(pred: jax.Array, batch: TaskBatch, metric_names, rating_scale) -> dict[str, float]:
  """Mean metrics over the tasks of ``batch`` (tasks with an empty query are skipped)."""
  per_task = _per_task(jnp.asarray(pred), batch, tuple(metric_names), tuple(float(x) for x in rating_scale))
  valid = np.asarray(batch.query_mask.any(-1))
  out = {name: float(np.asarray(v)[valid].mean()) for name, v in per_task.items()}
  if not np.all(np.isfinite(list(out.values()))):
    raise FloatingPointError(f"evaluation produced a non-finite metric: {out}")
  out["tasks"] = int(valid.sum())
  return out
