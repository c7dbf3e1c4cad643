"""The training loop every learned method shares: meta-learners, the pooled model and distillation.

``train_loop`` runs a pure ``step(state, tasks, features) -> (state,
metrics)`` for ``steps`` steps. Every ``eval_every`` steps (and at step 0)
``validate(params)`` scores the params on each validation set (lower is
better) and each set keeps the params of its best step: early stopping
without stopping, one selection per validation set. Every
``checkpoint_every`` steps the state and the selections are saved (orbax); a
rerun resumes from the last checkpoint and reaches the same params as a run
that was never stopped. A NaN or infinite loss or gradient norm stops the
run with the method, the step and the metric, and the last good checkpoint
stays on disk.

Every ``log_every`` steps the training values, and at every validation the
validation values, go to the log (`runlog.RunLog`: metrics.jsonl,
TensorBoard, W&B); without a progress bar the log also prints one line per
logged step.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from metarec_jax import faults
from metarec_jax.meta.step import MetaTrainState, replicate, task_mesh
from metarec_jax.runlog import RunLog


_copy = jax.jit(lambda tree: jax.tree_util.tree_map(jnp.copy, tree))  # one compile per param shape


def _global(tree: Any, mesh: Any) -> Any:
  """Several processes: ``tree``'s arrays as global arrays replicated on ``mesh`` (all devices when None).

  Orbax then writes each array once for all processes and every process
  restores it; one process: ``tree`` unchanged.
  """
  if jax.process_count() == 1:
    return tree
  return replicate(tree, mesh if mesh is not None else task_mesh(0))


def _local(tree: Any, mesh: Any) -> Any:
  """Several processes and no task mesh (each process trains alone): restored global arrays back on this process."""
  if jax.process_count() == 1 or mesh is not None:
    return tree
  from metarec_jax.distributed import to_local
  return jax.device_put(to_local(tree))


class NonFiniteError(FloatingPointError):
  """A training metric became NaN or infinite."""


class CheckpointError(ValueError):
  """No checkpoint in a folder can be restored (every kept step is truncated or corrupted)."""


KEEP = 2  # checkpoints kept per folder: the latest, and the one before it should the latest be damaged


def _orphaned_restore_error(record: logging.LogRecord) -> bool:
  """asyncio's "... exception was never retrieved" pages a failed orbax restore leaves: muted (the run says it in one line)."""
  message = record.getMessage()
  return not ("never retrieved" in message and "tensorstore" in message)


logging.getLogger("asyncio").addFilter(_orphaned_restore_error)


def _restore(manager: Any, template: Any, name: str, seed: int, ckpt_dir: pathlib.Path,
             say: Callable[[str], None], delete: bool = True) -> Any:
  """Restores the latest step that restores, newest first; says so for each damaged one and deletes it (``delete``).

  Raises:
    CheckpointError: none of the kept steps restores (the folder is named;
      nothing is deleted then, and nothing starts over).
  """
  steps = sorted(manager.all_steps(), reverse=True)
  bad = []
  for step in steps:
    try:
      restored = manager.restore(step, args=ocp.args.StandardRestore(template))
    except Exception as e:  # orbax / tensorstore: truncated, missing or corrupted files
      why = " ".join(f"{type(e).__name__}: {e}".split())[:300]
      bad.append((step, why))
      say(f"metarec: {name} seed {seed}: checkpoint step {step} in {ckpt_dir} does not restore ({why}); "
          + ("trying the previous one" if step != steps[-1] else "no earlier checkpoint"))
      continue
    for b, _ in bad if delete else ():  # later saves would meet them
      manager.delete(b)
    if bad:
      say(f"metarec: {name} seed {seed}: resuming from checkpoint step {step} in {ckpt_dir} "
          f"(damaged: step {', '.join(str(b) for b, _ in bad)})")
    return restored
  raise CheckpointError(
      f"{name} seed {seed}: no checkpoint in {ckpt_dir} restores (steps {', '.join(map(str, steps))}: "
      f"{bad[0][1] if bad else '?'}); delete {ckpt_dir} to train {name} seed {seed} from the start")


@dataclasses.dataclass
class Selection:
  """Per validation set: the params of the best step, its value and the step.

  Attributes:
    best: validation set name -> the params selected on it.
    best_val: validation set name -> its best value (lower is better).
    best_step: validation set name -> the step it was reached at.
    state: the final training state.
  """

  best: dict[str, Any]
  best_val: dict[str, float]
  best_step: dict[str, int]
  state: Any = None


@dataclasses.dataclass(frozen=True)
class LoopSettings:
  """How long to train and how often to log, validate and checkpoint (the ``train`` config)."""

  steps: int
  tasks_per_batch: int
  eval_every: int
  log_every: int
  checkpoint_every: int

  @classmethod
  def from_config(cls, train_cfg, steps: int | None = None) -> "LoopSettings":
    return cls(steps=int(train_cfg.steps if steps is None else steps), tasks_per_batch=int(train_cfg.tasks_per_batch),
               eval_every=int(train_cfg.eval_every), log_every=int(train_cfg.log_every),
               checkpoint_every=int(train_cfg.checkpoint_every))


def train_loop(name: str, seed: int, state: MetaTrainState, step_fn: Callable, tasks: Any, features: Any, *,
               sets: Sequence[str], validate: Callable[[Any], dict[str, float]], settings: LoopSettings,
               ckpt_dir: pathlib.Path | None = None, log: Any = None, progress: bool = True,
               on_step: Callable[[str, int, int], None] | None = None, restore_only: bool = False,
               selection_key: str = "val_mae", mesh: Any = None,
               hint: str = "Lower optimizer.lr or meta.inner_lr, or set optimizer.clip_norm.") -> Selection:
  """Trains with validation selection, checkpoints, resume and the NaN stop.

  Args:
    name: the checkpoint owner (messages, logs, progress bar).
    seed: the seed (messages, logs).
    state: the initial state (``step``, ``params``, ...); replaced by the
      checkpoint's when ``ckpt_dir`` holds one.
    step_fn: ``step(state, tasks, features) -> (state, metrics)``; metrics
      include ``loss`` and ``grad_norm``.
    tasks: the training tasks passed to every step.
    features: the feature tables passed to every step.
    sets: the validation sets, the first being the main one (log line,
      progress bar).
    validate: ``params -> {validation set: value}`` for every set of
      ``sets`` (lower is better); raises FloatingPointError on a non-finite
      value.
    settings: steps and the logging / validation / checkpoint periods.
    ckpt_dir: orbax folder; resumes from its latest step if any (the two
      latest are kept: a step that does not restore is reported in one line,
      deleted, and the one before it is used).
    log: where the records go: a `runlog.RunLog` (`rundir.RunDir.log`), or
      anything with ``write(**record)``; None: the console only.
    progress: show a progress bar; False: print a line every ``log_every``
      steps instead (through the log's console, process 0).
    on_step: called after every step with (name, seed, step) (tests use it
      to interrupt a run).
    restore_only: do not train; fail unless a finished checkpoint exists
      (nothing is created on disk).
    selection_key: the name of the validation value in the log.
    mesh: a task mesh: state, tasks and features are replicated onto it.
    hint: what to do about a NaN, appended to its message.

  Returns:
    The selections and the final state.

  Raises:
    NonFiniteError: the loss, the gradient norm or a validation value became
      NaN or infinite; the last good checkpoint stays on disk.
    FileNotFoundError: ``restore_only`` and no finished checkpoint.
    CheckpointError: the folder holds checkpoints and none of them restores.
  """
  log = log if log is not None else RunLog()
  write = log.write
  s = settings
  names = list(sets)
  main_set = names[0]
  copy = _copy
  first = copy(state.params)
  best = {k: first for k in names}
  best_val = {k: float("inf") for k in names}
  best_step = {k: 0 for k in names}
  manager = None
  if ckpt_dir is not None:
    if restore_only and not ckpt_dir.is_dir():
      raise FileNotFoundError(f"{name} seed {seed}: no checkpoint in {ckpt_dir}; run `metarec run` to train it")
    manager = ocp.CheckpointManager(ckpt_dir.absolute(), options=ocp.CheckpointManagerOptions(
        max_to_keep=KEEP, create=not restore_only))
    latest = manager.latest_step()
    if latest is not None:
      template = {"state": _global(state, mesh), "best": _global(best, mesh),
                  "best_val": {k: np.zeros((), np.float64) for k in names},
                  "best_step": {k: np.zeros((), np.int64) for k in names}}
      restored = _restore(manager, template, name, seed, ckpt_dir, print, delete=not restore_only)
      state, best = _local(restored["state"], mesh), _local(restored["best"], mesh)
      best_val = {k: float(v) for k, v in restored["best_val"].items()}
      best_step = {k: int(v) for k, v in restored["best_step"].items()}
  if restore_only and int(state.step) != s.steps:
    raise FileNotFoundError(f"{name} seed {seed}: no finished checkpoint in {ckpt_dir} "
                            f"(found step {int(state.step)} of {s.steps}); run `metarec run` to finish it")

  def save(step):
    if manager is None:
      return
    manager.save(step, args=ocp.args.StandardSave({
        "state": _global(state, mesh), "best": _global(best, mesh),
        "best_val": {k: np.asarray(v, np.float64) for k, v in best_val.items()},
        "best_step": {k: np.asarray(v, np.int64) for k, v in best_step.items()}}), force=True)
    faults.point("checkpoint")  # the save has started and is not finished: a kill here leaves a partial step
    manager.wait_until_finished()

  def evaluate_now(step):
    try:
      vals = validate(state.params)
    except FloatingPointError:
      raise NonFiniteError(f"{name} seed {seed}: {selection_key} is nan at step {step}: the adapted model "
                           "diverges. Lower meta.inner_lr or optimizer.lr.") from None
    current = None
    for k in names:
      if vals[k] < best_val[k]:
        current = copy(state.params) if current is None else current
        best[k], best_val[k], best_step[k] = current, vals[k], step
    extra = {f"{selection_key}_{k}": vals[k] for k in names[1:]}
    write(method=name, seed=seed, step=step, **{selection_key: vals[main_set]}, **extra)
    return vals[main_set]

  if mesh is not None:
    state, tasks, features = replicate(state, mesh), replicate(tasks, mesh), replicate(features, mesh)
  start = int(state.step)
  begin, end = getattr(log, "begin", None), getattr(log, "end", None)
  if begin is not None and start < s.steps:
    begin(name, seed, steps=s.steps, start=start, eval_every=s.eval_every, console=not progress)
  try:
    if start == 0 and s.steps > 0:
      evaluate_now(0)
    bar = tqdm(total=s.steps, initial=start, desc=f"{name} seed {seed}", disable=not progress,
               leave=False, dynamic_ncols=True)
    tick, tick_step = time.perf_counter(), start
    val = best_val[main_set]
    for step in range(start + 1, s.steps + 1):
      state, metrics = step_fn(state, tasks, features)
      values = {k: float(v) for k, v in metrics.items()}
      bad = [k for k in ("loss", "grad_norm") if not np.isfinite(values[k])]
      if bad:
        saved = manager.latest_step() if manager is not None else None
        where = f"; the last good checkpoint (step {saved}) is in {ckpt_dir}" if saved is not None else ""
        raise NonFiniteError(f"{name} seed {seed}: {bad[0]} is {values[bad[0]]} at step {step}{where}. {hint}")
      if step % s.log_every == 0 or step == s.steps:
        now = time.perf_counter()
        rate = (step - tick_step) * s.tasks_per_batch / max(now - tick, 1e-9)
        tick, tick_step = now, step
        write(method=name, seed=seed, step=step, tasks_per_s=rate, **values)
      if step % s.eval_every == 0 or step == s.steps:
        val = evaluate_now(step)
      bar.update(1)
      bar.set_postfix(loss=f"{values['loss']:.3f}", **{selection_key: f"{val:.4f}"}, refresh=False)
      if step % s.checkpoint_every == 0 or step == s.steps:
        save(step)
      if on_step is not None:
        on_step(name, seed, step)
    bar.close()
  finally:
    if end is not None and start < s.steps:
      end(name, seed)  # the last console line; the events on disk
  if manager is not None:
    manager.close()
  return Selection(dict(best), dict(best_val), dict(best_step), state)
