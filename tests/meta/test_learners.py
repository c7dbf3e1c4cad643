"""Meta-gradients: vmap vs loop, finite differences, first vs second order."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metarec_jax.meta.step import global_norm
import pytest

from metarec_jax.meta import inner
from metarec_jax.meta.learners import (adapt_task, init_meta_params, learner_spec, meta_gradient, reptile_task,
                                       row, task_loss)
from metarec_jax.meta.step import init_state, make_meta_train_step
from tests.conftest import tree_allclose, x64


def loop_gradient(spec, predict, meta, features, batch):
  """The plain computation: a Python loop over tasks, one grad per task."""
  grads, losses = [], []
  one = jax.jit(jax.value_and_grad(lambda m, task: task_loss(spec, predict, m, features, task)[0]))
  for t in range(batch.num_tasks):
    loss, g = one(meta, row(batch, t))
    grads.append(g)
    losses.append(loss)
  mean = jax.tree_util.tree_map(lambda *xs: sum(xs) / len(xs), *grads)
  return sum(losses) / len(losses), mean


@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "anil", "pooled"])
def test_vmapped_meta_gradient_equals_loop(tiny_setup, name):
  _, predict, params, features, _, batch = tiny_setup
  spec = learner_spec(name, inner_lr=0.1, inner_steps=2)
  meta = init_meta_params(spec, params)
  loss, grads, _ = jax.jit(lambda m: meta_gradient(spec, predict, m, features, batch))(meta)
  loop_loss, loop_grads = loop_gradient(spec, predict, meta, features, batch)
  np.testing.assert_allclose(loss, loop_loss, rtol=1e-5)
  assert tree_allclose(grads, loop_grads, rtol=1e-4, atol=1e-6)
  assert float(global_norm(grads)) > 0


def test_chunked_meta_gradient_equals_unchunked(tiny_setup):
  _, predict, params, features, _, batch = tiny_setup
  spec = learner_spec("maml", inner_lr=0.1, inner_steps=1)
  meta = init_meta_params(spec, params)
  full = jax.jit(lambda m: meta_gradient(spec, predict, m, features, batch))(meta)
  chunked = jax.jit(lambda m: meta_gradient(spec, predict, m, features, batch, tasks_per_chunk=2))(meta)
  np.testing.assert_allclose(full[0], chunked[0], rtol=1e-6)
  assert tree_allclose(full[1], chunked[1], rtol=1e-5, atol=1e-7)


def test_remat_meta_gradient_equals_plain(tiny_setup):
  _, predict, params, features, _, batch = tiny_setup
  plain = learner_spec("maml", inner_lr=0.1, inner_steps=3)
  remat = learner_spec("maml", inner_lr=0.1, inner_steps=3, remat=True)
  meta = init_meta_params(plain, params)
  a = jax.jit(lambda m: meta_gradient(plain, predict, m, features, batch))(meta)
  b = jax.jit(lambda m: meta_gradient(remat, predict, m, features, batch))(meta)
  assert tree_allclose(a[1], b[1], rtol=1e-5, atol=1e-7)


def test_maml_meta_gradient_matches_finite_differences(tiny_setup):
  _, predict, params, features, _, batch = tiny_setup
  task = row(batch, 0)
  spec = learner_spec("maml", inner_lr=0.3, inner_steps=2)
  with x64():
    meta = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64), init_meta_params(spec, params))
    f = jax.jit(lambda m: task_loss(spec, predict, m, features, task)[0])
    grad = jax.jit(jax.grad(f))(meta)
    leaves, treedef = jax.tree_util.tree_flatten(meta)
    rng = np.random.default_rng(0)
    for _ in range(3):  # random directions through all params
      direction = [jnp.asarray(rng.normal(size=x.shape)) for x in leaves]
      v = jax.tree_util.tree_unflatten(treedef, direction)
      eps = 1e-5
      plus = jax.tree_util.tree_map(lambda x, d: x + eps * d, meta, v)
      minus = jax.tree_util.tree_map(lambda x, d: x - eps * d, meta, v)
      numeric = (f(plus) - f(minus)) / (2 * eps)
      analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree_util.tree_leaves(grad), direction))
      np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-5, atol=1e-8)


def test_fomaml_equals_maml_with_inner_gradients_stopped(tiny_setup):
  _, predict, params, features, _, batch = tiny_setup
  task = row(batch, 1)
  fo = learner_spec("fomaml", inner_lr=0.3, inner_steps=2)
  so = learner_spec("maml", inner_lr=0.3, inner_steps=2)
  meta = init_meta_params(so, params)
  fo_grad = jax.jit(jax.grad(lambda m: task_loss(fo, predict, m, features, task)[0]))(meta)

  # By hand: adapt without any gradient through the inner loop, then take the
  # query gradient at the adapted params and pass it straight to the initial ones.
  fast, _ = adapt_task(so, predict, jax.lax.stop_gradient(meta), features, task.user, task.support_items,
                       task.support_ratings, task.support_mask)
  delta = jax.tree_util.tree_map(lambda a, b: a - b, fast, meta["model"])

  def query_loss(model_params):
    shifted = jax.tree_util.tree_map(lambda p, d: p + jax.lax.stop_gradient(d), model_params, delta)
    return inner.set_loss(predict, shifted, features, task.user, task.query_items, task.query_ratings,
                          task.query_mask)

  by_hand = {"model": jax.jit(jax.grad(query_loss))(meta["model"])}
  assert tree_allclose(fo_grad, by_hand, rtol=1e-5, atol=1e-7)
  so_grad = jax.jit(jax.grad(lambda m: task_loss(so, predict, m, features, task)[0]))(meta)
  # The second-order term is real: MAML's gradient differs from FOMAML's.
  diff = global_norm(jax.tree_util.tree_map(lambda a, b: a - b, so_grad, fo_grad))
  assert float(diff) > 1e-4 * float(global_norm(so_grad))


def test_metasgd_inner_rates_receive_gradients(tiny_setup):
  _, predict, params, features, tasks, _ = tiny_setup
  spec = learner_spec("metasgd", inner_lr=0.1, inner_steps=1)
  meta = init_meta_params(spec, params)
  assert set(meta["inner_lr"]) == set(inner.flatten(params))
  opt = optax.adam(1e-2)
  step = make_meta_train_step(spec, predict, opt, tasks_per_batch=4, query_size=5, support_size=6)
  state = init_state(meta, opt, jax.random.PRNGKey(0))
  before = jax.tree_util.tree_map(jnp.copy, state.params["inner_lr"])
  state, metrics = step(state, tasks, features)
  moved = [float(jnp.abs(state.params["inner_lr"][k] - before[k]).max()) for k in before]
  assert max(moved) > 0, "Meta-SGD rates did not change"
  two = jax.tree_util.tree_map(lambda x: x[:2], tiny_setup[5])
  grads = jax.jit(lambda m: meta_gradient(spec, predict, m, features, two)[1])(init_meta_params(spec, params))
  assert float(global_norm(grads["inner_lr"])) > 0


def test_reptile_moves_params_toward_adapted(tiny_setup):
  _, predict, params, features, _, batch = tiny_setup
  spec = learner_spec("reptile", inner_lr=0.1, inner_steps=3)
  meta = init_meta_params(spec, params)
  fast = jax.jit(jax.vmap(lambda t: reptile_task(spec, predict, meta, features, t)[0]))(batch)
  target = {k: v.mean(0) for k, v in fast.items()}
  _, direction, _ = jax.jit(lambda m: meta_gradient(spec, predict, m, features, batch))(meta)
  eps = 0.5
  updated = jax.tree_util.tree_map(lambda p, g: p - eps * g, meta["model"], direction["model"])
  flat_before, flat_after = inner.flatten(meta["model"]), inner.flatten(updated)
  dist = lambda flat: sum(float(jnp.sum((flat[k] - target[k]) ** 2)) for k in target)
  assert dist(flat_after) < dist(flat_before)
  # Exactly the Reptile interpolation θ + ε (φ̄ - θ).
  for k in target:
    np.testing.assert_allclose(flat_after[k], flat_before[k] + eps * (target[k] - flat_before[k]), rtol=1e-5,
                               atol=1e-6)


def test_unknown_learner_and_negative_rates_are_rejected():
  with pytest.raises(KeyError, match="unknown learner"):
    learner_spec("mamlx", inner_lr=0.1, inner_steps=1)
  with pytest.raises(ValueError, match="inner learning rate"):
    learner_spec("maml", inner_lr=-0.1, inner_steps=1)
