"""The PyTorch peers do the JAX step's work: same meta-gradient, same Adam step."""

from __future__ import annotations

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason='PyTorch is not installed (pip install -e ".[bench]")')

from metarec_jax.bench.torch_peers import FuncPeer, LoopPeer, batch_to_torch, supported, to_flax  # noqa: E402
from metarec_jax.bench.workload import make_workload  # noqa: E402
from metarec_jax.data.tasks import sample_batch  # noqa: E402
from metarec_jax.meta.inner import flatten  # noqa: E402
from metarec_jax.meta.learners import meta_gradient  # noqa: E402
from metarec_jax.meta.step import init_state, make_meta_train_step, make_optimizer  # noqa: E402
from tests.bench.tiny import tiny_spec  # noqa: E402


def jax_gradient(w, batch):
  loss, grads, _ = jax.jit(lambda m: meta_gradient(w.learner, w.predict, m, w.features, batch))(w.meta)
  out = {"model": flatten(grads["model"])}
  if "inner_lr" in grads:
    out["inner_lr"] = grads["inner_lr"]
  return float(loss), out


def assert_same(expected, actual):
  assert set(expected) == set(actual)
  for part in expected:
    assert set(expected[part]) == set(actual[part])
    for path, value in expected[part].items():
      np.testing.assert_allclose(actual[part][path], np.asarray(value), rtol=2e-4, atol=2e-6, err_msg=path)


@pytest.fixture(scope="module", params=["maml", "fomaml", "metasgd", "melu"])
def case(request):
  w = make_workload(tiny_spec(learner=request.param))
  batch = w.batch(3)
  return request.param, w, batch, jax_gradient(w, batch)


@pytest.mark.parametrize("peer_cls", [LoopPeer, FuncPeer], ids=["loop", "func"])
def test_peer_meta_gradient_equals_jax(case, peer_cls):
  name, w, batch, (loss, grads) = case
  peer = peer_cls(w)
  peer_loss, g, g_lr = peer.meta_gradient(batch_to_torch(batch))
  assert float(peer_loss) == pytest.approx(loss, rel=1e-5)
  assert_same(grads, peer.flax_grads(g, g_lr))
  assert np.abs(grads["model"]["extractor/item/actor/embedding"]).max() > 0  # embeddings are meta-learned


def test_second_order_differs_from_first_order():
  """The tiny case is sensitive enough that the equality above checks the second-order terms."""
  second = make_workload(tiny_spec(learner="maml"))
  first = make_workload(tiny_spec(learner="fomaml"))
  batch = second.batch(3)
  a, b = jax_gradient(second, batch)[1], jax_gradient(first, batch)[1]
  gap = max(np.abs(np.asarray(a["model"][k]) - np.asarray(b["model"][k])).max() for k in a["model"])
  assert gap > 1e-3


def test_one_adam_step_equals_the_engine_step():
  w = make_workload(tiny_spec(learner="maml"))
  optimizer = make_optimizer("adam", w.spec.outer_lr)
  state = init_state(w.meta, optimizer, jax.random.PRNGKey(5))
  # The batch the engine's step draws at step 0.
  batch = sample_batch(w.tasks, jax.random.fold_in(state.rng, state.step), w.spec.tasks, w.spec.query,
                       w.spec.support)
  step = make_meta_train_step(w.learner, w.predict, optimizer, tasks_per_batch=w.spec.tasks,
                              query_size=w.spec.query, support_size=w.spec.support)
  state, _ = step(state, w.tasks, w.features)
  expected = flatten(state.params["model"])
  for peer in (LoopPeer(w), FuncPeer(w)):
    peer.step(batch_to_torch(batch))
    for name, path in peer.paths.items():
      np.testing.assert_allclose(to_flax(path, peer.params[name]), np.asarray(expected[path]), rtol=1e-4,
                                 atol=1e-6, err_msg=f"{type(peer).__name__} {path}")


def test_peers_refuse_learners_they_do_not_implement():
  w = make_workload(tiny_spec(learner="reptile"))
  assert "MAML-kind" in supported(w)
  with pytest.raises(ValueError, match="MAML-kind"):
    LoopPeer(w)
