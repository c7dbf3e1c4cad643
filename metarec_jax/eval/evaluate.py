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

from metarec_jax.data.tasks import pad_batch
from metarec_jax.eval.metrics import compute_metrics
from metarec_jax.meta.learners import LearnerSpec, adapt_on_support
from metarec_jax.types import Features, MetaParams, PredictFn, TaskBatch

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


# --------------------------------------------------------------------------- a fitted method on a seed's sets


def score_set(prep, pred, batch: TaskBatch, name: str, metrics) -> dict[str, float]:
  """Metrics of predictions on set ``name`` of ``prep``: rating metrics, or ranking metrics (implicit)."""
  if prep.implicit:
    from metarec_jax.eval.implicit import score_implicit
    return score_implicit(pred, batch, prep.layouts[name], metrics)
  return score(pred, batch, metrics, prep.data.rating_scale)


def validation_value(predict_batch: BatchPredictor, prep, name: str, chunk: int) -> float:
  """The selection value on validation set ``name`` (lower is better): MAE, or 1 - AUC (implicit).

  ``predict_batch`` maps a chunk of tasks to query predictions.
  """
  batch = prep.valid_batches[name]
  layout = prep.layouts.get(name)
  if layout is not None:
    from metarec_jax.eval.implicit import eval_chunk, score_implicit
    pred = predict_in_chunks(predict_batch, batch, eval_chunk(batch, chunk))
    return 1.0 - score_implicit(pred, batch, layout, ("auc",))["auc"]
  pred = predict_in_chunks(predict_batch, batch, chunk)
  return score(pred, batch, ("mae",), prep.data.rating_scale)["mae"]


def evaluate_scenarios(fitted, prep, metrics) -> dict[str, dict[str, float]]:
  """Scores every test scenario of ``prep`` with ``fitted``'s predictions selected on its validation set."""
  out = {}
  for scenario, batch in prep.test_batches.items():
    pred = fitted.predictions(prep.selection[scenario])(batch)
    out[scenario] = score_set(prep, pred, batch, scenario, metrics)
  return out


def support_curve(fitted, prep, config, seed: int) -> list[dict]:
  """Metrics when each test user gives exactly K support ratings (``eval.support_sizes``; same query sets).

  Per choice of ``eval.support_choice`` (`eval.evidence`): ``random`` K of
  the user's non-query ratings (rows without a ``choice`` key, as before),
  or the K whose items score highest (rows with ``"choice": "popularity"`` or
  ``"evidence"``). Methods without a model get no ``evidence`` rows.
  """
  from metarec_jax.eval.evidence import RANDOM, SupportChooser
  chooser = SupportChooser(fitted, prep, config.data.query_size, config.eval.evidence_loss)
  rows = []
  for choice in config.eval.support_choice:
    for k in config.eval.support_sizes:
      for scenario in prep.test_tasks:
        batch = chooser.batch(choice, scenario, int(k))
        if batch is None:  # evidence of a method without a model
          continue
        vals = score(fitted.predictions(prep.selection[scenario])(batch), batch, config.eval.metrics,
                     prep.data.rating_scale)
        tag = {} if choice == RANDOM else {"choice": choice}
        rows.append({"method": fitted.name, "scenario": scenario, "seed": seed, "support": int(k), **tag, **vals})
  return rows


def evaluate_fitted(fitted, prep, config, seed: int) -> dict:
  """A method's record for one seed: result rows per scenario and the support-size curve."""
  rows = [{"method": fitted.name, "scenario": s, "seed": seed, **vals}
          for s, vals in evaluate_scenarios(fitted, prep, config.eval.metrics).items()]
  return {"rows": rows, "support_curve": support_curve(fitted, prep, config, seed)}
