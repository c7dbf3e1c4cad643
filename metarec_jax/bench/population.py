"""Population training against separate runs: seconds per step of N members vmapped vs N plain steps.

Every member starts from the workload's params with its own key; both sides
run the engine's step (`meta.population.make_population_step` and
`meta.step.make_meta_train_step`) on the workload's tasks, timed after a
first (compiling) call and blocked until ready.
"""

from __future__ import annotations

import time
from typing import Any

import jax

from metarec_jax.bench.workload import Workload
from metarec_jax.meta.population import init_population, make_population_step
from metarec_jax.meta.step import init_state, make_meta_train_step, make_optimizer


def _timed(run, steps: int) -> float:
  start = time.perf_counter()
  jax.block_until_ready(run(steps))
  return (time.perf_counter() - start) / steps


def time_population(w: Workload, members: int, steps: int = 20) -> dict[str, Any]:
  """ms per step of ``members`` members as one program and as separate steps, and their ratio.

  Returns:
    ``members``, ``population_ms``, ``separate_ms`` (all members' plain steps
    one after another), ``separate_over_population`` (> 1: the population is
    faster) and ``first_call_s`` (the population's compile and first step).
  """
  opt = make_optimizer("adam", w.spec.outer_lr)
  shapes = dict(tasks_per_batch=w.spec.tasks, query_size=w.spec.query, support_size=w.spec.support,
                tasks_per_chunk=w.spec.tasks_per_chunk)
  keys = [jax.random.PRNGKey(i) for i in range(members)]
  step = make_population_step(w.learner, w.predict, opt, **shapes)
  box = {"states": init_population([w.meta] * members, opt, keys)}

  def population(n):
    for _ in range(n):
      box["states"], m = step(box["states"], w.tasks, w.features)
    return m

  first = _timed(population, 1)
  population_s = _timed(population, steps)
  plain = make_meta_train_step(w.learner, w.predict, opt, **shapes)
  states = [init_state(w.meta, opt, k) for k in keys]

  def separate(n):
    m = None
    for _ in range(n):
      for i in range(members):
        states[i], m = plain(states[i], w.tasks, w.features)
    return m

  separate(1)  # compile
  separate_s = _timed(separate, steps)
  return {"members": members, "population_ms": population_s * 1e3, "separate_ms": separate_s * 1e3,
          "separate_over_population": separate_s / population_s, "first_call_s": first}
