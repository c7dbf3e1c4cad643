"""Inner loop: zero steps, path filters, padding, one trace per experiment."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metarec_jax.data.tasks import TaskBatch
from metarec_jax.meta import inner
from metarec_jax.meta.learners import init_meta_params, learner_spec, meta_gradient, row, task_loss
from metarec_jax.meta.step import init_state, make_meta_train_step
from tests.conftest import tree_allclose


def test_zero_inner_steps_is_no_adaptation(tiny_setup):
  _, predict, params, features, _, batch = tiny_setup
  task = row(batch, 0)
  adapted, frozen = inner.partition(params, "all")
  fast, losses = inner.adapt(predict, adapted, frozen, features, task.user, task.support_items,
                             task.support_ratings, task.support_mask, 0.5, 0)
  assert losses.shape == (0,)
  assert tree_allclose(fast, adapted, rtol=0, atol=0)
  spec = learner_spec("maml", inner_lr=0.5, inner_steps=0)
  loss, _ = task_loss(spec, predict, {"model": params}, features, task)
  plain = inner.set_loss(predict, params, features, task.user, task.query_items, task.query_ratings,
                         task.query_mask)
  np.testing.assert_allclose(loss, plain, rtol=1e-6)


def test_one_inner_step_is_one_sgd_step(tiny_setup):
  _, predict, params, features, _, batch = tiny_setup
  task = row(batch, 2)
  adapted, frozen = inner.partition(params, "head")
  assert adapted and all(k.startswith("head/") for k in adapted)
  assert all(not k.startswith("head/") for k in frozen)
  fast, _ = inner.adapt(predict, adapted, frozen, features, task.user, task.support_items,
                        task.support_ratings, task.support_mask, 0.2, 1)
  grads = jax.grad(lambda a: inner.set_loss(predict, inner.merge(a, frozen), features, task.user,
                                             task.support_items, task.support_ratings, task.support_mask))(adapted)
  for k in adapted:
    np.testing.assert_allclose(fast[k], adapted[k] - 0.2 * grads[k], rtol=1e-5, atol=1e-7)


def test_adapt_filter_matching_nothing_names_the_paths(tiny_setup):
  params = tiny_setup[2]
  with pytest.raises(ValueError, match="matches no parameter; paths are"):
    inner.partition(params, "^nothing_here/")


def _pad_support(task: TaskBatch, extra: int) -> TaskBatch:
  pad = lambda x, v: jnp.concatenate([x, jnp.full((extra,), v, x.dtype)])
  return task.replace(support_items=pad(task.support_items, 7), support_ratings=pad(task.support_ratings, 4.0),
                      support_mask=pad(task.support_mask, False),
                      query_items=pad(task.query_items, 3), query_ratings=pad(task.query_ratings, 1.0),
                      query_mask=pad(task.query_mask, False))


@pytest.mark.parametrize("name", ["maml", "metasgd", "pooled"])
def test_padding_changes_nothing(tiny_setup, name):
  _, predict, params, features, _, batch = tiny_setup
  task = row(batch, 3)
  padded = _pad_support(task, 5)
  spec = learner_spec(name, inner_lr=0.2, inner_steps=2)
  meta = init_meta_params(spec, params)
  f = jax.jit(jax.value_and_grad(lambda m, t: task_loss(spec, predict, m, features, t)[0]))
  a, ga = f(meta, task)
  b, gb = f(meta, padded)
  np.testing.assert_allclose(a, b, rtol=1e-6)
  assert tree_allclose(ga, gb, rtol=1e-5, atol=1e-7)


def test_meta_step_traces_once(tiny_setup):
  _, predict, params, features, tasks, _ = tiny_setup
  spec = learner_spec("maml", inner_lr=0.1, inner_steps=1)
  opt = optax.adam(1e-3)

  @chex.assert_max_traces(n=1)
  def traced(state, tasks, features):
    return raw(state, tasks, features)

  raw = make_meta_train_step(spec, predict, opt, tasks_per_batch=4, query_size=5, support_size=6, jit=False)
  step = jax.jit(traced, donate_argnums=(0,))
  state = init_state(init_meta_params(spec, params), opt, jax.random.PRNGKey(0))
  losses = []
  for _ in range(3):
    state, metrics = step(state, tasks, features)
    losses.append(float(metrics["loss"]))
  assert int(state.step) == 3
  assert all(np.isfinite(losses))
  chex.clear_trace_counter()


def test_meta_step_is_deterministic_and_learns(tiny_setup):
  _, predict, params, features, tasks, _ = tiny_setup
  spec = learner_spec("maml", inner_lr=0.1, inner_steps=1)
  opt = optax.adam(1e-2)
  step = make_meta_train_step(spec, predict, opt, tasks_per_batch=16, query_size=5, support_size=6)
  fixed = jax.random.PRNGKey(3)

  def run(n):
    state = init_state(init_meta_params(spec, params), opt, fixed)
    first = None
    for _ in range(n):
      state, m = step(state, tasks, features)
      first = float(m["loss"]) if first is None else first
    return state, first

  s1, first = run(40)
  s2, _ = run(40)
  assert tree_allclose(s1.params, s2.params, rtol=0, atol=0)
  # Same fixed batch (key of step 0) before and after training: the loss falls.
  batch = jax.tree_util.tree_map(lambda x: x[:16], tiny_setup[4])
  from metarec_jax.data.tasks import split_tasks
  fixed_batch = split_tasks(batch, jax.random.PRNGKey(9), 5, 6)
  loss = jax.jit(lambda m: meta_gradient(spec, predict, m, features, fixed_batch)[0])
  assert float(loss(s1.params)) < float(loss(init_meta_params(spec, params)))
