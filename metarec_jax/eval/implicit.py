"""Scoring implicit-feedback evaluation batches, and the popularity baseline.

An evaluation batch (`data.negatives.implicit_eval_batch`) holds each query
positive's candidates in ``query_items``; any predictor that scores a batch's
query items (adapted learners, the pooled model, popularity) scores them, and
`score_implicit` turns the scores into the ranking metrics of `eval.ranking`.

The full-ranking protocol (``data.protocol=cold_items_ranking``) builds its
sets with `full_ranking_inputs` instead: each user's query is a whole
catalogue (layout mode ``full``), scored by `eval.full_ranking`.
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

  A ``full`` layout (`full_ranking_inputs`) is scored by
  `eval.full_ranking.score_full_ranking` over its catalogue.

  Raises:
    FloatingPointError: a metric is not finite.
  """
  if layout.mode == "full":
    from metarec_jax.eval.full_ranking import score_full_ranking
    out = score_full_ranking(pred, batch.query_ratings, batch.query_mask, metric_names,
                             chunk=eval_chunk(batch, 256, 1 << 20))
    if not np.all(np.isfinite([v for k, v in out.items() if k != "tasks"])):
      raise FloatingPointError(f"evaluation produced a non-finite metric: {out}")
    return out
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
  _refuse_full_ranking_metrics(config)
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
  if d.protocol == "cold_items_ranking":
    return describe_full_ranking(config)
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


# --------------------------------------------------------------------------- full ranking (cold_items_ranking)


def _refuse_full_ranking_metrics(config) -> None:
  from metarec_jax import config as cfg_lib
  from metarec_jax.eval.ranking import FULL_RANKING_ONLY
  bad = [m for m in config.eval.metrics if m.split("@")[0] in FULL_RANKING_ONLY]
  if bad:
    raise cfg_lib.ConfigError(f"eval.metrics: {tuple(bad)} rank a whole catalogue per user, which protocol "
                              f"{config.data.protocol!r} does not: use data.protocol=cold_items_ranking, or hr@K")


def full_ranking_support_size(config) -> int:
  """Support positives of a full-ranking task: ``data.support_size`` or ``data.support_cap``, at most
  ``data.history_cap`` when that is set."""
  d = config.data
  s = d.support_size if d.support_size > 0 else d.support_cap
  return min(s, d.history_cap) if d.history_cap else s


def full_ranking_inputs(config, data, split, features, eval_key: jax.Array, seed: int):
  """The training sampler and the full-ranking evaluation sets of ``cold_items_ranking``, for one seed.

  One task per user with a held-out positive in the set. Support: a seeded
  random subset (`data.tasks.cap_histories`, the same order as
  ``data.history_cap``) of at most `full_ranking_support_size` of the
  user's *training* positives, each joined by ``data.negatives_per_positive``
  negatives drawn as in training. Query: the set's whole catalogue
  (``split.catalogues``), relevance = the user's held-out positives there,
  excluded = the user's training interactions (`data.negatives.full_ranking_batch`).

  The negative sampler sees only the training interactions (``split.seen``)
  and draws only training items: no cold item (validation or test) is in its
  seen matrix / lists or its pool.

  Sets: ``valid`` (cold-validation items), ``valid_warm`` (warm validation
  positives over the warm items; built when ``warm`` is scored with
  ``eval.selection=per_scenario``), and each scenario of ``eval.scenarios``
  (``cold``, ``warm``).

  Returns:
    ``(features, valid_batches, test_batches, layouts, selection)``.

  Raises:
    ConfigError: a scenario the protocol does not have, or a metric that is
      no full-ranking metric.
  """
  import zlib

  from metarec_jax import config as cfg_lib
  from metarec_jax.data import negatives as neg
  from metarec_jax.data.tasks import cap_histories
  from metarec_jax.eval.full_ranking import check_full_ranking_names
  d, e = config.data, config.eval
  if candidate_modes(e.candidates) != ("all",):
    raise cfg_lib.ConfigError(f"eval.candidates={e.candidates!r}: data.protocol=cold_items_ranking ranks every item "
                              "of a catalogue; set eval.candidates=all")
  try:
    check_full_ranking_names(e.metrics)
  except ValueError as err:
    raise cfg_lib.ConfigError(f"eval.metrics: {err}") from None
  n, n_users = data.num_items, data.num_users
  counts = np.bincount(split.train.item, minlength=n)
  train_pool = np.unique(split.train.item)
  seen_inter = split.seen
  if d.negative_sampler == "sorted":
    lists = neg.seen_lists(seen_inter, n_users)
    train = neg.sorted_pool(lists, train_pool, d.negative_sampling, counts, min_rows=n_users,
                            min_nnz=len(lists.items) + 1, min_pool=n)
    features = features.replace(extra={**features.extra, **neg.sorted_extra(train)})
    seen = logits = None
  else:
    seen = jnp.asarray(neg.seen_matrix(seen_inter, n_users, n))
    logits = neg.pool_logits(train_pool, n, d.negative_sampling, counts)
    features = features.replace(extra={**features.extra, neg.SEEN: seen, neg.TRAIN_LOGITS: jnp.asarray(logits)})
  s = full_ranking_support_size(config)
  support = cap_histories(split.train, s, seed)
  for scenario in e.scenarios:
    if scenario not in split.tests:
      raise cfg_lib.ConfigError(f"eval.scenarios: protocol {d.protocol!r} has no scenario {scenario!r}; it has "
                                f"{tuple(split.tests)}")
  layouts: dict = {}

  def build(name, relevant):
    users = np.unique(relevant.user)
    if not len(users):
      raise cfg_lib.ConfigError(f"{name}: no user has a positive in it; lower data.positive_threshold or "
                                "raise data.cold_item_share")
    key = jax.random.fold_in(eval_key, zlib.crc32(f"negatives/{name}".encode()) & 0x7FFFFFFF)
    sampler = None
    if d.negative_sampler == "sorted":
      sampler = neg.sorted_pool(lists, train_pool, d.negative_sampling, counts, users, round_up=True)
    catalogue = split.catalogues[name if name in split.catalogues else name.removeprefix("valid_")]
    chunk = int(min(256, max(8, (1 << 20) // max(len(catalogue), 1))))
    batch, layouts[name] = neg.full_ranking_batch(
        users, support, relevant, seen_inter, catalogue, key, support_size=s, ratio=d.negatives_per_positive,
        seen=seen, logits=logits, sampler=sampler, chunk=chunk)
    return batch

  valid = {"valid": build("valid", split.valid)}
  selection = {}
  for scenario in e.scenarios:
    selection[scenario] = "valid"
    name = f"valid_{scenario}"
    if e.selection == "per_scenario" and name in split.extra_valid:
      valid[name] = build(name, split.extra_valid[name])
      selection[scenario] = name
  tests = {scenario: build(scenario, split.tests[scenario]) for scenario in e.scenarios}
  return features, valid, tests, layouts, selection


def describe_full_ranking(config) -> str:
  """One line for result tables of ``cold_items_ranking``: what each user ranks and how it is scored."""
  d = config.data
  return ("Full ranking (protocol cold_items_ranking): every user with a held-out positive ranks the whole "
          "catalogue of the set: `cold` the cold-test items, `warm` every warm item except the user's training "
          f"items; {d.cold_item_share:g} of the items are cold (half validation, half test), warm interactions "
          f"split {1 - d.valid_share - d.warm_test_share:g}:{d.valid_share:g}:{d.warm_test_share:g}. "
          "recall@K divides by all of the user's held-out positives (ALDI / LLM-InS), ndcg@K's ideal holds "
          "min(K, positives); ties are broken at random (expected value); users without a positive are left "
          f"out. Positives: value >= {d.positive_threshold:g}. Adaptation sees up to "
          f"{full_ranking_support_size(config)} of the user's training positives, each with "
          f"{d.negatives_per_positive} {d.negative_sampling} negatives. Selection: validation AUC on the "
          "cold-validation items.")


__all__ += ["full_ranking_inputs", "full_ranking_support_size", "describe_full_ranking"]
