"""Support-set user vector (leave-one-out), residual baseline, derived features."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from metarec_jax.data import Interactions
from metarec_jax.data.derived import ITEM_MEAN, derived_columns, hide_items
from metarec_jax.data.tasks import Features
from metarec_jax.models import RecModel, init_params, make_predict


def _setup(tiny_data, support_vector=True):
  d = tiny_data
  _, _, i_cols, _, mu = derived_columns(d.interactions, d.num_users, d.num_items, 5.0)
  features = Features(user={k: jnp.asarray(v) for k, v in d.users.columns.items()},
                      item={**{k: jnp.asarray(v) for k, v in d.items.columns.items()},
                            ITEM_MEAN: jnp.asarray(i_cols[ITEM_MEAN])})
  model = RecModel(d.users.specs, d.items.specs, embed_dim=3, head_hidden=(5,), support_vector=support_vector)
  params = init_params(model, features, jax.random.PRNGKey(0))
  return model, params, features


def test_leave_one_out_prediction_ignores_its_own_rating(tiny_data):
  model, params, features = _setup(tiny_data)
  predict = jax.jit(make_predict(model, residual=True), static_argnames="loo")
  items = jnp.array([3, 8, 15, 21, 40])
  ratings = jnp.array([5.0, 1.0, 4.0, 2.0, 3.0])
  mask = jnp.array([True, True, True, True, False])
  base = predict(params, features, 7, items, (items, ratings, mask), loo=True)
  changed = predict(params, features, 7, items, (items, ratings.at[1].set(4.0), mask), loo=True)
  np.testing.assert_allclose(base[1], changed[1], rtol=1e-6)  # its own rating is left out
  assert float(jnp.abs(base[jnp.array([0, 2, 3])] - changed[jnp.array([0, 2, 3])]).min()) > 1e-6
  # A query prediction (no leave-one-out) does use every support rating.
  q = jnp.array([50, 60])
  a = predict(params, features, 7, q, (items, ratings, mask))
  b = predict(params, features, 7, q, (items, ratings.at[1].set(4.0), mask))
  assert float(jnp.abs(a - b).min()) > 1e-6
  # The masked support entry changes nothing.
  c = predict(params, features, 7, q, (items, ratings.at[4].set(1.0), mask))
  np.testing.assert_allclose(a, c, rtol=1e-6)


def test_residual_adds_item_mean_and_shrunk_user_bias(tiny_data):
  model, params, features = _setup(tiny_data, support_vector=False)
  plain = make_predict(model)
  residual = make_predict(model, residual=True, bias_reg=2.0)
  means = np.asarray(features.item[ITEM_MEAN])
  s_items, s_ratings = np.array([1, 2, 3]), np.array([5.0, 4.0, 1.0])
  support = (jnp.asarray(s_items), jnp.asarray(s_ratings), jnp.ones(3, bool))
  q = jnp.array([10, 11])
  resid = s_ratings - means[s_items]
  bias = resid.sum() / (3 + 2.0)
  got = residual(params, features, 0, q, support) - plain(params, features, 0, q)
  np.testing.assert_allclose(got, means[[10, 11]] + bias, rtol=1e-5)
  # Leave-one-out on the support items themselves.
  got_loo = residual(params, features, 0, support[0], support, True) - plain(params, features, 0, support[0])
  np.testing.assert_allclose(got_loo, means[s_items] + (resid.sum() - resid) / (2 + 2.0), rtol=1e-5)


def test_derived_columns_know_only_training_entities():
  train = Interactions(user=[0, 0, 2], item=[1, 3, 3], rating=[4.0, 2.0, 5.0])
  u_cols, _, i_cols, specs, mu = derived_columns(train, num_users=4, num_items=5, item_mean_reg=1.0)
  np.testing.assert_allclose(mu, 11 / 3, rtol=1e-6)
  assert i_cols["item_id"].tolist() == [0, 2, 0, 4, 0]
  assert u_cols["user_id"].tolist() == [1, 0, 3, 0]
  np.testing.assert_allclose(i_cols[ITEM_MEAN][[0, 1, 3]], [mu, (4 + mu) / 2, (7 + mu) / 3], rtol=1e-6)
  assert (i_cols["item_stats"][[0, 2, 4]] == 0).all() and i_cols["item_stats"][3, 1] > i_cols["item_stats"][1, 1]


def test_hide_items_blanks_a_seeded_share():
  n = 1000
  features = Features(user={}, item={"item_id": jnp.arange(n) + 1, "item_stats": jnp.ones((n, 2)),
                                     ITEM_MEAN: jnp.full((n,), 4.5), "genre": jnp.arange(n)})
  out = hide_items(features, jax.random.PRNGKey(0), 0.3, 3.5)
  hidden = np.asarray(out.item["item_id"]) == 0
  assert 0.25 < hidden.mean() < 0.35
  assert (np.asarray(out.item["item_stats"])[hidden] == 0).all()
  assert (np.asarray(out.item[ITEM_MEAN])[hidden] == 3.5).all()
  assert (np.asarray(out.item[ITEM_MEAN])[~hidden] == 4.5).all()
  np.testing.assert_array_equal(out.item["genre"], features.item["genre"])  # content stays
  again = hide_items(features, jax.random.PRNGKey(0), 0.3, 3.5)
  np.testing.assert_array_equal(again.item["item_id"], out.item["item_id"])
  assert (np.asarray(hide_items(features, jax.random.PRNGKey(1), 0.0, 3.5).item["item_id"]) > 0).all()
