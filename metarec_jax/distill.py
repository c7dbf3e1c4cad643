"""Distillation for serving: a small extractor learns a large meta-learned extractor's features.

``metarec distill WORKDIR --student small.py`` restores a finished learned
method of a run (the teacher, e.g. the field transformer), builds a student
extractor from ``small.py`` (``get_config(teacher_config)`` returns the
student's config; only ``model`` matters, e.g. ``model.extractor=fields``),
and trains it on meta-training tasks to match

* the teacher's user and item feature vectors (through a linear adapter per
  entity kind, so widths may differ), and
* the teacher's adapted predictions on the query items of training tasks
  (the student keeps the teacher's head and adapts it the same way).

The distilled model is ``teacher head(adapter(student extractor(fields)))``;
it adapts and predicts exactly as the teacher does. The command reports the
MAE of teacher and student on every test scenario, the feature error before
and after, and the latency of adapting and scoring a chunk of test tasks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from metarec_jax.data.interactions import FieldSpec
from metarec_jax.data.tasks import sample_batch
from metarec_jax.models.extractor import Extractor
from metarec_jax.models.field_transformer import FieldTransformerExtractor, TransformerSpec
from metarec_jax.models.heads import DotHead, MLPHead, RelationHead


def extractor_of(model: Any) -> nn.Module:
  """The (unbound) extractor a `RecModel` builds, to apply on its own params."""
  kind = getattr(model, "extractor", "transformer" if getattr(model, "transformer", None) is not None else "fields")
  if kind == "transformer":
    return FieldTransformerExtractor(model.user_specs, model.item_specs, model.transformer or TransformerSpec(),
                                     dtype=model.dtype or jnp.float32)
  return Extractor(model.user_specs, model.item_specs, model.embed_dim, model.user_mlp, model.item_mlp,
                   dtype=model.dtype)


def head_of(model: Any) -> nn.Module:
  """The (unbound) head a `RecModel` builds."""
  if model.head == "mlp":
    return MLPHead(model.head_hidden, model.offset, dtype=model.dtype)
  if model.head == "relation":
    return RelationHead(model.offset)
  if model.head == "dot":
    return DotHead(model.offset)
  raise ValueError(f"unknown head {model.head!r}")


class DistilledModel(nn.Module):
  """``head(adapter(student(fields)))``; called like a `RecModel`, so `make_predict` serves it.

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


@dataclasses.dataclass
class Distilled:
  """A trained student: model, params, predict/predictor, and the errors seen."""

  model: DistilledModel
  params: Any
  predict: Callable
  predictor: Callable
  error_before: float
  error_after: float
  losses: list[float]


def distill(teacher, prep, student_model: Any, *, steps: int = 500, tasks_per_batch: int = 32, lr: float = 3e-3,
            pred_weight: float = 1.0, query_size: int = 10, seed: int = 0, residual: bool = False,
            bias_reg: float = 5.0) -> Distilled:
  """Trains a student extractor to match ``teacher`` (an `experiment.TrainOutcome`).

  Args:
    teacher: the restored teacher (model, params, spec, predictor).
    prep: the seed's `experiment.Prepared` data.
    student_model: a `RecModel` whose extractor (and fields) the student takes.
    steps: optimiser steps.
    tasks_per_batch: training tasks per step.
    lr: Adam rate.
    pred_weight: weight of the adapted-prediction loss beside the feature loss.
    query_size: query items per training task.
    seed: PRNG seed.
    residual: the teacher predicts residuals (``model.residual``).
    bias_reg: the teacher's ``model.bias_reg``.
  """
  from metarec_jax.eval.evaluate import make_adapted_predictor
  from metarec_jax.models.model import make_predict

  if teacher.model.support_vector or teacher.model.ridge_dim:
    raise ValueError("distill: teachers with model.support_vector or model.ridge_dim are not supported yet")
  t_model, t_params = teacher.model, teacher.params["model"]
  t_ext = extractor_of(t_model)
  s_ext = extractor_of(student_model)
  feats = prep.features
  all_users = jnp.arange(next(iter(feats.user.values())).shape[0])
  all_items = jnp.arange(next(iter(feats.item.values())).shape[0])

  def teacher_features(features, users, items):
    ext = {"params": t_params["extractor"]}
    f_u = t_ext.apply(ext, _cols(t_model.user_specs, features.user, users), method="embed_user")
    f_i = t_ext.apply(ext, _cols(t_model.item_specs, features.item, items), method="embed_items")
    return f_u.astype(jnp.float32), f_i.astype(jnp.float32)

  t_u, t_i = jax.jit(teacher_features)(feats, all_users[:2], all_items[:2])
  model = DistilledModel(s_ext, head_of(t_model), tuple(student_model.user_specs), tuple(student_model.item_specs),
                         int(t_u.shape[-1]), int(t_i.shape[-1]), offset=t_model.offset)
  key = jax.random.PRNGKey(seed)
  k_init, key = jax.random.split(key)
  params = jax.jit(model.init)(k_init, _cols(model.user_specs, feats.user, all_users[0]),
                               _cols(model.item_specs, feats.item, all_items[:2]))["params"]
  params = {**params, "head": t_params["head"]}
  extra = {k: v for k, v in teacher.params.items() if k != "model"}  # Meta-SGD's rates for head/... paths

  def student_features(p, features, users, items):
    return model.apply({"params": p}, _cols(model.user_specs, features.user, users),
                       _cols(model.item_specs, features.item, items), method="features")

  predict = make_predict(model, residual=residual, bias_reg=bias_reg)
  predictor = make_adapted_predictor(teacher.spec, predict)
  t_predictor = teacher.predictor
  t_scale = jax.jit(lambda f: teacher_features(f, all_users, all_items))(feats)
  scale = 1.0 / (jnp.mean(jnp.var(t_scale[0], 0)).clip(1e-6) + jnp.mean(jnp.var(t_scale[1], 0)).clip(1e-6))
  optimizer = optax.adam(lr)
  opt_state = optimizer.init(params)
  support_size = prep.support_size
  inner_lr = teacher.spec.inner_lr

  def loss_fn(p, batch):
    items = jnp.concatenate([batch.support_items, batch.query_items], axis=1)
    mask = jnp.concatenate([batch.support_mask, batch.query_mask], axis=1).astype(jnp.float32)
    t_u, t_i = teacher_features(feats, batch.user, items)
    s_u, s_i = student_features(p, feats, batch.user, items)
    feat = jnp.mean(jnp.sum((s_u - t_u) ** 2, -1)) + jnp.sum(mask * jnp.sum((s_i - t_i) ** 2, -1)) / mask.sum()
    t_pred = jax.lax.stop_gradient(t_predictor(teacher.params, feats, batch, inner_lr))
    s_pred = predictor({"model": p, **extra}, feats, batch, inner_lr)
    q = batch.query_mask.astype(jnp.float32)
    pred = jnp.sum(q * (s_pred - t_pred) ** 2) / q.sum()
    return feat * scale + pred_weight * pred, (feat * scale, pred)

  @jax.jit
  def step(p, opt_state, key):
    batch = sample_batch(prep.train, key, tasks_per_batch, query_size, support_size)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, batch)
    updates, opt_state = optimizer.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  s_fn = jax.jit(lambda f, u, i: student_features(params, f, u, i))
  t_fn = jax.jit(teacher_features)
  before = feature_error(t_fn, s_fn, feats, all_users, all_items)
  losses = []
  for i in range(steps):
    params, opt_state, loss = step(params, opt_state, jax.random.fold_in(key, i))
    losses.append(float(loss))
  s_fn = jax.jit(lambda f, u, i: student_features(params, f, u, i))
  after = feature_error(t_fn, s_fn, feats, all_users, all_items)
  return Distilled(model, {"model": params, **extra}, predict, predictor, before, after, losses)


def latency(predictor: Callable, params, features, batch, inner_lr, repeats: int = 5) -> float:
  """Median seconds to adapt on and score one batch of tasks (after one warm-up call)."""
  jax.block_until_ready(predictor(params, features, batch, inner_lr))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(predictor(params, features, batch, inner_lr))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def load_student_config(path: str | pathlib.Path, teacher_config: ml_collections.ConfigDict):
  """``get_config(teacher_config)`` of a student file."""
  import importlib.util
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"student file {path} does not exist")
  spec = importlib.util.spec_from_file_location(f"metarec_student_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"{path}: define get_config(teacher_config) returning the student's config")
  return module.get_config(ml_collections.ConfigDict(teacher_config.to_dict()))


def evaluate(predictor: Callable, params, prep, config, inner_lr) -> dict[str, dict[str, float]]:
  """Metrics on every test scenario (adapt on support, score the query)."""
  from metarec_jax.eval.evaluate import predict_in_chunks, score
  out = {}
  for scenario, batch in prep.test_batches.items():
    pred = predict_in_chunks(lambda b: predictor(params, prep.features, b, inner_lr), batch,
                             config.eval.tasks_per_chunk)
    out[scenario] = score(pred, batch, config.eval.metrics, prep.data.rating_scale)
  return out


def _count(tree) -> int:
  return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))


def distill_workdir(workdir: str | pathlib.Path, student: str | pathlib.Path, *, teacher: str = "",
                    seed: int | None = None, steps: int = 500, lr: float = 3e-3, pred_weight: float = 1.0,
                    verbose: bool = True) -> dict:
  """Distils a finished run's teacher method into the student of ``student``.

  Teacher and student both use the teacher's params selected on the warm
  validation users. Writes ``WORKDIR/distill/<teacher>__seed<seed>.json`` and returns it: per
  scenario the teacher's and the student's metrics, the feature error before
  and after, extractor sizes and the latency of adapting and scoring one
  chunk of test tasks.
  """
  from metarec_jax import config as cfg_lib
  from metarec_jax import experiment

  wd = pathlib.Path(workdir)
  if not (wd / "config.json").is_file():
    raise FileNotFoundError(f"{wd}/config.json does not exist: {wd} is not a metarec workdir")
  config = cfg_lib.from_json((wd / "config.json").read_text())
  seed = config.seed if seed is None else seed
  done = [m for m in config.methods if (wd / "checkpoints" / f"{m}__seed{seed}").is_dir()]
  if not teacher:
    if not done:
      raise FileNotFoundError(f"{wd}: no learned method has a checkpoint for seed {seed}")
    teacher = done[-1]
  elif teacher not in done:
    raise FileNotFoundError(f"{wd}: no checkpoint of {teacher!r} for seed {seed}; found {done}")
  mc = cfg_lib.method_config(config, teacher)
  prep = experiment.prepare(config, seed)
  outcome = experiment.train_method(mc, prep, teacher, seed, ckpt_dir=wd / "checkpoints" / f"{teacher}__seed{seed}",
                                    progress=False, restore_only=True)
  scfg = load_student_config(student, mc)
  student_model = experiment.build_model(scfg, prep.data, prep.stats.mean)
  start = time.perf_counter()
  d = distill(outcome, prep, student_model, steps=steps, tasks_per_batch=mc.train.tasks_per_batch, lr=lr,
              pred_weight=pred_weight, query_size=mc.data.query_size, seed=seed, residual=mc.model.residual,
              bias_reg=mc.model.bias_reg)
  seconds = time.perf_counter() - start
  t_metrics = evaluate(outcome.predictor, outcome.params, prep, mc, outcome.spec.inner_lr)
  s_metrics = evaluate(d.predictor, d.params, prep, mc, outcome.spec.inner_lr)
  scenario, batch = next(iter(prep.test_batches.items()))
  chunk = min(mc.eval.tasks_per_chunk, batch.num_tasks)
  part = jax.tree_util.tree_map(lambda x: x[:chunk], batch)
  lr_inner = outcome.spec.inner_lr
  result = {
      "teacher": teacher, "student": str(student), "seed": seed, "steps": steps, "seconds": seconds,
      "feature_error_before": d.error_before, "feature_error_after": d.error_after,
      "teacher_extractor_params": _count(outcome.params["model"]["extractor"]),
      "student_extractor_params": _count(d.params["model"]["student"]) + _count(d.params["model"]["adapt_user"])
      + _count(d.params["model"]["adapt_item"]),
      "latency_tasks": chunk, "latency_scenario": scenario,
      "teacher_latency_s": latency(outcome.predictor, outcome.params, prep.features, part, lr_inner),
      "student_latency_s": latency(d.predictor, d.params, prep.features, part, lr_inner),
      "scenarios": {s: {"teacher": t_metrics[s], "student": s_metrics[s]} for s in t_metrics},
  }
  out = wd / "distill" / f"{teacher}__seed{seed}.json"
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2))
  if verbose:
    print(f"distilled {teacher} (seed {seed}, {result['teacher_extractor_params']:,} extractor params) into "
          f"{student} ({result['student_extractor_params']:,}) in {seconds:.0f} s; feature error "
          f"{d.error_before:.3f} -> {d.error_after:.3f}")
    print("| scenario | teacher MAE | student MAE | MAE lost |\n|---|---|---|---|")
    for s, v in result["scenarios"].items():
      print(f"| {s} | {v['teacher']['mae']:.4f} | {v['student']['mae']:.4f} | "
            f"{v['student']['mae'] - v['teacher']['mae']:+.4f} |")
    print(f"adapt + score {chunk} {scenario} tasks: teacher {result['teacher_latency_s'] * 1e3:.1f} ms, "
          f"student {result['student_latency_s'] * 1e3:.1f} ms")
    print(f"results: {out}")
  return result


def _distill(args) -> int:
  distill_workdir(args.workdir, args.student, teacher=args.teacher, seed=args.seed, steps=args.steps, lr=args.lr,
                  pred_weight=args.pred_weight)
  return 0


def add_distill_command(subparsers: argparse._SubParsersAction) -> None:
  """Adds ``metarec distill WORKDIR --student small.py``."""
  p = subparsers.add_parser("distill", help="train a small extractor to match a run's meta-learned extractor")
  p.add_argument("workdir", help="a finished run (metarec run ... --workdir)")
  p.add_argument("--student", required=True, help="file with get_config(teacher_config) -> the student's config")
  p.add_argument("--teacher", default="", help="learned method to distil (default: the last one with a checkpoint)")
  p.add_argument("--seed", type=int, help="which seed's checkpoint (default: the run's first seed)")
  p.add_argument("--steps", type=int, default=500)
  p.add_argument("--lr", type=float, default=3e-3)
  p.add_argument("--pred-weight", type=float, default=1.0, help="weight of the adapted-prediction loss")
  p.set_defaults(func=_distill)
