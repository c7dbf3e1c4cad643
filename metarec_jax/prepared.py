"""One seed's data: the dataset split into scenarios, task sets and evaluation splits on the device.

`prepare` is the only place a seed's splits are drawn: every method of a run,
evaluation, serving and distillation read the same `Prepared`.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from metarec_jax import config as cfg_lib
from metarec_jax.data import registry
from metarec_jax.data.content_prior import content_matrix, fit_content_prior
from metarec_jax.data.derived import derived_columns
from metarec_jax.data.interactions import Dataset
from metarec_jax.data.splits import ScenarioSplit, make_split
from metarec_jax.data.tasks import build_taskset, features_from_tables, split_tasks
from metarec_jax.eval.baselines import RatingStats
from metarec_jax.eval.implicit import implicit_inputs
from metarec_jax.types import Features, TaskSet


MAIN_VALID = "valid"  # the validation set of held-out warm users
TRAIN_USERS = "warm:train_users"  # eval.train_users: the meta-training users, scored like a test set


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


def _tasks(ratings, role: str, data_cfg, pad_to: int, seed: int = 0) -> TaskSet:
  """``role``'s tasks: users with too few (or more than ``data.max_ratings``) ratings dropped, and
  with ``data.history_cap`` a seeded random subset of that many ratings kept per longer user
  (`data.tasks.cap_histories`, fixed per seed and user)."""
  q = data_cfg.query_size
  need = q + (data_cfg.support_size if data_cfg.support_size > 0 else data_cfg.min_support)
  longest = int(np.bincount(ratings.user).max()) if len(ratings) else 0
  if longest < need:
    raise cfg_lib.ConfigError(
        f"{role}: tasks need at least data.query_size + support = {need} ratings, but the longest "
        f"{role} task has {longest}; lower data.query_size (now {q}) or data.min_support / "
        "data.support_size")
  max_len = data_cfg.max_ratings or None
  cap = data_cfg.history_cap or None
  return jax.device_put(build_taskset(ratings, min_length=need, max_length=max_len, pad_to=pad_to, cap=cap,
                                      seed=seed))


def _pad_length(roles: list, data_cfg: ml_collections.ConfigDict) -> int:
  """The task length every role is padded to: the longest user kept (``data.max_ratings``), at most ``data.history_cap``."""
  counts = [np.bincount(r.user) for r in roles if len(r)]
  counts = np.concatenate(counts) if counts else np.zeros(0, np.int64)
  if data_cfg.max_ratings:
    counts = counts[counts <= data_cfg.max_ratings]
  pad_to = int(counts.max()) if len(counts) else 1
  return min(pad_to, data_cfg.history_cap) if data_cfg.history_cap else pad_to


def prepare(config: ml_collections.ConfigDict, seed: int, data: Dataset | None = None) -> Prepared:
  """Splits the data for one seed and puts the task sets on the device.

  The evaluation splits (support / query of every validation and test task)
  are drawn once per seed, so every method sees the same ones.
  """
  d = config.data
  data = data if data is not None else with_model_inputs(load_dataset(d), config)
  split = make_split(data, d.protocol, seed, valid_share=d.valid_share, warm_test_share=d.warm_test_share,
                     cold_item_share=d.cold_item_share)
  prior = None
  if d.content_prior:
    fitted = fit_content_prior(content_matrix(data.items, d.content_prior), split.train, config.model.item_mean_reg,
                               fields=d.content_prior)
    prior = fitted.prior
    split = dataclasses.replace(split, notes=split.notes + (fitted.note(),))
  u_cols, _, i_cols, _, _ = derived_columns(split.train, data.num_users, data.num_items, config.model.item_mean_reg,
                                            prior)
  features = features_from_tables(data.users, data.items)
  features = features.replace(user={**features.user, **{k: jnp.asarray(v) for k, v in u_cols.items()}},
                              item={**features.item, **{k: jnp.asarray(v) for k, v in i_cols.items()}})
  if split.catalogues is not None:  # a full-ranking protocol (cold_items_ranking)
    return _prepare_full_ranking(config, seed, data, split, features)
  # One padded length for every role: one compile of each jitted function.
  pad_to = _pad_length([split.train, split.valid, *split.tests.values()], d)
  train = _tasks(split.train, "meta-training", d, pad_to, seed)
  s = support_size(d)
  eval_key = jax.random.fold_in(jax.random.PRNGKey(seed), 7919)
  valid = {MAIN_VALID: split_tasks(_tasks(split.valid, "validation", d, pad_to, seed), eval_key, d.query_size, s)}
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
      valid[name] = split_tasks(_tasks(ratings.subset(is_held), name, d, pad_to, seed), eval_key, d.query_size, s)
      selection[scenario] = name
      ratings = ratings.subset(~is_held)
    test_tasks[scenario] = _tasks(ratings, scenario, d, pad_to, seed)
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


def _prepare_full_ranking(config: ml_collections.ConfigDict, seed: int, data: Dataset, split: ScenarioSplit,
                          features: Features) -> Prepared:
  """`prepare` for a full-ranking protocol (``cold_items_ranking``; `eval.implicit.full_ranking_inputs`).

  Meta-training tasks are the users' warm training positives, as usual; every
  validation and test task adapts on a user's training positives and ranks a
  whole catalogue (`data.negatives.full_ranking_batch`).
  """
  from metarec_jax.eval.implicit import full_ranking_inputs
  d = config.data
  if data.feedback != "implicit":
    raise cfg_lib.ConfigError(f"data.protocol={d.protocol} ranks whole catalogues of positives: set "
                              "data.feedback=implicit (data.positive_threshold=1 counts every rating, as the "
                              "published ALDI / LLM-InS numbers do)")
  train = _tasks(split.train, "meta-training", d, _pad_length([split.train], d), seed)
  eval_key = jax.random.fold_in(jax.random.PRNGKey(seed), 7919)
  features, valid, tests, layouts, selection = full_ranking_inputs(config, data, split, features, eval_key, seed)
  stats = RatingStats.from_ratings(split.train, data.num_items)
  return Prepared(data, split, features, train, valid, tests, {}, eval_key, selection, stats, support_size(d), layouts)


def with_model_inputs(data: Dataset, config: ml_collections.ConfigDict) -> Dataset:
  """Adds the inputs the model config asks for that the data set lacks (text embeddings)."""
  if config.model.text_features:
    from metarec_jax.features.text import add_text_fields
    data = add_text_fields(data, config.model.text_features)
  from metarec_jax.features.tokens import with_token_inputs
  return with_token_inputs(data, config)
