"""The content prior of item means: fit on training items only, the cold items' baseline, hidden items."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarec_jax.data import Interactions
from metarec_jax.data.content_prior import content_matrix, fit_content_prior
from metarec_jax.data.derived import ITEM_MEAN, ITEM_PRIOR, derived_columns, hide_items
from metarec_jax.data.interactions import FeatureTable, FieldSpec
from metarec_jax.data.tasks import Features


def _ratings(rng, means, items, per_item=30, noise=0.3):
  item = np.repeat(items, per_item)
  return Interactions(user=np.arange(len(item)) % 50, item=item,
                      rating=means[item] + noise * rng.standard_normal(len(item)))


def test_prior_predicts_unseen_items_means_from_their_content():
  rng = np.random.default_rng(0)
  n, d = 400, 8
  x = rng.standard_normal((n, d))
  true = 3.5 + x @ rng.normal(0, 0.2, d)
  train_items = np.arange(300)  # items 300.. never rated in training
  fit = fit_content_prior(x, _ratings(rng, true, train_items), item_mean_reg=5.0, fields=("v",))
  cold = np.arange(300, n)
  err = np.abs(fit.prior[cold] - true[cold]).mean()
  mu_err = np.abs(true[train_items].mean() - true[cold]).mean()
  assert err < 0.25 * mu_err  # content explains the means; μ does not
  assert fit.loo_mae < fit.base_mae and fit.width == d + 1 and "ridge" in fit.note()


def test_prior_without_signal_stays_near_the_global_mean():
  rng = np.random.default_rng(1)
  n = 300
  means = np.full(n, 3.0)
  fit = fit_content_prior(rng.standard_normal((n, 20)), _ratings(rng, means, np.arange(200)), fields=("noise",))
  assert np.abs(fit.prior - 3.0).max() < 0.1
  assert fit.reg >= 100.0  # leave-one-out picks strong shrinkage for pure noise


def test_unrated_items_do_not_enter_the_fit():
  rng = np.random.default_rng(2)
  x = rng.standard_normal((50, 3))
  train = _ratings(rng, 3.0 + x[:, 0], np.arange(40))
  a = fit_content_prior(x, train)
  x2 = x.copy()
  x2[40:] = 100 * rng.standard_normal((10, 3))  # only unrated items change
  b = fit_content_prior(x2, train)
  np.testing.assert_allclose(a.prior[:40], b.prior[:40], rtol=1e-5)
  assert a.reg == b.reg


def test_content_matrix_one_hot_and_dense():
  items = FeatureTable((FieldSpec("genre", "multi", vocab_size=4, width=2), FieldSpec("rate", "categorical", vocab_size=3),
                        FieldSpec("v", "dense", width=2)),
                       {"genre": np.array([[1, 3], [2, 0]]), "rate": np.array([2, 1]),
                        "v": np.array([[0.5, -1.0], [2.0, 0.0]], np.float32)})
  m = content_matrix(items, ("genre", "rate", "v"))
  np.testing.assert_array_equal(m, [[1, 0, 1, 0, 1, 0.5, -1.0], [0, 1, 0, 1, 0, 2.0, 0.0]])
  with pytest.raises(KeyError, match="no item field 'plot'.*genre"):
    content_matrix(items, ("plot",))


def test_derived_columns_shrink_toward_the_prior():
  train = Interactions(user=[0, 0, 2], item=[1, 3, 3], rating=[4.0, 2.0, 5.0])
  prior = np.array([3.0, 4.5, 2.0, 3.5, 1.5], np.float32)
  _, _, cols, _, mu = derived_columns(train, num_users=3, num_items=5, item_mean_reg=1.0, prior=prior)
  np.testing.assert_allclose(cols[ITEM_MEAN], [3.0, (4 + 4.5) / 2, 2.0, (7 + 3.5) / 3, 1.5], rtol=1e-6)
  np.testing.assert_array_equal(cols[ITEM_PRIOR], prior)
  _, _, plain, _, _ = derived_columns(train, num_users=3, num_items=5, item_mean_reg=1.0)
  assert ITEM_PRIOR not in plain and plain[ITEM_MEAN][0] == pytest.approx(mu)


def test_hidden_items_fall_back_on_their_prior():
  n = 500
  prior = jnp.linspace(2.0, 4.0, n)
  features = Features(user={}, item={"item_id": jnp.arange(n) + 1, ITEM_MEAN: jnp.full((n,), 4.5),
                                     ITEM_PRIOR: prior})
  out = hide_items(features, jax.random.PRNGKey(0), 0.4, 3.5)
  hidden = np.asarray(out.item["item_id"]) == 0
  assert 0.3 < hidden.mean() < 0.5
  np.testing.assert_array_equal(np.asarray(out.item[ITEM_MEAN])[hidden], np.asarray(prior)[hidden])
  assert (np.asarray(out.item[ITEM_MEAN])[~hidden] == 4.5).all()
