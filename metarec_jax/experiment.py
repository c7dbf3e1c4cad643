"""Config -> data -> train loop -> checkpoints -> results.

`run` is the whole experiment: for each seed it splits the data into
scenarios, trains every learned method (meta-learners and the pooled model)
with model selection on validation tasks, evaluates every method on every
scenario, and writes ``results.json`` / ``results.md`` into the workdir. A run
killed at any point resumes from its checkpoints and finishes with the same
numbers as one that was not.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
import time
import zlib
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from metarec_jax import config as cfg_lib
from metarec_jax.data import registry
from metarec_jax.data.derived import derived_columns, hide_items
from metarec_jax.data.interactions import Dataset, Interactions
from metarec_jax.data.splits import ScenarioSplit, make_split
from metarec_jax.data.tasks import Features, TaskSet, build_taskset, features_from_tables, split_tasks
from metarec_jax.eval.baselines import RatingStats, predict_global_mean, predict_item_mean_user_bias
from metarec_jax.eval.evaluate import make_adapted_predictor, predict_in_chunks, score
from metarec_jax.eval.implicit import eval_chunk, implicit_inputs, popularity, predict_popularity, score_implicit
from metarec_jax.meta.inner import flatten, unflatten
from metarec_jax.meta.learners import LearnerSpec, init_meta_params, learner_spec
from metarec_jax.meta.step import (MetaTrainState, init_state, make_meta_train_step, make_optimizer, replicate,
                                   task_mesh)
from metarec_jax.models.model import RecModel, init_params, make_predict


MAIN_VALID = "valid"  # the validation set of held-out warm users
TRAIN_USERS = "warm:train_users"  # eval.train_users: the meta-training users, scored like a test set


class NonFiniteError(FloatingPointError):
  """A training metric became NaN or infinite."""


# --------------------------------------------------------------------------- data


def load_dataset(data_cfg: ml_collections.ConfigDict) -> Dataset:
  """Loads the data set named by ``data.name`` (see `data.registry`)."""
  try:
    return registry.load_dataset(data_cfg)
  except KeyError as e:
    raise cfg_lib.ConfigError(str(e.args[0])) from None


@dataclasses.dataclass
class Prepared:
  """One seed's data, split and on the device."""

  data: Dataset
  split: ScenarioSplit
  features: Features
  train: TaskSet
  valid_batches: dict[str, Any]   # validation set name -> TaskBatch ("valid": warm hold-out users)
  test_batches: dict[str, Any]    # scenario -> TaskBatch
  test_tasks: dict[str, TaskSet]  # scenario -> its tasks (for other support sizes)
  eval_key: jax.Array             # the key of every evaluation split
  selection: dict[str, str]       # scenario -> the validation set its model is selected on
  stats: RatingStats
  support_size: int
  layouts: dict[str, Any] = dataclasses.field(default_factory=dict)  # implicit: set name -> CandidateLayout

  @property
  def implicit(self) -> bool:
    return self.data.feedback == "implicit"

  @property
  def valid_batch(self) -> Any:
    """The main validation set (held-out warm users)."""
    return self.valid_batches[MAIN_VALID]


def support_size(data_cfg) -> int:
  return data_cfg.support_size if data_cfg.support_size > 0 else data_cfg.support_cap


def _tasks(ratings, role: str, data_cfg, pad_to: int) -> TaskSet:
  q = data_cfg.query_size
  need = q + (data_cfg.support_size if data_cfg.support_size > 0 else data_cfg.min_support)
  longest = int(np.bincount(ratings.user).max()) if len(ratings) else 0
  if longest < need:
    raise cfg_lib.ConfigError(
        f"{role}: tasks need at least data.query_size + support = {need} ratings, but the longest "
        f"{role} task has {longest}; lower data.query_size (now {q}) or data.min_support / "
        "data.support_size")
  max_len = data_cfg.max_ratings or None
  return jax.device_put(build_taskset(ratings, min_length=need, max_length=max_len, pad_to=pad_to))


def prepare(config: ml_collections.ConfigDict, seed: int, data: Dataset | None = None) -> Prepared:
  """Splits the data for one seed and puts the task sets on the device.

  The evaluation splits (support / query of every validation and test task)
  are drawn once per seed, so every method sees the same ones.
  """
  d = config.data
  data = data if data is not None else with_model_inputs(load_dataset(d), config)
  split = make_split(data, d.protocol, seed, valid_share=d.valid_share, warm_test_share=d.warm_test_share)
  u_cols, _, i_cols, _, _ = derived_columns(split.train, data.num_users, data.num_items, config.model.item_mean_reg)
  features = features_from_tables(data.users, data.items)
  features = features.replace(user={**features.user, **{k: jnp.asarray(v) for k, v in u_cols.items()}},
                              item={**features.item, **{k: jnp.asarray(v) for k, v in i_cols.items()}})
  # One padded length for every role: one compile of each jitted function.
  roles = [split.train, split.valid, *split.tests.values()]
  counts = np.concatenate([np.bincount(r.user) for r in roles if len(r)])
  if d.max_ratings:
    counts = counts[counts <= d.max_ratings]
  pad_to = int(counts.max()) if len(counts) else 1
  train = _tasks(split.train, "meta-training", d, pad_to)
  s = support_size(d)
  eval_key = jax.random.fold_in(jax.random.PRNGKey(seed), 7919)
  valid = {MAIN_VALID: split_tasks(_tasks(split.valid, "validation", d, pad_to), eval_key, d.query_size, s)}
  tests, test_tasks, selection = {}, {}, {}
  for scenario in config.eval.scenarios:
    if scenario not in split.tests:
      raise cfg_lib.ConfigError(f"eval.scenarios: protocol {d.protocol!r} has no scenario {scenario!r}")
    ratings = split.tests[scenario]
    selection[scenario] = MAIN_VALID
    if config.eval.selection == "per_scenario":
      # A seeded share of the scenario's users validates, and leaves its test set.
      users = np.unique(ratings.user)
      rng = np.random.default_rng([seed, zlib.crc32(scenario.encode())])
      held = rng.choice(users, size=max(1, int(round(config.eval.scenario_valid_share * len(users)))),
                        replace=False)
      is_held = np.isin(ratings.user, held)
      name = f"valid_{scenario}"
      valid[name] = split_tasks(_tasks(ratings.subset(is_held), name, d, pad_to), eval_key, d.query_size, s)
      selection[scenario] = name
      ratings = ratings.subset(~is_held)
    test_tasks[scenario] = _tasks(ratings, scenario, d, pad_to)
    tests[scenario] = split_tasks(test_tasks[scenario], eval_key, d.query_size, s)
  if config.eval.train_users:
    # The meta-training users themselves, scored like a test set: the warm number
    # of reproductions that test on their training users. Not held out: label only.
    tests[TRAIN_USERS] = split_tasks(train, eval_key, d.query_size, s)
    selection[TRAIN_USERS] = selection.get("warm", MAIN_VALID)
  stats = RatingStats.from_ratings(split.train, data.num_items)
  layouts = {}
  if data.feedback == "implicit":  # negatives: sampled in the step for training, fixed per seed for evaluation
    features, valid, tests, layouts = implicit_inputs(config, data, split, features, valid, tests, eval_key)
    selection.update({k: selection[k.split(":")[0]] for k in tests})  # "<scenario>:all" tables
  return Prepared(data, split, features, train, valid, tests, test_tasks, eval_key, selection, stats, s, layouts)


def build_model(config: ml_collections.ConfigDict, data: Dataset, offset: float) -> RecModel:
  """The recommender named by ``config.model`` over the data set's fields.

  ``model.item_id``, ``model.user_id`` and ``model.item_stats`` add the
  derived fields (see `data.derived`) to the chosen side-feature fields.
  """
  m = config.model
  users = data.users.select(m.user_fields) if m.user_fields else data.users
  items = data.items.select(m.item_fields) if m.item_fields else data.items
  _, u_specs, _, i_specs, _ = derived_columns(_EMPTY, 1, 1)
  user_specs = list(users.specs)
  item_specs = list(items.specs)
  by_name = {s.name: s for s in u_specs + i_specs}
  if m.user_id:
    user_specs.append(dataclasses.replace(by_name["user_id"], vocab_size=data.num_users + 1))
  if m.item_id:
    item_specs.append(dataclasses.replace(by_name["item_id"], vocab_size=data.num_items + 1))
  if m.item_stats:
    item_specs.append(by_name["item_stats"])
  return RecModel(user_specs=tuple(user_specs), item_specs=tuple(item_specs), embed_dim=m.embed_dim,
                  user_mlp=tuple(m.user_mlp), item_mlp=tuple(m.item_mlp), head=m.head,
                  head_hidden=tuple(m.head_hidden), offset=0.0 if m.residual else offset,
                  support_vector=m.support_vector, ridge_dim=m.ridge_dim, ridge_reg=m.bias_reg, dtype=None if m.dtype == "float32" else jnp.dtype(m.dtype),
                  extractor=m.extractor, transformer=_transformer_spec(m))


def _transformer_spec(m: ml_collections.ConfigDict):
  if m.extractor != "transformer":
    return None
  from metarec_jax.models.field_transformer import TransformerSpec
  spec = TransformerSpec.from_config(m.transformer)
  spec.check()
  return spec


def with_model_inputs(data: Dataset, config: ml_collections.ConfigDict) -> Dataset:
  """Adds the inputs the model config asks for that the data set lacks (text embeddings)."""
  if config.model.text_features:
    from metarec_jax.features.text import add_text_field
    data = add_text_field(data, config.model.text_features)
  return data


def freeze_labels(params: Any, pattern: str) -> Any:
  """``"freeze"`` for the model params whose path matches ``pattern``, else ``"train"``.

  Raises:
    ConfigError: the pattern matches nothing (the message lists the paths).
  """
  rx = re.compile(pattern)
  flat = flatten(params["model"])
  frozen = {k for k in flat if rx.search(k)}
  if not frozen:
    raise cfg_lib.ConfigError(f"model.freeze={pattern!r} matches no parameter; paths are: {sorted(flat)}")
  labels = {"model": unflatten({k: ("freeze" if k in frozen else "train") for k in flat})}
  for key in params:
    if key != "model":
      labels[key] = jax.tree_util.tree_map(lambda _: "train", params[key])
  return labels


_EMPTY = Interactions(np.zeros(1, np.int32), np.zeros(1, np.int32), np.ones(1, np.float32))


def spec_of(mc: ml_collections.ConfigDict) -> LearnerSpec:
  m = mc.meta
  return learner_spec(m.learner, inner_lr=m.inner_lr, inner_steps=m.inner_steps, adapt=m.adapt,
                      first_order=True if m.first_order else None, remat=m.remat,
                      local_tables=m.get("local_tables", True), factored=m.get("factored", "auto"),
                      **loss_options(mc))


def loss_options(mc: ml_collections.ConfigDict) -> dict:
  """``meta.loss`` and the negatives per positive its grouped layout has."""
  implicit = mc.data.get("feedback", "rating") == "implicit"
  return {"loss": mc.meta.get("loss", "mse"),
          "negatives_per_positive": int(mc.data.negatives_per_positive) if implicit else 0}


def method_key(seed: int, name: str) -> jax.Array:
  return jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


# --------------------------------------------------------------------------- training


@dataclasses.dataclass
class TrainOutcome:
  """A trained method: params selected on each validation set, and how to use them."""

  best: dict[str, Any]         # validation set name -> selected meta params
  best_val: dict[str, float]   # validation set name -> its best MAE
  best_step: dict[str, int]    # validation set name -> the step it was reached at
  spec: LearnerSpec
  model: RecModel
  predict: Callable    # predict(params, features, user, items, support=None, loo=False)
  predictor: Callable  # jitted (meta, features, batch, inner_lr) -> query predictions

  @property
  def params(self) -> Any:
    """The params selected on the main (warm) validation users."""
    return self.best[MAIN_VALID]


class JsonlLog:
  """Appends one JSON object per line."""

  def __init__(self, path: pathlib.Path | None):
    self.path = path

  def write(self, **record):
    if self.path is None:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")


def _mae_on(predictor, meta, prep: Prepared, batch, chunk: int, lr, layout=None) -> float:
  """The selection value on a validation set (lower is better): MAE, or 1 - AUC with a ``layout`` (implicit)."""
  if layout is not None:
    pred = predict_in_chunks(lambda b: predictor(meta, prep.features, b, lr), batch, eval_chunk(batch, chunk))
    return 1.0 - score_implicit(pred, batch, layout, ("auc",))["auc"]
  pred = predict_in_chunks(lambda b: predictor(meta, prep.features, b, lr), batch, chunk)
  return score(pred, batch, ("mae",), prep.data.rating_scale)["mae"]


def _score(prep: Prepared, pred, batch, name: str, metrics) -> dict[str, float]:
  if prep.implicit:
    return score_implicit(pred, batch, prep.layouts[name], metrics)
  return score(pred, batch, metrics, prep.data.rating_scale)


def train_method(config: ml_collections.ConfigDict, prep: Prepared, name: str, seed: int, *,
                 ckpt_dir: pathlib.Path | None = None, log: JsonlLog | None = None, progress: bool = True,
                 on_step: Callable[[str, int, int], None] | None = None,
                 restore_only: bool = False) -> TrainOutcome:
  """Meta-trains one learned method with validation-based model selection.

  Every ``train.eval_every`` steps the validation MAE is measured on each
  validation set of ``prep.valid_batches`` and each set keeps the params of
  its best step (early stopping without stopping).

  Args:
    config: the method's config (see `config.method_config`).
    prep: the seed's prepared data.
    name: method name (logs, checkpoint folder, PRNG stream).
    seed: the seed.
    ckpt_dir: orbax checkpoint folder; resumes from its latest step if any.
    log: metrics log.
    progress: show a progress bar.
    on_step: called after every step with (name, seed, step) (tests use it to
      interrupt a run).
    restore_only: do not train; fail unless a finished checkpoint exists.

  Returns:
    The validation-selected params and where they were found.

  Raises:
    NonFiniteError: the loss or gradient norm became NaN or infinite; the last
      good checkpoint stays on disk.
  """
  log = log or JsonlLog(None)
  t = config.train
  spec = spec_of(config)
  offset = 0.0 if prep.implicit else prep.stats.mean  # implicit scores are logits
  model = build_model(config, prep.data, offset)
  predict = make_predict(model, residual=config.model.residual, bias_reg=config.model.bias_reg)
  key = method_key(seed, name)
  k_init, k_run = jax.random.split(key)
  params = init_meta_params(spec, init_params(model, prep.features, k_init))
  optimizer = make_optimizer(config.optimizer.name, config.optimizer.lr, config.optimizer.clip_norm,
                             config.optimizer.weight_decay)
  if config.model.freeze:
    optimizer = optax.multi_transform({"train": optimizer, "freeze": optax.set_to_zero()},
                                      freeze_labels(params, config.model.freeze))
  state = init_state(params, optimizer, k_run)
  augment = None
  if t.item_cold_share > 0:
    share, mu = float(t.item_cold_share), float(prep.stats.mean)
    augment = lambda key, features: hide_items(features, key, share, mu)
  mesh = None
  if t.devices != 1 and jax.device_count() > 1:
    mesh = task_mesh(t.devices)
  step_fn = make_meta_train_step(spec, predict, optimizer, tasks_per_batch=t.tasks_per_batch,
                                 query_size=config.data.query_size, support_size=prep.support_size,
                                 tasks_per_chunk=config.meta.tasks_per_chunk, augment=augment, mesh=mesh,
                                 negatives_per_positive=loss_options(config)["negatives_per_positive"])
  predictor = make_adapted_predictor(spec, predict)
  chunk = config.eval.tasks_per_chunk
  copy = jax.jit(lambda tree: jax.tree_util.tree_map(jnp.copy, tree))
  names = list(prep.valid_batches)

  first = copy(state.params)
  best = {k: first for k in names}
  best_val = {k: float("inf") for k in names}
  best_step = {k: 0 for k in names}
  manager = None
  if ckpt_dir is not None:
    manager = ocp.CheckpointManager(ckpt_dir.absolute(), options=ocp.CheckpointManagerOptions(
        max_to_keep=1, create=True))
    latest = manager.latest_step()
    if latest is not None:
      template = {"state": state, "best": best, "best_val": {k: np.zeros((), np.float64) for k in names},
                  "best_step": {k: np.zeros((), np.int64) for k in names}}
      restored = manager.restore(latest, args=ocp.args.StandardRestore(template))
      state, best = restored["state"], restored["best"]
      best_val = {k: float(v) for k, v in restored["best_val"].items()}
      best_step = {k: int(v) for k, v in restored["best_step"].items()}
  if restore_only and int(state.step) != t.steps:
    raise FileNotFoundError(f"{name} seed {seed}: no finished checkpoint in {ckpt_dir} "
                            f"(found step {int(state.step)} of {t.steps}); run `metarec run` to finish it")

  def save(step):
    if manager is None:
      return
    manager.save(step, args=ocp.args.StandardSave({
        "state": state, "best": best, "best_val": {k: np.asarray(v, np.float64) for k, v in best_val.items()},
        "best_step": {k: np.asarray(v, np.int64) for k, v in best_step.items()}}), force=True)
    manager.wait_until_finished()

  def evaluate_now(step):
    vals = {}
    current = None
    for k in names:
      try:
        vals[k] = _mae_on(predictor, state.params, prep, prep.valid_batches[k], chunk, spec.inner_lr,
                          prep.layouts.get(k))
      except FloatingPointError:
        raise NonFiniteError(f"{name} seed {seed}: val_mae is nan at step {step}: the adapted model diverges. "
                             "Lower meta.inner_lr or optimizer.lr.") from None
      if vals[k] < best_val[k]:
        current = copy(state.params) if current is None else current
        best[k], best_val[k], best_step[k] = current, vals[k], step
    sel = "val_1-auc" if prep.implicit else "val_mae"  # the selection value: lower is better
    extra = {f"{sel}_{k}": v for k, v in vals.items() if k != MAIN_VALID}
    log.write(method=name, seed=seed, step=step, **{sel: vals[MAIN_VALID]}, **extra)
    return vals[MAIN_VALID]

  train_tasks, train_features = prep.train, prep.features
  if mesh is not None:
    state, train_tasks, train_features = (replicate(state, mesh), replicate(prep.train, mesh),
                                          replicate(prep.features, mesh))
  start = int(state.step)
  if start == 0 and t.steps > 0:
    evaluate_now(0)
  bar = tqdm(total=t.steps, initial=start, desc=f"{name} seed {seed}", disable=not progress,
             leave=False, dynamic_ncols=True)
  tick, tick_step = time.perf_counter(), start
  val = best_val[MAIN_VALID]
  for step in range(start + 1, t.steps + 1):
    state, metrics = step_fn(state, train_tasks, train_features)
    values = {k: float(v) for k, v in metrics.items()}
    bad = [k for k in ("loss", "grad_norm") if not np.isfinite(values[k])]
    if bad:
      saved = manager.latest_step() if manager is not None else None
      where = f"; the last good checkpoint (step {saved}) is in {ckpt_dir}" if saved is not None else ""
      raise NonFiniteError(f"{name} seed {seed}: {bad[0]} is {values[bad[0]]} at step {step}{where}. "
                           "Lower optimizer.lr or meta.inner_lr, or set optimizer.clip_norm.")
    if step % t.log_every == 0 or step == t.steps:
      now = time.perf_counter()
      rate = (step - tick_step) * t.tasks_per_batch / max(now - tick, 1e-9)
      tick, tick_step = now, step
      log.write(method=name, seed=seed, step=step, tasks_per_s=rate, **values)
    if step % t.eval_every == 0 or step == t.steps:
      val = evaluate_now(step)
    bar.update(1)
    bar.set_postfix(loss=f"{values['loss']:.3f}", val_mae=f"{val:.4f}", refresh=False)
    if step % t.checkpoint_every == 0 or step == t.steps:
      save(step)
    if on_step is not None:
      on_step(name, seed, step)
  bar.close()
  if manager is not None:
    manager.close()
  return TrainOutcome(best, best_val, best_step, spec, model, predict, predictor)


# --------------------------------------------------------------------------- evaluation

# A scenario's predictions: (validation set name) -> (test batch -> predictions [T, Q]).
Chooser = Callable[[str], Callable[[Any], Any]]


def _evaluate(choose: Chooser, prep: Prepared, config) -> dict[str, dict[str, float]]:
  """Scores every test scenario with the predictions selected on its validation set."""
  out = {}
  for scenario, batch in prep.test_batches.items():
    out[scenario] = _score(prep, choose(prep.selection[scenario])(batch), batch, scenario, config.eval.metrics)
  return out


def _support_curve(choose: Chooser, prep: Prepared, config, method: str, seed: int) -> list[dict]:
  """MAE and friends when each test user gives exactly K support ratings (same query sets)."""
  rows = []
  for k in config.eval.support_sizes:
    for scenario, tasks in prep.test_tasks.items():
      batch = split_tasks(tasks, prep.eval_key, config.data.query_size, int(k))
      vals = score(choose(prep.selection[scenario])(batch), batch, config.eval.metrics, prep.data.rating_scale)
      rows.append({"method": method, "scenario": scenario, "seed": seed, "support": int(k), **vals})
  return rows


def _learned_chooser(outcome: TrainOutcome, prep: Prepared, config, lrs: dict | None = None,
                     predictors: dict | None = None) -> Chooser:
  def choose(key):
    predictor = predictors[key] if predictors else outcome.predictor
    lr = lrs[key] if lrs else outcome.spec.inner_lr
    params = outcome.best[key]
    return lambda batch: predict_in_chunks(lambda b: predictor(params, prep.features, b, lr), batch,
                                           eval_chunk(batch, config.eval.tasks_per_chunk))
  return choose


def _tune_finetune(pooled: TrainOutcome, prep: Prepared, config) -> tuple[dict, dict, dict]:
  """Chooses the pooled model's fine-tuning steps and rate on each validation set.

  Returns:
    (predictor per set, rate per set, {set: {setting: validation MAE}}).
  """
  predictors, lrs, tried = {}, {}, {}
  candidates = []
  for steps in config.eval.finetune_steps:
    spec = learner_spec("maml", inner_lr=0.0, inner_steps=steps, adapt=config.meta.adapt or "all",
                        **loss_options(config))
    candidates.append((steps, make_adapted_predictor(spec, pooled.predict)))
  for key, batch in prep.valid_batches.items():
    best = (float("inf"), None, None)
    tried[key] = {}
    for steps, predictor in candidates:
      for lr in config.eval.finetune_lrs:
        try:
          val = _mae_on(predictor, pooled.best[key], prep, batch, config.eval.tasks_per_chunk, lr,
                        prep.layouts.get(key))
        except FloatingPointError:  # this rate diverges: not a candidate
          val = float("inf")
        tried[key][f"steps={steps},lr={lr}"] = val
        if val < best[0]:
          best = (val, predictor, float(lr))
    if best[1] is None:
      raise NonFiniteError(f"pooled_finetune: every fine-tuning setting diverged on validation set {key}: "
                           f"{tried[key]}")
    predictors[key], lrs[key] = best[1], best[2]
  return predictors, lrs, tried


def _tune_bias(prep: Prepared, config) -> dict[str, tuple[float, float, float]]:
  """(validation MAE, item_reg, user_reg) of the best shrinkage per validation set."""
  out = {}
  for key, batch in prep.valid_batches.items():
    best = (float("inf"), 0.0, 0.0)
    for ir in config.eval.bias_regs:
      for ur in config.eval.bias_regs:
        val = score(predict_item_mean_user_bias(prep.stats, batch, ir, ur), batch, ("mae",),
                    prep.data.rating_scale)["mae"]
        if val < best[0]:
          best = (val, ir, ur)
    out[key] = best
  return out


# --------------------------------------------------------------------------- the run


def _rows(method: str, seed: int, per_scenario: dict[str, dict[str, float]]) -> list[dict]:
  return [{"method": method, "scenario": s, "seed": seed, **vals} for s, vals in per_scenario.items()]


def _check_workdir(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  path = workdir / "config.json"
  if path.exists():
    old = cfg_lib.from_json(path.read_text())
    changes = cfg_lib.diff(old, config)
    if changes:
      finished = " (a finished run: its results are kept)" if (workdir / "results.json").exists() else ""
      raise cfg_lib.ConfigError(
          f"workdir {workdir} holds a run with a different config{finished}:\n  " + "\n  ".join(changes)
          + "\nUse another --workdir, or delete this one to start over.")
  else:
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg_lib.to_json(config))


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path | None = None, *,
        progress: bool = True, verbose: bool = True,
        on_step: Callable[[str, int, int], None] | None = None, reevaluate: bool = False) -> dict:
  """Runs an experiment end to end and returns ``{"rows": [...]}``.

  Args:
    config: the experiment config (validated here, before any compile).
    workdir: where config, logs, checkpoints and results go (``None``: nowhere,
      no resume).
    progress: show progress bars.
    verbose: print the settings and the results table.
    on_step: hook called after every training step (tests).
    reevaluate: evaluate again from the saved checkpoints, training nothing.
  """
  cfg_lib.validate(config)
  wd = pathlib.Path(workdir) if workdir is not None else None
  if reevaluate and wd is None:
    raise ValueError("reevaluate needs a workdir")
  if wd is not None:
    _check_workdir(wd, config)
  log = JsonlLog(wd / "metrics.jsonl" if wd is not None else None)
  say = print if verbose else (lambda *a, **k: None)
  seeds = [config.seed + i for i in range(config.num_seeds)]
  say(f"metarec: {config.name}: seeds {seeds}, methods {list(config.methods)}, data {config.data.name} "
      f"({config.data.protocol}), query {config.data.query_size}, support {support_size(config.data)}")
  data = with_model_inputs(load_dataset(config.data), config)
  rows, curves = [], []
  for seed in seeds:
    prep = prepare(config, seed, data)
    say(f"seed {seed}: {prep.train.num_tasks} meta-training tasks, {prep.valid_batch.num_tasks} validation; "
        + ", ".join(f"{s} {b.num_tasks}" for s, b in prep.test_batches.items()))
    pooled = None
    for method in config.methods:
      part = wd / "parts" / f"{method}__seed{seed}.json" if wd is not None else None
      if part is not None and part.exists() and not reevaluate:
        saved = json.loads(part.read_text())
        rows.extend(saved["rows"])
        curves.extend(saved.get("support_curve", []))
        continue
      info: dict[str, Any] = {}
      mc = config
      if method == "global_mean":
        choose = lambda key: lambda b: predict_global_mean(prep.stats, b)
      elif method == "popularity":
        pop = popularity(prep.split.train, prep.data.num_items)
        choose = lambda key, pop=pop: lambda b: predict_popularity(pop, b)
      elif method == "item_mean_user_bias":
        tuned = _tune_bias(prep, config)
        info = {k: {"item_reg": ir, "user_reg": ur, "val_mae": val} for k, (val, ir, ur) in tuned.items()}
        choose = lambda key, tuned=tuned: lambda b: predict_item_mean_user_bias(prep.stats, b, *tuned[key][1:])
      else:
        train_name = "pooled" if method in ("pooled", "pooled_finetune") else method
        mc = cfg_lib.method_config(config, method)
        if train_name == "pooled":
          if pooled is None:
            pooled = train_method(mc, prep, "pooled", seed, log=log, progress=progress, on_step=on_step,
                                  ckpt_dir=wd / "checkpoints" / f"pooled__seed{seed}" if wd else None,
                                  restore_only=reevaluate)
          outcome = pooled
        else:
          outcome = train_method(mc, prep, method, seed, log=log, progress=progress, on_step=on_step,
                                 ckpt_dir=wd / "checkpoints" / f"{method}__seed{seed}" if wd else None,
                                 restore_only=reevaluate)
        info = {k: {"best_step": outcome.best_step[k], "val_mae": outcome.best_val[k]} for k in outcome.best}
        if method == "pooled_finetune":
          predictors, lrs, tried = _tune_finetune(outcome, prep, mc)
          for k in info:
            info[k].update(finetune_lr=lrs[k], val_mae=min(tried[k].values()), tried=tried[k])
          choose = _learned_chooser(outcome, prep, mc, lrs, predictors)
        else:
          choose = _learned_chooser(outcome, prep, mc)
      new = _rows(method, seed, _evaluate(choose, prep, mc))
      curve = _support_curve(choose, prep, mc, method, seed)
      rows.extend(new)
      curves.extend(curve)
      if reevaluate:
        continue
      log.write(method=method, seed=seed, selection=info, selected_on=prep.selection)
      if part is not None:
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_text(json.dumps({"rows": new, "support_curve": curve, "selection": info,
                                    "selected_on": prep.selection}, indent=1))
  results = {"rows": rows}
  if curves:
    results["support_curve"] = curves
  if wd is not None:
    from metarec_jax.results import write_results
    write_results(wd, results, config)
  if verbose:
    from metarec_jax.results import markdown_table
    say(markdown_table(results, config.eval.metrics))
  return results


# Evaluation settings that change neither training nor model selection, so a
# finished run may be re-evaluated with them (`metarec eval WORKDIR --set ...`).
EVAL_ONLY_KEYS = cfg_lib.EVAL_ONLY_KEYS


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
  """
  wd = pathlib.Path(workdir)
  path = wd / "config.json"
  if not path.exists():
    raise FileNotFoundError(f"{path} does not exist: {wd} is not a metarec workdir")
  config = cfg_lib.from_json(path.read_text())
  if overrides:
    keys = [o.split("=", 1)[0].strip() for o in overrides]
    bad = [k for k in keys if k not in EVAL_ONLY_KEYS]
    if bad:
      raise cfg_lib.ConfigError(f"metarec eval may only change {', '.join(EVAL_ONLY_KEYS)} (they change neither "
                                f"training nor model selection); got {', '.join(bad)}. Start a new run instead.")
    config = cfg_lib.apply_overrides(config, overrides)
    cfg_lib.validate(config)
    path.write_text(cfg_lib.to_json(config))
  return run(config, wd, progress=progress, verbose=verbose, reevaluate=True)
