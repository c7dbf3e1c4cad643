"""Population training against separate runs: seconds per step of N members vmapped vs N plain steps.

Command:  python benchmarks/population_step.py
Workload: the MeLU-shaped synthetic workload (metarec_jax/bench/workload.py), MeLU's learner, 32 tasks
          x (20 support + 10 query), Adam; every member starts from the same params with its own key
          (`metarec_jax/bench/population.py`; benchmarks/gpu.py times the same on a GPU).
Prints:   per N (1, 3, 8): the population step's ms, N separate steps' ms, and their ratio; mean of 20
          steps after the first (compiling) call.
Expected: on the 2-core CPU (2026-12-03) no clear gain: separate / population, three runs (the third
          with this timing code, bench/population.py): N=3 1.00x, 0.96x, 1.18x; N=8 0.97x, 0.70x,
          0.89x; N=1 0.41x, 0.42x, 1.04x (metarec_jax/meta/population.py).
"""

from metarec_jax.bench.population import time_population
from metarec_jax.bench.workload import WorkloadSpec, make_workload


def main(sizes=(1, 3, 8), steps: int = 20) -> None:
  w = make_workload(WorkloadSpec(learner="melu"))
  for n in sizes:
    r = time_population(w, n, steps)
    print(f"N={n}: population {r['population_ms']:.2f} ms/step (first call {r['first_call_s']:.1f} s), "
          f"{n} separate steps {r['separate_ms']:.2f} ms, separate / population "
          f"{r['separate_over_population']:.2f}x")


if __name__ == "__main__":
  main()
