"""Hyperparameter sweeps: grid, random and TPE search over config keys, chosen on validation users only.

A sweep trains one method of an experiment (the *tuned* method) once per
*trial*, a setting of the searched keys, and picks the trial with the lowest
validation value. Every trial is an ordinary run folder under the sweep
folder, named from its values::

    runs/<experiment>-sweep/
      sweep.json                              trials: values, validation score, test metrics, status; the best
      sweep.md                                the same as a table (varied keys as columns), best trial marked
      optimizer.lr=0.001,meta.inner_lr=0.1/   a run folder (`rundir`): config.json, checkpoints, parts, results
      optimizer.lr=0.01,meta.inner_lr=0.1/
      ...

Each trial runs through `experiment.run` with the experiment's config, the
sweep's overrides and the trial's values (``methods`` set to the tuned method
alone), so a killed sweep resumes: finished trials are read back, a half-run
trial resumes from its checkpoints (`rundir.RunDir`), and the numbers are
those of an uninterrupted sweep.

What is searched (``--grid KEY=SPEC``, `parse_space`):

- ``KEY=a,b,c``: these values (``;`` separates them for tuple-valued keys,
  e.g. ``model.head_hidden=64,64;128,128``);
- ``KEY=log:LO:HI`` / ``KEY=uniform:LO:HI``: a continuous range, log-uniform
  or uniform (random and TPE search only; drawn values are rounded to 3
  significant digits, so a trial's name is the value it trains with);
- ``KEY=log:LO:HI:N`` / ``KEY=uniform:LO:HI:N``: N log- or evenly spaced
  values from LO to HI (a list: any search);
- ``KEY=int:LO:HI``: the integers LO..HI (a list: any search).

How: `grid_trials` (the Cartesian product), `random_trials` (N distinct
draws with ``numpy.random.default_rng(seed)``), `tpe_search` (optuna's TPE,
``pip install metarec-jax[sweep]``).

Selection (`validation_score`, `select_best`): a trial's score is the
validation value its own run selected the tuned method's parameters with
(``val_mae``, or 1 - AUC under implicit feedback: lower is better), per seed
the mean over ``eval.scenarios`` of the value on the validation set each
scenario is selected on (the warm hold-out users, or each scenario's own with
``eval.selection=per_scenario``), then the mean over seeds. Test rows are read
for the report only, never for the choice.

Population training (``vectorize=True``): when every searched key is one of
`methods.learned.POPULATION_KEYS` (``optimizer.lr``, ``meta.inner_lr``), the
unfinished trials x seeds train as one vmapped program
(`methods.learned.train_population_model`) whose members write their
checkpoints and log lines into their own trial folders; each trial's run then
restores its finished checkpoint and evaluates as usual.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import pathlib
import re
import time
import zlib
from typing import Any, Callable, Iterable, Sequence

import ml_collections
import numpy as np

from metarec_jax import config as cfg_lib

SWEEP_JSON = "sweep.json"
SWEEP_MD = "sweep.md"

# Trial states in sweep.json.
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"

RANGE_KINDS = ("log", "uniform", "int")
SIGNIFICANT_DIGITS = 3  # drawn continuous values are rounded to this many significant digits
MAX_NAME = 120          # longer trial names are cut and end in a hash

INSTALL_HINT = "pip install metarec-jax[sweep]"


# --------------------------------------------------------------------------- the searched space


@dataclasses.dataclass(frozen=True)
class Space:
  """One searched key: a list of values, or a continuous range.

  Attributes:
    key: the dotted config key.
    text: the specification as given (``a,b,c``, ``log:1e-4:1e-2``, ...).
    values: the values (typed like the key's default) for a list; empty for
      a continuous range.
    kind: ``list``, or ``log`` / ``uniform`` for a continuous range.
    low: a range's lower end.
    high: a range's upper end.
  """

  key: str
  text: str
  values: tuple = ()
  kind: str = "list"
  low: float = 0.0
  high: float = 0.0

  @property
  def discrete(self) -> bool:
    """Whether the space is a finite list of values (grid search can enumerate it)."""
    return self.kind == "list"


def parse_space(spec: str, config: ml_collections.ConfigDict) -> Space:
  """Parses one ``--grid KEY=SPEC`` against ``config`` (the syntax: module docstring).

  Args:
    spec: ``KEY=a,b,c``, ``KEY=log:LO:HI[:N]``, ``KEY=uniform:LO:HI[:N]`` or
      ``KEY=int:LO:HI``.
    config: the experiment's config: it holds the key and the type of its
      values.

  Returns:
    The `Space`, its values typed like the key's default.

  Raises:
    ConfigError: malformed spec, unknown key (with the closest keys), a value
      that does not parse as the key's type, or a range over a key that is
      not a number.
  """
  if "=" not in spec:
    raise cfg_lib.ConfigError(f"--grid {spec!r}: expected KEY=VALUES, e.g. optimizer.lr=1e-3,1e-2 or "
                              "optimizer.lr=log:1e-4:1e-2")
  key, text = (part.strip() for part in spec.split("=", 1))
  keys = cfg_lib.flat_keys(config)
  if key not in keys or key == "variants":
    raise cfg_lib.ConfigError(f"--grid: {cfg_lib.unknown_key(key, keys)}")
  current = keys[key]
  head = text.split(":", 1)[0]
  numeric = isinstance(current, (int, float)) and not isinstance(current, bool)
  if head in RANGE_KINDS and ":" in text and numeric:
    return _parse_range(key, text, current)
  if not text:
    raise cfg_lib.ConfigError(f"--grid {key}=: no values")
  raws = [r.strip() for r in text.split(";" if isinstance(current, tuple) else ",")]
  values = []
  for raw in raws:
    try:
      value = cfg_lib.flat_keys(cfg_lib.apply_overrides(config, [f"{key}={raw}"]))[key]
    except cfg_lib.ConfigError as e:
      raise cfg_lib.ConfigError(str(e).replace("--set", "--grid", 1)) from None
    if value not in values:
      values.append(value)
  return Space(key, text, tuple(values))


def _parse_range(key: str, text: str, current: Any) -> Space:
  parts = text.split(":")
  kind = parts[0]
  usage = (f"--grid {key}={text}: expected {kind}:LO:HI" + (":N" if kind != "int" else "")
           + " (e.g. log:1e-4:1e-2, uniform:0.1:0.5:5, int:1:5)")
  if len(parts) not in (3, 4) or (kind == "int" and len(parts) != 3):
    raise cfg_lib.ConfigError(usage)
  try:
    low, high = (int(p) if kind == "int" else float(p) for p in parts[1:3])
    count = int(parts[3]) if len(parts) == 4 else None
  except ValueError:
    raise cfg_lib.ConfigError(usage) from None
  if isinstance(current, int) and kind != "int":
    raise cfg_lib.ConfigError(f"--grid {key}={text}: {key} is an integer (the default is {current!r}); "
                              f"use int:LO:HI or a list")
  if not low < high:
    raise cfg_lib.ConfigError(f"--grid {key}={text}: LO must be below HI")
  if kind == "log" and low <= 0:
    raise cfg_lib.ConfigError(f"--grid {key}={text}: a log range needs LO > 0")
  if count is not None and count < 2:
    raise cfg_lib.ConfigError(f"--grid {key}={text}: N must be >= 2 (the values LO..HI)")
  if kind == "int":
    return Space(key, text, tuple(range(low, high + 1)))
  if count is not None:
    points = np.geomspace(low, high, count) if kind == "log" else np.linspace(low, high, count)
    values = []
    for p in points:
      v = _round(float(p), low, high)
      if v not in values:
        values.append(v)
    return Space(key, text, tuple(values))
  return Space(key, text, kind=kind, low=float(low), high=float(high))


def _round(value: float, low: float, high: float) -> float:
  """``value`` to `SIGNIFICANT_DIGITS` significant digits, kept inside ``[low, high]``."""
  return min(max(float(f"{value:.{SIGNIFICANT_DIGITS}g}"), low), high)


def parse_spaces(specs: Iterable[str | Space], config: ml_collections.ConfigDict) -> list[Space]:
  """`parse_space` of every ``--grid`` (`Space` objects pass through).

  Raises:
    ConfigError: a bad spec, or a key searched twice.
  """
  spaces = [s if isinstance(s, Space) else parse_space(s, config) for s in specs]
  if not spaces:
    raise cfg_lib.ConfigError("a sweep needs at least one --grid KEY=VALUES")
  seen = [s.key for s in spaces]
  twice = sorted({k for k in seen if seen.count(k) > 1})
  if twice:
    raise cfg_lib.ConfigError(f"--grid: {', '.join(twice)} given more than once; list all its values in one --grid")
  return spaces


# --------------------------------------------------------------------------- trials: values and names


def grid_trials(spaces: Sequence[Space]) -> list[dict[str, Any]]:
  """The Cartesian product of the spaces' values, the last key varying fastest.

  Raises:
    ConfigError: a continuous range (it has no finite grid).
  """
  ranges = [s for s in spaces if not s.discrete]
  if ranges:
    s = ranges[0]
    raise cfg_lib.ConfigError(f"--grid {s.key}={s.text} is a continuous range: give it a count for a grid "
                              f"({s.kind}:{s.text.split(':', 1)[1]}:5 is 5 values) or search it with --random N "
                              "or --tpe N")
  return [dict(zip([s.key for s in spaces], combo)) for combo in itertools.product(*[s.values for s in spaces])]


def grid_size(spaces: Sequence[Space]) -> float:
  """The number of distinct trials of the spaces (``inf`` with a continuous range)."""
  return math.prod(len(s.values) if s.discrete else math.inf for s in spaces)


def random_trials(spaces: Sequence[Space], n: int, seed: int = 0) -> list[dict[str, Any]]:
  """``n`` distinct trials drawn with ``numpy.random.default_rng(seed)``: the same seed, the same trials.

  For each trial and each space in order: a list draws one of its values
  uniformly; ``log`` draws ``exp(uniform(log LO, log HI))`` and ``uniform``
  ``uniform(LO, HI)``, both rounded to 3 significant digits. A draw equal to
  an earlier trial is drawn again; when the spaces hold fewer than ``n``
  distinct trials, all of them are returned (in drawing order).

  Raises:
    ValueError: ``n < 1``.
  """
  if n < 1:
    raise ValueError(f"--random {n}: the number of trials must be >= 1")
  rng = np.random.default_rng(seed)
  want = min(n, grid_size(spaces))
  out, names = [], set()
  for _ in range(100 * n + 1000):
    if len(out) >= want:
      break
    values = {s.key: _draw(s, rng) for s in spaces}
    name = trial_name(values)
    if name not in names:
      names.add(name)
      out.append(values)
  return out


def _draw(space: Space, rng: np.random.Generator) -> Any:
  if space.discrete:
    return space.values[int(rng.integers(len(space.values)))]
  if space.kind == "log":
    return _round(math.exp(rng.uniform(math.log(space.low), math.log(space.high))), space.low, space.high)
  return _round(float(rng.uniform(space.low, space.high)), space.low, space.high)


def format_value(value: Any) -> str:
  """A value as it appears in a trial's name: floats in Python's shortest form, tuples joined by ``+``."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, float):
    return repr(value)
  if isinstance(value, (tuple, list)):
    return "+".join(format_value(v) for v in value) or "empty"
  return str(value)


def override_text(value: Any) -> str:
  """A value as ``--set KEY=VALUE`` writes it (tuples comma-separated)."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, (tuple, list)):
    return ",".join(override_text(v) for v in value)
  return repr(value) if isinstance(value, float) else str(value)


def trial_name(values: dict[str, Any]) -> str:
  """The folder name of a trial: ``KEY=VALUE`` joined by ``,``, made safe for file systems.

  Characters other than letters, digits and ``._=,+-`` become ``_``; a name
  longer than 120 characters is cut and ends in a hash of the whole.
  """
  text = ",".join(f"{k}={format_value(v)}" for k, v in values.items())
  safe = re.sub(r"[^A-Za-z0-9._=,+\-]", "_", text).lstrip(".") or "trial"
  if len(safe) > MAX_NAME:
    safe = f"{safe[:MAX_NAME - 9]}-{zlib.crc32(text.encode()) & 0xFFFFFFFF:08x}"
  return safe


def trial_config(base: ml_collections.ConfigDict, values: dict[str, Any]) -> ml_collections.ConfigDict:
  """``base`` with a trial's values set (typed like the defaults).

  Raises:
    ConfigError: an unknown key or a value of the wrong type.
  """
  return cfg_lib.set_values(base, values, "--grid")


# --------------------------------------------------------------------------- TPE (optuna)


def _optuna():
  try:
    import optuna
  except ImportError:
    raise cfg_lib.ConfigError(f"--tpe needs optuna, which is not installed: {INSTALL_HINT}") from None
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  return optuna


def _distributions(spaces: Sequence[Space]) -> dict[str, Any]:
  optuna = _optuna()
  dists = {}
  for s in spaces:
    if s.discrete:
      dists[s.key] = optuna.distributions.CategoricalDistribution([format_value(v) for v in s.values])
    else:
      dists[s.key] = optuna.distributions.FloatDistribution(s.low, s.high, log=s.kind == "log")
  return dists


def _from_params(spaces: Sequence[Space], params: dict[str, Any]) -> dict[str, Any]:
  values = {}
  for s in spaces:
    p = params[s.key]
    values[s.key] = ({format_value(v): v for v in s.values}[p] if s.discrete else _round(float(p), s.low, s.high))
  return values


def _to_params(spaces: Sequence[Space], values: dict[str, Any]) -> dict[str, Any]:
  return {s.key: format_value(values[s.key]) if s.discrete else float(values[s.key]) for s in spaces}


def tpe_search(spaces: Sequence[Space], n: int, objective: Callable[[dict[str, Any]], float | None], *,
               seed: int = 0, history: Sequence[tuple[dict[str, Any], float | None]] = ()
               ) -> list[tuple[dict[str, Any], float | None]]:
  """Runs ``n`` new distinct trials proposed by optuna's TPE sampler (``optuna.samplers.TPESampler(seed=seed)``).

  Lists are categorical parameters, ``log`` / ``uniform`` ranges float ones
  (the proposed value is rounded to 3 significant digits before it is
  tried). A proposal equal to a known trial is told that trial's score and
  not run again.

  Args:
    spaces: the searched keys.
    n: how many new trials to run.
    objective: ``values -> score`` (lower is better; None: the trial failed).
    seed: the sampler's seed.
    history: earlier ``(values, score)`` pairs (a resumed sweep): the
      sampler starts from them. Pairs outside the spaces are left out.

  Returns:
    The new ``(values, score)`` pairs in the order they ran.

  Raises:
    ConfigError: optuna is not installed (the message says how to install it).
  """
  optuna = _optuna()
  dists = _distributions(spaces)
  study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
  known: dict[str, float | None] = {}
  for values, score in history:
    known[trial_name(values)] = score
    try:
      state = optuna.trial.TrialState.COMPLETE if score is not None else optuna.trial.TrialState.FAIL
      study.add_trial(optuna.trial.create_trial(params=_to_params(spaces, values), distributions=dists,
                                                value=score, state=state))
    except (ValueError, KeyError):
      continue  # a trial of another space (the sweep was changed): not evidence for this one
  out = []
  for _ in range(20 * n + 20):
    if len(out) >= n:
      break
    trial = study.ask(fixed_distributions=dists)
    values = _from_params(spaces, trial.params)
    name = trial_name(values)
    if name in known:
      score = known[name]
    else:
      score = objective(values)
      known[name] = score
      out.append((values, score))
    if score is None or not math.isfinite(score):
      study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
      study.tell(trial, score)
  return out


# --------------------------------------------------------------------------- a trial's result


@dataclasses.dataclass
class Trial:
  """One setting of the searched keys and what its run gave.

  Attributes:
    name: its folder under the sweep folder (`trial_name`).
    values: searched key -> value.
    status: ``pending``, ``running``, ``done`` or ``failed``.
    score: the validation score (`validation_score`, mean over seeds; lower
      is better); None until done.
    seed_scores: seed -> its validation score.
    test: scenario -> metric -> test value, mean over seeds (reported, never
      used for the choice).
    error: why a failed trial failed.
  """

  name: str
  values: dict[str, Any]
  status: str = PENDING
  score: float | None = None
  seed_scores: dict[int, float] = dataclasses.field(default_factory=dict)
  test: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
  error: str = ""

  def to_json(self) -> dict[str, Any]:
    return {"name": self.name, "run": self.name, "values": {k: _jsonable(v) for k, v in self.values.items()},
            "status": self.status, "score": self.score, "seed_scores": {str(k): v for k, v in self.seed_scores.items()},
            "test": self.test, "error": self.error}


def _jsonable(value: Any) -> Any:
  return list(value) if isinstance(value, tuple) else value


def validation_score(part: dict[str, Any], scenarios: Sequence[str]) -> float | None:
  """A finished part's validation score: the mean over ``scenarios`` of the value its selection was made with.

  Reads ``part["selection"][part["selected_on"][scenario]]["val_mae"]`` (the
  validation set each scenario's model was selected on, `experiment.run`);
  under implicit feedback that value is 1 - AUC. Never reads the part's test
  rows.

  Returns:
    The score (lower is better), or None when the part records no validation
    value (a method without validation selection).
  """
  selection, selected_on = part.get("selection") or {}, part.get("selected_on") or {}
  vals = []
  for s in scenarios:
    entry = selection.get(selected_on.get(s, "valid"))
    if not isinstance(entry, dict) or entry.get("val_mae") is None:
      return None
    vals.append(float(entry["val_mae"]))
  return float(np.mean(vals)) if vals else None


def test_metrics(rows: Sequence[dict[str, Any]], method: str, metrics: Sequence[str]) -> dict[str, dict[str, float]]:
  """Scenario -> metric -> the mean over seeds of ``method``'s test rows (for the report only)."""
  out: dict[str, dict[str, list[float]]] = {}
  for r in rows:
    if r["method"] != method:
      continue
    for m in metrics:
      if m in r:
        out.setdefault(r["scenario"], {}).setdefault(m, []).append(float(r[m]))
  return {s: {m: float(np.mean(v)) for m, v in ms.items()} for s, ms in out.items()}


def select_best(trials: Sequence[Trial]) -> Trial | None:
  """The finished trial with the lowest validation score (the first of equals); None when none finished.

  Only ``score`` is read: test metrics play no part in the choice.
  """
  done = [t for t in trials if t.status == DONE and t.score is not None and math.isfinite(t.score)]
  return min(done, key=lambda t: t.score) if done else None


def read_trial(path: str | pathlib.Path, config: ml_collections.ConfigDict, method: str, trial: Trial) -> Trial:
  """Fills ``trial``'s scores and test metrics from its finished run folder.

  Raises:
    ValueError: the method records no validation value, so it cannot be tuned.
    FileNotFoundError: the run has not finished.
  """
  from metarec_jax.rundir import RunDir
  rd = RunDir(path, config)
  results = rd.read_results()
  scores = {}
  for seed in _seeds(config):
    part = rd.read_part(method, seed)
    if part is None:
      raise FileNotFoundError(f"{rd.part_path(method, seed)} does not exist: the trial has not finished")
    score = validation_score(part, config.eval.scenarios)
    if score is None:
      raise ValueError(f"{method} records no validation value in {rd.part_path(method, seed)}: it selects "
                       "nothing on validation users, so a sweep cannot tune it")
    scores[seed] = score
  trial.seed_scores = scores
  trial.score = float(np.mean(list(scores.values())))
  trial.test = test_metrics(results["rows"], method, config.eval.metrics)
  trial.status, trial.error = DONE, ""
  return trial


def _seeds(config: ml_collections.ConfigDict) -> list[int]:
  return [config.seed + i for i in range(config.num_seeds)]


# --------------------------------------------------------------------------- the tuned method


def tuned_method(config: ml_collections.ConfigDict, name: str | None = None):
  """The method a sweep tunes: ``name``, or the experiment's last learned method.

  Raises:
    ConfigError: an unknown name, a baseline (it has no trained
      hyperparameters and no validation selection to compare), or an
      experiment without a learned method.
  """
  from metarec_jax.methods import resolve, resolve_all
  from metarec_jax.methods.learned import LearnedMethod
  if name:
    method = resolve(name, config)
  else:
    learned = [m for m in resolve_all(config) if isinstance(m, LearnedMethod)]
    if not learned:
      raise cfg_lib.ConfigError(f"{config.name} has no learned method to tune (its methods: "
                                f"{', '.join(config.methods)} are baselines); name one with --method, e.g. maml")
    method = learned[-1]
  if not isinstance(method, LearnedMethod):
    raise cfg_lib.ConfigError(f"{method.name} is a baseline without a model: it trains nothing, so a sweep "
                              "cannot tune it; tune a learned method (--method maml, ...)")
  return method


def check_keys(method, spaces: Sequence[Space]) -> None:
  """Refuses searched keys that would make trials incomparable or change nothing.

  The data, split and evaluation keys (``seed``, ``data.*``, ``eval.*``, ...)
  change the validation users or how they are scored, so trials' scores
  could not be compared; a key the method does not read, or that its
  variant sets itself, would train the same model again.

  Raises:
    ConfigError: one line per refused key.
  """
  from metarec_jax.methods.base import RUN_KEYS
  problems = []
  for s in spaces:
    if s.key in RUN_KEYS or s.key.startswith(tuple(k for k in RUN_KEYS if k.endswith("."))):
      problems.append(f"--grid {s.key}: it changes the data, the validation users or how they are scored, so "
                      "the trials' validation values could not be compared; set it with --set instead")
      continue
    why = method.ignores(s.key)
    if why:
      problems.append(f"--grid {s.key}: {why}, so every trial would train the same model")
  if problems:
    raise cfg_lib.ConfigError("\n  ".join(problems))


# --------------------------------------------------------------------------- the sweep


@dataclasses.dataclass
class SweepResult:
  """A sweep's trials and choice, as `run_sweep` returns it and ``sweep.json`` holds it.

  Attributes:
    path: the sweep folder.
    name: the experiment's name.
    method: the tuned method.
    metric: the name of the validation value (``val_mae`` or ``val_1-auc``).
    mode: ``grid``, ``random`` or ``tpe``.
    seed: the seed of the random / TPE draws.
    spaces: the searched keys.
    overrides: the ``KEY=VALUE`` overrides every trial shares.
    trials: the trials in the order they are listed (and run).
    scenarios: the scenarios of the test metrics.
    metrics: the test metrics reported per scenario.
    vectorize: whether trials of the rates train as one population where they can (``--vectorize``;
      each trial's ``env.json`` lists the population it trained in).
  """

  path: pathlib.Path
  name: str
  method: str
  metric: str
  mode: str
  seed: int
  spaces: list[Space]
  overrides: list[str]
  trials: list[Trial]
  scenarios: list[str]
  metrics: list[str]
  vectorize: bool = False

  @property
  def best(self) -> Trial | None:
    """The trial with the lowest validation score (`select_best`)."""
    return select_best(self.trials)

  def to_json(self) -> dict[str, Any]:
    best = self.best
    return {"experiment": self.name, "method": self.method, "metric": self.metric, "mode": self.mode,
            "seed": self.seed, "space": {s.key: s.text for s in self.spaces}, "overrides": list(self.overrides),
            "selection": f"lowest {self.metric} on validation users (mean over eval.scenarios' selection sets and "
                         "over seeds); test metrics are reported only",
            "vectorize": self.vectorize, "best": best.name if best else None,
            "trials": [t.to_json() for t in self.trials]}

  def best_command(self, experiment: str = "EXPERIMENT") -> str:
    """The ``metarec run`` line that runs the whole experiment with the best trial's values."""
    best = self.best
    if best is None:
      return ""
    sets = list(self.overrides) + [f"{k}={override_text(v)}" for k, v in best.values.items()]
    return f"metarec run {experiment} " + " ".join(f"--set {_quote(s)}" for s in sets)

  def markdown(self) -> str:
    """``sweep.md``: a trials table (varied keys as columns, the validation score, test metrics per scenario)."""
    return sweep_markdown(self)


def _quote(text: str) -> str:
  import shlex
  return shlex.quote(text)


def _cell(value: float | None) -> str:
  return "" if value is None else f"{value:.4f}"


def sweep_markdown(sweep: SweepResult) -> str:
  """The sweep's report as markdown: one row per trial, the best marked (see `SweepResult`).

  The main table has the searched keys, the validation score and the first
  test metric per scenario; a table per scenario below holds every test
  metric. Test values are reported only: the choice reads the validation
  score alone.
  """
  best = sweep.best
  keys = [s.key for s in sweep.spaces]
  first = sweep.metrics[0] if sweep.metrics else ""
  lines = [f"# Sweep of {sweep.method} in {sweep.name}", "",
           f"{sweep.mode} search, {len(sweep.trials)} trials"
           + (" (--vectorize)" if sweep.vectorize else "")
           + f". Selection: the lowest **{sweep.metric}** on validation users (lower is better; mean over seeds). "
           "The test columns are reported for information and never used to choose.", ""]
  if sweep.overrides:
    lines += ["Every trial: " + ", ".join(f"`{o}`" for o in sweep.overrides), ""]
  head = ["", *keys, sweep.metric, *[f"test {s} {first}" for s in sweep.scenarios], "status"]
  lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for t in sweep.trials:
    chosen = best is not None and t.name == best.name
    score = _cell(t.score)
    cells = ["**best**" if chosen else "", *[format_value(t.values[k]) for k in keys],
             f"**{score}**" if chosen and score else score,
             *[_cell(t.test.get(s, {}).get(first)) for s in sweep.scenarios],
             t.status + (f": {t.error.splitlines()[0][:80]}" if t.error else "")]
    lines.append("| " + " | ".join(cells) + " |")
  if best is not None:
    lines += ["", f"Best: `{best.name}` ({sweep.metric} {best.score:.4f}), run folder `{best.name}/`."]
  else:
    lines += ["", "No trial has finished yet."]
  if len(sweep.metrics) > 1 and any(t.test for t in sweep.trials):
    for s in sweep.scenarios:
      lines += ["", f"### test: {s}", "", "| trial | " + " | ".join(sweep.metrics) + " |",
                "|---|" + "---|" * len(sweep.metrics)]
      for t in sweep.trials:
        if t.test.get(s):
          lines.append(f"| {t.name} | " + " | ".join(_cell(t.test[s].get(m)) for m in sweep.metrics) + " |")
  return "\n".join(lines) + "\n"


def write_report(sweep: SweepResult) -> tuple[pathlib.Path, pathlib.Path]:
  """Writes ``sweep.json`` and ``sweep.md`` into the sweep folder (atomically); returns their paths."""
  from metarec_jax.rundir import write_text
  js, md = sweep.path / SWEEP_JSON, sweep.path / SWEEP_MD
  write_text(js, json.dumps(sweep.to_json(), indent=1))
  write_text(md, sweep.markdown())
  return js, md


def _typed(value: Any) -> Any:
  """A value read back from sweep.json (JSON lists are the config's tuples)."""
  return tuple(value) if isinstance(value, list) else value


def read_sweep(path: str | pathlib.Path) -> dict[str, Any]:
  """A sweep folder's ``sweep.json``.

  Raises:
    FileNotFoundError: no sweep.json there.
  """
  f = pathlib.Path(path) / SWEEP_JSON
  if not f.is_file():
    raise FileNotFoundError(f"{f} does not exist: {path} is not a sweep folder")
  return json.loads(f.read_text())


def run_sweep(config: ml_collections.ConfigDict, grid: Sequence[str | Space], workdir: str | pathlib.Path, *,
              overrides: Sequence[str] = (), random: int = 0, tpe: int = 0, seed: int = 0,
              method: str | None = None, vectorize: bool = False, progress: bool = True, verbose: bool = True,
              on_step: Callable[[str, int, int], None] | None = None) -> SweepResult:
  """Runs (or resumes) a sweep of one method of an experiment; returns its trials and choice.

  Grid search without ``random`` or ``tpe``; ``random=N``: N distinct
  random trials (`random_trials`); ``tpe=N``: N trials proposed by optuna's
  TPE (`tpe_search`). Each trial is a run folder under ``workdir`` named by
  `trial_name`; ``sweep.json`` and ``sweep.md`` are rewritten after every
  trial, so a killed sweep shows what it had. Rerunning the same sweep skips
  finished trials and resumes a half-run one from its checkpoints.

  A trial whose training diverges (NaN) is recorded as failed and the sweep
  goes on.

  Args:
    config: the experiment's config (``load_experiment``).
    grid: ``KEY=SPEC`` strings (`parse_space`) or `Space` objects.
    workdir: the sweep folder.
    overrides: ``KEY=VALUE`` settings every trial shares (``--set``); a key
      the tuned method does not read is refused.
    random: the number of random trials (0: not random search).
    tpe: the number of TPE trials (0: not TPE; needs optuna).
    seed: the seed of the random draws and of the TPE sampler (not the
      training seed: that is the config's ``seed``).
    method: the method to tune (default: the experiment's last learned
      method).
    vectorize: train the trials as one population where every searched key
      is in `methods.learned.POPULATION_KEYS` (grid and random search).
    progress: show progress bars.
    verbose: print a line per trial.
    on_step: called after every training step with (owner, seed, step)
      (tests).

  Returns:
    The `SweepResult` (also in ``workdir/sweep.json``).

  Raises:
    ConfigError: a bad spec or key, a baseline, both ``random`` and ``tpe``,
      ``vectorize`` with keys outside the population keys or with TPE,
      optuna missing for TPE, or a trial folder that holds a run with
      another config.
  """
  from metarec_jax.methods import check_overrides_used
  from metarec_jax.methods.learned import POPULATION_KEYS
  say = print if verbose else (lambda *a, **k: None)
  if random and tpe:
    raise cfg_lib.ConfigError("choose one search: --random N or --tpe N (neither: grid search)")
  if random < 0 or tpe < 0:
    raise ValueError(f"--random / --tpe: the number of trials must be >= 1, got {random or tpe}")
  config = cfg_lib.apply_overrides(config, overrides)
  tuned = tuned_method(config, method)
  base = ml_collections.ConfigDict(config.to_dict())
  base.methods = (tuned.name,)  # a trial trains the tuned method alone
  cfg_lib.validate(base)
  check_overrides_used(base, [o.split("=", 1)[0].strip() for o in overrides])
  spaces = parse_spaces(grid, base)
  check_keys(tuned, spaces)
  mode = "tpe" if tpe else "random" if random else "grid"
  if vectorize:
    outside = [s.key for s in spaces if s.key not in POPULATION_KEYS]
    if outside:
      raise cfg_lib.ConfigError(f"--vectorize trains trials as one program when they differ only in "
                                f"{' / '.join(POPULATION_KEYS)}; {', '.join(outside)} changes the program: "
                                "leave out --vectorize")
    if mode == "tpe":
      raise cfg_lib.ConfigError("--vectorize needs the trials up front; TPE proposes each trial from the scores "
                                "so far: use grid search or --random N")
  if mode == "grid":
    planned = grid_trials(spaces)
  elif mode == "random":
    planned = random_trials(spaces, random, seed)
    if len(planned) < random:
      say(f"sweep: the searched values hold {len(planned)} distinct trials, fewer than --random {random}: "
          f"running all {len(planned)}")
  else:
    _optuna()  # fail now, before any training, when optuna is missing
    planned = []
  _validate_trials(base, spaces, planned)
  root = pathlib.Path(workdir)
  root.mkdir(parents=True, exist_ok=True)
  metric = "val_1-auc" if base.data.feedback == "implicit" else "val_mae"
  result = SweepResult(root, base.name, tuned.name, metric, mode, seed, list(spaces), list(overrides), [],
                       list(base.eval.scenarios), list(base.eval.metrics), vectorize)
  runner = _Runner(base, result, progress, on_step, say, total=tpe)
  say(f"sweep: {mode} search of {tuned.name} in {base.name} over {', '.join(s.key for s in spaces)}; "
      f"choosing on {metric} (validation users); trials in {root}/")
  if mode != "tpe":
    result.trials = _named([Trial("", v) for v in planned])
    for t in result.trials:
      runner.refresh(t)
    write_report(result)
    pending = [t for t in result.trials if t.status != DONE]
    if vectorize and len(pending) > 1:
      _train_population(base, tuned.name, pending, root, progress, on_step, say, runner)
    for t in result.trials:
      runner.run(t)
  else:
    result.trials = _tpe_previous(root, result)
    for t in result.trials:
      runner.refresh(t)
    for t in result.trials:  # a trial a killed sweep left half-run (or failed): finish it first
      if t.status != DONE:
        runner.run(t)
    history = [(t.values, t.score if t.status == DONE else None) for t in result.trials]

    def objective(values: dict[str, Any]) -> float | None:
      t = _named(result.trials + [Trial("", values)])[-1]
      result.trials.append(t)
      runner.refresh(t)
      runner.run(t)
      return t.score if t.status == DONE else None

    tpe_search(spaces, max(tpe - len(result.trials), 0), objective, seed=seed, history=history)
  write_report(result)
  best = result.best
  if best is not None:
    say(f"sweep: best {best.name} ({metric} {best.score:.4f}) of {len(result.trials)} trials")
  return result


def _validate_trials(base: ml_collections.ConfigDict, spaces: Sequence[Space], planned: list[dict[str, Any]]) -> None:
  """Validates every planned trial's config (and, for TPE, each range's ends) before anything trains."""
  checks = list(planned)
  if not checks:
    for s in spaces:
      checks += [{s.key: v} for v in (s.values if s.discrete else (s.low, s.high))]
  for values in checks:
    try:
      cfg_lib.validate(trial_config(base, values))
    except cfg_lib.ConfigError as e:
      raise cfg_lib.ConfigError(f"trial {trial_name(values)}: {e}") from None


def _named(trials: list[Trial]) -> list[Trial]:
  """Gives each trial its folder name (`trial_name`; a hash is added where two different settings share one)."""
  seen: dict[str, dict[str, Any]] = {}
  for t in trials:
    name = t.name or trial_name(t.values)
    if name in seen and seen[name] != t.values:
      name = f"{name}-{zlib.crc32(repr(sorted(t.values.items())).encode()) & 0xFFFFFFFF:08x}"
    t.name = name
    seen[name] = t.values
  return trials


def _tpe_previous(root: pathlib.Path, result: SweepResult) -> list[Trial]:
  """The trials of an earlier TPE sweep of the same method, space and overrides in ``root`` (else none)."""
  try:
    old = read_sweep(root)
  except FileNotFoundError:
    return []
  same = (old.get("mode") == "tpe" and old.get("method") == result.method
          and old.get("space") == {s.key: s.text for s in result.spaces}
          and old.get("overrides") == list(result.overrides))
  if not same:
    return []
  keys = [s.key for s in result.spaces]
  return [Trial(entry["name"], {k: _typed(entry["values"][k]) for k in keys}) for entry in old.get("trials", [])
          if set(entry.get("values", {})) == set(keys)]


class _Runner:
  """Runs and reads back the trials of one sweep, rewriting its report after each."""

  def __init__(self, base, result: SweepResult, progress: bool, on_step, say, total: int = 0):
    self.base, self.result, self.progress, self.on_step, self.say = base, result, progress, on_step, say
    self.total = total  # the number of trials the sweep will hold (TPE: --tpe N)

  def config(self, t: Trial) -> ml_collections.ConfigDict:
    return cfg_lib.canonical(trial_config(self.base, t.values))

  def refresh(self, t: Trial) -> None:
    """Marks ``t`` done when its folder holds a finished run of the same config.

    Raises:
      ConfigError: the folder holds a run with another config.
    """
    from metarec_jax.rundir import RESULTS, RunDir
    path = self.result.path / t.name
    if not (path / RESULTS).is_file():
      return
    config = self.config(t)
    try:
      RunDir.create(path, config)  # checks the saved config; writes nothing to an existing run
    except cfg_lib.ConfigError as e:
      raise cfg_lib.ConfigError(f"trial {t.name}: {e}") from None
    read_trial(path, config, self.result.method, t)

  def run(self, t: Trial) -> None:
    """Trains and evaluates ``t`` (resuming its folder) unless it is done; a NaN marks it failed."""
    from metarec_jax import experiment
    index = f"[{self.result.trials.index(t) + 1}/{max(self.total, len(self.result.trials))}]"
    metric = self.result.metric
    if t.status == DONE:
      self.say(f"{index} {t.name}: finished earlier, {metric} {t.score:.4f}")
      return
    t.status, t.error = RUNNING, ""
    write_report(self.result)
    self.say(f"{index} {t.name}: running ...")
    try:
      experiment.run(self.config(t), self.result.path / t.name, progress=self.progress, verbose=False,
                     on_step=self.on_step)
    except FloatingPointError as e:  # NonFiniteError: this setting diverges; the others may not
      t.status, t.error, t.score = FAILED, str(e), None
      self.say(f"{index} {t.name}: failed: {str(e).splitlines()[0]}")
    except cfg_lib.ConfigError as e:
      raise cfg_lib.ConfigError(f"trial {t.name}: {e}") from None
    else:
      read_trial(self.result.path / t.name, self.config(t), self.result.method, t)
      self.say(f"{index} {t.name}: {metric} {t.score:.4f}")
    write_report(self.result)


# --------------------------------------------------------------------------- population training


def _latest_step(folder: pathlib.Path) -> int | None:
  """The latest saved step of an orbax checkpoint folder (None: none)."""
  if not folder.is_dir():
    return None
  steps = [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
  return max(steps) if steps else None


class _MemberLogs:
  """A population's log routed to each member's own run folder (`runlog.RunLog` or anything with ``write``).

  `train.population.train_population` writes one record per member, in
  member order, for each logged or validated step, each with the member's
  ``method`` and ``seed``. Records are routed in that order, and checked
  against it: a record that does not match the member expected next (a
  change of the loop's logging) goes, with all after it, to the sweep
  folder's ``population.jsonl`` instead of a wrong trial's log. Other calls
  (``begin(method, seed, ...)``, ``end``, ``flush``, ...) go to the logs of
  every member with that method and seed, or to every log when they name
  none.
  """

  def __init__(self, members: list[tuple[str, int]], logs: list[Any], fallback: Any):
    self.members, self.logs, self.fallback = members, logs, fallback
    self.next, self.lost = 0, False

  def write(self, **record) -> None:
    i = self.next % len(self.members)
    if not self.lost and (record.get("method"), record.get("seed")) == self.members[i]:
      self.logs[i].write(**record)
      self.next += 1
      return
    self.lost = True
    self.fallback.write(**record)

  def __getattr__(self, name: str):
    if name.startswith("_") or not any(hasattr(log, name) for log in self.logs):
      raise AttributeError(name)

    def call(*args, **kwargs):
      key = tuple(args[:2])
      chosen = [log for m, log in zip(self.members, self.logs) if m == key] or self.logs
      for log in {id(log): log for log in chosen}.values():
        if hasattr(log, name):
          getattr(log, name)(*args, **kwargs)

    return call


def _routed_context():
  from metarec_jax.methods import FitContext

  @dataclasses.dataclass
  class RoutedContext(FitContext):
    """A `FitContext` whose log is a `_MemberLogs` (the population loop logs through its first member's context)."""

    routed_log: Any = None

    @property
    def log(self):
      return self.routed_log

  return RoutedContext


def _train_population(base: ml_collections.ConfigDict, method: str, trials: list[Trial], root: pathlib.Path,
                      progress: bool, on_step, say, runner: _Runner) -> bool:
  """Trains the unfinished (trial, seed) pairs of ``method`` as populations; returns whether any trained.

  Pairs are grouped by their latest checkpoint step (a killed population
  resumes together; a pair alone in its group is left to its trial's run).
  Each member writes its checkpoints into its trial's folder under the names
  the trial's own run reads, so `experiment.run` then restores the finished
  checkpoint and evaluates it. A method that cannot train as a population,
  members whose data cannot be stacked, or a member that diverges leave the
  trials to train one by one (from their last common checkpoint).
  """
  from metarec_jax.meta.population import PopulationMismatch
  from metarec_jax.methods import resolve
  from metarec_jax.methods.registry import origins
  from metarec_jax.prepared import load_dataset, prepare, with_model_inputs
  from metarec_jax.rundir import RunDir
  first = resolve(method, runner.config(trials[0]))
  why = first.population_blocker()
  if why:
    say(f"--vectorize: the trials train one by one: {why}")
    return False
  data = with_model_inputs(load_dataset(base.data), base)
  groups: dict[int | None, list[tuple]] = {}
  for seed in _seeds(base):
    prep = None
    for t in trials:
      config = runner.config(t)
      rd = RunDir.create(root / t.name, config, origins(config))
      m = resolve(method, config)
      if rd.read_part(m.name, seed) is not None:
        continue
      last = _latest_step(rd.checkpoint_dir(m.checkpoint, seed))
      if last is not None and last >= config.train.steps:
        continue
      prep = prep if prep is not None else prepare(base, seed, data)
      groups.setdefault(last, []).append((t, m, config, rd, prep, seed))
  trained = False
  for members in groups.values():
    if len(members) < 2:
      continue
    outcome = _train_members(method, members, root, progress, on_step, say, runner)
    seeds = sorted({seed for *_, seed in members})
    if isinstance(outcome, PopulationMismatch) and len(seeds) > 1:
      say(f"--vectorize: {outcome}; one population per seed instead (its trials share that seed's data)")
      for s in seeds:
        part = [member for member in members if member[-1] == s]
        if len(part) > 1:
          trained |= _train_members(method, part, root, progress, on_step, say, runner) is None
    elif isinstance(outcome, PopulationMismatch):
      say(f"--vectorize: the trials train one by one: {outcome}")
    trained |= outcome is None
  return trained


def _train_members(method: str, members: list[tuple], root: pathlib.Path, progress: bool, on_step, say,
                   runner: _Runner) -> Exception | None:
  """Trains one population of (trial, method, config, run folder, prep, seed) members.

  Returns:
    None when it trained; the `PopulationMismatch` when the members' data
    cannot be stacked (nothing was trained); the `NonFiniteError` when a
    member diverged (the last common checkpoints stay).
  """
  from metarec_jax.meta.population import PopulationMismatch
  from metarec_jax.methods import FitContext
  from metarec_jax.methods.learned import train_population_model
  from metarec_jax.rundir import JsonlLog
  routed = _MemberLogs([(m.checkpoint, seed) for _, m, _, _, _, seed in members],
                       [rd.log for _, _, _, rd, _, _ in members], JsonlLog(root / "population.jsonl"))
  routed_context = _routed_context()
  pairs = []
  for i, (t, m, config, rd, prep, seed) in enumerate(members):
    kind = routed_context if i == 0 else FitContext
    extra = {"routed_log": routed} if i == 0 else {}
    ctx = kind(config, prep, seed, run=rd, progress=progress, on_step=on_step, methods={m.name: m}, **extra)
    pairs.append((m.config, ctx, m.checkpoint))
    t.status = RUNNING
  write_report(runner.result)
  say(f"population: {method} x {len(members)} (trial, seed) pairs as one program: "
      + ", ".join(f"{t.name} seed {seed}" for t, *_, seed in members))
  start, tick = _now(), time.perf_counter()
  folders = {id(rd): rd for _, _, _, rd, _, _ in members}.values()
  try:
    train_population_model(pairs)
  except PopulationMismatch as e:
    return e
  except FloatingPointError as e:
    say(f"population stopped: {str(e).splitlines()[0]}; the trials go on one by one from their last checkpoints")
    return e
  finally:
    for rd in folders:
      close = getattr(rd.log, "close", None)
      if close is not None:
        close()
  names = [f"{t.name}/{m.checkpoint}__seed{seed}" for t, m, _, _, _, seed in members]
  for rd in folders:
    record = getattr(rd, "record_population", None)  # env.json: this trial trained in a population
    if record is not None:
      record(names, start, time.perf_counter() - tick)
  return None


def _now() -> str:
  try:
    from metarec_jax.runlog import now
  except ImportError:
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  return now()
