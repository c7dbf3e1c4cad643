"""The engine's jitted meta-train step on a workload: compile, FLOPs, memory, timing."""

from __future__ import annotations

import time
from typing import Any

import jax

from metarec_jax.bench.workload import Workload
from metarec_jax.meta.step import init_state, make_meta_train_step, make_optimizer


def cost_flops(compiled: Any) -> float | None:
  """FLOPs of one call from XLA's cost analysis (dict or list-of-dict forms), None if absent."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # some backends do not implement it
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or "flops" not in cost:
    return None
  return float(cost["flops"])


def peak_bytes(compiled: Any) -> int | None:
  """Bytes live at once while a call runs, from XLA's buffer assignment.

  Arguments + outputs + temporaries, less the outputs that alias donated
  arguments; None when the backend gives no memory analysis.
  """
  try:
    mem = compiled.memory_analysis()
  except Exception:
    return None
  if mem is None:
    return None
  return int(mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
             - mem.alias_size_in_bytes)


class JaxMetaStep:
  """Times the engine's meta-train step (`make_meta_train_step`) on a workload.

  The step draws its task batch inside, from the device-resident task set,
  as in training; the state is donated and carried from call to call.

  XLA's cost analysis counts the body of a loop once, whatever its trip
  count. So the FLOPs are those of the same step lowered with the inner loop
  unrolled and without chunks (gradient accumulation over chunks is a loop
  too); lowering needs no compile.

  Attributes:
    workload: the workload.
    compile_s: seconds to trace, lower and compile (after `compile`).
    flops: FLOPs of one step from XLA's cost analysis (None if unavailable).
    flops_method: how ``flops`` was obtained.
    peak_bytes: XLA's estimate of the memory one step needs (None if unavailable).
  """

  def __init__(self, workload: Workload, seed: int = 0):
    w = workload
    self.workload = workload
    self.optimizer = make_optimizer("adam", w.spec.outer_lr)
    self.step_fn = self._make_step(w.learner)
    self.state = init_state(w.meta, self.optimizer, jax.random.PRNGKey(seed))
    self.flops_method = ""
    self.compiled = None
    self.compile_s = None
    self.flops = None
    self.peak_bytes = None

  def _make_step(self, learner, chunk: int | None = None):
    w = self.workload
    make_step = w.make_step or make_meta_train_step  # a method's own step (MAMO writes its memories)
    return make_step(learner, w.predict, self.optimizer, tasks_per_batch=w.spec.tasks,
                     query_size=w.spec.query, support_size=w.spec.support,
                     tasks_per_chunk=w.spec.tasks_per_chunk if chunk is None else chunk)

  def lowered_flops(self) -> float | None:
    """FLOPs of the lowered step with the inner loop unrolled and no chunks (traces and lowers; no compile)."""
    w = self.workload
    fn = self._make_step(w.learner.with_schedule(unroll=True), chunk=0)
    return cost_flops(fn.lower(self.state, w.tasks, w.features))

  def compile(self) -> float:
    """Traces, lowers and compiles the step; returns the seconds it took."""
    w = self.workload
    start = time.perf_counter()
    self.compiled = self.step_fn.lower(self.state, w.tasks, w.features).compile()
    self.compile_s = time.perf_counter() - start
    self.flops = self.lowered_flops()
    self.flops_method = ("xla cost analysis of the lowered step, inner loop unrolled, without chunks "
                         "(xla counts a loop body once)")
    if self.flops is None:
      self.flops_method = "unavailable (no cost analysis)"
    self.peak_bytes = peak_bytes(self.compiled)
    return self.compile_s

  @property
  def peak_mb(self) -> float | None:
    """``peak_bytes`` in MiB (None if unavailable)."""
    return None if self.peak_bytes is None else self.peak_bytes / 2**20

  def run(self, n: int) -> float:
    """Runs ``n`` steps, blocked until the final state is ready; returns seconds."""
    if self.compiled is None:
      self.compile()
    w = self.workload
    start = time.perf_counter()
    state = self.state
    for _ in range(n):
      state, metrics = self.compiled(state, w.tasks, w.features)
    jax.block_until_ready((state, metrics))
    self.state = state
    return time.perf_counter() - start
