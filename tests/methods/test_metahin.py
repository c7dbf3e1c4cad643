"""MetaHIN: the meta-path tables, contexts that never hold a query item, the shared checks, the adaptations, runs."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metarec_jax.methods.metahin as metahin  # registers metahin before the methods package does
from metarec_jax import ConfigError, default_config, validate
from metarec_jax.data.interactions import FeatureTable, FieldSpec, Interactions
from metarec_jax.data.metapaths import (CO_RATED, PAD, USER_ITEM, build_metapath_tables, context_bags,
                                        field_path)
from metarec_jax.meta.learners import row
from metarec_jax.meta.step import init_state, make_meta_train_step
from metarec_jax.methods import check_overrides_used, resolve

from tests.conftest import make_implicit, tiny_config
from tests.methods import conditioned_checks as checks


def _small(c):
  """A small MetaHIN on the tiny config: fast to compile."""
  c.metahin.user_dim = 4
  c.metahin.hidden = (8,)
  c.metahin.neighbours = 4


def _implicit(c):
  _small(c)
  make_implicit(c)


def _transformer(c):
  _small(c)
  c.model.extractor = "transformer"
  c.model.transformer.size = "tiny"


CASE = checks.case("metahin", _small)
IMPLICIT = checks.case("metahin", _implicit)
TRANSFORMER = checks.case("metahin", _transformer)


def _support(b):
  return b.support_items, b.support_ratings, b.support_mask


def _scorer(model, tables, **kwargs):
  """A jitted ``(params, features, user, items, support) -> scores`` of `metahin.apply_metahin`."""
  return jax.jit(lambda p, f, u, i, s: metahin.apply_metahin(model, tables, p, f, u, i, s, **kwargs))


# --------------------------------------------------------------------------- the tables


def _hand_made():
  """7 items, 3 meta-training users; actor is multi-valued, director categorical; item 6 is never rated."""
  train = Interactions(user=[0, 0, 0, 1, 1, 2], item=[0, 1, 2, 2, 3, 5], rating=[5, 4, 3, 2, 1, 4])
  actor = np.asarray([[1, 2], [2, 0], [3, 0], [1, 0], [4, 0], [3, 0], [1, 0]], np.int32)
  director = np.asarray([1, 1, 2, 0, 2, 2, 1], np.int32)
  items = FeatureTable((FieldSpec("actor", "multi", vocab_size=5, width=2),
                        FieldSpec("director", "categorical", vocab_size=3)),
                       {"actor": actor, "director": director})
  return train, items


def _rows(table):
  return [sorted(int(x) for x in r if x != PAD) for r in table]


def test_the_tables_of_a_hand_made_data_set():
  train, items = _hand_made()
  t = build_metapath_tables(train, items, k=3, seed=0)
  assert t.names == (USER_ITEM, CO_RATED, field_path("actor"), field_path("director"))
  assert t.tables.shape == (3, 7, 3) and t.tables.dtype == np.int32
  np.testing.assert_array_equal(t.pool, [True, True, True, True, False, True, False])
  # co-rated by a meta-training user; item 5's only rater rated nothing else; 4 and 6 were never rated
  assert _rows(t.table(CO_RATED)) == [[1, 2], [0, 2], [0, 1, 3], [2], [], [], []]
  # sharing an actor (padding id 0 links nothing); item 6 is nobody's neighbour (no training rating),
  # but its own row lists the pool items it shares an actor with
  assert _rows(t.table(field_path("actor"))) == [[1, 3], [0], [5], [0], [], [2], [0, 3]]
  # sharing a director (categorical; 0 = unknown links nothing; item 4 is not in the pool)
  assert _rows(t.table(field_path("director"))) == [[1], [0], [5], [], [2, 5], [2], [0, 1]]
  # each row: its neighbours first, then padding
  for table in t.tables:
    valid = table != PAD
    assert np.all(valid[:, :-1] >= valid[:, 1:])


def test_fields_the_data_lacks_are_skipped_and_paths_can_be_switched_off():
  train, items = _hand_made()
  t = build_metapath_tables(train, items, k=2, seed=0, fields=("genre", "director"), co_rated=False)
  assert t.names == (USER_ITEM, field_path("director")) and t.tables.shape == (1, 7, 2)
  t = build_metapath_tables(train, items, k=2, seed=0, fields=(), co_rated=False)
  assert t.names == (USER_ITEM,) and t.tables.shape == (0, 7, 2)
  dense = FeatureTable((FieldSpec("x", "dense", width=2),), {"x": np.zeros((7, 2), np.float32)})
  with pytest.raises(ValueError, match="dense"):
    build_metapath_tables(train, dense, k=2, seed=0, fields=("x",))


def _brute_force_co_rated(train, n):
  by_user = {}
  for u, i in zip(train.user, train.item):
    by_user.setdefault(int(u), set()).add(int(i))
  sets = [set() for _ in range(n)]
  for its in by_user.values():
    for a, b in itertools.permutations(its, 2):
      sets[a].add(b)
  return sets


def test_the_seeded_draw_is_deterministic_and_a_subset_of_the_neighbours():
  rng = np.random.default_rng(1)
  n, k = 60, 5
  train = Interactions(user=rng.integers(0, 30, 400), item=rng.integers(0, n - 5, 400), rating=np.ones(400))
  items = FeatureTable((FieldSpec("actor", "multi", vocab_size=9, width=3),),
                       {"actor": rng.integers(0, 9, (n, 3)).astype(np.int32)})
  a = build_metapath_tables(train, items, k=k, seed=7)
  b = build_metapath_tables(train, items, k=k, seed=7)
  c = build_metapath_tables(train, items, k=k, seed=8)
  np.testing.assert_array_equal(a.tables, b.tables)
  assert not np.array_equal(a.tables, c.tables)
  full = _brute_force_co_rated(train, n)
  for i, r in enumerate(a.table(CO_RATED)):
    got = [int(x) for x in r if x != PAD]
    assert len(set(got)) == len(got) == min(k, len(full[i])) and set(got) <= full[i] and i not in got
  pool = a.pool
  for i, r in enumerate(a.table(field_path("actor"))):
    shares = {j for j in range(n) if j != i and pool[j]
              and set(items.columns["actor"][i][items.columns["actor"][i] > 0]) & set(items.columns["actor"][j])}
    got = [int(x) for x in r if x != PAD]
    assert len(set(got)) == len(got) == min(k, len(shares)) and set(got) <= shares


def test_the_context_bags_count_the_support_and_its_neighbours_and_drop_the_scored_items():
  tables = jnp.asarray([[[1, 2], [0, PAD], [PAD, PAD], [0, 1]]], jnp.int32)  # one path past U-M, 4 items, K=2
  support = jnp.asarray([0, 3, 2], jnp.int32)
  weights = jnp.asarray([1.0, 1.0, 0.0])  # entry 2 is padding: it adds nothing
  bags = context_bags(tables, support, weights, 4)
  np.testing.assert_allclose(bags, [[1, 0, 0, 1], [1 + 1, 1 + 1, 1, 1]])
  bags = context_bags(tables, support, weights, 4, exclude=jnp.asarray([1, 3]))
  np.testing.assert_allclose(bags, [[1, 0, 0, 0], [2, 0, 1, 0]])


# --------------------------------------------------------------------------- no query item in any context


def test_tables_come_from_meta_training_ratings_and_no_test_query_item_is_in_a_context():
  c = CASE()
  method = resolve("metahin", c.config)
  t = method.tables(c.prep)
  train = c.prep.split.train
  np.testing.assert_array_equal(t.pool, np.bincount(train.item, minlength=t.num_items) > 0)
  full = _brute_force_co_rated(train, t.num_items)
  for i, r in enumerate(t.table(CO_RATED)):
    assert {int(x) for x in r if x != PAD} <= full[i]  # links only from meta-training ratings
  tables = t.on_device()
  n = t.num_items
  bags_of = jax.jit(jax.vmap(lambda s, w, q: context_bags(tables, s, w, n, exclude=q)))
  raw_of = jax.jit(jax.vmap(lambda s, w: context_bags(tables, s, w, n)))
  checked = 0
  for name, batch in c.prep.test_batches.items():
    bags = np.asarray(bags_of(batch.support_items, batch.support_mask, batch.query_items))
    q = np.asarray(batch.query_items)
    valid = np.asarray(batch.query_mask)
    for task in range(q.shape[0]):
      assert np.all(bags[task][:, q[task][valid[task]]] == 0), (name, task)
      checked += int(valid[task].sum())
    # without the exclusion, query items do reach some contexts: the exclusion is what keeps them out
    raw = np.asarray(raw_of(batch.support_items, batch.support_mask))
    if name == "warm":
      assert any(np.any(raw[t_][:, q[t_][valid[t_]]] > 0) for t_ in range(q.shape[0]))
  assert checked > 0


def test_a_query_item_written_into_the_tables_changes_no_score():
  c = CASE()
  b = row(c.prep.test_batches["warm"], 0)
  model, params, f = c.parts.model, c.meta["model"], c.prep.features
  tables = resolve("metahin", c.config).tables(c.prep).on_device()
  q = b.query_items
  pad = jnp.full(tables.shape[:2] + q.shape, PAD, jnp.int32)
  # every support item now also has the query items as neighbours (the tables get more columns)
  poisoned = jnp.concatenate([tables, pad.at[:, b.support_items].set(q)], axis=-1)
  score = jax.jit(lambda t: metahin.apply_metahin(model, t, params, f, b.user, q, _support(b)))
  base = score(jnp.concatenate([tables, pad], axis=-1))
  np.testing.assert_allclose(np.asarray(score(poisoned)), np.asarray(base), atol=1e-6)
  # ...which the contexts would hold without the exclusion
  raw = context_bags(poisoned, b.support_items, b.support_mask, tables.shape[1])
  assert bool(jnp.all(raw[1:, q] > 0))


# --------------------------------------------------------------------------- shared checks


SHARED = {k: v for k, v in checks.CHECKS.items() if k != "training_lowers_the_query_loss"}  # its own below


@pytest.mark.parametrize("check", list(SHARED))
def test_the_shared_checks(check):
  SHARED[check](CASE())


def _query_loss(c, meta):
  def one(t):
    scores = c.parts.predict(meta["model"], c.prep.features, t.user, t.query_items, _support(t))
    return c.parts.spec.loss_fn(scores, t.query_ratings, t.query_mask)
  return float(jax.jit(lambda batch: jnp.mean(jax.vmap(one)(batch)))(c.batch))


def _train(c, steps, lr=3e-3):
  optimizer = optax.adam(lr)
  step = make_meta_train_step(c.parts.spec, c.parts.predict, optimizer, tasks_per_batch=8,
                              query_size=c.config.data.query_size, support_size=c.prep.support_size)
  state = init_state(c.meta, optimizer, jax.random.PRNGKey(11))
  for _ in range(steps):
    state, metrics = step(state, c.prep.train, c.prep.features)
    assert np.isfinite(float(metrics["loss"]))
  return state


def test_training_lowers_the_query_loss():
  # the shared check scores through `apply_conditioned`; MetaHIN's model also needs its contexts,
  # so the same check runs here through the method's predict function
  c = CASE()
  before = _query_loss(c, c.meta)
  after = _query_loss(c, _train(c, 15, lr=1e-2).params)
  assert after < before, (before, after)


def test_implicit_feedback_contexts_hold_the_positives_only_and_training_runs():
  c = IMPLICIT()
  assert c.parts.model.implicit and c.parts.model.loss == "bce" and c.prep.implicit
  b = row(c.batch, 0)
  params, f = c.meta["model"], c.prep.features
  tables = resolve("metahin", c.config).tables(c.prep).on_device()
  # without inner steps and with uniform fusion the support set reaches the scores through the contexts only
  model = c.parts.model.clone(mp_steps=0, local_steps=0, fusion="mean")
  s_items, s_y, s_mask = _support(b)
  assert int(s_mask.sum()) >= 2
  s_y = s_y.at[0].set(0.0)  # entry 0 is a negative, entry 1 a positive

  jitted = _scorer(model, tables)

  def scores(items):
    return np.asarray(jitted(params, f, b.user, b.query_items, (items, s_y, s_mask)))

  base = scores(s_items)
  other = int(s_items.max()) + 1
  assert np.all(np.isfinite(base))
  np.testing.assert_allclose(scores(s_items.at[0].set(other)), base, atol=1e-6)  # a negative is no context
  assert np.max(np.abs(scores(s_items.at[1].set(other)) - base)) > 1e-6       # a positive is
  optimizer = optax.adam(3e-3)
  step = make_meta_train_step(c.parts.spec, c.parts.predict, optimizer, tasks_per_batch=8,
                              query_size=c.config.data.query_size, support_size=c.prep.support_size,
                              negatives_per_positive=2)
  state = init_state(c.meta, optimizer, jax.random.PRNGKey(11))
  state, metrics = step(state, c.prep.train, c.prep.features)  # BCE on the support's sampled negatives
  assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > 0


def test_it_runs_with_the_field_transformer_extractor():
  c = TRANSFORMER()
  assert c.parts.model.extractor == "transformer" and "block_0" in c.meta["model"]["extractor"]["item"]
  checks.scores_are_finite_and_shaped(c)


# --------------------------------------------------------------------------- the adaptations


def test_the_meta_paths_of_synthetic_data_and_the_fusion_weights():
  c = CASE()
  assert c.parts.model.paths == (USER_ITEM, CO_RATED)  # synthetic data has no actor and no director
  b = row(c.batch, 0)
  model, params, f = c.parts.model, c.meta["model"], c.prep.features
  tables = resolve("metahin", c.config).tables(c.prep).on_device()
  _, w = _scorer(model, tables, capture_weights=True)(params, f, b.user, b.query_items, _support(b))
  assert w.shape == (2,) and abs(float(jnp.sum(w)) - 1.0) < 1e-6 and float(jnp.min(w)) > 0
  mean = model.clone(fusion="mean")
  _, w = _scorer(mean, tables, capture_weights=True)(params, f, b.user, b.query_items, _support(b))
  np.testing.assert_allclose(np.asarray(w), [0.5, 0.5])
  # a multi-valued item field closes one more meta-path
  cfg = c.config.copy_and_resolve_references()
  cfg.metahin.side_fields = ("tags", "director")
  tagged = resolve("metahin", cfg)
  assert tagged.tables(c.prep).names == (USER_ITEM, CO_RATED, field_path("tags"))


def test_both_inner_adaptations_move_the_scores_and_second_order_differentiates_through_them():
  c = CASE()
  b = row(c.batch, 1)
  model, params, f = c.parts.model, c.meta["model"], c.prep.features
  tables = resolve("metahin", c.config).tables(c.prep).on_device()

  def scores(m):
    return np.asarray(_scorer(m, tables)(params, f, b.user, b.query_items, _support(b)))

  full = scores(model)
  assert np.max(np.abs(full - scores(model.clone(mp_steps=0)))) > 1e-7     # the semantic-wise step moves them
  assert np.max(np.abs(full - scores(model.clone(local_steps=0)))) > 1e-7  # so does the task-wise step

  def meta_grad(m):
    def loss(p):
      s = metahin.apply_metahin(m, tables, p, f, b.user, b.query_items, _support(b))
      return jnp.mean((s - b.query_ratings) ** 2)
    return jax.jit(jax.grad(loss))(params)["aggregator"]["kernel"]

  second = meta_grad(model.clone(mp_lr=0.5, local_lr=0.5))
  first = meta_grad(model.clone(mp_lr=0.5, local_lr=0.5, first_order=True))
  assert float(jnp.max(jnp.abs(second - first))) > 1e-7  # second order differentiates through the steps
  assert float(jnp.max(jnp.abs(first))) > 0


# --------------------------------------------------------------------------- config and runs


def test_the_block_is_read_by_metahin_only_and_validated():
  c = default_config()
  assert c.metahin.mp_lr == 5e-3 and c.metahin.local_lr == 5e-3 and tuple(c.metahin.hidden) == (64, 64)
  c.methods = ("maml", "metahin")
  assert resolve("metahin", c).reads_key("metahin.neighbours")
  assert not resolve("maml", c).reads_key("metahin.neighbours")
  assert resolve("metahin", c).config.meta.inner_steps == 0
  c.metahin.fusion = "attention"
  c.metahin.neighbours = 0
  with pytest.raises(ConfigError, match="metahin.fusion must be one of.*; .*metahin.neighbours must be >= 1"):
    validate(c)
  c.methods = ("maml",)
  with pytest.raises(ConfigError, match="maml does not read metahin.user_dim"):
    check_overrides_used(c, ["metahin.user_dim"])


def test_a_tiny_run_trains_evaluates_and_serves_metahin(tmp_path):
  from metarec_jax import run
  from metarec_jax.serving import Recommender
  c = tiny_config()
  _small(c)
  c.methods = ("global_mean", "metahin")
  c.eval.scenarios = ("user_cold",)
  c.train.steps = 4
  c.train.eval_every = 2
  out = run(c, workdir=tmp_path / "run", progress=False, verbose=False)
  rows = {(r["method"], r["scenario"]): r for r in out["rows"]}
  assert np.isfinite(rows[("metahin", "user_cold")]["mae"]) and rows[("metahin", "user_cold")]["tasks"] > 0
  rec = Recommender.load(tmp_path / "run", method="metahin")
  scorer = rec.adapt([3, 5, 7], [5.0, 1.0, 4.0])
  items, scores = scorer.top_k(4)
  assert len(items) == 4 and not set(items.tolist()) & {3, 5, 7} and np.all(np.isfinite(scores))
  other = rec.adapt([3, 5, 7], [1.0, 5.0, 2.0]).scores()
  assert np.max(np.abs(scorer.scores() - other)) > 1e-6  # the ratings reach the scores
