"""Cost growth: time and memory of training, evaluation and loading against users and items.

Each point is one (users, items) size of an ML-25M-shaped explicit data set
from `data.synthetic.make_scaled` (heavy-tailed histories, at least 20
ratings per user, mean `GrowthSpec.mean_history`); every user becomes a task
of their `GrowthSpec.max_task` most recent ratings (MeLU's cap of 100). On it:

* **meta-step**: the engine's `make_meta_train_step` on a MeLU-shaped
  `RecModel` (`bench.workload`: 8 fields, 256 → 64 → 64 → 1 decision layers
  adapting in the inner loop, second order, Adam), the task set of all users
  device-resident, 32 tasks per batch drawn inside the step: median ms per
  step, and XLA's peak memory of the compiled step (arguments + outputs +
  temporaries − donated aliases, `jax_step.peak_bytes`). With
  ``item_ids=True`` the items also get an id embedding (vocabulary = items),
  the one part of such a model whose size follows the catalogue;
* **evaluation**: every user adapts on 20 support ratings and scores 10 query
  ratings, streamed in fixed chunks of tasks through one jitted function
  (`eval.evaluate.make_adapted_predictor` after `data.tasks.split_tasks`),
  predictions brought to the host as `predict_in_chunks` does: seconds for
  all users, and XLA's peak memory of one chunk;
* **loading**: the ratings written as ML-25M's ``ratings.csv`` and read back by
  `data.movielens.load_movielens` in a fresh process, then grouped into the
  task set: seconds and that process's peak RSS.

Every point runs in a fresh Python process (`run_point` via
``python -m metarec_jax.bench.growth``), so its peak RSS (``getrusage``) is
its own; that peak includes generating the data. Results are kept in one JSON
file and the markdown table and PNG plot are redrawn from it (`update`), so a
sweep can be run in parts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

USERS = (10_000, 30_000, 100_000, 300_000, 1_000_000)
ITEMS = (10_000, 30_000, 100_000, 500_000)
BASE_USERS = 100_000
BASE_ITEMS = 30_000


@dataclasses.dataclass(frozen=True)
class GrowthSpec:
  """One point of the cost-growth sweep.

  Attributes:
    users: users (= tasks) in the data set.
    items: items in the catalogue.
    mean_history: mean ratings per user (generated; heavy-tailed, >= ``min_history``).
    min_history: least ratings per user (ML-25M: 20).
    max_task: ratings kept per task (the most recent), the padded task length.
    tasks: tasks per meta-batch.
    support: support ratings per task.
    query: query ratings per task.
    eval_chunk: tasks per evaluation chunk.
    item_ids: add an item id embedding (vocabulary = ``items``) to the model.
    steps: timed meta-steps per repeat.
    repeats: timed repeats (median).
    evaluate: time the evaluation of all users.
    load: time writing is not counted; time reading ``ratings.csv`` back.
    seed: data, model and step seed.
  """

  users: int = BASE_USERS
  items: int = BASE_ITEMS
  mean_history: int = 40
  min_history: int = 20
  max_task: int = 100
  tasks: int = 32
  support: int = 20
  query: int = 10
  eval_chunk: int = 2048
  item_ids: bool = False
  steps: int = 20
  repeats: int = 3
  evaluate: bool = True
  load: bool = True
  seed: int = 0


def peak_rss_mb() -> float:
  """Peak resident set size of this process so far, MiB.

  Linux: ``VmHWM`` of ``/proc/self/status``, which starts afresh when a
  process execs (``getrusage``'s ``ru_maxrss`` keeps the parent's peak at fork
  time, so a child started by a big parent would report the parent's peak).
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def rss_mb() -> float:
  """Current resident set size of this process, MiB (psutil; the peak where psutil is missing)."""
  try:
    import psutil
  except ImportError:
    return peak_rss_mb()
  return psutil.Process().memory_info().rss / 2**20


def make_ratings(spec: GrowthSpec):
  """The point's ML-25M-shaped explicit data set (`make_scaled` with the point's sizes)."""
  from metarec_jax.data.synthetic import ScaledSpec, make_scaled
  return make_scaled(ScaledSpec(name="growth", num_users=spec.users, num_items=spec.items,
                                num_interactions=spec.users * spec.mean_history, min_per_user=spec.min_history,
                                length_sigma=1.0, seed=spec.seed))


def recent_taskset(ratings, num_users: int, max_length: int):
  """One task per user: their ``max_length`` most recent ratings, padded to ``max_length`` (vectorised).

  Unlike `build_taskset` with ``max_length`` (which drops long histories), the
  long histories of a heavy tail are cut, so every user stays a task.

  Returns:
    A numpy `TaskSet` with ``num_users`` rows (users without ratings have length 0).
  """
  from metarec_jax.types import TaskSet
  user = ratings.user.astype(np.int64)
  t = ratings.timestamp if ratings.timestamp is not None else np.zeros(len(user), np.int64)
  t = t.astype(np.int64)
  newest_first = (user << 32) | ((t.max() if len(t) else 0) - t)  # timestamps < 2**32 apart
  order = np.argsort(newest_first)
  user = user[order]
  counts = np.bincount(user, minlength=num_users)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  pos = np.arange(len(user)) - starts[user]
  keep = pos < max_length
  items = np.zeros((num_users, max_length), np.int32)
  vals = np.zeros((num_users, max_length), np.float32)
  items[user[keep], pos[keep]] = ratings.item[order][keep]
  vals[user[keep], pos[keep]] = ratings.rating[order][keep]
  return TaskSet(user=np.arange(num_users, dtype=np.int32), items=items, ratings=vals,
                 lengths=np.minimum(counts, max_length).astype(np.int32))


def _workload(spec: GrowthSpec, tasks):
  """The MeLU-shaped workload at the point's sizes, with the point's task set on the device."""
  import jax

  from metarec_jax.bench.workload import MELU_ITEM_FIELDS, Field, WorkloadSpec, make_workload
  fields = MELU_ITEM_FIELDS + ((Field("item_id", spec.items),) if spec.item_ids else ())
  w = make_workload(WorkloadSpec(tasks=spec.tasks, support=spec.support, query=spec.query, num_users=spec.users,
                                 num_items=spec.items, item_fields=fields, pool=spec.tasks, seed=spec.seed))
  return dataclasses.replace(w, tasks=jax.device_put(tasks))


def time_step(w, steps: int, repeats: int) -> dict[str, Any]:
  """Compiles the engine's step; XLA's peak memory and the median ms per step."""
  from metarec_jax.bench.jax_step import JaxMetaStep
  step = JaxMetaStep(w)
  step.compile()
  step.run(3)  # warm-up
  times = [step.run(steps) / steps for _ in range(repeats)]
  return {"step_ms": 1e3 * float(np.median(times)), "draw_ms": time_draw(w), "step_compile_s": step.compile_s,
          "step_xla_mb": step.peak_mb, "step_temp_mb": temp_mb(step.compiled), "params": w.num_params()}


def time_draw(w, calls: int = 5) -> float:
  """Median ms of the step's batch draw alone (`data.tasks.sample_batch` on the whole task set, jitted)."""
  import jax

  from metarec_jax.data.tasks import sample_batch
  s = w.spec
  draw = jax.jit(lambda tasks, key: sample_batch(tasks, key, s.tasks, s.query, s.support))
  jax.block_until_ready(draw(w.tasks, jax.random.PRNGKey(0)))
  times = []
  for i in range(calls):
    start = time.perf_counter()
    jax.block_until_ready(draw(w.tasks, jax.random.PRNGKey(i + 1)))
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def temp_mb(compiled) -> float | None:
  """XLA's temporaries of a compiled call (its peak less arguments and outputs), MiB; None if unavailable."""
  try:
    return compiled.memory_analysis().temp_size_in_bytes / 2**20
  except Exception:  # a backend without memory analysis
    return None


def time_evaluation(w, host_tasks, chunk: int, seed: int = 0) -> dict[str, Any]:
  """Adapts every task on its support set and scores its query set, in chunks: seconds and XLA MB."""
  import jax

  from metarec_jax.bench.jax_step import peak_bytes
  from metarec_jax.data.tasks import split_tasks
  from metarec_jax.eval.evaluate import make_adapted_predictor
  predictor = make_adapted_predictor(w.learner, w.predict)
  q, s = w.spec.query, w.spec.support

  @jax.jit
  def one_chunk(meta, features, tasks, key):
    return predictor(meta, features, split_tasks(tasks, key, q, s), w.learner.inner_lr)

  n = len(host_tasks.user)
  chunk = min(chunk, n)
  target = -(-n // chunk) * chunk
  padded = jax.tree_util.tree_map(lambda x: np.pad(x, [(0, target - n)] + [(0, 0)] * (x.ndim - 1)), host_tasks)
  key = jax.random.PRNGKey(seed)
  first = jax.tree_util.tree_map(lambda x: x[:chunk], padded)
  start = time.perf_counter()
  compiled = one_chunk.lower(w.meta, w.features, first, key).compile()
  compile_s = time.perf_counter() - start
  mb = peak_bytes(compiled)
  start = time.perf_counter()
  outs = [np.asarray(compiled(w.meta, w.features, jax.tree_util.tree_map(lambda x: x[lo:lo + chunk], padded), key))
          for lo in range(0, target, chunk)]
  pred = np.concatenate(outs)[:n]
  seconds = time.perf_counter() - start
  if not np.isfinite(pred[host_tasks.lengths > q]).all():
    raise FloatingPointError("evaluation produced non-finite predictions")
  return {"eval_s": seconds, "eval_users_per_s": n / seconds, "eval_compile_s": compile_s,
          "eval_xla_mb": None if mb is None else mb / 2**20, "eval_temp_mb": temp_mb(compiled), "eval_chunk": chunk}


def read_back(directory: str | pathlib.Path, max_task: int) -> dict[str, Any]:
  """Reads ``ratings.csv`` in ``directory`` with the movielens reader and builds the task set (this process)."""
  import warnings

  from metarec_jax.data.movielens import load_movielens
  base = peak_rss_mb()
  start = time.perf_counter()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    data = load_movielens(directory)
  read_s = time.perf_counter() - start
  start = time.perf_counter()
  tasks = recent_taskset(data.interactions, data.num_users, max_task)
  tasks_s = time.perf_counter() - start
  return {"ratings": len(data.interactions), "users": data.num_users, "items": data.num_items,
          "read_s": read_s, "taskset_s": tasks_s, "tasks": len(tasks.user), "base_rss_mb": base,
          "peak_rss_mb": peak_rss_mb()}


def measure_load(data, max_task: int, directory: str | pathlib.Path | None = None) -> dict[str, Any]:
  """Writes ``data`` as ``ratings.csv`` and reads it back in a fresh process (`read_back`).

  Returns the child's measurements plus ``write_s`` and ``csv_mb``.
  """
  from metarec_jax.data.movielens import write_ratings_csv
  with tempfile.TemporaryDirectory(dir=directory) as tmp:
    folder = pathlib.Path(tmp) / "ratings"
    folder.mkdir()
    inter = data.interactions
    start = time.perf_counter()
    path = write_ratings_csv(folder / "ratings.csv", inter.user.astype(np.int64) + 1, inter.item.astype(np.int64) + 1,
                             inter.rating, inter.timestamp)
    write_s = time.perf_counter() - start
    out = subprocess.run([sys.executable, "-m", "metarec_jax.bench.growth", "--read-back", str(folder),
                          "--max-task", str(max_task)], capture_output=True, text=True, check=False,
                         env={**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")})
    if out.returncode:
      raise RuntimeError(f"reading {path} back failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(write_s=write_s, csv_mb=path.stat().st_size / 2**20)
    return result


def measure_point(spec: GrowthSpec, log: Callable[[str], None] = print) -> dict[str, Any]:
  """Every measurement of one point, in this process (`run_point` runs it in a fresh one)."""
  start = time.perf_counter()
  data = make_ratings(spec)
  row: dict[str, Any] = {"users": spec.users, "items": spec.items, "item_ids": spec.item_ids,
                         "ratings": len(data.interactions), "generate_s": time.perf_counter() - start}
  tasks = recent_taskset(data.interactions, data.num_users, spec.max_task)
  if spec.load:
    row.update({f"load_{k}": v for k, v in measure_load(data, spec.max_task).items()
                if k in ("read_s", "taskset_s", "peak_rss_mb", "base_rss_mb", "write_s", "csv_mb")})
  del data
  w = _workload(spec, tasks)
  row.update(time_step(w, spec.steps, spec.repeats))
  if spec.evaluate:
    row.update(time_evaluation(w, tasks, spec.eval_chunk, spec.seed))
  row["rss_mb"] = rss_mb()
  row["peak_rss_mb"] = peak_rss_mb()
  row["wall_s"] = time.perf_counter() - start
  log("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
  return row


def run_point(spec: GrowthSpec, timeout_s: float = 1800) -> dict[str, Any]:
  """`measure_point` in a fresh Python process (its own peak RSS); returns its row."""
  out = subprocess.run([sys.executable, "-m", "metarec_jax.bench.growth", "--point",
                        json.dumps(dataclasses.asdict(spec))], capture_output=True, text=True,
                       timeout=timeout_s, check=False)
  if out.returncode:
    raise RuntimeError(f"growth point {spec} failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- results: JSON, markdown, plot


def _key(row: dict[str, Any]) -> tuple:
  return (row["users"], row["items"], bool(row.get("item_ids", False)))


def _fmt(x, spec=",.1f"):
  return "–" if x is None else format(x, spec)


def _mb(row: dict[str, Any], what: str) -> str:
  total, temp = row.get(f"{what}_xla_mb"), row.get(f"{what}_temp_mb")
  return _fmt(total) + ("" if temp is None else f" ({temp:,.1f})")


def markdown(results: dict[str, Any]) -> str:
  """Markdown tables: against users (items fixed) and against items (users fixed)."""
  rows = results.get("rows", [])
  out = ["# Cost growth against users and items (ML-25M-shaped ratings, MeLU-shaped model)", ""]
  meta = results.get("meta", {})
  if meta:
    out += [f"Machine: {meta.get('machine')}; workload: {meta.get('workload')}.", ""]
  head = ("| users | items | ratings | step ms | of which batch draw ms | step XLA MB (temp) | eval s (all users) | eval users/s "
          "| eval XLA MB (temp) | read s | load peak RSS MB | point peak RSS MB |")
  sep = "|" + "---|" * (head.count("|") - 1)

  def line(r):
    return (f"| {r['users']:,} | {r['items']:,}{' + ids' if r.get('item_ids') else ''} | {r['ratings']:,} | "
            f"{_fmt(r.get('step_ms'), '.2f')} | {_fmt(r.get('draw_ms'), '.2f')} | {_mb(r, 'step')} | {_fmt(r.get('eval_s'))} | "
            f"{_fmt(r.get('eval_users_per_s'), ',.0f')} | {_mb(r, 'eval')} | "
            f"{_fmt(r.get('load_read_s'))} | {_fmt(r.get('load_peak_rss_mb'), ',.0f')} | "
            f"{_fmt(r.get('peak_rss_mb'), ',.0f')} |")

  base_items = meta.get("base_items", BASE_ITEMS)
  base_users = meta.get("base_users", BASE_USERS)
  by_users = sorted((r for r in rows if r["items"] == base_items and not r.get("item_ids")), key=_key)
  by_items = sorted((r for r in rows if r["users"] == base_users), key=lambda r: (r.get("item_ids", False),
                                                                                    r["items"]))
  for title, part in ((f"## Against users ({base_items:,} items)", by_users),
                      (f"## Against items ({base_users:,} users)", by_items)):
    if part:
      out += [title, "", head, sep] + [line(r) for r in part] + [""]
  skipped = results.get("skipped", {})
  if skipped:
    out += ["Not measured: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + ".", ""]
  return "\n".join(out)


def plot(results: dict[str, Any], path: pathlib.Path) -> bool:
  """Time and memory against users and against items, one PNG; False without matplotlib or rows."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    return False
  rows = results.get("rows", [])
  meta = results.get("meta", {})
  base_items, base_users = meta.get("base_items", BASE_ITEMS), meta.get("base_users", BASE_USERS)
  by_users = sorted((r for r in rows if r["items"] == base_items and not r.get("item_ids")), key=_key)
  by_items = sorted((r for r in rows if r["users"] == base_users and not r.get("item_ids")), key=_key)
  by_items_ids = sorted((r for r in rows if r["users"] == base_users and r.get("item_ids")), key=_key)
  if not rows:
    return False
  fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
  series = (("step_ms", "meta-step ms", "o-"), ("draw_ms", "batch draw alone, ms", "o:"),
            ("eval_s", "eval all users, s", "s-"),
            ("load_read_s", "read ratings.csv, s", "^-"))
  mem = (("step_xla_mb", "meta-step XLA MB", "o-"), ("eval_xla_mb", "eval chunk XLA MB", "s-"),
         ("load_peak_rss_mb", "load peak RSS MB", "^-"), ("peak_rss_mb", "point peak RSS MB", "d:"))
  for col, (part, x_key, extra) in enumerate(((by_users, "users", []), (by_items, "items", by_items_ids))):
    for row_i, (what, ylabel) in enumerate(((series, "time"), (mem, "memory (MiB)"))):
      ax = axes[row_i, col]
      for key, label, style in what:
        pts = [(r[x_key], r[key]) for r in part if r.get(key) is not None]
        if pts:
          ax.plot(*zip(*pts), style, label=label)
      if extra and row_i == 0:
        pts = [(r[x_key], r["step_ms"]) for r in extra if r.get("step_ms") is not None]
        if pts:
          ax.plot(*zip(*pts), "o--", color="tab:purple", label="meta-step ms, + item id embedding")
      if extra and row_i == 1:
        pts = [(r[x_key], r["step_xla_mb"]) for r in extra if r.get("step_xla_mb") is not None]
        if pts:
          ax.plot(*zip(*pts), "o--", color="tab:purple", label="meta-step XLA MB, + item id embedding")
      xs = [r[x_key] for r in part]
      if xs and row_i == 0 and x_key == "users":  # a slope-1 guide through the first eval point
        y0 = next((r.get("eval_s") for r in part if r.get("eval_s")), None)
        if y0:
          ax.plot([xs[0], xs[-1]], [y0, y0 * xs[-1] / xs[0]], color="gray", lw=0.8, alpha=0.6, label="linear")
      ax.set_xscale("log")
      ax.set_yscale("log")
      ax.set_xlabel(x_key + (f" ({base_items:,} items)" if x_key == "users" else f" ({base_users:,} users)"))
      ax.set_ylabel(ylabel)
      ax.grid(True, alpha=0.3, which="both")
      if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
  fig.suptitle("cost growth: ML-25M-shaped ratings, MeLU-shaped model")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def update(out_dir: pathlib.Path, rows: list[dict[str, Any]], meta: dict[str, Any] | None = None,
           skipped: dict[str, str] | None = None) -> dict[str, Any]:
  """Merges ``rows`` into ``out_dir/growth.json`` (new rows win per (users, items, item_ids)); redraws
  ``growth.md`` and ``growth.png``."""
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / "growth.json"
  results = json.loads(path.read_text()) if path.exists() else {}
  merged = {_key(r): r for r in results.get("rows", [])}
  merged.update({_key(r): r for r in rows})
  results["rows"] = [merged[k] for k in sorted(merged)]
  if meta:
    results["meta"] = {**results.get("meta", {}), **meta}
  if skipped:
    results["skipped"] = {**results.get("skipped", {}), **skipped}
  path.write_text(json.dumps(results, indent=1) + "\n")
  (out_dir / "growth.md").write_text(markdown(results))
  plot(results, out_dir / "growth.png")
  return results


def _main(argv: list[str]) -> int:
  """Child-process entry: ``--point JSON`` (one `measure_point`) or ``--read-back DIR --max-task L``."""
  import argparse
  parser = argparse.ArgumentParser()
  parser.add_argument("--point")
  parser.add_argument("--read-back")
  parser.add_argument("--max-task", type=int, default=100)
  args = parser.parse_args(argv)
  if args.read_back:
    print(json.dumps(read_back(args.read_back, args.max_task)))
  elif args.point:
    row = measure_point(GrowthSpec(**json.loads(args.point)), log=lambda s: print(s, file=sys.stderr))
    print(json.dumps(row))
  else:
    parser.error("give --point or --read-back")
  return 0


if __name__ == "__main__":
  sys.exit(_main(sys.argv[1:]))
