"""Benchmark: load MeLU's ML-1M release and build its task sets; time and peak memory.

Command:   python benchmarks/load_melu.py [DIR]     (DIR defaults to $METAREC_DATA/melu-ml1m)
Target:    under 10 s and under 1 GB peak memory on a 2-core machine (the issue's bound).
Measured:  0.7 s and 300 MiB peak on an idle 2-core machine (load 0.6 s, split 0.01 s,
           task sets 0.04 s; 1.3-1.5 s while other jobs shared the two cores).

Phases: reading the release (users, movies with MeLU's vocabularies, the
four state files with ratings; all checks), the ``melu_states`` split with
its 13..100 filter, and the padded task sets of every role (meta-training,
validation, four test scenarios) as `build_taskset` makes them for the engine,
put on the default device.
Peak memory is the process's maximum resident set size (``getrusage``), which
includes the Python interpreter, numpy and JAX.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import sys
import time
import warnings


def peak_mb() -> float:
  """Maximum resident set size of this process so far, in MiB (Linux: KiB units; macOS: bytes)."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("path", nargs="?", help="the MeLU release folder (default: $METAREC_DATA/melu-ml1m)")
  parser.add_argument("--json", action="store_true", help="print the measurements as JSON")
  args = parser.parse_args(argv)
  path = args.path
  if path is None:
    root = os.environ.get("METAREC_DATA")
    if not root:
      parser.error("give the folder, or set METAREC_DATA to the shared data folder")
    path = str(pathlib.Path(root) / "melu-ml1m")

  t0 = time.perf_counter()
  import jax  # imports are timed separately from the work
  from metarec_jax.data import splits
  from metarec_jax.data.melu import load_melu
  from metarec_jax.data.parsing import DataWarning
  from metarec_jax.data.tasks import build_taskset
  t_import = time.perf_counter() - t0
  mem_import = peak_mb()

  t1 = time.perf_counter()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DataWarning)
    data = load_melu(path)
  t_load = time.perf_counter() - t1

  t2 = time.perf_counter()
  split = splits.make_split(data, "melu_states", 0, valid_share=0.1, warm_test_share=0.1)
  t_split = time.perf_counter() - t2

  t3 = time.perf_counter()
  roles = {"train": split.train, "valid": split.valid, **split.tests}
  tasks = {name: build_taskset(r, min_length=13, max_length=100) for name, r in roles.items()}
  tasks = jax.block_until_ready(jax.device_put(tasks))  # where the engine keeps them
  t_tasks = time.perf_counter() - t3
  total = time.perf_counter() - t1

  result = {
      "path": path,
      "import_s": round(t_import, 3),
      "load_s": round(t_load, 3),
      "split_s": round(t_split, 3),
      "tasksets_s": round(t_tasks, 3),
      "total_s": round(total, 3),
      "peak_mb_after_imports": round(mem_import, 1),
      "peak_mb": round(peak_mb(), 1),
      "ratings": int(len(data.interactions)),
      "tasks": {name: t.num_tasks for name, t in tasks.items()},
      "feature_mb": round((data.users.nbytes() + data.items.nbytes()) / (1 << 20), 2),
      "cpus": os.cpu_count(),
  }
  if args.json:
    print(json.dumps(result, indent=2))
  else:
    print(f"MeLU ML-1M release: {result['ratings']} ratings, features {result['feature_mb']} MB")
    print(f"  imports {t_import:.2f} s (not counted)")
    print(f"  load {t_load:.2f} s, split {t_split:.2f} s, task sets {t_tasks:.2f} s: total {total:.2f} s")
    print(f"  peak memory {result['peak_mb']:.0f} MiB (after imports {mem_import:.0f} MiB)")
    print("  tasks: " + ", ".join(f"{k} {v}" for k, v in result["tasks"].items()))
    ok = total < 10 and result["peak_mb"] < 1024
    print(f"  target (< 10 s, < 1 GB): {'met' if ok else 'MISSED'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
