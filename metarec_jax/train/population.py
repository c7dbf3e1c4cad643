"""The training loop of a population: N members (seeds, settings) stepped as one program.

`train_population` is `train_loop` for a stacked state (`meta.population`):
one ``step(states, tasks, features)`` call advances every member, and each
member keeps what a separate run keeps: its own validation selection per
validation set, its own log lines (``method``, ``seed``, ``step``) and its own
orbax checkpoint folder, in the same format as `train_loop`'s. A finished
member's checkpoint is therefore read by `metarec eval` like any other.

Members are saved together. A run killed between two members' saves resumes
from the latest step every member has (each folder keeps its last two), so a
resumed population repeats the same batches as one never stopped; folders
with no common step are started over, and the loop says so.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from metarec_jax.meta.population import population_member, population_size
from metarec_jax.train.loop import LoopSettings, NonFiniteError, Selection


def _slice(tree: Any, i: int) -> Any:
  return jax.tree_util.tree_map(lambda x: x[i], tree)


def _restore(managers: list[ocp.CheckpointManager], states: Any, names: list[str], say: Callable[[str], None],
             label: str) -> tuple[Any, list[dict]]:
  """The states and bookkeeping of the latest step common to every member's folder (fresh if none)."""
  fresh = [{"best": {k: _slice(states.params, i) for k in names}, "best_val": {k: float("inf") for k in names},
            "best_step": {k: 0 for k in names}} for i in range(len(managers))]
  steps = [set(m.all_steps()) for m in managers]
  common = set.intersection(*steps) if steps else set()
  top = max(common) if common else -1
  for m, own in zip(managers, steps):  # steps past the common one are trained (and written) again
    for step in sorted(own):
      if step > top:
        m.delete(step)
  if not common:
    if any(steps):
      say(f"{label}: the members' checkpoints share no step; training the population from step 0")
    return states, fresh
  step = max(common)
  restored_states, books = [], []
  for i, m in enumerate(managers):
    member = population_member(states, i)
    template = {"state": member, "best": fresh[i]["best"],
                "best_val": {k: np.zeros((), np.float64) for k in names},
                "best_step": {k: np.zeros((), np.int64) for k in names}}
    r = m.restore(step, args=ocp.args.StandardRestore(template))
    restored_states.append(r["state"])
    books.append({"best": r["best"], "best_val": {k: float(v) for k, v in r["best_val"].items()},
                  "best_step": {k: int(v) for k, v in r["best_step"].items()}})
  stacked = jax.tree_util.tree_map(lambda *xs: jax.numpy.stack(xs), *restored_states)
  return stacked, books


def train_population(members: Sequence[tuple[str, int]], states: Any, step_fn: Callable, tasks: Any, features: Any, *,
                     sets: Sequence[str], validates: Sequence[Callable[[Any], dict[str, float]]],
                     settings: LoopSettings, ckpt_dirs: Sequence[pathlib.Path | None] | None = None, log: Any = None,
                     progress: bool = True, on_step: Callable[[str, int, int], None] | None = None,
                     selection_key: str = "val_mae",
                     hint: str = "Lower optimizer.lr or meta.inner_lr, or set optimizer.clip_norm.") -> list[Selection]:
  """Trains a stacked population with a selection, a log and a checkpoint per member.

  Args:
    members: member ``i``'s checkpoint owner and seed (messages, logs).
    states: the stacked initial states (`meta.population.init_population`).
    step_fn: ``step(states, tasks, features) -> (states, metrics)`` with a
      leading member axis on every metric.
    tasks: the (stacked) training tasks passed to every step.
    features: the (stacked) feature tables passed to every step.
    sets: the validation sets, the first being the main one.
    validates: per member, ``params -> {validation set: value}`` (lower is
      better; raises FloatingPointError on a non-finite value).
    settings: steps and the logging / validation / checkpoint periods.
    ckpt_dirs: per member, its orbax folder (None: no checkpoints).
    log: a `rundir.JsonlLog` (or None).
    progress: show a progress bar.
    on_step: called after every step with (name, seed, step) for each member.
    selection_key: the name of the validation value in the log.
    hint: what to do about a NaN, appended to its message.

  Returns:
    One `Selection` per member (its final state unstacked).

  Raises:
    NonFiniteError: a member's loss, gradient norm or validation value became
      NaN or infinite (the message names it); the last good checkpoints
      stay on disk.
  """
  n = population_size(states)
  if len(members) != n or len(validates) != n:
    raise ValueError(f"a population of {n} members needs {n} names and validators; got {len(members)} and "
                     f"{len(validates)}")
  write = log.write if log is not None else (lambda **record: None)
  s = settings
  names = list(sets)
  main_set = names[0]
  owners = list(dict.fromkeys(name for name, _ in members))
  label = f"{', '.join(owners)} seeds {', '.join(map(str, sorted({s for _, s in members})))}"
  managers = []
  if ckpt_dirs is not None and any(d is not None for d in ckpt_dirs):
    managers = [ocp.CheckpointManager(d.absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))
                for d in ckpt_dirs]
  if managers:
    states, books = _restore(managers, states, names, lambda m: tqdm.write(m), label)
  else:
    books = [{"best": {k: _slice(states.params, i) for k in names}, "best_val": {k: float("inf") for k in names},
              "best_step": {k: 0 for k in names}} for i in range(n)]

  def save(step):
    for i, m in enumerate(managers):
      b = books[i]
      m.save(step, args=ocp.args.StandardSave({
          "state": population_member(states, i), "best": b["best"],
          "best_val": {k: np.asarray(v, np.float64) for k, v in b["best_val"].items()},
          "best_step": {k: np.asarray(v, np.int64) for k, v in b["best_step"].items()}}), force=True)
    for m in managers:
      m.wait_until_finished()

  def evaluate_now(step):
    mains = []
    for i, ((name, seed), validate) in enumerate(zip(members, validates)):
      params = _slice(states.params, i)
      try:
        vals = validate(params)
      except FloatingPointError:
        raise NonFiniteError(f"{name} seed {seed}: {selection_key} is nan at step {step}: the adapted model "
                             "diverges. Lower meta.inner_lr or optimizer.lr.") from None
      b = books[i]
      for k in names:
        if vals[k] < b["best_val"][k]:
          b["best"][k], b["best_val"][k], b["best_step"][k] = params, vals[k], step
      extra = {f"{selection_key}_{k}": vals[k] for k in names[1:]}
      write(method=name, seed=seed, step=step, **{selection_key: vals[main_set]}, **extra)
      mains.append(vals[main_set])
    return mains

  start = int(states.step[0])
  if start == 0 and s.steps > 0:
    evaluate_now(0)
  bar = tqdm(total=s.steps, initial=start, desc=label, disable=not progress, leave=False, dynamic_ncols=True)
  tick, tick_step = time.perf_counter(), start
  for step in range(start + 1, s.steps + 1):
    states, metrics = step_fn(states, tasks, features)
    values = {k: np.asarray(v, np.float64) for k, v in metrics.items()}
    for i, (name, seed) in enumerate(members):
      bad = [k for k in ("loss", "grad_norm") if not np.isfinite(values[k][i])]
      if bad:
        saved = managers[i].latest_step() if managers else None
        where = f"; the last good checkpoint (step {saved}) is in {ckpt_dirs[i]}" if saved is not None else ""
        raise NonFiniteError(f"{name} seed {seed}: {bad[0]} is {values[bad[0]][i]} at step {step}{where}. {hint}")
    if step % s.log_every == 0 or step == s.steps:
      now = time.perf_counter()
      rate = (step - tick_step) * s.tasks_per_batch / max(now - tick, 1e-9)
      tick, tick_step = now, step
      for i, (name, seed) in enumerate(members):
        write(method=name, seed=seed, step=step, tasks_per_s=rate, **{k: float(v[i]) for k, v in values.items()})
    if step % s.eval_every == 0 or step == s.steps:
      evaluate_now(step)
    bar.update(1)
    bar.set_postfix(loss=f"{float(values['loss'].mean()):.3f}", refresh=False)
    if managers and (step % s.checkpoint_every == 0 or step == s.steps):
      save(step)
    if on_step is not None:
      for name, seed in members:
        on_step(name, seed, step)
  bar.close()
  for m in managers:
    m.close()
  return [Selection(dict(b["best"]), dict(b["best_val"]), dict(b["best_step"]), population_member(states, i))
          for i, b in enumerate(books)]
