"""The implicit path through the engine: vmapped meta-gradients equal the loop, the step samples inside jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metarec_jax.data import build_taskset, merge_support_query, sample_batch
from metarec_jax.data.implicit import to_implicit
from metarec_jax.data.negatives import SEEN, TRAIN_LOGITS, pool_logits, seen_matrix, with_negatives
from metarec_jax.meta.learners import init_meta_params, learner_spec, meta_gradient
from metarec_jax.meta.losses import make_loss
from metarec_jax.meta.step import init_state, make_meta_train_step
from tests.conftest import tree_allclose
from tests.meta.test_learners import loop_gradient

RATIO = 2


@pytest.fixture(scope="module")
def implicit_engine(tiny_data, tiny_setup):
  """(predict, params, features with extra, positives-only tasks, a batch with negatives)."""
  _, predict, params, features, _, _ = tiny_setup
  data = to_implicit(tiny_data, 4.0)
  seen = jnp.asarray(seen_matrix(data.interacted, data.num_users, data.num_items))
  logits = jnp.asarray(pool_logits(np.unique(data.interactions.item), data.num_items))
  features = features.replace(extra={SEEN: seen, TRAIN_LOGITS: logits})
  tasks = jax.device_put(build_taskset(data.interactions, min_length=9))
  batch = with_negatives(sample_batch(tasks, jax.random.PRNGKey(1), 4, 4, 5), jax.random.PRNGKey(2), logits, seen,
                         RATIO)
  return predict, params, features, tasks, batch


@pytest.mark.parametrize("name,loss", [("maml", "bce"), ("pooled", "bpr")])
def test_implicit_meta_gradient_vmapped_equals_loop(implicit_engine, name, loss):
  predict, params, features, _, batch = implicit_engine
  spec = learner_spec(name, inner_lr=0.5, inner_steps=1, loss=loss, negatives_per_positive=RATIO)
  meta = init_meta_params(spec, params)
  loss_v, grads, aux = jax.jit(lambda m: meta_gradient(spec, predict, m, features, batch))(meta)
  loop_loss, loop_grads = loop_gradient(spec, predict, meta, features, batch)
  np.testing.assert_allclose(loss_v, loop_loss, rtol=1e-5)
  assert tree_allclose(grads, loop_grads, rtol=1e-4, atol=1e-6)
  # The support loss before adaptation is the implicit loss, computed here by hand.
  fn = make_loss(loss, RATIO)
  if name == "pooled":
    items, labels, mask = merge_support_query(batch)
  else:
    items, labels, mask = batch.support_items, batch.support_ratings, batch.support_mask
  scores = jax.vmap(lambda u, i: predict(params, features, u, i))(batch.user, items)
  want = np.mean([float(fn(scores[t], labels[t], mask[t])) for t in range(batch.num_tasks)])
  np.testing.assert_allclose(aux["support_loss"], want, rtol=1e-5)


def test_implicit_step_is_reproducible(implicit_engine):
  predict, params, features, tasks, _ = implicit_engine
  spec = learner_spec("maml", inner_lr=0.1, inner_steps=1, loss="bce", negatives_per_positive=RATIO)
  opt = optax.adam(1e-2)
  step = make_meta_train_step(spec, predict, opt, tasks_per_batch=4, query_size=4, support_size=5,
                              negatives_per_positive=RATIO)

  def run():
    state = init_state(init_meta_params(spec, params), opt, jax.random.PRNGKey(0))
    losses = []
    for _ in range(2):
      state, metrics = step(state, tasks, features)
      losses.append(float(metrics["loss"]))
    return state.params, losses

  a, la = run()
  b, lb = run()
  assert la == lb and tree_allclose(a, b, rtol=0, atol=0)
  assert all(np.isfinite(la))


def test_unknown_loss_is_rejected():
  with pytest.raises(ValueError, match="meta.loss"):
    learner_spec("maml", inner_lr=0.1, inner_steps=1, loss="hinge")
  with pytest.raises(ValueError, match="negatives_per_positive"):
    learner_spec("maml", inner_lr=0.1, inner_steps=1, loss="bpr")
