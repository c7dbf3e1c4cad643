"""Experiment configuration: defaults, ``--set`` overrides, validation.

An experiment file's ``get_config()`` starts from `default_config()` and
changes what it needs. Every key exists in the defaults, so ``--set`` can
reject unknown keys and parse each value by the type of its default.
"""

from __future__ import annotations

import json
import math
import pathlib
import re
from typing import Any, Callable, Iterable

import ml_collections

from metarec_jax.data.implicit import FEEDBACKS
from metarec_jax.data.negatives import CANDIDATES, SAMPLERS, SAMPLINGS, candidate_modes
from metarec_jax.data.splits import SCENARIOS
from metarec_jax.eval.evidence import EVIDENCE_LOSSES, SUPPORT_CHOICES
from metarec_jax.eval.metrics import METRICS, NDCG_FAMILIES, check_metric_names
from metarec_jax.eval.ranking import RANKING_METRICS, check_ranking_metric_names
from metarec_jax.pyfile import PyFileError, load_file
from metarec_jax.suggest import did_you_mean


# Keys `metarec eval WORKDIR --set` may change: they alter what is scored, not what was trained.
EVAL_ONLY_KEYS = ("eval.support_sizes", "eval.metrics", "eval.tasks_per_chunk", "eval.train_users",
                  "eval.support_choice", "eval.evidence_loss")


class ConfigError(ValueError):
  """A configuration problem, said in words a user can act on."""


def default_config() -> ml_collections.ConfigDict:
  """Every configurable key with its default."""
  c = ml_collections.ConfigDict()
  c.name = "experiment"
  c.seed = 0
  c.num_seeds = 1
  # What to run: registered methods (`metarec_jax.methods`), learner names, or names defined in `variants`.
  c.methods = ("global_mean", "item_mean_user_bias", "pooled", "pooled_finetune", "maml")
  # name -> a variant of a method: "key=value" overrides of this config, e.g.
  #   c.variants.maml_relation = ("meta.learner=maml", "model.head=relation"),
  # or the same as Python: a nested dict {"meta": {"learner": "maml"}, "model": {"head": "relation"}}
  # or a function config -> config. "base=NAME" (dict: "base": NAME) names the method it varies;
  # without it, the learner the variant's meta.learner names.
  c.variants = ml_collections.ConfigDict()

  c.data = ml_collections.ConfigDict()
  c.data.name = "synthetic"          # synthetic (embedded)
  c.data.path = ""                   # data directory for real data sets
  c.data.protocol = "cold_flags"     # how users/items become scenarios
  c.data.query_size = 10             # query ratings per task
  c.data.support_cap = 20            # most support ratings per task
  c.data.support_size = 0            # > 0: exactly K support ratings (few-shot)
  c.data.min_support = 3             # tasks need query_size + min_support ratings
  c.data.max_ratings = 0             # > 0: drop users with more ratings
  c.data.valid_share = 0.1           # share of warm users held out for validation
  c.data.warm_test_share = 0.1       # share of warm users held out as the warm test
  # Real data (data.name = melu | movielens | recbole, data.path = the directory):
  c.data.min_ratings = 13            # protocols melu_states/temporal/random_users: fewest ratings per
                                     # user and scenario (most: max_ratings; there 0 means 100)
  c.data.new_item_year = 0           # temporal: items released in or after it are new (0: 1998 ML-1M, 1997 ML-100K)
  c.data.new_user_quantile = 0.8     # temporal: users whose first rating is after this quantile are new
  c.data.bad_rows = "error"          # out-of-scale ratings, unknown ids: error | drop (always reported)
  c.data.duplicates = "last"         # repeated (user, item) pairs: last | first | mean | error (reported)
  c.data.rating_scale = ()           # recbole: (min, max) of valid ratings; empty: the observed range
  # Implicit feedback (data.feedback = implicit): positives only, negatives sampled inside the step.
  c.data.feedback = "rating"         # rating (regression on ratings) | implicit (binary: value >= threshold)
  c.data.positive_threshold = 4.0    # implicit: a rating / play count >= this is a positive
  c.data.negatives_per_positive = 4  # implicit: sampled negatives joined to every support / query positive
  c.data.negative_sampling = "uniform"  # implicit: uniform | popularity (weight = training positives + 1)
  c.data.negative_sampler = "matrix"  # implicit: matrix (dense seen matrix, Gumbel top-k, without replacement)
                                     # | sorted (per-user sorted lists, no [users, items] array, with
                                     # replacement; see data.negatives)
  c.data.history_cap = 0             # > 0: a user with more ratings keeps a seeded random subset of this many
                                     # (fixed per seed and user), so tasks are padded to at most this length
  c.data.cold_item_share = 0.2       # protocol cold_items_ranking: share of interacted items held out as cold
                                     # (half cold validation, half cold test, by items)
  c.data.content_prior = ()          # item fields (e.g. text_emb) whose ridge fit on training items' means gives
                                     # every item's prior mean: unseen / hidden items' baseline (data.content_prior)
  # data.name = scaled: MovieLens-25M- or Amazon-shaped synthetic data, a share of their size (benchmarks).
  c.data.scaled = ml_collections.ConfigDict(dict(kind="ml-25m", scale=1.0, seed=0))
  c.data.synthetic = ml_collections.ConfigDict(dict(
      num_users=1200, num_items=400, latent_dim=6, feature_share=0.35, cold_user_share=0.25,
      cold_item_share=0.25, min_ratings=16, max_ratings=40, noise=0.3, seed=0))

  c.model = ml_collections.ConfigDict()
  c.model.user_fields = ()           # empty: all user fields
  c.model.item_fields = ()           # empty: all item fields
  c.model.embed_dim = 16
  c.model.user_mlp = ()
  c.model.item_mlp = ()
  c.model.head = "mlp"               # mlp | relation | dot
  c.model.head_hidden = (64, 64)
  c.model.item_id = False            # item-id embedding (training items only; others share id 0)
  c.model.user_id = False            # user-id embedding (training users only)
  c.model.item_stats = False         # dense item input: shrunk training mean and log count
  c.model.support_vector = False     # FISM-like user vector from the support set (leave-one-out)
  c.model.ridge_dim = 0              # > 0: closed-form ridge user vector over this many learned item factors
  c.model.ridge_fields = ()          # dense item fields (text embeddings) that enter only the ridge item factors,
                                     # as ridge_content_dim more factors with prior 0 (solved per user)
  c.model.ridge_content_dim = 16
  c.model.ridge_content_reg = 100.0  # initial ridge penalty of those factors (learned; large = starts nearly off)
  c.model.residual = False           # predict the residual over item mean + support user bias
  c.model.bias_reg = 5.0             # shrinkage of the support user bias (residual models)
  c.model.item_mean_reg = 5.0        # shrinkage of item means toward the global mean
  c.model.dtype = "float32"          # compute dtype; bfloat16 = mixed precision (params stay float32)
  c.model.extractor = "fields"       # fields (embeddings + MLP towers) | transformer (FT-Transformer over fields)
  c.model.transformer = ml_collections.ConfigDict(dict(   # used when model.extractor = transformer
      size="small", dim=32, depth=2, heads=4, mlp_ratio=2, out_dim=0, pool="cls", remat=False))
  c.model.text_features = ""         # .npy from `metarec features text`: adds the dense item field text_emb;
                                     # several: "NAME=FILE.npy,NAME2=FILE2.npy" (one dense field each)
  c.model.freeze = ""                # regex over param paths that the outer loop does not train
  c.model.text_encoder = ml_collections.ConfigDict(dict(  # a text encoder the outer loop can fine-tune
      tokens="",                     # .npz from `metarec features tokens`: adds the tokens item field text_tokens
      model="all-MiniLM-L6-v2",      # the encoder: a known name or a folder (config.json, model.safetensors,
                                     # tokenizer.json); the cache must come from its tokenizer
      finetune="frozen",             # frozen | all (every encoder weight) | lora (low-rank adapters only)
      lora_rank=8, lora_alpha=16.0,  # adapters on attention q/k/v/output and feed-forward layers (finetune=lora)
      remat=False,                   # recompute each encoder layer in the backward pass (less memory)
      dtype="",                      # encoder compute dtype; empty: model.dtype (bfloat16 on accelerators)
      max_tokens=32))                # ids per item (<= the cache's; 0: the cache's)

  c.meta = ml_collections.ConfigDict()
  c.meta.learner = "maml"            # learner used by a method named after no learner
  c.meta.inner_lr = 0.1
  c.meta.inner_steps = 1
  c.meta.adapt = ""                  # empty: the learner's default (head for anil/melu, else all)
  c.meta.first_order = False         # True forces first-order gradients
  c.meta.remat = False
  c.meta.local_tables = True         # adapt embedding tables on each task's own rows (same numbers, faster)
  c.meta.factored = "auto"           # dense-layer inner updates kept factored where cheaper: auto | on | off
  c.meta.tasks_per_chunk = 0         # > 0: accumulate gradients over chunks of this many tasks (CPU: 128 above 128)
  c.meta.loss = "mse"                # inner and outer loss: mse (ratings) | bce | bpr (implicit)

  c.optimizer = ml_collections.ConfigDict(dict(name="adam", lr=1e-3, clip_norm=0.0, weight_decay=0.0))

  c.train = ml_collections.ConfigDict()
  c.train.steps = 1000
  c.train.tasks_per_batch = 32
  c.train.log_every = 50             # training log period: metrics.jsonl, TensorBoard, W&B, console (--no-progress)
  c.train.tensorboard = True         # TensorBoard event files under <workdir>/tensorboard/
  c.train.wandb_project = ""         # non-empty: also log to this Weights & Biases project (pip install metarec-jax[wandb])
  c.train.eval_every = 100           # validation MAE; the best step's params are kept
  c.train.checkpoint_every = 250
  c.train.devices = 1                # devices the task batch is sharded over (0: all local devices)
  c.train.item_cold_share = 0.0      # per batch, hide ids/stats of this share of items (item-cold simulation)
  c.train.vectorize = False          # train each method's seeds as one vmapped program (`meta.population`)

  c.eval = ml_collections.ConfigDict()
  c.eval.metrics = METRICS
  c.eval.scenarios = ("warm", "user_cold", "item_cold", "user_item_cold")
  c.eval.tasks_per_chunk = 256
  # Model selection: "warm" selects every scenario's model on the held-out warm
  # users; "per_scenario" holds out a seeded share of each scenario's users
  # (removed from its test set) and selects that scenario's model on them.
  c.eval.support_sizes = ()          # e.g. (1, 3, 5, 10, 20): also score with exactly K support ratings
  # Which K of a test user's non-query ratings the support-size curve adapts on (`eval.evidence`):
  # random (as before) | popularity (most-rated in training) | evidence (MeLU §3.3: gradient norm x popularity);
  # one curve per choice, e.g. ("random", "popularity", "evidence"). Baselines without a model get no evidence rows.
  c.eval.support_choice = ("random",)
  c.eval.evidence_loss = "unit"      # evidence's per-rating loss: unit (MeLU's code: loss / its value) | plain
  c.eval.selection = "warm"
  c.eval.train_users = False         # also score the meta-training users (table "warm:train_users"): the warm
                                     # measurement of reproductions that test on training users; not held out
  c.eval.scenario_valid_share = 0.1
  c.eval.finetune_lrs = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)   # pooled_finetune grid, chosen on validation
  c.eval.finetune_steps = (1, 5, 20)
  c.eval.bias_regs = (0.0, 2.0, 5.0, 10.0, 25.0)  # item_mean_user_bias shrinkage grid
  # Implicit feedback: each query positive is ranked against eval.num_negatives sampled
  # negatives (sampled) or against every unseen item of the scenario (all).
  c.eval.candidates = "sampled"      # sampled | all | sampled,all (both: the second as scenario "<name>:all")
  c.eval.num_negatives = 99          # sampled candidates per query positive (same for every method)

  # Distillation (methods of base "distill"): a small student extractor learns a run's teacher method.
  c.distill = ml_collections.ConfigDict()
  c.distill.teacher = ""             # the teacher method (another method of the run)
  c.distill.student = ""             # a file whose get_config(teacher_config) returns the student's config
  c.distill.steps = 500              # optimiser steps of the student
  c.distill.lr = 3e-3                # Adam rate of the student
  c.distill.pred_weight = 1.0        # weight of the adapted-prediction loss beside the feature loss

  # Each registered method's own block (`Method.config_blocks`), e.g. c.tanp for TaNP: its defaults
  # live beside the method, and only the methods that declare a block read its keys.
  from metarec_jax.methods.registry import config_blocks
  for block, values in config_blocks().items():
    if block in c:
      raise ConfigError(f"a method's config block {block!r} clashes with a built-in key; rename the block")
    c[block] = ml_collections.ConfigDict(values)
  return c


def load_experiment(path: str | pathlib.Path) -> ml_collections.ConfigDict:
  """Imports an experiment file (`pyfile.load_file`) and returns its ``get_config()``."""
  path = pathlib.Path(path)
  try:
    module = load_file(path, "experiment file")
  except PyFileError as e:
    raise ConfigError(str(e)) from e
  if not hasattr(module, "get_config"):
    raise ConfigError(f"experiment file {path} has no get_config() function; define "
                      "get_config() returning metarec_jax.default_config() with your changes")
  try:
    config = module.get_config()
  except Exception as e:  # the user's code: one line naming the file and the error
    raise ConfigError(f"{path}: get_config() raised {type(e).__name__}: {e}") from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"{path}: get_config() must return an ml_collections.ConfigDict, "
                      f"got {type(config).__name__}")
  return config


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  """Dotted key -> value for every leaf (variants count as leaves)."""
  out = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict) and key != "variants":
      out.update(flat_keys(value, name + "."))
    else:
      out[name] = value
  return out


def _guess(raw: str) -> Any:
  """Parses an element of a tuple whose default is empty: int, float or str."""
  for kind in (int, float):
    try:
      return kind(raw)
    except ValueError:
      pass
  return raw


def _parse(key: str, raw: str, current: Any) -> Any:
  def fail(kind):
    raise ConfigError(f"--set {key}={raw}: expected {kind} (the default is {current!r})")

  if isinstance(current, bool):
    low = raw.strip().lower()
    if low in ("true", "1", "yes"):
      return True
    if low in ("false", "0", "no"):
      return False
    fail("true or false")
  if isinstance(current, int):
    try:
      return int(raw)
    except ValueError:
      fail("an integer")
  if isinstance(current, float):
    try:
      return float(raw)
    except ValueError:
      fail("a number")
  if isinstance(current, str):
    return raw
  if isinstance(current, tuple):
    if raw.strip() == "":
      return ()
    parts = [p.strip() for p in raw.split(",")]
    if current:
      return tuple(_parse(key, p, current[0]) for p in parts)
    return tuple(_guess(p) for p in parts)
  raise ConfigError(f"--set {key}: values of type {type(current).__name__} cannot be set "
                    "from the command line")


def unknown_key(key: str, keys: Iterable[str]) -> str:
  """The message for an unknown config key: the closest keys, else the keys of its block.

  Args:
    key: the dotted key that was given.
    keys: every valid dotted key.
  """
  keys = [k for k in keys if k != "variants"]
  hint = did_you_mean(key, keys)
  if hint:
    return f"unknown key {key!r}{hint}"
  block = key.rsplit(".", 1)[0] + "." if "." in key else None
  siblings = sorted(k for k in keys if block and k.startswith(block))
  if siblings:
    return f"unknown key {key!r}; the keys under {block[:-1]} are: {', '.join(siblings)}"
  return f"unknown key {key!r} (`metarec config EXPERIMENT` prints every key with its value)"


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> ml_collections.ConfigDict:
  """Returns a copy of ``config`` with ``KEY=VALUE`` overrides applied.

  Raises:
    ConfigError: malformed override, unknown key (the valid keys are listed),
      or a value that does not parse as the key's type.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  keys = flat_keys(config)
  for item in overrides:
    if "=" not in item:
      raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
    key, raw = item.split("=", 1)
    key = key.strip()
    if key not in keys or key == "variants":
      raise ConfigError(f"--set: {unknown_key(key, keys)}")
    value = _parse(key, raw, keys[key])
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
    keys[key] = value
  return config


def _coerce(key: str, value: Any, current: Any, where: str) -> Any:
  """A Python value for ``key``, checked against the type of its default."""
  def fail(kind):
    raise ConfigError(f"{where}: {key}={value!r}: expected {kind} (the default is {current!r})")

  if isinstance(current, bool):
    if not isinstance(value, bool):
      fail("true or false")
    return value
  if isinstance(current, int):
    if isinstance(value, bool) or not isinstance(value, int):
      fail("an integer")
    return value
  if isinstance(current, float):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      fail("a number")
    return float(value)
  if isinstance(current, str):
    if not isinstance(value, str):
      fail("a string")
    return value
  if isinstance(current, tuple):
    if isinstance(value, str):
      return _parse(key, value, current)
    if not isinstance(value, (tuple, list)):
      fail("a tuple")
    return tuple(value)
  return value


def set_values(config: ml_collections.ConfigDict, values: dict[str, Any], where: str = "config"
               ) -> ml_collections.ConfigDict:
  """Returns a copy of ``config`` with dotted ``key -> Python value`` changes, typed like the defaults.

  Raises:
    ConfigError: an unknown key, or a value of the wrong type (``where`` names the source).
  """
  config = ml_collections.ConfigDict(config.to_dict())
  keys = flat_keys(config)
  for key, value in values.items():
    if key not in keys or key == "variants":
      raise ConfigError(f"{where}: {unknown_key(key, keys)}")
    node = config
    *parents, leaf = key.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = _coerce(key, value, keys[key], where)
  return config


# --------------------------------------------------------------------------- variants

BASE = "base"  # the entry of a variant that names the method it varies


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      out.update(_flatten(dict(value.items()), f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def _nest(flat: dict[str, Any]) -> dict:
  out: dict = {}
  for key, value in flat.items():
    node = out
    *parents, leaf = key.split(".")
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return out


def _function_changes(config: ml_collections.ConfigDict, name: str, fn: Callable) -> dict[str, Any]:
  """The dotted keys a function variant changes, with their new values."""
  before = flat_keys(config)
  after = fn(ml_collections.ConfigDict(config.to_dict()))
  if not isinstance(after, ml_collections.ConfigDict):
    raise ConfigError(f"variants.{name}: the function must return the changed ConfigDict, "
                      f"got {type(after).__name__}")
  after = flat_keys(after)
  changed = {k: v for k, v in after.items() if k not in before or before[k] != v}
  bad = sorted(k for k in changed if k in ("methods", "variants") or k not in before)
  if bad:
    raise ConfigError(f"variants.{name}: a variant may change existing keys other than methods and "
                      f"variants; it changed {bad}")
  return changed


def variant_entries(config: ml_collections.ConfigDict, name: str) -> tuple[str | None, dict[str, Any]]:
  """``(base method or None, {dotted key: value})`` of variant ``name`` (values may be raw strings)."""
  entry = config.variants[name]
  if callable(entry):
    values = _function_changes(config, name, entry)
  elif isinstance(entry, (dict, ml_collections.ConfigDict)):
    values = _flatten(dict(entry.items()))
  elif isinstance(entry, (tuple, list)):
    values = {}
    for item in entry:
      if isinstance(item, (tuple, list)) and len(item) == 2:
        values[str(item[0])] = item[1]
        continue
      if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"variants.{name}: expected KEY=VALUE strings, got {item!r}")
      key, raw = item.split("=", 1)
      values[key.strip()] = _Raw(raw)
  else:
    raise ConfigError(f"variants.{name}: expected a tuple of KEY=VALUE strings, a nested dict or a function "
                      f"config -> config; got {type(entry).__name__}")
  base = values.pop(BASE, None)
  return (str(base) if base is not None else None), values


class _Raw(str):
  """A variant value written as text (parsed by the type of the key's default)."""


def apply_variant(config: ml_collections.ConfigDict, name: str
                  ) -> tuple[str | None, ml_collections.ConfigDict, frozenset[str]]:
  """Applies variant ``name``: ``(base method or None, the variant's config, the keys it sets)``.

  Raises:
    ConfigError: a malformed variant, an unknown key or a value of the wrong type.
  """
  base, values = variant_entries(config, name)
  raw = [f"{k}={v}" for k, v in values.items() if isinstance(v, _Raw)]
  typed = {k: v for k, v in values.items() if not isinstance(v, _Raw)}
  try:
    out = apply_overrides(config, raw)
  except ConfigError as e:
    raise ConfigError(f"variants.{name}: {e}") from None
  return base, set_values(out, typed, f"variants.{name}"), frozenset(values)


def canonical(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` with every function variant written out as the nested dict of what it changes.

  The named presets the run's methods use (`methods.presets`) are written
  in as variants, so config.json records what they were. config.json then
  holds data only, and a resumed run compares equal.
  """
  from metarec_jax.methods.presets import with_presets
  config = with_presets(config)
  if not any(callable(v) for v in config.variants.values()):
    return config
  out = ml_collections.ConfigDict(config.to_dict())
  out.variants = ml_collections.ConfigDict({
      name: _nest(_function_changes(config, name, entry)) if callable(entry) else entry
      for name, entry in config.variants.items()})
  return out


def _check_feedback(config: ml_collections.ConfigDict, problems: list[str]) -> None:
  """The implicit-feedback keys, and the rating-only parts they rule out."""
  d, e = config.data, config.eval
  if d.feedback not in FEEDBACKS:
    problems.append(f"data.feedback must be one of {FEEDBACKS}, got {d.feedback!r}")
    return
  implicit = d.feedback == "implicit"
  if d.name == "lastfm" and not implicit:
    problems.append("data.name=lastfm holds play counts, not ratings: set data.feedback=implicit "
                    "(and data.positive_threshold, the fewest plays that count as a positive)")
  if d.negative_sampling not in SAMPLINGS:
    problems.append(f"data.negative_sampling must be one of {SAMPLINGS}, got {d.negative_sampling!r}")
  if d.negative_sampler not in SAMPLERS:
    problems.append(f"data.negative_sampler must be one of {SAMPLERS}, got {d.negative_sampler!r}")
  modes = candidate_modes(e.candidates)
  if not modes or any(m not in CANDIDATES for m in modes) or len(set(modes)) != len(modes):
    problems.append(f"eval.candidates must be one of {CANDIDATES} or both, comma-separated; got {e.candidates!r}")
  if not implicit:
    return
  if d.negatives_per_positive < 1:
    problems.append(f"data.negatives_per_positive must be >= 1 with implicit feedback, got "
                    f"{d.negatives_per_positive}")
  if e.num_negatives < 1:
    problems.append(f"eval.num_negatives must be >= 1, got {e.num_negatives}")
  rating_only = [m for m in e.metrics if m in ("mae", "rmse") or m.split("@")[0] in NDCG_FAMILIES[1:]]
  if rating_only:  # ndcg@K is a ranking metric too; the published rating-nDCG variants are not
    problems.append(f"eval.metrics: {tuple(rating_only)} are rating metrics; with data.feedback=implicit "
                    f"use e.g. --set eval.metrics={','.join(RANKING_METRICS)}")
  else:
    try:
      check_ranking_metric_names(e.metrics, e.num_negatives + 1 if "sampled" in modes else 0)
    except ValueError as err:
      problems.append(f"eval.metrics: {err}")
  if e.support_sizes:
    problems.append("eval.support_sizes: support-size curves are for rating feedback; leave it empty "
                    "with data.feedback=implicit")
  if d.negative_sampler == "sorted":
    from metarec_jax.methods.id_warmup import IdWarmup  # methods build on this module
    from metarec_jax.methods.registry import resolve
    for name in config.methods:
      try:
        method = resolve(name, config)
      except ConfigError:
        continue  # reported by check_methods
      if isinstance(method, IdWarmup):
        problems.append(f"methods: {name} draws negative users from the seen matrix's item columns, which "
                        "data.negative_sampler=sorted does not build; use data.negative_sampler=matrix")


def _check_history_cap(d: ml_collections.ConfigDict, problems: list[str]) -> None:
  """``data.history_cap``: 0 (off) or long enough for a query set and the least support."""
  need = d.query_size + (d.support_size if d.support_size > 0 else d.min_support)
  if d.history_cap < 0:
    problems.append(f"data.history_cap must be >= 0 (0: no cap), got {d.history_cap}")
  elif 0 < d.history_cap < need:
    problems.append(f"data.history_cap={d.history_cap} is below data.query_size + support = {need}, the "
                    "fewest ratings a task needs: raise it or lower data.query_size / data.min_support")


def _one_of(key: str, value: Any, known: Iterable[str]) -> str | None:
  """The problem of a value outside ``known`` (with the closest names), or None."""
  known = list(known)
  if value in known:
    return None
  return f"{key}: unknown value {value!r} (known: {', '.join(known)}){did_you_mean(str(value), known)}"


def _check_ranges(config: ml_collections.ConfigDict, problems: list[str]) -> None:
  """Types are checked when values are set; here the ranges and the named choices."""
  from metarec_jax.data.checks import BAD_ROW_POLICIES, DUPLICATE_RULES
  from metarec_jax.data.registry import DATASETS
  from metarec_jax.data.splits import PROTOCOLS
  d, o, m = config.data, config.optimizer, config.model
  if m.embed_dim < 1:
    problems.append(f"model.embed_dim must be >= 1, got {m.embed_dim}")
  for key in ("head_hidden", "user_mlp", "item_mlp"):
    sizes = tuple(m[key])
    if any(int(s) < 1 for s in sizes):
      problems.append(f"model.{key}: every layer size must be >= 1, got {sizes}")
  for key in ("valid_share", "warm_test_share"):
    if not 0 <= d[key] < 1:
      problems.append(f"data.{key} must lie in [0, 1), got {d[key]}")
  if d.valid_share + d.warm_test_share >= 1:
    problems.append(f"data.valid_share + data.warm_test_share must be below 1, got "
                    f"{d.valid_share} + {d.warm_test_share}")
  for key in ("cold_item_share", "new_user_quantile"):
    if not 0 < d[key] < 1:
      problems.append(f"data.{key} must lie in (0, 1), got {d[key]}")
  if not 0 <= config.train.item_cold_share < 1:
    problems.append(f"train.item_cold_share must lie in [0, 1), got {config.train.item_cold_share}")
  for key, value, known in (("optimizer.name", o.name, ("adam", "adamw", "sgd")),
                            ("data.protocol", d.protocol, sorted(PROTOCOLS)),
                            ("data.name", d.name, sorted(DATASETS)),
                            ("data.bad_rows", d.bad_rows, BAD_ROW_POLICIES),
                            ("data.duplicates", d.duplicates, DUPLICATE_RULES)):
    problem = _one_of(key, value, known)
    if problem:
      problems.append(problem)
  for key, value in (("optimizer.clip_norm", o.clip_norm), ("optimizer.weight_decay", o.weight_decay),
                     ("meta.tasks_per_chunk", config.meta.tasks_per_chunk), ("data.min_ratings", d.min_ratings),
                     ("data.max_ratings", d.max_ratings)):
    if value < 0:
      problems.append(f"{key} must be >= 0, got {value}")
  if m.freeze:
    try:
      re.compile(m.freeze)
    except re.error as e:
      problems.append(f"model.freeze={m.freeze!r} is not a regular expression: {e}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks everything that can be checked before data is loaded or code compiled.

  The run-wide keys are checked here; each method checks its own slice of
  the config (`methods.Method.validate`).

  Raises:
    ConfigError: every problem found, one per line.
  """
  d, o, t, e = config.data, config.optimizer, config.train, config.eval
  problems = []
  if config.num_seeds < 1:
    problems.append(f"num_seeds must be >= 1, got {config.num_seeds}")
  if not config.methods:
    problems.append("methods is empty: name at least one method")
  if d.query_size < 1:
    problems.append(f"data.query_size must be >= 1, got {d.query_size}")
  if d.support_cap < 1:
    problems.append(f"data.support_cap must be >= 1, got {d.support_cap}")
  if d.support_size < 0 or d.min_support < 1:
    problems.append("data.support_size must be >= 0 and data.min_support >= 1")
  if not (o.lr > 0 and math.isfinite(o.lr)):
    problems.append(f"optimizer.lr must be > 0 and finite, got {o.lr}")
  _check_ranges(config, problems)
  if t.steps < 0 or t.tasks_per_batch < 1 or t.eval_every < 1 or t.checkpoint_every < 1 or t.log_every < 1:
    problems.append("train.steps must be >= 0 and tasks_per_batch, eval_every, checkpoint_every, "
                    "log_every >= 1")
  if e.tasks_per_chunk < 1:
    problems.append(f"eval.tasks_per_chunk must be >= 1, got {e.tasks_per_chunk}")
  if not e.finetune_lrs or any(lr < 0 for lr in e.finetune_lrs) or not e.finetune_steps:
    problems.append("eval.finetune_lrs must be non-empty and >= 0; eval.finetune_steps non-empty")
  if any(k < 1 for k in e.support_sizes):
    problems.append(f"eval.support_sizes must be >= 1, got {e.support_sizes}")
  choices = (e.support_choice,) if isinstance(e.support_choice, str) else tuple(e.support_choice)
  if not choices or any(c not in SUPPORT_CHOICES for c in choices) or len(set(choices)) != len(choices):
    problems.append(f"eval.support_choice must be distinct values of {SUPPORT_CHOICES}, got {e.support_choice!r}")
  elif choices != ("random",) and not e.support_sizes:
    problems.append(f"eval.support_choice={','.join(choices)} chooses the support sets of the support-size "
                    "curve: set eval.support_sizes too (e.g. 1,3,5,10)")
  if e.evidence_loss not in EVIDENCE_LOSSES:
    problems.append(f"eval.evidence_loss must be one of {EVIDENCE_LOSSES}, got {e.evidence_loss!r}")
  if e.selection not in ("warm", "per_scenario"):
    problems.append(f"eval.selection must be warm or per_scenario, got {e.selection!r}")
  if not 0 < e.scenario_valid_share < 1:
    problems.append(f"eval.scenario_valid_share must lie in (0, 1), got {e.scenario_valid_share}")
  for s in e.scenarios:
    if s not in SCENARIOS:
      problems.append(f"eval.scenarios: unknown scenario {s!r}; known: {SCENARIOS}")
  _check_feedback(config, problems)
  _check_history_cap(d, problems)
  if d.content_prior and d.feedback == "implicit":
    problems.append("data.content_prior predicts mean ratings: it needs data.feedback=rating")
  if d.feedback != "implicit":
    try:
      check_metric_names(e.metrics, d.query_size)
    except ValueError as err:
      problems.append(f"eval.metrics: {err}")
  from metarec_jax.methods.registry import check_methods  # methods build on this module
  check_methods(config, problems)
  if problems:
    raise ConfigError("invalid config: " + "; ".join(dict.fromkeys(problems)))


def to_json(config: ml_collections.ConfigDict) -> str:
  """The config as JSON (function variants written out, see `canonical`)."""
  return json.dumps(canonical(config).to_dict(), indent=2, sort_keys=True, default=list)


def from_json(text: str) -> ml_collections.ConfigDict:
  """Rebuilds a config saved by `to_json` (lists become tuples again)."""

  def fix(x):
    if isinstance(x, dict):
      return {k: fix(v) for k, v in x.items()}
    if isinstance(x, list):
      return tuple(fix(v) for v in x)
    return x

  base = default_config()
  loaded = fix(json.loads(text))
  base.variants = ml_collections.ConfigDict(loaded.pop("variants", {}))
  merged = ml_collections.ConfigDict(base.to_dict())
  merged.update(loaded)
  return merged


# Keys that say where and how often a run logs: they change no number, so any run may set them (no method
# "ignores" them) and a resumed run may change them.
LOGGING_KEYS = ("train.log_every", "train.tensorboard", "train.wandb_project")


def diff(old: ml_collections.ConfigDict, new: ml_collections.ConfigDict) -> list[str]:
  """Human-readable differences between two configs (dotted keys), leaving out `LOGGING_KEYS`."""
  a, b = flat_keys(old), flat_keys(new)
  out = []
  for k in sorted(set(a) | set(b)):
    if k in LOGGING_KEYS:
      continue
    va, vb = a.get(k, "<absent>"), b.get(k, "<absent>")
    if isinstance(va, ml_collections.ConfigDict):
      va = va.to_dict()
    if isinstance(vb, ml_collections.ConfigDict):
      vb = vb.to_dict()
    if va != vb:
      out.append(f"{k}: {va!r} -> {vb!r}")
  return out
