"""One GPU: the MeLU-shaped step from 32 to 65,536 tasks, the field transformer in bf16 + remat, the ML-1M run.

Command:  python benchmarks/gpu.py [--ml1m] > gpu.json
          python benchmarks/gpu.py --tiny          (CPU, a few seconds: the JSON's shape, as tests check it)
Workload: the MeLU-shaped synthetic workload (metarec_jax/bench/workload.py): MeLU's fields and vocabularies,
          256 -> 64 -> 64 -> 1 decision layers adapted in the inner loop (second order), 20 support + 10 query
          ratings per task, Adam; the engine's step (`make_meta_train_step`, batch drawn inside, donated state).
Prints:   ONE JSON object on stdout (progress on stderr):
          ``meta_step``: per tasks per batch (32, 128, ..., 65,536; chunks of ``--chunk`` tasks above that
            size, `meta.tasks_per_chunk`): compile_s, ms_per_step, tasks_per_s, XLA's peak MiB, TFLOP/s;
          ``field_transformer``: the same step with `model.extractor=transformer` (sizes base and large of
            `field_transformer.SIZES`) in bfloat16 with rematerialised blocks, and in float32 without remat
            (``--tiny``: size tiny, bfloat16 + remat only);
          ``population``: N members (1, 4, 16, 64; seeds as `metarec run --vectorize` trains them) as one
            vmapped step against N separate steps, 32 tasks each (`bench/population.py`);
          ``ml1m``: wall seconds of ``metarec run experiments/melu_ml1m.py`` (with ``--ml1m``; needs
            ``METAREC_DATA``), else why it was skipped.
          A configuration that runs out of memory records its error and the others still run.
Expected: pending a lent GPU (benchmarks/README.md, "GPU").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp

from metarec_jax.bench.jax_step import JaxMetaStep
from metarec_jax.bench.population import time_population
from metarec_jax.bench.workload import (ML1M_USERS, Field, Workload, WorkloadSpec, make_workload,
                                        recmodel_workload)
from metarec_jax.models.field_transformer import SIZES, TransformerSpec

TASKS = (32, 128, 512, 2048, 8192, 32768, 65536)
POPULATION = (1, 4, 16, 64)  # members of the vmapped population (N seeds, `metarec run --vectorize`)
TRANSFORMER_SIZES = ("base", "large")
REPO = pathlib.Path(__file__).resolve().parent.parent

# --tiny: MeLU's field layout at toy sizes, so the whole script runs on a CPU in seconds.
TINY_USER_FIELDS = (Field("gender", 2), Field("age", 7))
TINY_ITEM_FIELDS = (Field("genre", 9, 3), Field("director", 13, 1))
TINY = dict(support=4, query=3, embed_dim=4, head_hidden=(8,), user_fields=TINY_USER_FIELDS,
            item_fields=TINY_ITEM_FIELDS, num_users=30, num_items=40)


def log(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def step_spec(tasks: int, chunk: int, tiny: bool) -> WorkloadSpec:
  """The workload of ``tasks`` tasks per batch; chunks of ``chunk`` tasks when the batch is larger."""
  pool = max(64, min(2 * tasks, 2 * ML1M_USERS))  # batches beyond the pool draw with replacement
  base = dict(TINY) if tiny else {}
  return WorkloadSpec(tasks=tasks, pool=pool, tasks_per_chunk=chunk if chunk and tasks > chunk else 0, **base)


def transformer_workload(spec: WorkloadSpec, size: str, *, bf16: bool, remat: bool) -> Workload:
  """The workload with the field transformer of ``size`` as the extractor (MeLU's learner and head).

  The tables and tasks are `make_workload`'s (same seed, same draws); only the model differs.
  """
  return recmodel_workload(spec, dtype=jnp.bfloat16 if bf16 else None, extractor="transformer",
                           transformer=TransformerSpec.named(size, remat=remat))


def time_step(workload: Workload, repeats: int, steps: int) -> dict[str, Any]:
  """Compiles the engine's step on ``workload`` and times it: median of ``repeats`` runs of ``steps`` steps."""
  step = JaxMetaStep(workload)
  compile_s = step.compile()
  step.run(2)  # warm-up
  per_step = statistics.median(step.run(steps) / steps for _ in range(repeats))
  tasks = workload.spec.tasks
  return {"compile_s": round(compile_s, 3), "ms_per_step": per_step * 1e3, "tasks_per_s": tasks / per_step,
          "peak_mb": step.peak_mb, "tflops_per_s": None if step.flops is None else step.flops / per_step / 1e12,
          "params": workload.num_params()}


def guarded(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
  """``run()``, or its error (out of memory, ...) so that the next configuration still runs."""
  try:
    return run()
  except Exception as e:  # XlaRuntimeError (RESOURCE_EXHAUSTED), ValueError, ...
    return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}


def meta_step_rows(tasks: tuple[int, ...], chunk: int, tiny: bool, repeats: int, steps: int) -> list[dict]:
  rows = []
  for n in tasks:
    spec = step_spec(n, chunk, tiny)
    row = {"tasks": n, "tasks_per_chunk": spec.tasks_per_chunk}
    row.update(guarded(lambda: time_step(make_workload(spec), repeats, steps)))
    log(f"meta_step tasks={n}: {row.get('tasks_per_s', row.get('error'))}")
    rows.append(row)
  return rows


def transformer_rows(sizes: tuple[str, ...], tasks: int, chunk: int, tiny: bool, repeats: int,
                     steps: int) -> list[dict]:
  rows = []
  for size in sizes:
    for bf16, remat in ((True, True),) if tiny else ((True, True), (False, False)):
      spec = step_spec(tasks, chunk, tiny)
      row = {"size": size, "dim_depth_heads_mlp": list(SIZES[size]), "dtype": "bfloat16" if bf16 else "float32",
             "remat": remat, "tasks": tasks, "tasks_per_chunk": spec.tasks_per_chunk}
      row.update(guarded(lambda: time_step(transformer_workload(spec, size, bf16=bf16, remat=remat), repeats, steps)))
      log(f"field_transformer {size} {row['dtype']} remat={remat}: {row.get('tasks_per_s', row.get('error'))}")
      rows.append(row)
  return rows


def population_rows(members: tuple[int, ...], tiny: bool, steps: int) -> list[dict]:
  """N seeds as one vmapped program against N separate steps (`--vectorize`), MeLU's learner, 32 tasks."""
  spec = dataclasses.replace(step_spec(4 if tiny else 32, 0, tiny), learner="melu")
  rows = []
  for n in members:
    row = guarded(lambda: time_population(make_workload(spec), n, steps))
    row.setdefault("members", n)
    rows.append(row)
    log(f"population of {n}: {row}")
  return rows


def ml1m_run(enabled: bool, workdir: str | None, timeout_s: float) -> dict[str, Any]:
  """Wall seconds of ``metarec run experiments/melu_ml1m.py`` in a fresh workdir (a child process)."""
  if not enabled:
    return {"skipped": "pass --ml1m (needs METAREC_DATA with melu-ml1m/)"}
  if not os.environ.get("METAREC_DATA"):
    return {"skipped": "METAREC_DATA is not set"}
  out = pathlib.Path(workdir or tempfile.mkdtemp(prefix="metarec-gpu-ml1m-"))
  if (out / "config.json").exists():
    return {"skipped": f"{out} already holds a run: the time would be a resume's"}
  cmd = [sys.executable, "-m", "metarec_jax.cli", "run", str(REPO / "experiments" / "melu_ml1m.py"),
         "--workdir", str(out), "--no-progress"]
  start = time.perf_counter()
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
  except subprocess.TimeoutExpired:
    return {"command": " ".join(cmd[1:]), "error": f"timed out after {timeout_s:.0f} s"}
  wall = time.perf_counter() - start
  row = {"command": "metarec run experiments/melu_ml1m.py", "workdir": str(out), "wall_s": round(wall, 1),
         "returncode": proc.returncode}
  if proc.returncode != 0:
    row["error"] = proc.stderr[-2000:]
  return row


def machine() -> dict[str, Any]:
  devices = jax.devices()
  return {"backend": jax.default_backend(), "device_kind": devices[0].device_kind, "device_count": len(devices),
          "jax": jax.__version__}


def main(argv: list[str] | None = None) -> dict[str, Any]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--tiny", action="store_true", help="toy sizes (CPU, seconds): checks the JSON's shape")
  p.add_argument("--tasks", default=None, help="comma-separated tasks per batch (default 32,...,65536)")
  p.add_argument("--chunk", type=int, default=8192, help="tasks_per_chunk for larger batches (0: never)")
  p.add_argument("--transformer-sizes", default=None, help="comma-separated field_transformer.SIZES "
                 "(default base,large; empty: skip)")
  p.add_argument("--transformer-tasks", type=int, default=None, help="tasks per batch of the transformer (512)")
  p.add_argument("--repeats", type=int, default=None, help="timed repeats per configuration (median; 5)")
  p.add_argument("--steps", type=int, default=None, help="steps per timed repeat (10)")
  p.add_argument("--ml1m", action="store_true", help="also time `metarec run experiments/melu_ml1m.py`")
  p.add_argument("--ml1m-workdir", default=None, help="its workdir (default: a fresh temporary folder)")
  p.add_argument("--ml1m-timeout", type=float, default=3600, help="seconds before the ML-1M run is stopped")
  p.add_argument("--out", default=None, help="also write the JSON here")
  a = p.parse_args(argv)
  tiny = a.tiny
  tasks = tuple(int(t) for t in a.tasks.split(",")) if a.tasks else ((4,) if tiny else TASKS)
  default_sizes = ("tiny",) if tiny else TRANSFORMER_SIZES
  sizes = default_sizes if a.transformer_sizes is None else tuple(s for s in a.transformer_sizes.split(",") if s)
  unknown = [s for s in sizes if s not in SIZES]
  if unknown:
    p.error(f"unknown transformer sizes {unknown}; known: {sorted(SIZES)}")
  repeats = a.repeats or (1 if tiny else 5)
  steps = a.steps or (1 if tiny else 10)
  chunk = a.chunk if not tiny else 4
  t_tasks = a.transformer_tasks or (4 if tiny else 512)
  result = {"machine": machine(), "tiny": tiny, "repeats": repeats, "steps_per_repeat": steps,
            "workload": step_spec(tasks[0], 0, tiny).describe()}
  if result["machine"]["backend"] != "gpu" and not tiny:
    log(f"warning: backend is {result['machine']['backend']}, not gpu: these are not GPU figures")
  result["meta_step"] = meta_step_rows(tasks, chunk, tiny, repeats, steps)
  result["field_transformer"] = transformer_rows(sizes, t_tasks, chunk, tiny, repeats, steps)
  result["population"] = population_rows((2,) if tiny else POPULATION, tiny, steps)
  result["ml1m"] = ml1m_run(a.ml1m, a.ml1m_workdir, a.ml1m_timeout)
  text = json.dumps(result, indent=1)
  if a.out:
    pathlib.Path(a.out).write_text(text + "\n")
  print(text)
  return result


if __name__ == "__main__":
  main()
