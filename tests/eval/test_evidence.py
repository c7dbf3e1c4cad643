"""Choosing a new user's support ratings: popularity, MeLU's evidence, random (unchanged)."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarec_jax import ConfigError, apply_overrides, experiment, validate
from metarec_jax.data.tasks import split_tasks
from metarec_jax.eval.evidence import (evidence_from_norms, evidence_scores, normalise_by_max, popularity,
                                       rating_grad_norms, split_tasks_by_score)
from metarec_jax.meta.inner import flatten, set_loss
from metarec_jax.meta.learners import learner_spec
from metarec_jax.report import support_curve_table
from metarec_jax.types import Features, TaskSet
from tests.conftest import tiny_config


def _taskset(rows: list[list[tuple[int, float]]], length: int, first_user: int = 1) -> TaskSet:
  """A padded TaskSet from per-user lists of (item, rating)."""
  t = len(rows)
  items = np.zeros((t, length), np.int32)
  ratings = np.zeros((t, length), np.float32)
  for j, row in enumerate(rows):
    for p, (i, r) in enumerate(row):
      items[j, p], ratings[j, p] = i, r
  return TaskSet(user=np.arange(first_user, first_user + t, dtype=np.int32), items=items, ratings=ratings,
                 lengths=np.array([len(r) for r in rows], np.int32))


# --------------------------------------------------------------------------- item scores


def test_popularity_counts_training_ratings_and_ranks_support_by_it():
  train = _taskset([[(1, 4.0), (2, 3.0), (3, 5.0)], [(1, 2.0), (3, 1.0)], [(1, 5.0)]], length=4)
  pop = popularity(train, num_items=6)
  np.testing.assert_array_equal(pop, [0, 3, 1, 2, 0, 0])  # padding (item 0) is never counted
  np.testing.assert_allclose(normalise_by_max(pop), [0, 1, 1 / 3, 2 / 3, 0, 0])
  # A test user who rated items 5, 2, 3, 1, 4: with no query, the support is the most popular first.
  test = _taskset([[(5, 1.0), (2, 2.0), (3, 3.0), (1, 4.0), (4, 5.0)]], length=6)
  b = split_tasks_by_score(jax.device_put(test), jax.random.PRNGKey(0), 0, 3, jnp.asarray(pop))
  assert b.query_items.shape == (1, 0)
  np.testing.assert_array_equal(b.support_items[0], [1, 3, 2])
  np.testing.assert_array_equal(b.support_ratings[0], [4.0, 3.0, 2.0])
  assert bool(b.support_mask.all())


def _linear_predict(params, features, user, items, support=None, loo=False):
  """ŷ = w · x_i + b: a model whose local-update gradient is known by hand."""
  del user, support, loo
  return params["head"]["w"] * features.item["x"][items] + params["head"]["b"]


@pytest.mark.parametrize("unit", [True, False])
def test_evidence_is_normalised_grad_norm_times_normalised_popularity_by_hand(unit):
  x = np.array([0.0, 1.0, -2.0, 0.5, 3.0], np.float32)  # item feature; item 4 nobody rated
  features = Features(user={}, item={"x": jnp.asarray(x)})
  w, b = 0.7, 3.2
  params = {"head": {"w": jnp.float32(w), "b": jnp.float32(b)}, "extractor": {"e": jnp.ones((2,))}}
  spec = learner_spec("melu", inner_lr=0.1, inner_steps=1)  # adapts head/ only
  train = _taskset([[(1, 4.0), (2, 3.0), (3, 5.0)], [(1, 2.0), (3, 1.0)], [(1, 5.0), (2, 1.0)]], length=4)
  scores = evidence_scores(spec, _linear_predict, params, features, train, num_items=5, unit=unit, chunk=3)
  # By hand: e = ŷ - r; ∇w ℓ = 2 e x_i, ∇b ℓ = 2 e (ℓ = e²); unit divides both by ℓ. g = |∇w| + |∇b|.
  per_item = {i: [] for i in range(5)}
  for row in [[(1, 4.0), (2, 3.0), (3, 5.0)], [(1, 2.0), (3, 1.0)], [(1, 5.0), (2, 1.0)]]:
    for i, r in row:
      e = w * x[i] + b - r
      g = abs(2 * e * x[i]) + abs(2 * e)
      per_item[i].append(g / e ** 2 if unit else g)
  d = np.array([np.mean(v) if v else 0.0 for v in per_item.values()])
  p = np.array([len(v) for v in per_item.values()], float)
  np.testing.assert_allclose(scores.discriminative, d, rtol=1e-5)
  np.testing.assert_array_equal(scores.popularity, p)
  np.testing.assert_allclose(scores.score, d / d.max() * p / p.max(), rtol=1e-5)
  assert scores.score[0] == 0 and scores.score[4] == 0  # never rated in training
  assert scores.score.max() <= 1.0
  # The ranking is the item's summed gradient norm (both divisors are constants).
  assert list(np.argsort(-scores.score)[:3]) == list(np.argsort(-(d * p))[:3])


def test_vmapped_norms_equal_a_plain_loop_on_the_real_model_with_adapted_tables(tiny_setup):
  _, predict, params, features, tasks, _ = tiny_setup
  spec = learner_spec("maml", inner_lr=0.1, inner_steps=1)  # adapts all leaves, embedding tables included
  users = np.asarray(tasks.user[:2]).repeat(2)
  items = np.asarray(tasks.items[:2, :2]).reshape(-1)
  ratings = np.asarray(tasks.ratings[:2, :2]).reshape(-1)
  got = rating_grad_norms(spec, predict, params, features, users, items, ratings, unit=False, chunk=3)

  @jax.jit
  def by_hand(u, i, r):  # the loss of one rating and its gradient w.r.t. the full (global) tables
    one = lambda p: set_loss(predict, p, features, u, i[None], r[None], jnp.ones((1,), bool),
                             support=(i[None], r[None], jnp.ones((1,), bool)), loo=True)
    loss, grads = jax.value_and_grad(one)(params)
    return loss, sum(jnp.linalg.norm(g.reshape(-1)) for g in flatten(grads).values())

  loss = np.zeros(len(items))
  for n, (u, i, r) in enumerate(zip(users, items, ratings)):  # a plain loop over ratings
    loss[n], want = by_hand(u, i, r)
    np.testing.assert_allclose(got[n], want, rtol=2e-4)
  # unit = plain / loss, rating by rating.
  unit = rating_grad_norms(spec, predict, params, features, users, items, ratings, unit=True, chunk=3)
  np.testing.assert_allclose(unit, got / loss, rtol=2e-4)


def test_evidence_from_norms_averages_per_item():
  s = evidence_from_norms(np.array([2, 2, 1, 2]), np.array([1.0, 3.0, 8.0, 2.0]), num_items=4)
  np.testing.assert_allclose(s.discriminative, [0, 8, 2, 0])
  np.testing.assert_allclose(s.popularity, [0, 1, 3, 0])
  np.testing.assert_allclose(s.score, [0, 1 * 1 / 3, 2 / 8 * 1, 0])


# --------------------------------------------------------------------------- choosing the support set


def _random_tasks(seed: int, num_tasks: int = 40, length: int = 16, num_items: int = 60) -> TaskSet:
  rng = np.random.default_rng(seed)
  rows = []
  for _ in range(num_tasks):
    n = int(rng.integers(1, length + 1))
    items = rng.choice(np.arange(1, num_items), size=n, replace=False)
    rows.append([(int(i), float(rng.integers(1, 6))) for i in items])
  return _taskset(rows, length, first_user=7)


@pytest.mark.parametrize("query_size,k", [(5, 3), (5, 20), (0, 4)])
def test_candidates_are_the_users_own_non_query_items_top_scored(query_size, k):
  tasks = _random_tasks(0)
  scores = np.random.default_rng(1).permutation(60).astype(np.float32)  # distinct scores
  key = jax.random.PRNGKey(3)
  chosen = jax.device_get(split_tasks_by_score(jax.device_put(tasks), key, query_size, k, jnp.asarray(scores)))
  rand = jax.device_get(split_tasks(jax.device_put(tasks), key, query_size, k))
  for name in ("query_items", "query_ratings", "query_mask"):  # the query sets of random, unchanged
    np.testing.assert_array_equal(getattr(chosen, name), getattr(rand, name))
  for t in range(tasks.num_tasks):
    n = int(tasks.lengths[t])
    own = dict(zip(tasks.items[t, :n].tolist(), tasks.ratings[t, :n].tolist()))
    q = set(np.asarray(chosen.query_items[t])[np.asarray(chosen.query_mask[t])].tolist())
    m = np.asarray(chosen.support_mask[t])
    s = np.asarray(chosen.support_items[t])[m].tolist()
    pool = [i for i in own if i not in q]
    assert not set(s) & q  # a query item is never a candidate
    assert set(s) <= set(pool) and len(set(s)) == len(s)  # the user's own non-query items, each once
    assert len(s) == min(k, len(pool))  # K larger than the pool: the whole pool
    assert s == sorted(pool, key=lambda i: -scores[i])[:len(s)]  # highest score first
    np.testing.assert_array_equal(np.asarray(chosen.support_ratings[t])[m], [own[i] for i in s])
    assert not np.any(np.asarray(chosen.support_items[t])[~m]) and not np.any(np.asarray(chosen.support_ratings[t])[~m])


def test_equal_scores_give_exactly_the_random_support():
  tasks = jax.device_put(_random_tasks(2))
  key = jax.random.PRNGKey(11)
  rand = split_tasks(tasks, key, 5, 6)
  tied = split_tasks_by_score(tasks, key, 5, 6, jnp.zeros((60,)))
  for a, b in zip(jax.tree_util.tree_leaves(rand), jax.tree_util.tree_leaves(tied)):
    np.testing.assert_array_equal(a, b)
  # Ties are broken in the random order: scoring one item up moves just that item to the front.
  t = int(np.argmax(np.asarray(tasks.lengths) >= 14))
  pool_item = int(rand.support_items[t, 3])
  bumped = split_tasks_by_score(tasks, key, 5, 6, jnp.zeros((60,)).at[pool_item].set(1.0))
  want = [pool_item] + [i for i in np.asarray(rand.support_items[t]).tolist() if i != pool_item][:5]
  assert np.asarray(bumped.support_items[t]).tolist() == want


# --------------------------------------------------------------------------- config, run, report


def test_config_checks_the_support_choice():
  c = tiny_config()
  with pytest.raises(ConfigError, match="eval.support_choice must be distinct values"):
    validate(apply_overrides(c, ["eval.support_sizes=1", "eval.support_choice=random,best"]))
  with pytest.raises(ConfigError, match="set eval.support_sizes too"):
    validate(apply_overrides(c, ["eval.support_choice=popularity"]))
  with pytest.raises(ConfigError, match="eval.evidence_loss must be one of"):
    validate(apply_overrides(c, ["eval.evidence_loss=squared"]))
  validate(apply_overrides(c, ["eval.support_sizes=1", "eval.support_choice=evidence,random"]))


def test_run_scores_every_choice_and_random_rows_are_unchanged(tmp_path):
  c = apply_overrides(tiny_config(), ["methods=item_mean_user_bias,anil", "eval.support_sizes=1,3", "train.steps=4",
                                      "eval.support_choice=random,popularity,evidence",
                                      "eval.scenarios=warm,item_cold"])
  results = experiment.run(c, tmp_path / "wd", progress=False, verbose=False)
  curve = results["support_curve"]
  got = {(r["method"], r.get("choice", "random"), r["scenario"], r["support"]) for r in curve}
  want = {(m, ch, s, k) for m in ("item_mean_user_bias", "anil") for ch in ("random", "popularity", "evidence")
          for s in ("warm", "item_cold") for k in (1, 3)} - {
              ("item_mean_user_bias", "evidence", s, k) for s in ("warm", "item_cold") for k in (1, 3)}
  assert got == want and len(curve) == len(want)  # the baseline has no gradients: no evidence rows
  assert all("choice" not in r for r in curve if r.get("choice", "random") == "random")
  assert all(r["tasks"] > 0 and 0 < r["mae"] < 4 for r in curve)
  key = lambda r: (r["method"], r["scenario"], r["support"])
  by = {ch: {key(r): r for r in curve if r.get("choice", "random") == ch} for ch in ("random", "popularity")}
  # The same query sets: as many scored tasks; at K=1 on warm users the chosen rating differs from random.
  assert all(by["popularity"][k]["tasks"] == by["random"][k]["tasks"] for k in by["random"])
  assert by["popularity"][("anil", "warm", 1)]["mae"] != by["random"][("anil", "warm", 1)]["mae"]
  # Re-scored with the default choice (no training): the random rows, bit for bit, and nothing else.
  copy = tmp_path / "again"
  shutil.copytree(tmp_path / "wd", copy)
  again = experiment.evaluate_workdir(copy, progress=False, overrides=["eval.support_choice=random"])
  assert again["support_curve"] == [r for r in curve if "choice" not in r]
  assert again["rows"] == results["rows"]
  assert json.loads((copy / "config.json").read_text())["eval"]["support_choice"] == ["random"]
  # One table per choice and scenario.
  md = support_curve_table(results)
  for needle in ("### MAE by support size: warm, support chosen by random",
                 "### MAE by support size: item_cold, support chosen by evidence",
                 "### MAE by support size: warm, support chosen by popularity"):
    assert needle in md, needle
  assert md.count("| anil |") == 3 * 2 and md.count("| item_mean_user_bias |") == 2 * 2


def test_report_reads_rows_without_a_choice_as_random():
  old = [{"method": "m", "scenario": "warm", "seed": 0, "support": k, "mae": v, "tasks": 3}
         for k, v in ((1, 0.9), (3, 0.8))]
  md = support_curve_table({"support_curve": old})
  assert "### MAE by support size: warm\n" in md and "chosen by" not in md  # as before
  assert "| m | 0.9000 | 0.8000 |" in md
  new = old + [{**old[0], "choice": "evidence", "mae": 0.85}]
  md = support_curve_table({"support_curve": new})
  assert "warm, support chosen by random" in md and "warm, support chosen by evidence" in md
  assert "| m | 0.8500 |\n" in md
