"""Factored dense layers: plain behaviour, and factors equal the materialised kernel."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from metarec_jax.models.fast_weights import FAST_DELTA, FAST_IN, FAST_PROBE, FastDense
from metarec_jax.models.heads import PairDense


def _normal(seed, shape):
  return jax.random.normal(jax.random.PRNGKey(seed), shape)


def test_fast_dense_is_flax_dense_without_factors():
  x = _normal(0, (5, 6))
  ours = FastDense(3, bias_init=nn.initializers.constant(0.7))
  theirs = nn.Dense(3, bias_init=nn.initializers.constant(0.7))
  p, q = ours.init(jax.random.PRNGKey(1), x), theirs.init(jax.random.PRNGKey(1), x)
  assert jax.tree.structure(p) == jax.tree.structure(q)
  for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(q)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(ours.apply(p, x), theirs.apply(q, x), rtol=1e-6)


def test_fast_dense_factors_equal_the_updated_kernel():
  x, xs, d = _normal(0, (4, 6)), _normal(1, (2, 5, 6)), _normal(2, (2, 5, 3))
  layer = FastDense(3)
  p = layer.init(jax.random.PRNGKey(3), x)["params"]
  kernel = p["kernel"] + jnp.einsum("ksi,kso->io", xs, d)  # W + Σ_k X_kᵀ D_k
  want = x @ kernel + p["bias"]
  got = layer.apply({"params": {**p, FAST_IN: xs, FAST_DELTA: d}}, x)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_probe_is_added_and_its_gradient_is_the_output_gradient():
  x = _normal(0, (4, 6))
  layer = FastDense(3)
  p = layer.init(jax.random.PRNGKey(3), x)["params"]
  target = _normal(5, (4, 3))
  loss = lambda probe: jnp.sum((layer.apply({"params": {**p, FAST_PROBE: probe}}, x) - target) ** 2)
  grad = jax.grad(loss)(jnp.zeros((4, 3)))
  np.testing.assert_allclose(grad, 2 * (layer.apply({"params": p}, x) - target), rtol=1e-5)


def test_inputs_are_recorded_on_request():
  x = _normal(0, (4, 6))
  layer = FastDense(3)
  p = layer.init(jax.random.PRNGKey(3), x)
  _, state = layer.apply(p, x, mutable=["intermediates"])
  np.testing.assert_array_equal(state["intermediates"][FAST_IN][0], x)
  assert layer.apply(p, x).shape == (4, 3)  # nothing recorded, plain output


def test_pair_dense_factors_with_one_user_row_and_one_per_item():
  f_i, xs_u, xs_i, d = _normal(1, (4, 6)), _normal(2, (2, 5, 3)), _normal(3, (2, 5, 6)), _normal(4, (2, 5, 7))
  layer = PairDense(7)
  for f_u in (_normal(0, (3,)), _normal(6, (4, 3))):  # one user vector, or one per scored item
    p = layer.init(jax.random.PRNGKey(5), f_u, f_i)["params"]
    xs = jnp.concatenate([xs_u, xs_i], -1)
    kernel = p["kernel"] + jnp.einsum("ksi,kso->io", xs, d)
    joined = jnp.concatenate([jnp.broadcast_to(f_u, (4, 3)), f_i], -1)
    want = joined @ kernel + p["bias"]
    fast = {**p, FAST_IN + "_user": xs_u, FAST_IN + "_item": xs_i, FAST_DELTA: d}
    np.testing.assert_allclose(layer.apply({"params": fast}, f_u, f_i), want, rtol=1e-5, atol=1e-5)
    _, state = layer.apply({"params": p}, f_u, f_i, mutable=["intermediates"])
    np.testing.assert_array_equal(state["intermediates"][FAST_IN + "_user"][0], jnp.broadcast_to(f_u, (4, 3)))


def test_pair_dense_factors_under_leading_batch_axes():
  f_u, f_i = _normal(0, (2, 3)), _normal(1, (2, 4, 6))  # two users, four items each
  xs_u, xs_i, d = _normal(2, (1, 5, 3)), _normal(3, (1, 5, 6)), _normal(4, (1, 5, 7))
  layer = PairDense(7)
  p = layer.init(jax.random.PRNGKey(5), f_u, f_i)["params"]
  fast = {**p, FAST_IN + "_user": xs_u, FAST_IN + "_item": xs_i, FAST_DELTA: d}
  got = layer.apply({"params": fast}, f_u, f_i)
  for b in range(2):
    np.testing.assert_allclose(got[b], layer.apply({"params": fast}, f_u[b], f_i[b]), rtol=1e-5, atol=1e-6)
