"""The MeLU-shaped workload and the JAX step wrapper: shapes, FLOPs, timing plumbing."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from metarec_jax.bench.jax_step import JaxMetaStep, cost_flops, peak_bytes
from metarec_jax.bench.workload import MELU_ITEM_FIELDS, MELU_USER_FIELDS, WorkloadSpec, make_workload
from metarec_jax.meta.inner import flatten
from tests.bench.tiny import tiny_spec


def test_default_workload_is_melu_shaped():
  spec = WorkloadSpec()
  vocab = {f.name: f.vocab for f in MELU_USER_FIELDS + MELU_ITEM_FIELDS}
  assert vocab == {"gender": 2, "age": 7, "occupation": 21, "zip": 3402, "rate": 6, "genre": 25,
                   "director": 2186, "actor": 8030}
  widths = {f.name: f.width for f in MELU_ITEM_FIELDS}
  assert widths == {"rate": 0, "genre": 3, "director": 1, "actor": 4}
  assert spec.embed_dim * 8 == 256 and spec.head_hidden == (64, 64)
  assert (spec.tasks, spec.support, spec.query, spec.inner_steps, spec.learner) == (32, 20, 10, 1, "maml")
  assert spec.describe()["features"] == 256


def test_tiny_workload_builds_the_engine_model():
  w = make_workload(tiny_spec())
  flat = flatten(w.meta["model"])
  assert flat["extractor/item/actor/embedding"].shape == (18, 4)  # vocab + the 0 padding id
  assert flat["head/dense_0/kernel"].shape == (8 * 4, 8)
  assert flat["head/dense_1/kernel"].shape == (8, 6) and flat["head/out/kernel"].shape == (6, 1)
  assert w.learner.adapt == "head" and not w.learner.first_order and w.learner.inner_steps == 2
  genre = np.asarray(w.features.item["genre"])
  assert genre.shape == (40, 3) and (genre[:, 0] > 0).all() and genre.max() <= 9
  assert np.asarray(w.tasks.lengths).min() == 8  # support + query, every slot valid
  batch = w.batch(0)
  assert batch.support_items.shape == (4, 5) and bool(batch.support_mask.all())
  assert batch.query_items.shape == (4, 3) and bool(batch.query_mask.all())


def test_jax_step_runs_and_its_flops_count_every_inner_step():
  """XLA counts a loop body once; the step's FLOPs must still count every inner step."""
  one = JaxMetaStep(make_workload(tiny_spec(inner_steps=1, factored="off")))
  assert one.compile() > 0  # the one compile of this test: the step runs
  before = int(one.state.step)
  assert one.run(2) > 0
  assert int(one.state.step) == before + 2
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(one.state.params))
  assert one.flops == one.lowered_flops()
  assert "unrolled" in one.flops_method and "without chunks" in one.flops_method
  # the rest are lowered only: the cost analysis needs no compile
  flops = {k: JaxMetaStep(make_workload(tiny_spec(inner_steps=k, factored="off"))).lowered_flops() for k in (0, 3)}
  flops[1] = one.flops
  if None in flops.values():
    pytest.skip("this backend has no cost analysis")
  per_step = flops[1] - flops[0]
  assert per_step > 0
  np.testing.assert_allclose(flops[3], flops[0] + 3 * per_step, rtol=0.05)  # plain steps all cost the same
  chunked = JaxMetaStep(make_workload(tiny_spec(inner_steps=3, tasks_per_chunk=2, factored="off")))
  np.testing.assert_allclose(chunked.lowered_flops(), flops[3], rtol=0.05)  # the same work, in chunks
  # Factored steps read the factors of the steps before them: each later step costs more than the first.
  fac = {k: JaxMetaStep(make_workload(tiny_spec(inner_steps=k, factored="on"))).lowered_flops() for k in (0, 1, 3)}
  assert fac[3] > fac[0] + 3 * (fac[1] - fac[0]) > fac[0]


class _Fake:
  def __init__(self, cost=None, mem=None, fail=False):
    self.cost, self.mem, self.fail = cost, mem, fail

  def cost_analysis(self):
    if self.fail:
      raise NotImplementedError
    return self.cost

  def memory_analysis(self):
    return self.mem


@pytest.mark.parametrize("cost,expected", [({"flops": 12.0}, 12.0), ([{"flops": 7.0}], 7.0), ([], None),
                                           ({"bytes accessed": 3.0}, None), (None, None)])
def test_cost_flops_reads_dict_and_list_forms(cost, expected):
  assert cost_flops(_Fake(cost)) == expected


def test_cost_flops_and_peak_bytes_tolerate_missing_analyses():
  assert cost_flops(_Fake(fail=True)) is None
  assert peak_bytes(_Fake(mem=None)) is None

  class Mem:
    argument_size_in_bytes, output_size_in_bytes, temp_size_in_bytes, alias_size_in_bytes = 10, 6, 4, 5

  assert peak_bytes(_Fake(mem=Mem())) == 15


def test_a_method_with_its_own_model_is_benchmarked_with_its_own_model_and_learner():
  import jax
  from metarec_jax.bench import torch_peers
  from metarec_jax.bench.jax_step import JaxMetaStep
  from metarec_jax.bench.workload import make_workload
  from metarec_jax.models.conditioned import ConditionedModel
  from tests.bench.tiny import tiny_spec
  w = make_workload(tiny_spec(learner="lwa"))
  assert w.method == "lwa" and isinstance(w.model, ConditionedModel)
  assert w.learner.inner_steps == 0 and w.learner.task_loss is not None
  assert "lwa" in (torch_peers.supported(w) or "")  # the MeLU peers refuse it, naming the method
  step = JaxMetaStep(w, seed=0)
  step.compile()
  assert step.run(2) > 0
  assert all(bool(jax.numpy.isfinite(x).all()) for x in jax.tree_util.tree_leaves(step.state.params))


def test_a_name_that_is_neither_a_learner_nor_a_learned_method_is_refused():
  import pytest
  from metarec_jax.bench.workload import make_workload
  from tests.bench.tiny import tiny_spec
  with pytest.raises(ValueError, match="not a method with a model of its own"):
    make_workload(tiny_spec(learner="global_mean"))
  with pytest.raises(ValueError, match="unknown method"):
    make_workload(tiny_spec(learner="nope"))
  # methods whose training is not a meta-step over the workload's user tasks say why
  for name, why in (("metaemb", "item tasks"), ("mwuf", "item tasks"), ("metahin", "meta-path tables")):
    with pytest.raises(ValueError, match=f"--learner '{name}' cannot be timed on the synthetic workload: .*{why}"):
      make_workload(tiny_spec(learner=name))


def test_mamo_is_timed_with_its_memory_writing_step():
  from metarec_jax.bench.jax_step import JaxMetaStep
  from metarec_jax.bench.workload import make_workload
  from metarec_jax.methods.mamo import make_write_step
  from tests.bench.tiny import tiny_spec
  w = make_workload(tiny_spec(learner="mamo"))
  assert w.method == "mamo" and w.make_step.func is make_write_step  # the step writes the memories
  step = JaxMetaStep(w, seed=0)
  assert step.lowered_flops() > 0  # the write step traces and lowers on the workload (no compile)
