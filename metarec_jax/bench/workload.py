"""The MeLU-shaped synthetic workload the benchmarks time.

MeLU (Lee et al., KDD 2019) on MovieLens-1M: one 32-dim embedding per field
over MeLU's vocabularies (user gender, age, occupation, zip; item rate, genre,
director, actor), multi-hot item fields mean-pooled, the 8 × 32 = 256 features
fed to 256 → 64 → 64 → 1 decision layers that adapt in the inner loop (second
order), Adam outside. The feature tables and tasks are random: speed does not
depend on the values, and no data set is needed.

The model is the engine's `RecModel` and the step the engine's
`make_meta_train_step`; this module only builds their inputs.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable

import jax
import numpy as np

from metarec_jax.data.interactions import FeatureTable, FieldSpec
from metarec_jax.data.tasks import Features, TaskBatch, TaskSet, features_from_tables, sample_batch
from metarec_jax.meta.factored import use_factored
from metarec_jax.meta.inner import partition
from metarec_jax.meta.learners import LEARNERS, LearnerSpec, init_meta_params, learner_spec
from metarec_jax.models.model import RecModel, init_params, make_predict
from metarec_jax.types import MetaParams, PredictFn


@dataclasses.dataclass(frozen=True)
class Field:
  """One feature field of the workload.

  Attributes:
    name: field name.
    vocab: number of distinct values, without the 0 (unknown / padding) id.
    width: list length of a multi-hot field; 0 for a single categorical id.
  """

  name: str
  vocab: int
  width: int = 0

  def spec(self) -> FieldSpec:
    if self.width:
      return FieldSpec(self.name, "multi", vocab_size=self.vocab + 1, width=self.width)
    return FieldSpec(self.name, "categorical", vocab_size=self.vocab + 1)


# MeLU's ML-1M vocabulary sizes (its one-hot widths); up to 3 genres, 1 director, 4 actors per item.
MELU_USER_FIELDS = (Field("gender", 2), Field("age", 7), Field("occupation", 21), Field("zip", 3402))
MELU_ITEM_FIELDS = (Field("rate", 6), Field("genre", 25, 3), Field("director", 2186, 1),
                    Field("actor", 8030, 4))
ML1M_USERS = 6040
ML1M_ITEMS = 3881  # movies in MeLU's movies_extrainfos.dat


@dataclasses.dataclass(frozen=True)
class WorkloadSpec:
  """Shape of one benchmark workload (defaults: MeLU on ML-1M, 32 tasks).

  Attributes:
    tasks: tasks per meta-batch.
    support: support ratings per task.
    query: query ratings per task.
    inner_steps: inner SGD steps.
    learner: engine learner name (adapting the decision layers, as MeLU does),
      or a registered method with a model of its own (``tanp``, ``mamo``, ...:
      its model and learner on the workload's fields, `method_parts`).
    inner_lr: inner SGD rate (MeLU's local rate).
    outer_lr: Adam rate (MeLU's global rate).
    embed_dim: embedding width per field.
    head_hidden: hidden sizes of the decision layers.
    user_fields: user fields.
    item_fields: item fields.
    num_users: rows of the user table.
    num_items: rows of the item table.
    pool: tasks in the task set batches are drawn from (0: max(2 × tasks, 64)).
    remat: rematerialise the inner steps in the backward pass.
    tasks_per_chunk: > 0: the step maps over chunks of this many vmapped tasks
      (the engine's ``meta.tasks_per_chunk``; must divide ``tasks``).
    factored: the engine's ``meta.factored``: ``auto`` (its default: factored
      decision-layer updates where they need fewer FLOPs), ``on`` or ``off``
      (per-task kernels).
    seed: seed of the random tables, tasks and initial params.
  """

  tasks: int = 32
  support: int = 20
  query: int = 10
  inner_steps: int = 1
  learner: str = "maml"
  inner_lr: float = 5e-6
  outer_lr: float = 5e-5
  embed_dim: int = 32
  head_hidden: tuple[int, ...] = (64, 64)
  user_fields: tuple[Field, ...] = MELU_USER_FIELDS
  item_fields: tuple[Field, ...] = MELU_ITEM_FIELDS
  num_users: int = ML1M_USERS
  num_items: int = ML1M_ITEMS
  pool: int = 0
  remat: bool = False
  tasks_per_chunk: int = 0
  factored: str = "auto"
  seed: int = 0

  def describe(self) -> dict[str, Any]:
    """A JSON-ready description (the ``workload`` entry of benchmark results)."""
    out = dataclasses.asdict(self)
    out["user_fields"] = {f.name: {"vocab": f.vocab, "width": f.width or 1, "multi": bool(f.width)}
                          for f in self.user_fields}
    out["item_fields"] = {f.name: {"vocab": f.vocab, "width": f.width or 1, "multi": bool(f.width)}
                          for f in self.item_fields}
    out["head_hidden"] = list(self.head_hidden)
    out["features"] = self.embed_dim * (len(self.user_fields) + len(self.item_fields))
    return out


@dataclasses.dataclass
class Workload:
  """Everything a benchmark step needs, built from a `WorkloadSpec`."""

  spec: WorkloadSpec
  learner: LearnerSpec
  model: RecModel
  predict: PredictFn
  features: Features
  tasks: TaskSet
  meta: MetaParams
  method: str | None = None  # a registered method whose own model the step trains (None: an engine learner)
  make_step: Callable[..., Callable] | None = None  # the method's own step builder (MAMO's writes); None: the engine's

  def batch(self, key: jax.Array | int = 0) -> TaskBatch:
    """A task batch drawn as the engine's step draws it."""
    key = jax.random.PRNGKey(key) if isinstance(key, int) else key
    return sample_batch(self.tasks, key, self.spec.tasks, self.spec.query, self.spec.support)

  def uses_factored(self) -> bool:
    """Whether the step adapts with factored updates (`meta.factored`), as `adapt_on_support` decides."""
    adapted, _ = partition(self.meta["model"], self.learner.adapt)
    return use_factored(self.learner.schedule.factored, self.predict, adapted, self.learner.inner_lr,
                        self.learner.inner_steps, self.spec.support, self.spec.query)

  def num_params(self) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(self.meta)))


def random_table(fields: tuple[Field, ...], rows: int, rng: np.random.Generator) -> FeatureTable:
  """Random ids for every field; multi-hot rows hold 1..width ids, then 0 padding."""
  columns = {}
  for f in fields:
    if f.width:
      ids = rng.integers(1, f.vocab + 1, size=(rows, f.width), dtype=np.int32)
      count = rng.integers(1, f.width + 1, size=(rows, 1))
      columns[f.name] = np.where(np.arange(f.width)[None, :] < count, ids, 0).astype(np.int32)
    else:
      columns[f.name] = rng.integers(1, f.vocab + 1, size=rows, dtype=np.int32)
  return FeatureTable(tuple(f.spec() for f in fields), columns)


def random_tasks(num_tasks: int, length: int, num_users: int, num_items: int,
                 rng: np.random.Generator) -> TaskSet:
  """``num_tasks`` users with ``length`` distinct rated items each, ratings 1..5."""
  users = rng.choice(num_users, size=num_tasks, replace=num_tasks > num_users).astype(np.int32)
  if length <= num_items:
    items = np.argpartition(rng.random((num_tasks, num_items)), length - 1, axis=1)[:, :length]
  else:
    items = rng.integers(0, num_items, size=(num_tasks, length))
  ratings = rng.integers(1, 6, size=(num_tasks, length)).astype(np.float32)
  return TaskSet(user=users, items=items.astype(np.int32), ratings=ratings,
                 lengths=np.full((num_tasks,), length, np.int32))


def workload_inputs(spec: WorkloadSpec) -> tuple[FeatureTable, FeatureTable, Features, TaskSet]:
  """The workload's random user and item tables, their device features and its device-resident task pool."""
  rng = np.random.default_rng(spec.seed)
  users = random_table(spec.user_fields, spec.num_users, rng)
  items = random_table(spec.item_fields, spec.num_items, rng)
  features = features_from_tables(users, items)
  pool = spec.pool or max(2 * spec.tasks, 64)
  tasks = jax.device_put(random_tasks(pool, spec.support + spec.query, spec.num_users, spec.num_items, rng))
  return users, items, features, tasks


def recmodel_workload(spec: WorkloadSpec, **model_kwargs) -> Workload:
  """The MeLU-shaped `RecModel` (``model_kwargs`` added, e.g. another extractor) with the spec's learner.

  The learner adapts the decision layers (``adapt="head"``), second order
  unless the learner is first order (``fomaml``, ``reptile``).
  """
  users, items, features, tasks = workload_inputs(spec)
  model = RecModel(user_specs=users.specs, item_specs=items.specs, embed_dim=spec.embed_dim,
                   head="mlp", head_hidden=tuple(spec.head_hidden), offset=3.5, **model_kwargs)
  learner = learner_spec(spec.learner, inner_lr=spec.inner_lr, inner_steps=spec.inner_steps, adapt="head",
                         remat=spec.remat, factored=spec.factored)
  params = init_params(model, features, jax.random.PRNGKey(spec.seed))
  return Workload(spec, learner, model, make_predict(model), features, tasks,
                  init_meta_params(learner, params))


def make_workload(spec: WorkloadSpec = WorkloadSpec()) -> Workload:
  """Builds the model, device-resident tables and tasks, and initial meta params (`recmodel_workload`).

  A method with a model of its own trains that model with its own learner
  (`method_parts`).
  """
  if spec.learner not in LEARNERS:  # a method that trains its own model (TaNP, MAMO, ...)
    users, items, features, tasks = workload_inputs(spec)
    parts = method_parts(spec, users, items, features)
    return Workload(spec, parts.spec, parts.model, parts.predict, features, tasks,
                    init_meta_params(parts.spec, parts.init(features, jax.random.PRNGKey(spec.seed))),
                    method=spec.learner, make_step=parts.make_step)
  return recmodel_workload(spec)


def method_parts(spec: WorkloadSpec, users: FeatureTable, items: FeatureTable, features: Features | None = None):
  """The model and learner a registered learned method trains, on the workload's fields and sizes.

  The method is resolved from the default config with the workload's
  embedding width, decision layers and inner loop; it sees a data set with
  the workload's tables and a mean rating of 3.5.

  Raises:
    ValueError: ``spec.learner`` names neither a learner nor a method that trains a model.
  """
  from metarec_jax.config import ConfigError, default_config
  from metarec_jax.methods import LearnedMethod, MetaLearner, resolve
  c = default_config()
  c.model.embed_dim = spec.embed_dim
  c.model.head_hidden = tuple(spec.head_hidden)
  c.meta.inner_lr = spec.inner_lr
  c.meta.inner_steps = spec.inner_steps
  try:
    method = resolve(spec.learner, c)
  except ConfigError as e:
    raise ValueError(f"--learner {spec.learner!r}: {e}") from None
  if not isinstance(method, LearnedMethod) or isinstance(method, MetaLearner):
    raise ValueError(f"--learner {spec.learner!r} is not a method with a model of its own; benchmark an engine "
                     f"learner ({sorted(LEARNERS)}) or a learned method such as tanp")
  if method.not_benchable:
    raise ValueError(f"--learner {spec.learner!r} cannot be timed on the synthetic workload: {method.not_benchable}")
  data = types.SimpleNamespace(users=users, items=items, num_users=spec.num_users, num_items=spec.num_items)
  prep = types.SimpleNamespace(data=data, implicit=False, stats=types.SimpleNamespace(mean=3.5),
                               features=features if features is not None else features_from_tables(users, items))
  return method.parts(prep)
