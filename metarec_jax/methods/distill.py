"""Distillation for serving: a small student extractor learns a large meta-learned teacher's features.

A method of base ``distill`` (``c.variants.student = {"base": "distill",
"distill": {"teacher": "melu1_ft", "student": ".../small.py"}}``) fits the
teacher (another method of the run), builds a student extractor from the
file ``distill.student`` (``get_config(teacher_config)`` returns the
student's config; only ``model`` matters, e.g. ``model.extractor=fields``),
and trains it on meta-training tasks to match

* the teacher's user and item feature vectors (through a linear adapter per
  entity kind, so widths may differ), and
* the teacher's adapted predictions on the query items of training tasks
  (the student keeps the teacher's head and adapts it the same way),

through the shared training loop: checkpoints, resume, the NaN stop, and the
student's params selected on each validation set. The distilled model is
``teacher head(adapter(student extractor(fields)))``; it adapts and predicts
as the teacher does, and gets a row in the results tables and a
`serving.Recommender` like every learned method.

``metarec distill WORKDIR --student small.py`` distils a finished run's
method and reports the feature error before and after, both methods' test
metrics and the latency of adapting and scoring a chunk of test tasks
(`distill_workdir`).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from metarec_jax import config as cfg_lib
from metarec_jax.data.interactions import FieldSpec
from metarec_jax.data.tasks import sample_batch
from metarec_jax.eval.evaluate import evaluate_scenarios, make_adapted_predictor
from metarec_jax.meta.step import MetaTrainState, global_norm, init_state
from metarec_jax.methods.base import FitContext, Fitted, Method
from metarec_jax.methods.learned import (Adaptation, FittedModel, LearnedMethod, build_model, method_key,
                                         selection_key, validator)
from metarec_jax.methods.registry import register_method
from metarec_jax.models.model import load_pretrained_encoders, make_predict
from metarec_jax.prepared import MAIN_VALID, Prepared
from metarec_jax.pyfile import PyFileError, load_file
from metarec_jax.train.loop import LoopSettings, train_loop


class DistilledModel(nn.Module):
  """``head(adapter(student(fields)))``; called like a `RecModel`, so `make_predict` and serving take it.

  Attributes:
    student: the student extractor (params under ``student``).
    head: the teacher's head (params under ``head``, so adapt filters still match).
    user_specs: fields the student reads for users.
    item_specs: fields the student reads for items.
    user_width: the teacher's user feature width.
    item_width: the teacher's item feature width.
    offset: the teacher's global bias (read by `make_predict`).
  """

  student: nn.Module
  head: nn.Module
  user_specs: Sequence[FieldSpec]
  item_specs: Sequence[FieldSpec]
  user_width: int
  item_width: int
  offset: float = 0.0
  support_vector: bool = False  # what `make_predict` reads: a student scores without the support set
  ridge_dim: int = 0

  def setup(self):
    self.adapt_user = nn.Dense(self.user_width)
    self.adapt_item = nn.Dense(self.item_width)

  def features(self, user_cols, item_cols) -> tuple[jax.Array, jax.Array]:
    """Student features mapped to the teacher's widths."""
    f_u = self.adapt_user(self.student.embed_user(user_cols).astype(jnp.float32))
    f_i = self.adapt_item(self.student.embed_items(item_cols).astype(jnp.float32))
    return f_u, f_i

  def __call__(self, user_cols, item_cols, support=None, loo: bool = False) -> jax.Array:
    f_u, f_i = self.features(user_cols, item_cols)
    return self.head(f_u, f_i)

  # What the engine and serving ask of a model (as `RecModel` answers them).

  @nn.nowrap
  def fast_layers(self) -> tuple[str, ...]:
    return ()

  @nn.nowrap
  def embed(self, params, user_cols, item_cols) -> tuple[jax.Array, jax.Array]:
    return self.apply({"params": params}, user_cols, item_cols, method="features")

  @nn.nowrap
  def score_features(self, params, f_u, f_i) -> jax.Array:
    return self.apply({"params": params}, f_u, f_i, method=lambda m, u, i: m.head(u, i))

  @nn.nowrap
  def item_side(self, path: str) -> bool:
    return path.startswith(("student/item", "adapt_item"))


def _cols(specs, table, ids):
  return {s.name: table[s.name][ids] for s in specs}


def feature_error(teacher_fn: Callable, student_fn: Callable, features, users, items) -> float:
  """Relative squared error of student features vs. teacher features (users and items pooled).

  ``sum ||s - t||^2 / sum ||t - mean t||^2``: 0 is a perfect match, 1 is as
  good as predicting the mean teacher vector.
  """
  t_u, t_i = teacher_fn(features, users, items)
  s_u, s_i = student_fn(features, users, items)
  num = jnp.sum((s_u - t_u) ** 2) + jnp.sum((s_i - t_i) ** 2)
  den = jnp.sum((t_u - t_u.mean(0)) ** 2) + jnp.sum((t_i - t_i.mean(0)) ** 2)
  return float(num / jnp.maximum(den, 1e-12))


def load_student_config(path: str | pathlib.Path, teacher_config: ml_collections.ConfigDict):
  """``get_config(teacher_config)`` of a student file.

  Raises:
    ConfigError: the file does not exist, fails to import or has no get_config.
  """
  try:
    module = load_file(path, "student file")
  except PyFileError as e:
    raise cfg_lib.ConfigError(str(e)) from e
  if not hasattr(module, "get_config"):
    raise cfg_lib.ConfigError(f"{path}: define get_config(teacher_config) returning the student's config")
  return module.get_config(ml_collections.ConfigDict(teacher_config.to_dict()))


@dataclasses.dataclass
class Student:
  """A student set up against a fitted teacher: model, initial params and both feature functions."""

  model: DistilledModel
  init: Any                  # the student's initial params
  extra: dict                # the teacher's meta params other than the model's (Meta-SGD rates)
  teacher_features: Callable  # (features, users, items) -> (f_u, f_i)
  student_features: Callable  # (params, features, users, items) -> (f_u, f_i)
  rng: jax.Array


def make_student(teacher: FittedModel, teacher_config, student_file: str, prep: Prepared, seed: int,
                 owner: str) -> Student:
  """Builds the student of ``teacher`` from ``student_file`` and initialises it (key from ``owner``).

  Raises:
    ConfigError: the teacher uses the support set (support vector, ridge user
      vector), which the student does not model yet.
  """
  t_model, t_params = teacher.model, teacher.params[MAIN_VALID]["model"]
  if getattr(t_model, "support_vector", False) or getattr(t_model, "ridge_dim", 0):
    raise cfg_lib.ConfigError("distill: teachers with model.support_vector or model.ridge_dim are not supported yet")
  scfg = load_student_config(student_file, teacher_config)
  student_model = build_model(scfg, prep.data, prep.stats.mean)
  feats = prep.features
  all_users = jnp.arange(next(iter(feats.user.values())).shape[0])
  all_items = jnp.arange(next(iter(feats.item.values())).shape[0])

  def teacher_features(features, users, items):
    f_u, f_i = t_model.embed(t_params, _cols(t_model.user_specs, features.user, users),
                             _cols(t_model.item_specs, features.item, items))
    return f_u.astype(jnp.float32), f_i.astype(jnp.float32)

  t_u, t_i = jax.jit(teacher_features)(feats, all_users[:2], all_items[:2])
  model = DistilledModel(student_model.make_extractor(parent=None), t_model.make_head(parent=None),
                         tuple(student_model.user_specs), tuple(student_model.item_specs), int(t_u.shape[-1]),
                         int(t_i.shape[-1]), offset=t_model.offset)
  k_init, rng = jax.random.split(method_key(seed, owner))
  params = jax.jit(model.init)(k_init, _cols(model.user_specs, feats.user, all_users[0]),
                               _cols(model.item_specs, feats.item, all_items[:2]))["params"]
  params = load_pretrained_encoders(model, {**params, "head": t_params["head"]})  # tokens fields: pretrained encoder
  extra = {k: v for k, v in teacher.params[MAIN_VALID].items() if k != "model"}

  def student_features(p, features, users, items):
    return model.apply({"params": p}, _cols(model.user_specs, features.user, users),
                       _cols(model.item_specs, features.item, items), method="features")

  return Student(model, params, extra, teacher_features, student_features, rng)


@register_method("distill")
class Distill(LearnedMethod):
  """A student extractor trained to match ``distill.teacher``'s features and adapted predictions."""

  reads: ClassVar[tuple[str, ...]] = ("distill.", "train.")

  ignored: ClassVar[tuple[str, ...]] = ()

  def not_read(self, key: str) -> str:
    return (f"{self.name} distils {self.config.distill.teacher or 'a teacher'}: it reads model, meta and "
            f"optimizer keys through the teacher and the student file, not {key}")

  def validate(self, problems: list[str]) -> None:
    Method.validate(self, problems)
    d = self.config.distill
    if not d.teacher:
      problems.append(f"method {self.name}: set distill.teacher to the method to distil")
    elif d.teacher == self.name:
      problems.append(f"method {self.name}: distill.teacher names the method itself")
    else:
      from metarec_jax.methods.registry import resolve
      try:
        teacher = resolve(d.teacher, self.config)
      except cfg_lib.ConfigError as err:
        problems.append(f"method {self.name}: distill.teacher: {err}")
      else:
        if not teacher.servable:
          problems.append(f"method {self.name}: distill.teacher={d.teacher} has no model to distil")
        elif isinstance(teacher, Distill):
          problems.append(f"method {self.name}: distill.teacher={d.teacher} is a student itself; distil its teacher")
    if not d.student or not pathlib.Path(d.student).is_file():
      problems.append(f"method {self.name}: distill.student={d.student!r} is no file; name a file whose "
                      "get_config(teacher_config) returns the student's config")
    if d.steps < 0 or d.lr <= 0:
      problems.append(f"method {self.name}: distill.steps must be >= 0 and distill.lr > 0")

  def fit(self, ctx: FitContext) -> Fitted:
    d, prep = self.config.distill, ctx.prep
    teacher = ctx.fit(d.teacher)
    if not isinstance(teacher, FittedModel):
      raise cfg_lib.ConfigError(f"{self.name}: distill.teacher={d.teacher} has no model to distil")
    t_config = ctx.method(d.teacher).config
    student = make_student(teacher, t_config, d.student, prep, ctx.seed, self.checkpoint)
    t_adapt = teacher.adaptation[MAIN_VALID]
    t_predictor = teacher.predictor(t_adapt.spec)
    t_meta = teacher.params[MAIN_VALID]
    predict = make_predict(student.model, residual=t_config.model.residual, bias_reg=t_config.model.bias_reg)
    predictors = {}
    for a in teacher.adaptation.values():
      if a.spec not in predictors:
        predictors[a.spec] = make_adapted_predictor(a.spec, predict)
    s_predictor = predictors[t_adapt.spec]
    feats, extra = prep.features, student.extra
    t_all = jax.jit(lambda f: student.teacher_features(f, jnp.arange(next(iter(f.user.values())).shape[0]),
                                                       jnp.arange(next(iter(f.item.values())).shape[0])))(feats)
    scale = 1.0 / (jnp.mean(jnp.var(t_all[0], 0)).clip(1e-6) + jnp.mean(jnp.var(t_all[1], 0)).clip(1e-6))
    optimizer = optax.adam(d.lr)
    t = self.config.train
    query_size, support_size, weight = self.config.data.query_size, prep.support_size, float(d.pred_weight)

    def loss_fn(p, batch, features):
      items = jnp.concatenate([batch.support_items, batch.query_items], axis=1)
      mask = jnp.concatenate([batch.support_mask, batch.query_mask], axis=1).astype(jnp.float32)
      t_u, t_i = student.teacher_features(features, batch.user, items)
      s_u, s_i = student.student_features(p, features, batch.user, items)
      feat = jnp.mean(jnp.sum((s_u - t_u) ** 2, -1)) + jnp.sum(mask * jnp.sum((s_i - t_i) ** 2, -1)) / mask.sum()
      t_pred = jax.lax.stop_gradient(t_predictor(t_meta, features, batch, t_adapt.inner_lr))
      s_pred = s_predictor({"model": p, **extra}, features, batch, t_adapt.inner_lr)
      q = batch.query_mask.astype(jnp.float32)
      pred = jnp.sum(q * (s_pred - t_pred) ** 2) / q.sum()
      return feat * scale + weight * pred, (feat * scale, pred)

    def step(state: MetaTrainState, tasks, features):
      batch = sample_batch(tasks, jax.random.fold_in(state.rng, state.step), t.tasks_per_batch, query_size,
                           support_size)
      (loss, (feat, pred)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, features)
      updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      metrics = {"loss": loss, "grad_norm": global_norm(grads), "feature_loss": feat, "prediction_loss": pred}
      return MetaTrainState(state.step + 1, params, opt_state, state.rng), metrics

    state = init_state(student.init, optimizer, student.rng)  # copies: the step donates its state
    chunk = self.config.eval.tasks_per_chunk

    def validate(p):
      out = {}
      for k in prep.valid_batches:
        a = teacher.adaptation[k]
        out[k] = validator(predictors[a.spec], prep, feats, a.inner_lr, chunk)({"model": p, **extra})[k]
      return out

    sel = train_loop(self.checkpoint, ctx.seed, state, jax.jit(step, donate_argnums=(0,)), prep.train, feats,
                     sets=list(prep.valid_batches), validate=validate,
                     settings=LoopSettings.from_config(t, steps=d.steps), ckpt_dir=ctx.checkpoint_dir(self.checkpoint),
                     log=ctx.log, progress=ctx.progress, on_step=ctx.on_step, restore_only=ctx.restore_only,
                     selection_key=selection_key(prep), hint="Lower distill.lr.")
    selection = {k: {"best_step": sel.best_step[k], "val_mae": sel.best_val[k]} for k in sel.best}
    return FittedModel(self.name, selection, student.model, predict,
                       {k: {"model": v, **extra} for k, v in sel.best.items()}, dict(teacher.adaptation), feats,
                       chunk, predictors=predictors)


# --------------------------------------------------------------------------- `metarec distill WORKDIR`


def latency(predictor: Callable, params, features, batch, inner_lr, repeats: int = 5) -> float:
  """Median seconds to adapt on and score one batch of tasks (after one warm-up call)."""
  jax.block_until_ready(predictor(params, features, batch, inner_lr))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(predictor(params, features, batch, inner_lr))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def _count(tree) -> int:
  return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))


def distill_workdir(workdir: str | pathlib.Path, student: str | pathlib.Path, *, teacher: str = "",
                    seed: int | None = None, steps: int = 500, lr: float = 3e-3, pred_weight: float = 1.0,
                    progress: bool = False, verbose: bool = True) -> dict:
  """Distils a finished run's teacher method into the student of ``student``.

  The teacher is restored from its checkpoint (never trained here); the
  student trains as method ``distill_<teacher>`` with its checkpoint in the
  run folder, so a killed distillation resumes. Writes
  ``WORKDIR/distill/<teacher>__seed<seed>.json`` and returns it: per
  scenario the teacher's and the student's metrics (each selected on the
  scenario's validation set), the feature error before and after, extractor
  sizes, and the latency of adapting and scoring one chunk of test tasks.

  Raises:
    FileNotFoundError: not a run folder, or no finished checkpoint of the teacher.
    ConfigError: the teacher is a baseline, or the student file is unusable.
  """
  from metarec_jax.methods.registry import resolve_all
  from metarec_jax.prepared import prepare
  from metarec_jax.rundir import RunDir

  run = RunDir.open(workdir)
  config = run.config
  seed = config.seed if seed is None else seed
  methods = {m.name: m for m in resolve_all(config)}
  done = [m.name for m in methods.values()
          if m.servable and not isinstance(m, Distill) and run.has_checkpoint(m.checkpoint, seed)]
  if not teacher:
    if not done:
      raise FileNotFoundError(f"{run.path}: no learned method has a checkpoint for seed {seed}")
    teacher = done[-1]
  elif teacher not in done:
    raise FileNotFoundError(f"{run.path}: no checkpoint of {teacher!r} for seed {seed}; found {done}")
  name = f"distill_{teacher}"
  dconfig = cfg_lib.set_values(config, {"distill.teacher": teacher, "distill.student": str(student),
                                        "distill.steps": steps, "distill.lr": lr, "distill.pred_weight": pred_weight})
  method = Distill(name, dconfig)
  problems: list[str] = []
  method.validate(problems)
  if problems:
    raise cfg_lib.ConfigError("\n  ".join(problems))
  prep = prepare(config, seed)
  restoring = FitContext(config, prep, seed, run=run, progress=False, restore_only=True, methods=methods)
  t_fitted = restoring.fit(teacher)
  ctx = FitContext(dconfig, prep, seed, run=run, progress=progress, methods={**methods, name: method},
                   _fitted={teacher: t_fitted})
  start = time.perf_counter()
  s_fitted = ctx.fit(method)
  seconds = time.perf_counter() - start
  s = make_student(t_fitted, methods[teacher].config, str(student), prep, seed, method.checkpoint)
  all_users = jnp.arange(next(iter(prep.features.user.values())).shape[0])
  all_items = jnp.arange(next(iter(prep.features.item.values())).shape[0])
  t_fn = jax.jit(s.teacher_features)
  before = feature_error(t_fn, jax.jit(lambda f, u, i: s.student_features(s.init, f, u, i)), prep.features,
                         all_users, all_items)
  best = s_fitted.params[MAIN_VALID]["model"]
  after = feature_error(t_fn, jax.jit(lambda f, u, i: s.student_features(best, f, u, i)), prep.features,
                        all_users, all_items)
  metrics = config.eval.metrics
  t_metrics = evaluate_scenarios(t_fitted, prep, metrics)
  s_metrics = evaluate_scenarios(s_fitted, prep, metrics)
  scenario, batch = next(iter(prep.test_batches.items()))
  chunk = min(config.eval.tasks_per_chunk, batch.num_tasks)
  part = jax.tree_util.tree_map(lambda x: x[:chunk], batch)
  a: Adaptation = t_fitted.adaptation[MAIN_VALID]
  result = {
      "teacher": teacher, "student": str(student), "seed": seed, "steps": steps, "seconds": seconds,
      "feature_error_before": before, "feature_error_after": after,
      "teacher_extractor_params": _count(t_fitted.params[MAIN_VALID]["model"]["extractor"]),
      "student_extractor_params": _count(best["student"]) + _count(best["adapt_user"]) + _count(best["adapt_item"]),
      "latency_tasks": chunk, "latency_scenario": scenario,
      "teacher_latency_s": latency(t_fitted.predictor(a.spec), t_fitted.params[MAIN_VALID], prep.features, part,
                                   a.inner_lr),
      "student_latency_s": latency(s_fitted.predictor(a.spec), s_fitted.params[MAIN_VALID], prep.features, part,
                                   a.inner_lr),
      "selection": s_fitted.selection,
      "scenarios": {sc: {"teacher": t_metrics[sc], "student": s_metrics[sc]} for sc in t_metrics},
  }
  out = run.report_path("distill", f"{teacher}__seed{seed}.json")
  from metarec_jax.rundir import write_text
  write_text(out, json.dumps(result, indent=2))
  if verbose:
    print(f"distilled {teacher} (seed {seed}, {result['teacher_extractor_params']:,} extractor params) into "
          f"{student} ({result['student_extractor_params']:,}) in {seconds:.0f} s; feature error "
          f"{before:.3f} -> {after:.3f}")
    main = metrics[0]
    print(f"| scenario | teacher {main} | student {main} | difference |\n|---|---|---|---|")
    for sc, v in result["scenarios"].items():
      print(f"| {sc} | {v['teacher'][main]:.4f} | {v['student'][main]:.4f} | "
            f"{v['student'][main] - v['teacher'][main]:+.4f} |")
    print(f"adapt + score {chunk} {scenario} tasks: teacher {result['teacher_latency_s'] * 1e3:.1f} ms, "
          f"student {result['student_latency_s'] * 1e3:.1f} ms")
    print(f"results: {out}")
  return result
