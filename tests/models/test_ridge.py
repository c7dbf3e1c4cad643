"""Closed-form ridge user vector: the solve, leave-one-out, masking, and inside the model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from metarec_jax.data.derived import ITEM_MEAN, derived_columns
from metarec_jax.data.tasks import Features
from metarec_jax.models import RecModel, init_params, make_predict
from metarec_jax.models.ridge import RidgeUserVector, spd_solve


def _jiggle(params, seed=3, scale=0.3):
  """Moves every param off its init (the prior starts at zero), reproducibly."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _ridge_inputs():
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  f_u = jax.random.normal(keys[0], (4,))
  f_s = jax.random.normal(keys[1], (7, 5))
  f_i = jax.random.normal(keys[2], (3, 5))
  mask = jnp.array([1, 1, 1, 1, 1, 0, 0], jnp.float32)
  targets = jax.random.normal(keys[3], (7,)) * mask
  module = RidgeUserVector(dim=3, init_reg=2.0)
  params = _jiggle(module.init(jax.random.PRNGKey(1), f_u, f_i, f_s, targets, mask))
  return module, params, f_u, f_i, f_s, targets, mask


def test_scores_are_the_ridge_solution_around_the_user_prior():
  module, params, f_u, f_i, f_s, targets, mask = _ridge_inputs()
  p = jax.tree.map(np.asarray, params["params"])
  fac, pri = p["item_factors"], p["user_prior"]
  q = lambda f: np.concatenate([np.ones((len(f), 1)), np.asarray(f) @ fac["kernel"] + fac["bias"]], 1)
  p0 = np.concatenate([[0.0], np.asarray(f_u) @ pri["kernel"] + pri["bias"]])
  keep = np.asarray(mask) > 0
  q_s, t = q(f_s)[keep], np.asarray(targets)[keep]
  user = p0 + np.linalg.solve(q_s.T @ q_s + np.diag(np.exp(p["log_reg"])), q_s.T @ (t - q_s @ p0))
  got = module.apply(params, f_u, f_i, f_s, targets, mask)
  np.testing.assert_allclose(got, q(f_i) @ user, rtol=1e-4, atol=1e-5)


def test_leave_one_out_equals_the_fit_without_that_rating():
  module, params, f_u, _, f_s, targets, mask = _ridge_inputs()
  loo = module.apply(params, f_u, f_s, f_s, targets, mask, loo=True)
  for s in range(5):
    without = mask.at[s].set(0.0)
    refit = module.apply(params, f_u, f_s, f_s, targets * without, without)
    np.testing.assert_allclose(loo[s], refit[s], rtol=1e-4, atol=1e-5)


def test_masked_support_rows_change_nothing():
  module, params, f_u, f_i, f_s, targets, mask = _ridge_inputs()
  base = module.apply(params, f_u, f_i, f_s, targets, mask)
  junk_s = f_s.at[5:].set(100.0)
  np.testing.assert_allclose(module.apply(params, f_u, f_i, junk_s, targets, mask), base, rtol=1e-6)
  # With no support rating at all, the score is the prior's alone.
  empty = jnp.zeros_like(mask)
  prior_only = module.apply(params, f_u, f_i, f_s, targets * 0, empty)
  p = params["params"]
  q_i = f_i @ p["item_factors"]["kernel"] + p["item_factors"]["bias"]
  p0 = f_u @ p["user_prior"]["kernel"] + p["user_prior"]["bias"]
  np.testing.assert_allclose(prior_only, q_i @ p0, rtol=1e-5, atol=1e-6)


def test_model_with_ridge_leave_one_out_is_the_prediction_without_the_rating(tiny_data):
  d = tiny_data
  _, _, i_cols, _, _ = derived_columns(d.interactions, d.num_users, d.num_items, 5.0)
  features = Features(user={k: jnp.asarray(v) for k, v in d.users.columns.items()},
                      item={**{k: jnp.asarray(v) for k, v in d.items.columns.items()},
                            ITEM_MEAN: jnp.asarray(i_cols[ITEM_MEAN])})
  model = RecModel(d.users.specs, d.items.specs, embed_dim=3, head_hidden=(5,), support_vector=True, ridge_dim=4)
  params = _jiggle(init_params(model, features, jax.random.PRNGKey(0)), scale=0.2)
  assert "ridge" in params
  predict = jax.jit(make_predict(model, residual=True), static_argnames="loo")
  items = jnp.array([3, 8, 15, 21, 40, 2])
  ratings = jnp.array([5.0, 1.0, 4.0, 2.0, 3.0, 1.0])
  mask = jnp.array([True, True, True, True, True, False])
  loo = predict(params, features, 7, items, (items, ratings, mask), loo=True)
  for s in range(5):
    refit = predict(params, features, 7, items, (items, ratings, mask.at[s].set(False)))
    np.testing.assert_allclose(loo[s], refit[s], rtol=1e-4, atol=1e-5)
  # A query prediction uses every support rating, and the masked one not at all.
  q = jnp.array([50, 60])
  a = predict(params, features, 7, q, (items, ratings, mask))
  assert float(jnp.abs(a - predict(params, features, 7, q, (items, ratings.at[1].set(4.0), mask))).min()) > 1e-6
  np.testing.assert_allclose(a, predict(params, features, 7, q, (items, ratings.at[5].set(5.0), mask)), rtol=1e-6)


def test_spd_solve_matches_numpy_and_differentiates():
  rng = np.random.default_rng(0)
  m = rng.normal(size=(9, 6)).astype(np.float32)
  a = m.T @ m + np.diag(rng.uniform(0.5, 2.0, 6)).astype(np.float32)
  b = rng.normal(size=(6,)).astype(np.float32)
  rhs = rng.normal(size=(6, 4)).astype(np.float32)
  np.testing.assert_allclose(spd_solve(jnp.asarray(a), jnp.asarray(b)), np.linalg.solve(a, b), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(spd_solve(jnp.asarray(a), jnp.asarray(rhs)), np.linalg.solve(a, rhs), rtol=1e-4,
                             atol=1e-5)
  # d/da of wᵀ a⁻¹ b is g = -a⁻ᵀ w (a⁻¹ b)ᵀ; over symmetric a, its symmetric part. Vmapped.
  w = rng.normal(size=(6,)).astype(np.float32)
  grad = jax.vmap(jax.grad(lambda a_, b_: w @ spd_solve(a_, b_)))(jnp.stack([a, 2 * a]), jnp.stack([b, b]))
  for k, scale in enumerate((1.0, 2.0)):
    inv = np.linalg.inv(scale * a)
    g = -np.outer(inv.T @ w, inv @ b)
    np.testing.assert_allclose(grad[k], (g + g.T) / 2, rtol=1e-3, atol=1e-5)


def _content_inputs():
  module, _, f_u, f_i, f_s, targets, mask = _ridge_inputs()
  keys = jax.random.split(jax.random.PRNGKey(5), 2)
  c_s, c_i = jax.random.normal(keys[0], (7, 6)), jax.random.normal(keys[1], (3, 6))
  module = RidgeUserVector(dim=3, init_reg=2.0, content_dim=2)
  params = _jiggle(module.init(jax.random.PRNGKey(1), f_u, f_i, f_s, targets, mask, c_i=c_i, c_s=c_s))
  return module, params, (f_u, f_i, f_s, targets, mask), c_i, c_s


def test_content_factors_are_solved_from_the_support_alone():
  module, params, args, c_i, c_s = _content_inputs()
  f_u, f_i, f_s, targets, mask = args
  p = jax.tree.map(np.asarray, params["params"])
  fac, pri, con = p["item_factors"], p["user_prior"], p["content_factors"]
  q = lambda f, c: np.concatenate([np.ones((len(f), 1)), np.asarray(f) @ fac["kernel"] + fac["bias"],
                                   np.asarray(c) @ con["kernel"] + con["bias"]], 1)
  p0 = np.concatenate([[0.0], np.asarray(f_u) @ pri["kernel"] + pri["bias"], [0.0, 0.0]])  # content prior 0
  keep = np.asarray(mask) > 0
  q_s, t = q(f_s, c_s)[keep], np.asarray(targets)[keep]
  user = p0 + np.linalg.solve(q_s.T @ q_s + np.diag(np.exp(p["log_reg"])), q_s.T @ (t - q_s @ p0))
  got = module.apply(params, f_u, f_i, f_s, targets, mask, c_i=c_i, c_s=c_s)
  np.testing.assert_allclose(got, q(f_i, c_i) @ user, rtol=1e-4, atol=1e-5)
  # No support rating: the content adds nothing, whatever it is (no global item effect through it).
  empty = jnp.zeros_like(mask)
  a = module.apply(params, f_u, f_i, f_s, targets * 0, empty, c_i=c_i, c_s=c_s)
  b = module.apply(params, f_u, f_i, f_s, targets * 0, empty, c_i=c_i * 10 + 3, c_s=c_s)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  loo = module.apply(params, f_u, f_s, f_s, targets, mask, loo=True, c_i=c_s, c_s=c_s)
  without = mask.at[2].set(0.0)
  refit = module.apply(params, f_u, f_s, f_s, targets * without, without, c_i=c_s, c_s=c_s)
  np.testing.assert_allclose(loo[2], refit[2], rtol=1e-4, atol=1e-5)


def test_model_ridge_fields_reach_only_the_ridge(tiny_data):
  import dataclasses
  d = tiny_data
  _, _, i_cols, _, _ = derived_columns(d.interactions, d.num_users, d.num_items, 5.0)
  text = jax.random.normal(jax.random.PRNGKey(2), (d.num_items, 6))
  features = Features(user={k: jnp.asarray(v) for k, v in d.users.columns.items()},
                      item={**{k: jnp.asarray(v) for k, v in d.items.columns.items()},
                            ITEM_MEAN: jnp.asarray(i_cols[ITEM_MEAN]), "text": text})
  model = RecModel(d.users.specs, d.items.specs, embed_dim=3, head_hidden=(5,), ridge_dim=2, ridge_fields=("text",),
                   ridge_content_dim=2)
  params = _jiggle(init_params(model, features, jax.random.PRNGKey(0)), scale=0.2)
  assert params["ridge"]["content_factors"]["kernel"].shape == (6, 2)
  assert "text" not in str(jax.tree_util.tree_structure(params["extractor"]))  # the extractor never sees it
  predict = jax.jit(make_predict(model, residual=True))
  items, ratings = jnp.array([3, 8, 15, 21]), jnp.array([5.0, 1.0, 4.0, 2.0])
  q = jnp.array([50, 60])
  support = (items, ratings, jnp.ones(4, bool))
  a = predict(params, features, 7, q, support)
  moved = dataclasses.replace(features, item={**features.item, "text": text.at[50].add(1.0)})
  assert float(jnp.abs(a - predict(params, moved, 7, q, support))[0]) > 1e-6  # item 50's text moves its score
  empty = (items, ratings, jnp.zeros(4, bool))
  np.testing.assert_allclose(predict(params, features, 7, q, empty), predict(params, moved, 7, q, empty), rtol=1e-6)
