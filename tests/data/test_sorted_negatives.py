"""The sorted negative sampler: never a seen item, exact target distribution, no [users, items] array."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from metarec_jax import ConfigError, validate
from metarec_jax.data import build_taskset, sample_batch, split_tasks
from metarec_jax.data.implicit import to_implicit
from metarec_jax.data.interactions import Interactions
from metarec_jax.data.negatives import (implicit_eval_batch, implicit_eval_batch_sorted, pool_logits,
                                        sample_negatives, sample_sorted, seen_lists, seen_matrix, sorted_extra,
                                        sorted_pool, with_train_negatives)
from tests.conftest import make_implicit, tiny_config

NUM_USERS, NUM_ITEMS = 6, 15
POOL = np.array([0, 1, 2, 3, 5, 7, 8, 9, 11, 12, 14])
COUNTS = np.array([30, 0, 7, 2, 50, 1, 0, 12, 3, 9, 0, 4, 20, 0, 5])
DRAWS = 40_000


@pytest.fixture(scope="module")
def small():
  """Six users over 15 items: user 4 has seen the whole pool, user 5 nothing."""
  rng = np.random.default_rng(0)
  user = np.concatenate([rng.integers(0, 4, 30), np.full(len(POOL), 4)])
  item = np.concatenate([rng.integers(0, NUM_ITEMS, 30), POOL])
  inter = Interactions(user, item, np.ones(len(user), np.float32), None)
  return seen_lists(inter, NUM_USERS), seen_matrix(inter, NUM_USERS, NUM_ITEMS)


def _target(seen_row: np.ndarray, kind: str) -> np.ndarray:
  w = np.zeros(NUM_ITEMS)
  w[POOL] = 1.0 if kind == "uniform" else COUNTS[POOL] + 1.0
  w[seen_row] = 0.0
  return w / w.sum()


@pytest.fixture(scope="module")
def draws(small):
  """``kind -> (items [users, DRAWS], valid)`` of the sorted sampler; the matrix sampler's first draws for user 0."""
  lists, seen = small
  out = {}
  for kind in ("uniform", "popularity"):
    sp = sorted_pool(lists, POOL, kind, COUNTS, min_nnz=64, min_pool=16)  # padding changes nothing
    fn = jax.jit(jax.vmap(lambda u, sp=sp: sample_sorted(jax.random.fold_in(jax.random.PRNGKey(0), u), sp, u,
                                                         DRAWS)))
    out[kind] = fn(jnp.arange(NUM_USERS))
  logits = jnp.asarray(pool_logits(POOL, NUM_ITEMS, "popularity", COUNTS))
  first = jax.jit(jax.vmap(lambda k: sample_negatives(k, logits, jnp.asarray(seen[0]), 3)[0][0]))
  return out, first(jax.random.split(jax.random.PRNGKey(1), DRAWS))


def test_seen_lists_hold_what_the_matrix_holds(small):
  lists, seen = small
  for u in range(NUM_USERS):
    np.testing.assert_array_equal(lists.row(u), np.flatnonzero(seen[u]))


@pytest.mark.parametrize("kind", ["uniform", "popularity"])
def test_never_a_seen_item_nor_outside_the_pool(small, draws, kind):
  _, seen = small
  items, valid = (np.asarray(x) for x in draws[0][kind])
  for u in range(NUM_USERS):
    allowed = set(np.flatnonzero(_target(seen[u], kind) > 0)) if u != 4 else set()
    if u == 4:  # seen the whole pool: nothing to draw
      assert not valid[u].any() and (items[u] == 0).all()
      continue
    assert valid[u].all()
    assert set(np.unique(items[u])) == allowed  # every allowed item is drawn, nothing else


@pytest.mark.parametrize("kind", ["uniform", "popularity"])
def test_one_draw_has_the_exact_target_distribution(small, draws, kind):
  """Chi-square goodness of fit against the pool's weights restricted to the user's unseen items."""
  _, seen = small
  items, _ = draws[0][kind]
  for u in (0, 1, 2, 3, 5):
    p = _target(seen[u], kind)
    support = p > 0
    observed = np.bincount(np.asarray(items[u]), minlength=NUM_ITEMS)[support]
    chi2 = stats.chisquare(observed, DRAWS * p[support])
    assert chi2.pvalue > 1e-4, (u, chi2)
    assert np.abs(observed / DRAWS - p[support]).max() < 5 * np.sqrt(0.25 / DRAWS)


def test_one_draw_is_distributed_as_the_matrix_samplers_first(small, draws):
  """Homogeneity of the sorted draws and the Gumbel top-k's first draw (user 0, popularity weights)."""
  _, seen = small
  (items, _), first = draws[0]["popularity"], draws[1]
  support = _target(seen[0], "popularity") > 0
  a = np.bincount(np.asarray(items[0]), minlength=NUM_ITEMS)
  b = np.bincount(np.asarray(first), minlength=NUM_ITEMS)
  assert a[~support].sum() == 0 and b[~support].sum() == 0
  _, pvalue, _, _ = stats.chi2_contingency(np.stack([a[support], b[support]]))
  assert pvalue > 1e-4
  assert np.abs(a[support] / DRAWS - 1 / support.sum()).max() > 0.05  # the weights matter: not uniform


@pytest.fixture(scope="module")
def implicit_tasks(tiny_data):
  data = to_implicit(tiny_data, 4.0)
  return data, jax.device_put(build_taskset(data.interactions, min_length=8))


def test_training_negatives_in_the_jitted_step_layout(implicit_tasks):
  """`with_train_negatives` picks the sorted sampler from Features.extra: unseen, in the pool, grouped."""
  data, tasks = implicit_tasks
  lists = seen_lists(data.interacted, data.num_users)
  seen = seen_matrix(data.interacted, data.num_users, data.num_items)
  pool = np.arange(0, data.num_items, 2)
  extra = sorted_extra(sorted_pool(lists, pool, "popularity", np.arange(data.num_items)))
  assert all(np.shape(v) != (data.num_users, data.num_items) for v in extra.values())
  batch = sample_batch(tasks, jax.random.PRNGKey(0), 16, 4, 5)
  fn = jax.jit(with_train_negatives, static_argnums=3)
  out = fn(batch, jax.random.PRNGKey(1), extra, 3)
  assert out.support_items.shape == (16, 5 * 4) and out.query_items.shape == (16, 4 * 4)
  for t, u in enumerate(np.asarray(out.user)):
    for items, labels, mask in ((out.support_items, out.support_ratings, out.support_mask),
                                (out.query_items, out.query_ratings, out.query_mask)):
      g, lab, m = (np.asarray(x[t]).reshape(-1, 4) for x in (items, labels, mask))
      assert (lab[:, 0] == 1).all() and (lab[:, 1:] == 0).all()
      negs = g[:, 1:][m[:, 1:]]
      assert len(negs) == 3 * m[:, 0].sum() and not seen[u, negs].any() and np.isin(negs, pool).all()
  again = fn(batch, jax.random.PRNGKey(1), extra, 3)
  np.testing.assert_array_equal(out.query_items, again.query_items)
  with pytest.raises(KeyError, match="implicit_inputs"):
    with_train_negatives(batch, jax.random.PRNGKey(1), {}, 3)


def test_eval_batches_without_the_matrix(implicit_tasks):
  """Sampled candidates are unseen pool items; ``all`` candidates and masks equal the matrix version's."""
  data, tasks = implicit_tasks
  lists = seen_lists(data.interacted, data.num_users)
  seen = seen_matrix(data.interacted, data.num_users, data.num_items)
  batch = split_tasks(tasks, jax.random.PRNGKey(3), 4, 4)
  pool = np.arange(1, data.num_items, 2)
  kw = dict(seen=lists, support_pool=pool, query_pool=pool, sampling="popularity",
            counts=np.arange(data.num_items), ratio=2, num_negatives=20, chunk=16)
  a, layout = implicit_eval_batch_sorted(batch, jax.random.PRNGKey(5), mode="sampled", **kw)
  b, _ = implicit_eval_batch_sorted(batch, jax.random.PRNGKey(5), mode="sampled", **kw)
  np.testing.assert_array_equal(a.query_items, b.query_items)
  assert layout.width == 20 and a.query_items.shape == (tasks.num_tasks, 4 * 21)
  for items, mask, r in ((a.query_items, a.query_mask, 20), (a.support_items, a.support_mask, 2)):
    g, m = np.asarray(items).reshape(tasks.num_tasks, -1, 1 + r), np.asarray(mask).reshape(tasks.num_tasks, -1, 1 + r)
    np.testing.assert_array_equal(g[..., 0], np.asarray(batch.query_items if r == 20 else batch.support_items))
    users = np.broadcast_to(np.asarray(a.user)[:, None, None], g.shape)[..., 1:]
    negs, who = g[..., 1:][m[..., 1:]], users[m[..., 1:]]
    assert len(negs) == r * m[..., 0].sum() and not seen[who, negs].any() and np.isin(negs, pool).all()
  c, lay = implicit_eval_batch_sorted(batch, jax.random.PRNGKey(5), mode="all", **kw)
  logits = pool_logits(pool, data.num_items)
  d, lay_d = implicit_eval_batch(batch, jax.random.PRNGKey(5), support_logits=logits, query_logits=logits,
                                 seen=jnp.asarray(seen), ratio=2, num_negatives=20, mode="all", chunk=16)
  assert lay == lay_d
  for x, y in ((c.query_items, d.query_items), (c.query_mask, d.query_mask), (c.query_ratings, d.query_ratings)):
    np.testing.assert_array_equal(x, y)


def test_config_names_the_sampler_and_its_limits():
  c = make_implicit(tiny_config())
  c.methods = ("popularity", "pooled", "maml")
  c.data.negative_sampler = "dense"
  with pytest.raises(ConfigError, match=r"data.negative_sampler must be one of \('matrix', 'sorted'\)"):
    validate(c)
  c.data.negative_sampler = "sorted"
  validate(c)
  c.methods = ("pooled", "metaemb")
  with pytest.raises(ConfigError, match="metaemb draws negative users from the seen matrix"):
    validate(c)


def test_a_whole_run_with_sorted_negatives_and_a_history_cap(tmp_path, monkeypatch):
  """Training step, sampled and all-item evaluation: no [users, items] array, tasks at most the cap long."""
  from metarec_jax import experiment
  c = make_implicit(tiny_config(), metrics=("auc", "hr@5"), scenarios=("user_cold",))
  c.data.negative_sampler, c.data.negative_sampling, c.data.history_cap = "sorted", "popularity", 8
  c.eval.candidates = "sampled,all"
  c.methods = ("popularity", "pooled")
  c.train.steps, c.train.eval_every = 2, 2
  c.eval.finetune_lrs = (0.1,)
  preps = []
  prepare = experiment.prepare
  monkeypatch.setattr(experiment, "prepare", lambda *a, **k: preps.append(prepare(*a, **k)) or preps[-1])
  results = experiment.run(c, tmp_path / "wd", progress=False, verbose=False)
  rows = {(r["method"], r["scenario"]): r for r in results["rows"]}
  assert set(rows) == {(m, s) for m in c.methods for s in ("user_cold", "user_cold:all")}
  for r in rows.values():
    assert 0 <= r["auc"] <= 1 and 0 <= r["hr@5"] <= 1 and r["tasks"] > 0
  assert "19 negatives sampled uniformly with replacement" in (tmp_path / "wd" / "results.md").read_text()
  (prep,) = preps
  n = (prep.data.num_users, prep.data.num_items)
  assert "seen" not in prep.features.extra and all(
      not set(n) <= set(np.shape(v)) for v in prep.features.extra.values())
  assert prep.train.items.shape[1] == 8 and prep.test_tasks["user_cold"].items.shape[1] == 8
  assert (np.asarray(prep.train.lengths) == 8).any()  # the cap bites
