"""Benchmark: scaling of the jitted meta-train step on the MeLU-shaped workload.

Command:   python benchmarks/scaling.py [--sweep tasks|support|inner_steps|memory|all] [--values 8,16,...]
                                      [--peers] [--out DIR]
Runtime:   about 15-40 s per point on a 2-core CPU (one compile of ~10 s each, more with --peers); run
           the sweeps one at a time, long ones in parts with --values (rows merge by value)
Output:    DIR/scaling.json, DIR/scaling.md (tables) and DIR/scaling.png (plot; needs matplotlib),
           DIR defaults to runs/bench; sweeps accumulate in the JSON, the tables and plot show all of them
Measured:  see benchmarks/README.md

Sweeps: tasks/s against tasks per batch (8 … 1024), support size (5 … 100),
inner steps (1, 5, 10); peak memory against inner steps with and without
rematerialisation (XLA's buffer assignment). ``--peers`` adds the PyTorch
peers to the throughput sweeps (up to ``--peer-max-tasks`` tasks).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys


def main(argv: list[str] | None = None) -> int:
  from metarec_jax.bench.machine import cpu_peak
  from metarec_jax.bench.scaling import SWEEPS, memory_sweep, throughput_sweep, update
  from metarec_jax.bench.workload import WorkloadSpec

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sweep", default="all", choices=SWEEPS + ("all",))
  parser.add_argument("--values", help="comma-separated values of the swept knob (default: all of them)")
  parser.add_argument("--peers", action="store_true", help="time the PyTorch peers too")
  parser.add_argument("--peer-max-tasks", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--chunk", type=int, default=128,
                      help="batches above this many tasks are also timed in chunks of it (0: never)")
  parser.add_argument("--learner", default="maml")
  parser.add_argument("--memory-tasks", type=int, default=256, help="tasks per batch of the memory sweep")
  parser.add_argument("--out", default="runs/bench", help="output folder (default runs/bench)")
  args = parser.parse_args(argv)

  base = WorkloadSpec(learner=args.learner)
  values = tuple(int(v) for v in args.values.split(",")) if args.values else ()
  sweeps = SWEEPS if args.sweep == "all" else (args.sweep,)
  cpu = cpu_peak()
  new = {"meta": {"machine": f"{cpu['model']}, {cpu['cores']} cores, est. peak "
                             f"{cpu['peak_gflops_per_s']:.0f} GFLOP/s", "base": dataclasses.asdict(base) | {
                                 "user_fields": None, "item_fields": None}}}
  for sweep in sweeps:
    print(f"sweep {sweep} (load average {os.getloadavg()[0]:.2f})", flush=True)
    if sweep == "memory":
      new[sweep] = memory_sweep(dataclasses.replace(base, tasks=args.memory_tasks), values)
    else:
      new[sweep] = throughput_sweep(sweep, base, values=values, repeats=args.repeats, peers=args.peers,
                                    peer_max_tasks=args.peer_max_tasks, chunk=args.chunk)
  out = pathlib.Path(args.out)
  results = update(out, new)
  print(f"written: {out / 'scaling.json'}, {out / 'scaling.md'}, {out / 'scaling.png'}")
  print(open(out / "scaling.md").read())
  return 0


if __name__ == "__main__":
  sys.exit(main())
