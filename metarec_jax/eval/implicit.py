"""Scoring implicit-feedback evaluation batches, and the popularity baseline.

An evaluation batch (`data.negatives.implicit_eval_batch`) holds each query
positive's candidates in ``query_items``; any predictor that scores a batch's
query items (adapted learners, the pooled model, popularity) scores them, and
`score_implicit` turns the scores into the ranking metrics of `eval.ranking`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from metarec_jax.data.interactions import Interactions
from metarec_jax.data.negatives import CandidateLayout, candidate_modes
from metarec_jax.types import TaskBatch
from metarec_jax.eval.ranking import ranking_metrics


def popularity(train: Interactions, num_items: int) -> np.ndarray:
  """``log(1 + training positives)`` per item: the popularity baseline's score."""
  return np.log1p(np.bincount(train.item, minlength=num_items)).astype(np.float32)


def predict_popularity(scores: np.ndarray, batch: TaskBatch) -> np.ndarray:
  """Every candidate scored by its popularity (no personalisation, no adaptation)."""
  return scores[np.asarray(batch.query_items)]


@functools.partial(jax.jit, static_argnames=("layout", "metric_names"))
def _per_task(pred, batch: TaskBatch, layout: CandidateLayout, metric_names):
  pos, pos_mask, neg, neg_mask = layout.split(pred, batch)
  return ranking_metrics(pos, pos_mask, neg, neg_mask, metric_names), pos_mask.any(-1)


def score_implicit(pred, batch: TaskBatch, layout: CandidateLayout, metric_names) -> dict[str, float]:
  """Mean ranking metrics over the tasks of ``batch`` that have a query positive.

  Raises:
    FloatingPointError: a metric is not finite.
  """
  per_task, valid = _per_task(jnp.asarray(pred), batch, layout, tuple(metric_names))
  valid = np.asarray(valid)
  out = {name: float(np.asarray(v)[valid].mean()) for name, v in per_task.items()}
  if not np.all(np.isfinite(list(out.values()))):
    raise FloatingPointError(f"evaluation produced a non-finite metric: {out}")
  out["tasks"] = int(valid.sum())
  return out


__all__ = ["popularity", "predict_popularity", "score_implicit"]


# --------------------------------------------------------------------------- one seed's implicit inputs


def scenario_pools(split, num_items: int) -> dict[str, np.ndarray]:
  """The candidate catalogue of each role: the items its side of the split holds.

  ``train``: items of meta-training positives. Scenarios with new items
  (``item_cold``, ``user_item_cold``) draw candidates among the new items (those
  of their ratings); every other scenario and the validation users among the
  warm items (those of meta-training, validation and the warm-item scenarios).
  """
  cold = [r.item for s, r in split.tests.items() if "item_cold" in s]
  warm = [split.train.item, split.valid.item] + [r.item for s, r in split.tests.items() if "item_cold" not in s]
  warm_pool = np.unique(np.concatenate(warm))
  cold_pool = np.unique(np.concatenate(cold)) if cold else np.zeros(0, np.int64)
  out = {"train": np.unique(split.train.item), "valid": warm_pool}
  for s in split.tests:
    out[s] = cold_pool if "item_cold" in s else warm_pool
  return out


def implicit_inputs(config, data, split, features, valid_batches: dict, test_batches: dict, eval_key: jax.Array):
  """Negative-sampling arrays and evaluation batches with candidates, for one seed.

  ``data.negative_sampler=matrix`` puts the seen matrix ``bool [users, items]``
  and the training pool's log-weights in ``features.extra``; ``sorted`` puts
  the training pool's `data.negatives.SortedPool` there instead (rows = user
  ids, padded to shapes that do not depend on the seed: one compile per run),
  and builds the evaluation batches from per-set sorted lists: no ``[users,
  items]`` array on that path (``all`` candidates still score ``[tasks, pool]``).

  Returns:
    ``(features, valid_batches, test_batches, layouts)``: the features with
    ``extra`` (the training sampler's arrays), every batch rebuilt by
    `implicit_eval_batch` (or `implicit_eval_batch_sorted`) from a key fixed per
    seed and set name (so every method sees the same negatives), and each set's
    `CandidateLayout`. Validation sets always use sampled candidates; tests use
    ``eval.candidates`` (with two modes, the second one's batches are named
    ``<scenario>:<mode>``).
  """
  import zlib

  from metarec_jax.data import negatives as neg
  d, e = config.data, config.eval
  n = data.num_items
  counts = np.bincount(split.train.item, minlength=n)
  pools = scenario_pools(split, n)
  layouts = {}
  if d.negative_sampler == "sorted":
    lists = neg.seen_lists(data.interacted, data.num_users)
    train = neg.sorted_pool(lists, pools["train"], d.negative_sampling, counts, min_rows=data.num_users,
                            min_nnz=len(lists.items) + 1, min_pool=n)
    features = features.replace(extra={**features.extra, **neg.sorted_extra(train)})

    def make(key, batch, pool, mode):
      return neg.implicit_eval_batch_sorted(
          batch, key, seen=lists, support_pool=pool, query_pool=pool, sampling=d.negative_sampling,
          counts=counts, ratio=d.negatives_per_positive, num_negatives=e.num_negatives, mode=mode,
          chunk=64 if mode == "all" else 256)
  else:
    seen = jnp.asarray(neg.seen_matrix(data.interacted, data.num_users, n))
    train_logits = neg.pool_logits(pools["train"], n, d.negative_sampling, counts)
    features = features.replace(extra={**features.extra, neg.SEEN: seen, neg.TRAIN_LOGITS: jnp.asarray(train_logits)})

    def make(key, batch, pool, mode):
      return neg.implicit_eval_batch(
          batch, key, support_logits=neg.pool_logits(pool, n, d.negative_sampling, counts),
          query_logits=neg.pool_logits(pool, n, "uniform"), seen=seen, ratio=d.negatives_per_positive,
          num_negatives=e.num_negatives, mode=mode, chunk=64 if mode == "all" else 256)

  def build(name, batch, pool, mode):
    key = jax.random.fold_in(eval_key, zlib.crc32(f"negatives/{name}".encode()) & 0x7FFFFFFF)
    out, layouts[name] = make(key, batch, pool, mode)
    return out

  valid = {k: build(k, b, pools["valid"] if k == "valid" else pools[k.removeprefix("valid_")], "sampled")
           for k, b in valid_batches.items()}
  tests = {}
  for s, b in test_batches.items():
    for i, mode in enumerate(candidate_modes(e.candidates)):
      name = s if i == 0 else f"{s}:{mode}"
      tests[name] = build(name, b, pools[s], mode)
  return features, valid, tests, layouts


def eval_chunk(batch: TaskBatch, chunk: int, budget: int = 1 << 19) -> int:
  """Tasks per evaluation call: ``chunk``, fewer when each task scores many candidates."""
  width = int(np.shape(batch.query_items)[-1])
  return int(min(chunk, max(8, budget // max(width, 1))))


def describe_candidates(config) -> str:
  """One line for result tables: what each query positive is ranked against."""
  e, d = config.eval, config.data
  parts = []
  for i, mode in enumerate(candidate_modes(e.candidates)):
    if mode == "sampled":
      how = "uniformly with replacement" if d.negative_sampler == "sorted" else "uniformly"
      against = (f"{e.num_negatives} negatives sampled {how} (per positive, the same for every method) "
                 "from the scenario's items the user never interacted with")
    else:
      against = "every item of the scenario's catalogue the user never interacted with"
    parts.append(against if i == 0 else f"in the tables named `<scenario>:{mode}`, {against}")
  return (f"Candidates: each query positive is ranked against {'; '.join(parts)}. Ties are broken at random "
          f"(expected value). Positives: value >= {d.positive_threshold:g}. Adaptation sees "
          f"{d.negatives_per_positive} {d.negative_sampling} negatives per support positive"
          f"{' (drawn with replacement)' if d.negative_sampler == 'sorted' else ''}.")


__all__ += ["scenario_pools", "implicit_inputs", "eval_chunk", "describe_candidates"]
