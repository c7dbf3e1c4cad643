"""Population training against separate runs: seconds per step of N members vmapped vs N plain steps.

Command:  python benchmarks/population_step.py
Workload: the MeLU-shaped synthetic workload (metarec_jax/bench/workload.py), MeLU's learner, 32 tasks
          x (20 support + 10 query), Adam; every member starts from the same params with its own key.
Prints:   per N (1, 3, 8): the population step's ms, N separate steps' ms, and their ratio; mean of 20
          steps after the first (compiling) call.
Expected: on the 2-core CPU (2026-12-03, two runs) no gain: separate / population 1.00x and 0.96x at
          N=3, 0.97x and 0.70x at N=8, 0.41x and 0.42x at N=1 (metarec_jax/meta/population.py).
"""

import time

import jax

from metarec_jax.bench.workload import WorkloadSpec, make_workload
from metarec_jax.meta import init_state, make_meta_train_step, make_optimizer
from metarec_jax.meta.population import init_population, make_population_step


def main(sizes=(1, 3, 8), steps: int = 20) -> None:
  w = make_workload(WorkloadSpec(learner="melu"))
  opt = make_optimizer("adam", w.spec.outer_lr)
  shapes = dict(tasks_per_batch=w.spec.tasks, query_size=w.spec.query, support_size=w.spec.support)
  plain = make_meta_train_step(w.learner, w.predict, opt, **shapes)
  for n in sizes:
    keys = [jax.random.PRNGKey(i) for i in range(n)]
    step = make_population_step(w.learner, w.predict, opt, **shapes)
    states = init_population([w.meta] * n, opt, keys)
    start = time.perf_counter()
    states, m = step(states, w.tasks, w.features)
    jax.block_until_ready(m)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
      states, m = step(states, w.tasks, w.features)
    jax.block_until_ready(m)
    population = (time.perf_counter() - start) / steps
    separate = [init_state(w.meta, opt, k) for k in keys]
    for i in range(n):
      separate[i], m = plain(separate[i], w.tasks, w.features)
    jax.block_until_ready(m)
    start = time.perf_counter()
    for _ in range(steps):
      for i in range(n):
        separate[i], m = plain(separate[i], w.tasks, w.features)
    jax.block_until_ready(m)
    seq = (time.perf_counter() - start) / steps
    print(f"N={n}: population {population * 1e3:.2f} ms/step (first call {first:.1f} s), "
          f"{n} separate steps {seq * 1e3:.2f} ms, separate / population {seq / population:.2f}x")


if __name__ == "__main__":
  main()
