"""The PyTorch TaNP peers do the JAX TaNP step's work: same loss, same gradient, same Adam step."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip("torch", reason='PyTorch is not installed (pip install -e ".[bench]")')

import metarec_jax.methods.tanp  # noqa: E402,F401  (registers tanp)
from metarec_jax.bench import meta_step, tanp_peer, torch_peers  # noqa: E402
from metarec_jax.bench.tanp_peer import TaNPFuncPeer, TaNPLoopPeer  # noqa: E402
from metarec_jax.bench.torch_peers import batch_to_torch, to_flax  # noqa: E402
from metarec_jax.bench.workload import make_workload  # noqa: E402
from metarec_jax.meta.inner import flatten, unflatten  # noqa: E402
from metarec_jax.meta.learners import meta_gradient  # noqa: E402
from metarec_jax.meta.step import make_optimizer  # noqa: E402
from tests.bench.tiny import tiny_spec  # noqa: E402
from tests.conftest import x64  # noqa: E402

PEERS = [TaNPLoopPeer, TaNPFuncPeer]
IDS = ["loop", "func"]


def _f64(tree):
  """Float32 leaves as float64 (call inside `x64`)."""
  return jax.tree_util.tree_map(
      lambda x: jnp.asarray(np.asarray(x, np.float64)) if np.asarray(x).dtype == np.float32 else x, tree)


def _torch64(batch: dict) -> dict:
  return {k: v.double() if v.dtype == torch.float32 else v for k, v in batch.items()}


def _jax_gradient(w, meta, batch):
  loss, grads, aux = jax.jit(lambda m: meta_gradient(w.learner, w.predict, m, w.features, batch))(meta)
  return float(loss), {k: np.asarray(v) for k, v in flatten(grads["model"]).items()}, aux


@pytest.fixture(scope="module")
def tanp():
  """The tiny TaNP workload, a batch, and the engine's loss and gradient in float32 and float64."""
  w = make_workload(tiny_spec(learner="tanp"))
  batch = w.batch(3)
  f32 = _jax_gradient(w, w.meta, batch)
  with x64():
    f64 = _jax_gradient(w, _f64(w.meta), _f64(batch))
  return w, batch, f32, f64


def test_the_workload_is_tanp_and_every_term_is_live(tanp):
  w, _, (loss, grads, aux), _ = tanp
  assert w.method == "tanp" and tanp_peer.handles(w) and tanp_peer.supported(w) is None
  assert w.learner.inner_steps == 0 and w.model.decoder == "film"
  # The KL and the clustering loss are in the loss, and every param gets a gradient.
  assert float(aux["reg_kl"]) > 0 and float(aux["reg_cluster"]) > 0
  assert all(np.abs(g).max() > 0 for g in grads.values()), [k for k, g in grads.items() if not np.abs(g).any()]


@pytest.mark.parametrize("peer_cls", PEERS, ids=IDS)
def test_peer_gradient_equals_jax_in_float64(tanp, peer_cls):
  """Float64 on both sides (both round the extractor's features to float32, as `embed_task` does).

  Every gradient agrees to 1e-9 of its leaf's largest entry, except the item embeddings': their cotangents
  pass through that float32 cast, which the JAX model takes twice for the support items (as context and as
  scored items) and the peer once per item row, so they agree to float32 rounding (~1e-7).
  """
  w, batch, _, (loss, grads, _) = tanp
  peer = peer_cls(w)
  peer.model.double()
  peer_loss, g, _ = peer.meta_gradient(_torch64(batch_to_torch(batch)))
  # The engine casts the sown KL and clustering terms to float32 (`models.conditioned._flat`): ~1e-11 here.
  assert float(peer_loss) == pytest.approx(loss, rel=1e-10)
  got = peer.flax_grads(g)["model"]
  assert set(got) == set(grads)
  for path, expected in grads.items():
    tol = 1e-7 if path.startswith("extractor/item/") else 1e-9
    np.testing.assert_allclose(got[path], expected, rtol=tol, atol=tol * np.abs(expected).max(), err_msg=path)


@pytest.mark.parametrize("peer_cls", PEERS, ids=IDS)
def test_peer_gradient_equals_jax_in_float32(tanp, peer_cls):
  """As benchmarked (float32): rtol 1e-4; atol 1e-7 for the KL's leaves, whose float32 rounding
  (JAX's own float32-vs-float64 error reaches 4e-8 there) is a large share of their tiny gradients."""
  w, batch, (loss, grads, _), _ = tanp
  peer = peer_cls(w)
  peer_loss, g, _ = peer.meta_gradient(batch_to_torch(batch))
  assert float(peer_loss) == pytest.approx(loss, rel=1e-5)
  got = peer.flax_grads(g)["model"]
  for path, expected in grads.items():
    np.testing.assert_allclose(got[path], expected, rtol=1e-4, atol=1e-7, err_msg=path)


def test_one_adam_step_equals_the_engines_adam(tanp):
  """One step of the engine's optimizer (optax Adam, `make_optimizer`) on the JAX gradient and one step of
  each peer (torch Adam on its own gradient), float64, from the same params, give the same params."""
  w, batch, _, (_, grads, _) = tanp
  optimizer = make_optimizer("adam", w.spec.outer_lr)
  with x64():
    meta = _f64(w.meta)
    grads = {"model": jax.tree_util.tree_map(jnp.asarray, unflatten(grads))}
    step = jax.jit(lambda g, m: optax.apply_updates(m, optimizer.update(g, optimizer.init(m), m)[0]))
    expected = {k: np.asarray(v) for k, v in flatten(step(grads, meta)["model"]).items()}
    before = {k: np.asarray(v) for k, v in flatten(meta["model"]).items()}
  moved = {k: np.abs(expected[k] - before[k]).max() for k in expected}
  assert all(0.5 * w.spec.outer_lr < m <= 1.01 * w.spec.outer_lr for m in moved.values()), moved  # Adam: ~lr
  for peer in (TaNPLoopPeer(w), TaNPFuncPeer(w)):
    peer.model.double()
    peer.step(_torch64(batch_to_torch(batch)))
    for name, path in peer.paths.items():
      np.testing.assert_allclose(to_flax(path, peer.params[name]), expected[path], rtol=1e-9, atol=1e-11,
                                 err_msg=f"{type(peer).__name__} {path}")


class _InstantJaxStep:
  """Stands in for `JaxMetaStep` (no compile): 1 ms per step."""

  def __init__(self, workload, seed=0):
    self.compile_s, self.flops, self.flops_method, self.peak_mb = 0.0, None, "", None

  def compile(self):
    return 0.0

  def run(self, n):
    return 1e-3 * n


def test_bench_meta_step_times_the_tanp_peers(tanp, monkeypatch):
  """``--learner tanp`` times the TaNP peers under the MeLU peers' keys (the JAX step itself is stubbed)."""
  w = tanp[0]
  monkeypatch.setattr(meta_step, "make_workload", lambda spec: w)
  monkeypatch.setattr(meta_step, "JaxMetaStep", _InstantJaxStep)
  result = meta_step.bench_meta_step(w.spec, repeats=1, target_s=0.01, torch_threads=1)
  assert result["workload"]["method"] == "tanp" and meta_step._peer_module(w) is tanp_peer
  assert set(result["peers"]) == {"torch_loop", "torch_func"} and "peers_skipped" not in result
  for peer in result["peers"].values():
    assert peer["tasks_per_s"] > 0 and peer["threads"] == 1
    assert peer["jax_speedup"] == pytest.approx(peer["step_ms"] / result["step_ms"])
  assert "torch_loop" in meta_step.summary(result) and "jax is" in meta_step.summary(result)


def test_each_peer_family_refuses_the_other_workloads(tanp):
  w = tanp[0]
  assert "method 'tanp'" in torch_peers.supported(w)  # the MeLU peers never time a TaNP model
  melu = dataclasses.replace(w, method=None)
  assert "TaNP peers" in tanp_peer.supported(melu) and not tanp_peer.handles(melu)
  assert meta_step._peer_module(melu) is torch_peers
  with pytest.raises(ValueError, match="TaNP peers"):
    TaNPLoopPeer(melu)
  implicit = dataclasses.replace(w, learner=dataclasses.replace(
      w.learner, loss=dataclasses.replace(w.learner.loss, name="bce")))
  assert "mse" in tanp_peer.supported(implicit)
