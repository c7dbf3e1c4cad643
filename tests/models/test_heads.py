"""Heads and extractor: worked examples and shapes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarec_jax.data import FieldSpec
from metarec_jax.models import DotHead, Extractor, MLPHead, RelationHead


def test_relation_scorer_worked_example():
  # f_u in R^2, f_i in R^3: R is 2x3, so widths need not match.
  f_u = jnp.array([1.0, 2.0])
  f_i = jnp.array([[1.0, 0.0, -1.0], [0.5, 2.0, 1.0]])
  R = jnp.array([[1.0, 0.0, 2.0], [0.0, -1.0, 1.0]])
  w_u, w_i, mu = jnp.array([0.5, -0.5]), jnp.array([1.0, 1.0, 0.0]), 3.0
  params = {"params": {"R": R, "w_user": w_u, "w_item": w_i, "mu": jnp.array(mu)}}
  got = RelationHead().apply(params, f_u, f_i)
  # By hand: f_uᵀR = [1, -2, 4]; item 1: 1 + 0 - 4 = -3; item 2: 0.5 - 4 + 4 = 0.5.
  # b_u = 0.5 - 1 = -0.5; b_i = [1, 2.5]; μ = 3.
  np.testing.assert_allclose(got, [-3 - 0.5 + 1 + 3, 0.5 - 0.5 + 2.5 + 3], rtol=1e-6)


def test_relation_scorer_batches_over_tasks():
  head = RelationHead(offset=3.0)
  f_u, f_i = jnp.ones((4, 2)), jnp.ones((4, 5, 3))
  params = head.init(jax.random.PRNGKey(0), f_u[0], f_i[0])
  assert params["params"]["R"].shape == (2, 3)
  out = head.apply(params, f_u, f_i)
  single = jax.vmap(lambda u, i: head.apply(params, u, i))(f_u, f_i)
  assert out.shape == (4, 5)
  np.testing.assert_allclose(out, single, rtol=1e-6)


def test_mlp_head_starts_at_offset_and_dot_head_checks_widths():
  head = MLPHead(hidden=(4,), offset=3.5)
  params = head.init(jax.random.PRNGKey(0), jnp.zeros(3), jnp.zeros((2, 5)))
  np.testing.assert_allclose(head.apply(params, jnp.zeros(3), jnp.zeros((2, 5))), [3.5, 3.5], rtol=1e-6)
  with pytest.raises(ValueError, match="equal user and item feature widths"):
    DotHead().init(jax.random.PRNGKey(0), jnp.zeros(3), jnp.zeros((2, 4)))


def test_multi_hot_fields_ignore_padding():
  specs = (FieldSpec("tags", "multi", vocab_size=6, width=3),)
  ext = Extractor(user_specs=(FieldSpec("g", "categorical", vocab_size=3),), item_specs=specs, embed_dim=4)
  user = {"g": jnp.array(1)}
  items = {"tags": jnp.array([[2, 3, 0], [2, 3, 5]])}
  params = ext.init(jax.random.PRNGKey(0), user, items)
  f_u, f_i = ext.apply(params, user, items)
  table = params["params"]["item"]["tags"]["embedding"]
  np.testing.assert_allclose(f_i[0], (table[2] + table[3]) / 2, rtol=1e-6)
  np.testing.assert_allclose(f_i[1], (table[2] + table[3] + table[5]) / 3, rtol=1e-6)
  assert f_u.shape == (4,)


def test_bfloat16_compute_keeps_float32_params_and_close_scores(tiny_setup):
  from metarec_jax.models import RecModel, init_params, make_predict
  model32, _, params, features, _, batch = tiny_setup
  model16 = model32.clone(dtype=jnp.bfloat16)
  params16 = init_params(model16, features, jax.random.PRNGKey(0))
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params16))
  items = batch.query_items[0]
  a = jax.jit(make_predict(model32))(params, features, batch.user[0], items)
  b = jax.jit(make_predict(model16))(params, features, batch.user[0], items)
  assert b.dtype == jnp.float32
  np.testing.assert_allclose(a, b, atol=0.05)
  assert not np.array_equal(np.asarray(a), np.asarray(b))  # it really computed in bfloat16
