"""Config -> data -> methods -> results: the whole experiment.

`run` validates the config, opens the run folder, and for each seed
prepares the data, then for each method restores or fits it (validation
selection, checkpoints, resume: `methods`, `train.loop`), evaluates it on
every scenario and records the rows. With ``train.vectorize`` the learned
methods' seeds (and variants that differ only in their rates) first train
together as populations (`train_populations`). A run killed at any point resumes from
its checkpoints and finishes with the same numbers as one that was not.

A run with a folder records its session in env.json (versions, devices,
git, command, start, end, status) and the start, end and wall seconds of
each method x seed it fits and evaluates (`rundir.RunDir.start_session`,
`record_time`); parts finished by an earlier session keep their timing.
"""

from __future__ import annotations

import contextlib
import pathlib
import time
from typing import Callable, Iterator, Sequence

import ml_collections

from metarec_jax import config as cfg_lib
from metarec_jax import runlog
from metarec_jax.eval.evaluate import evaluate_fitted
from metarec_jax.meta.population import PopulationMismatch
from metarec_jax.methods import FitContext, Method, resolve_all
from metarec_jax.methods.learned import LearnedMethod, population_compatible, train_population_model
from metarec_jax.methods.registry import origins
from metarec_jax.prepared import (MAIN_VALID, TRAIN_USERS, Prepared, load_dataset, prepare, support_size,
                                  with_model_inputs)
from metarec_jax.results import markdown_table, results_markdown
from metarec_jax.rundir import RunDir
from metarec_jax.train.loop import NonFiniteError

# Evaluation settings that change neither training nor model selection, so a
# finished run may be re-evaluated with them (`metarec eval WORKDIR --set ...`).
EVAL_ONLY_KEYS = cfg_lib.EVAL_ONLY_KEYS


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path | None = None, *,
        progress: bool = True, verbose: bool = True,
        on_step: Callable[[str, int, int], None] | None = None, reevaluate: bool = False) -> dict:
  """Runs an experiment end to end and returns ``{"rows": [...]}`` (and ``"support_curve"``).

  The run folder is locked for the run (`rundir.acquire_lock`): a second
  process on the same folder is refused. A method x seed that diverges
  (`NonFiniteError`) is recorded (metrics.jsonl, ``failed`` in
  results.json), its rows are left out, and the others go on; the results
  are written, then the run raises one `NonFiniteError` naming every failure.

  Args:
    config: the experiment config (validated here, before any compile).
    workdir: where config, logs, checkpoints and results go (``None``: nowhere,
      no resume).
    progress: show progress bars.
    verbose: print the settings and the results table.
    on_step: hook called after every training step with (checkpoint owner,
      seed, step) (tests).
    reevaluate: evaluate again from the saved checkpoints, training nothing.

  Raises:
    NonFiniteError: some method x seed diverged (after the others' results
      are written).
    RunDirLocked: another live process runs in ``workdir``.
  """
  cfg_lib.validate(config)
  config = cfg_lib.canonical(config)
  if reevaluate and workdir is None:
    raise ValueError("reevaluate needs a workdir")
  methods = resolve_all(config)
  rd = RunDir.create(workdir, config, origins(config), lock=True) if workdir is not None else None
  try:
    return _run(config, methods, rd, progress=progress, verbose=verbose, on_step=on_step, reevaluate=reevaluate)
  finally:
    if rd is not None:
      rd.close()  # the folder's lock, also on failure and Ctrl-C


def _run(config: ml_collections.ConfigDict, methods: list[Method], rd: RunDir | None, *, progress: bool,
         verbose: bool, on_step: Callable[[str, int, int], None] | None, reevaluate: bool) -> dict:
  with _session(rd, "eval" if reevaluate else "run"):
    say = print if verbose else (lambda *a, **k: None)
    seeds = [config.seed + i for i in range(config.num_seeds)]
    say(f"metarec: {config.name}: seeds {seeds}, methods {list(config.methods)}, data {config.data.name} "
        f"({config.data.protocol}), query {config.data.query_size}, support {support_size(config.data)}")
    data = with_model_inputs(load_dataset(config.data), config)
    rows, curves = [], []
    failed: list[dict] = []  # {"method", "seed", "error"}: method x seed runs that diverged (NonFiniteError)
    contexts: dict[int, FitContext] = {}

    def context(seed: int) -> FitContext:
      if seed not in contexts:
        prep = prepare(config, seed, data)
        say(f"seed {seed}: {prep.train.num_tasks} meta-training tasks, {prep.valid_batch.num_tasks} validation; "
            + ", ".join(f"{s} {b.num_tasks}" for s, b in prep.test_batches.items()))
        for note in prep.split.notes:
          if note.startswith("content prior"):
            say(f"seed {seed}: {note}")
        contexts[seed] = FitContext(config, prep, seed, run=rd, progress=progress, on_step=on_step,
                                    restore_only=reevaluate, methods={m.name: m for m in methods})
      return contexts[seed]

    populations: dict[tuple[str, int], int] = {}
    if config.train.vectorize and len(seeds) > 1 and not reevaluate:
      populations = train_populations(methods, [context(s) for s in seeds], rd, say)
    for seed in seeds:
      ctx = context(seed)
      prep = ctx.prep
      for method in methods:
        record = rd.read_part(method.name, seed) if rd is not None and not reevaluate else None
        if record is None:
          start, tick = runlog.now(), time.perf_counter()
          try:
            fitted = ctx.fit(method)
            record = evaluate_fitted(fitted, prep, method.config, seed)
          except NonFiniteError as e:  # this method x seed diverged: record it, go on with the others
            error = " ".join(str(e).split())
            failed.append({"method": method.name, "seed": seed, "error": error})
            say(f"{method.name} seed {seed}: failed: {error}")
            if rd is not None:
              rd.log.write(method=method.name, seed=seed, failed=error)
            continue
          if rd is not None and not reevaluate:
            rd.log.write(method=method.name, seed=seed, selection=fitted.selection, selected_on=prep.selection)
            rd.write_part(method.name, seed, {**record, "selection": fitted.selection, "selected_on": prep.selection})
            rd.log.done(method.name, seed)
            where = populations.get((method.name, seed))
            rd.record_time(method.name, seed, start, time.perf_counter() - tick,
                           **({"population": where} if where is not None else {}))
        rows.extend(record["rows"])
        curves.extend(record.get("support_curve", []))
      del contexts[seed]  # one seed's data and fitted methods at a time
    results = {"rows": rows}
    if curves:
      results["support_curve"] = curves
    if failed:
      results["failed"] = failed
    if rd is not None:
      rd.write_results(results, results_markdown(results, config))
    if rows:
      say(markdown_table(results, config.eval.metrics))
    if failed:
      total = len(seeds) * len(methods)
      kept = f"; the others' results are in {rd.path / 'results.json'}" if rd is not None and rows else ""
      raise NonFiniteError(f"{len(failed)} of {total} method x seed failed{kept}: "
                           + "; ".join(f["error"] for f in failed))
    return results


@contextlib.contextmanager
def _session(rd: RunDir | None, mode: str) -> Iterator[None]:
  """One session of the run folder: env.json's record of it, and every log writer closed at its end."""
  if rd is None:
    yield
    return
  rd.start_session(mode)
  status, error = "failed", None
  try:
    yield
    status = "finished"
  except KeyboardInterrupt:
    status = "interrupted"
    raise
  except Exception as e:
    error = f"{type(e).__name__}: {e}".splitlines()[0][:500]
    raise
  finally:
    rd.log.close()
    rd.end_session(status, error)


def train_populations(methods: Sequence[Method], contexts: list[FitContext], rd: RunDir | None,
                      say: Callable[..., None] = print) -> dict[tuple[str, int], int]:
  """``train.vectorize``: trains the learned methods' unfinished seeds as populations.

  One population per group of methods whose configs differ only in
  `methods.learned.POPULATION_KEYS` (a grid of rates as variants), each
  with every unfinished seed. A method whose seeds cannot train together (its
  own model, sharded steps, data of different shapes across seeds) is left to
  the seed loop, which trains it seed by seed; the run says why.

  Returns:
    (method, seed) -> the index in env.json's ``populations`` of the
    population it trained in (empty without a run folder).
  """
  groups: list[list[tuple[LearnedMethod, list[FitContext]]]] = []
  owners: set[str] = set()
  for method in methods:
    if not isinstance(method, LearnedMethod) or method.checkpoint in owners:
      continue
    pending = [c for c in contexts if rd is None or rd.read_part(method.name, c.seed) is None]
    if not pending:
      continue
    why = method.population_blocker()
    if why:
      say(f"{method.name}: trains seed by seed: {why}")
      continue
    owners.add(method.checkpoint)
    group = next((g for g in groups if population_compatible(g[0][0].config, method.config)), None)
    if group is None:
      groups.append([(method, pending)])
    else:
      group.append((method, pending))
  where: dict[tuple[str, int], int] = {}
  for group in groups:
    members = [(m, c) for m, pending in group for c in pending]
    if len(members) < 2:
      continue
    say(f"population: {', '.join(m.name for m, _ in group)} x seeds "
        f"{', '.join(sorted({str(c.seed) for _, c in members}))}: {len(members)} members, one program")
    start, tick = runlog.now(), time.perf_counter()
    try:
      trained = train_population_model([(m.config, c, m.checkpoint) for m, c in members])
    except PopulationMismatch as e:
      say(f"{', '.join(m.name for m, _ in group)}: train seed by seed: {e}")
      continue
    for (m, c), value in zip(members, trained):
      m.remember_trained(c, value)
    index = rd.record_population([f"{m.name}__seed{c.seed}" for m, c in members], start,
                                 time.perf_counter() - tick) if rd is not None else None
    if index is not None:
      where.update({(m.name, c.seed): index for m, c in members})
  return where


def evaluate_workdir(workdir: str | pathlib.Path, *, progress: bool = True, verbose: bool = False,
                     overrides: Sequence[str] = ()) -> dict:
  """Re-evaluates a finished run from its checkpoints and rewrites its results.

  The saved config fixes the data, the splits and the methods, so the numbers
  equal those of the original run. ``overrides`` (``KEY=VALUE``) may change
  the keys of `EVAL_ONLY_KEYS` only, e.g. ``eval.support_sizes=1,3,5,10,20``
  to add the support-size curve to a finished run; the workdir's config.json
  then records them.

  Raises:
    ConfigError: an override names a key that would change training or selection.
    FileNotFoundError: not a run folder, or a method without a finished checkpoint.
  """
  rd = RunDir.open(workdir, lock=True)
  try:
    return _evaluate(rd, progress=progress, verbose=verbose, overrides=overrides)
  finally:
    rd.close()  # the folder's lock


def _evaluate(rd: RunDir, *, progress: bool, verbose: bool, overrides: Sequence[str]) -> dict:
  config = rd.config
  if overrides:
    keys = [o.split("=", 1)[0].strip() for o in overrides]
    bad = [k for k in keys if k not in EVAL_ONLY_KEYS]
    if bad:
      raise cfg_lib.ConfigError(f"metarec eval may only change {', '.join(EVAL_ONLY_KEYS)} (they change neither "
                                f"training nor model selection); got {', '.join(bad)}. Start a new run instead.")
    config = cfg_lib.apply_overrides(config, overrides)
    cfg_lib.validate(config)
    rd.rewrite_config(config)
  return run(config, rd.path, progress=progress, verbose=verbose, reevaluate=True)


__all__ = ["run", "evaluate_workdir", "prepare", "Prepared", "NonFiniteError", "MAIN_VALID", "TRAIN_USERS",
           "EVAL_ONLY_KEYS"]
