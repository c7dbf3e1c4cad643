"""Methods with a model: the model and learner from a config, training through the shared loop, `MetaLearner`."""

from __future__ import annotations

import dataclasses
import re
import zlib
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from metarec_jax import config as cfg_lib
from metarec_jax.data.derived import derived_columns, hide_items
from metarec_jax.data.interactions import Dataset, Interactions
from metarec_jax.eval.evaluate import make_adapted_predictor, predict_in_chunks, validation_value
from metarec_jax.eval.implicit import eval_chunk
from metarec_jax.features.tokens import check_text_encoder, with_encoder_settings
from metarec_jax.meta.factored import MODES as FACTORED_MODES
from metarec_jax.meta.inner import flatten, unflatten
from metarec_jax.meta.learners import LEARNERS, LearnerSpec, init_meta_params, learner_spec
from metarec_jax.meta.losses import LOSSES
from metarec_jax.meta.population import init_population, make_member_step, pad_task_length, stack_members
from metarec_jax.meta.step import init_state, make_meta_train_step, make_optimizer, task_mesh
from metarec_jax.methods.base import FitContext, Fitted, Method, Predictions
from metarec_jax.models import registry as model_registry
from metarec_jax.models.model import RecModel, init_params, make_predict
from metarec_jax.models.text import frozen_encoder_pattern
from metarec_jax.prepared import MAIN_VALID, Prepared
from metarec_jax.train.loop import LoopSettings, train_loop
from metarec_jax.train.population import train_population
from metarec_jax.types import Features, MetaParams, PredictFn

# --------------------------------------------------------------------------- the model and the learner from a config

_EMPTY = Interactions(np.zeros(1, np.int32), np.zeros(1, np.int32), np.ones(1, np.float32))


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
  item_specs = with_encoder_settings(item_specs, m.text_encoder)  # this method's text encoder fine-tuning
  return RecModel(user_specs=tuple(user_specs), item_specs=tuple(item_specs), embed_dim=m.embed_dim,
                  user_mlp=tuple(m.user_mlp), item_mlp=tuple(m.item_mlp), head=m.head,
                  head_hidden=tuple(m.head_hidden), offset=0.0 if m.residual else offset,
                  support_vector=m.support_vector, ridge_dim=m.ridge_dim, ridge_reg=m.bias_reg,
                  ridge_fields=_ridge_fields(m, data), ridge_content_dim=m.ridge_content_dim,
                  ridge_content_reg=m.ridge_content_reg,
                  dtype=None if m.dtype == "float32" else jax.numpy.dtype(m.dtype),
                  extractor=m.extractor, transformer=_transformer_spec(m))


def _ridge_fields(m: ml_collections.ConfigDict, data: Dataset) -> tuple[str, ...]:
  """``model.ridge_fields``, checked against the item table: dense fields only."""
  specs = {s.name: s for s in data.items.specs}
  for name in m.ridge_fields:
    if name not in specs:
      raise cfg_lib.ConfigError(f"model.ridge_fields: {data.name} has no item field {name!r}; "
                                f"item fields: {sorted(specs)}")
    if specs[name].kind != "dense":
      raise cfg_lib.ConfigError(f"model.ridge_fields: item field {name!r} is {specs[name].kind}; only dense "
                                "fields (text embeddings, vectors) enter the ridge factors directly")
  return tuple(m.ridge_fields)


def _transformer_spec(m: ml_collections.ConfigDict):
  if m.extractor != "transformer":
    return None
  from metarec_jax.models.field_transformer import TransformerSpec
  spec = TransformerSpec.from_config(m.transformer)
  spec.check()
  return spec


def predict_of(config: ml_collections.ConfigDict, model: Any) -> PredictFn:
  """The engine's predict function of ``model`` with the config's residual settings."""
  return make_predict(model, residual=config.model.residual, bias_reg=config.model.bias_reg)


def loss_options(config: ml_collections.ConfigDict) -> dict:
  """``meta.loss`` and the negatives per positive its grouped layout has."""
  implicit = config.data.feedback == "implicit"
  return {"loss": config.meta.loss,
          "negatives_per_positive": int(config.data.negatives_per_positive) if implicit else 0}


def spec_of(config: ml_collections.ConfigDict) -> LearnerSpec:
  """The `LearnerSpec` of a method's config (``meta.*``)."""
  m = config.meta
  return learner_spec(m.learner, inner_lr=m.inner_lr, inner_steps=m.inner_steps, adapt=m.adapt,
                      first_order=True if m.first_order else None, remat=m.remat, local_tables=m.local_tables,
                      factored=m.factored, **loss_options(config))


def method_key(seed: int, name: str) -> jax.Array:
  """The PRNG key of a checkpoint owner's training run."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


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


def check_model_config(name: str, mc: ml_collections.ConfigDict, problems: list[str]) -> None:
  """The model, learner and training keys of a learned method's config."""
  check_text_encoder(name, mc, problems)
  if mc.meta.learner not in LEARNERS:
    problems.append(f"method {name}: meta.learner {mc.meta.learner!r} unknown; known: {sorted(LEARNERS)}")
  if mc.meta.inner_lr < 0:
    problems.append(f"method {name}: meta.inner_lr must be >= 0, got {mc.meta.inner_lr}")
  if mc.meta.inner_steps < 0:
    problems.append(f"method {name}: meta.inner_steps must be >= 0, got {mc.meta.inner_steps}")
  if mc.meta.factored not in FACTORED_MODES:
    problems.append(f"method {name}: meta.factored must be auto, on or off, got {mc.meta.factored!r}")
  if mc.meta.tasks_per_chunk and mc.train.tasks_per_batch % mc.meta.tasks_per_chunk:
    problems.append(f"method {name}: meta.tasks_per_chunk={mc.meta.tasks_per_chunk} must divide "
                    f"train.tasks_per_batch={mc.train.tasks_per_batch}")
  if mc.model.dtype not in ("float32", "bfloat16", "float16"):
    problems.append(f"method {name}: model.dtype must be float32, bfloat16 or float16, got {mc.model.dtype!r}")
  if mc.train.devices < 0:
    problems.append(f"method {name}: train.devices must be >= 0, got {mc.train.devices}")
  if mc.eval.train_users and mc.data.feedback != "rating":
    problems.append(f"method {name}: eval.train_users scores ratings; it is not available with "
                    f"data.feedback={mc.data.feedback!r} (set eval.train_users=false)")
  if mc.model.ridge_dim < 0:
    problems.append(f"method {name}: model.ridge_dim must be >= 0 (0 = off), got {mc.model.ridge_dim}")
  if mc.model.ridge_fields and not mc.model.ridge_dim:
    problems.append(f"method {name}: model.ridge_fields feed the ridge user vector: set model.ridge_dim > 0 too")
  if mc.model.ridge_content_dim < 1 or mc.model.ridge_content_reg <= 0:
    problems.append(f"method {name}: model.ridge_content_dim must be >= 1 and model.ridge_content_reg > 0, got "
                    f"{mc.model.ridge_content_dim} and {mc.model.ridge_content_reg}")
  if mc.model.ridge_dim and mc.model.bias_reg <= 0:
    problems.append(f"method {name}: model.ridge_dim needs model.bias_reg > 0 (the initial ridge penalty), "
                    f"got {mc.model.bias_reg}")
  if mc.model.extractor not in model_registry.EXTRACTORS:
    problems.append(f"method {name}: model.extractor must be one of {sorted(model_registry.EXTRACTORS)}, got "
                    f"{mc.model.extractor!r}")
  if mc.model.head not in model_registry.HEADS:
    problems.append(f"method {name}: model.head {mc.model.head!r} unknown; known: {tuple(model_registry.HEADS)}")
  if mc.meta.loss not in LOSSES:
    problems.append(f"method {name}: meta.loss must be one of {LOSSES}, got {mc.meta.loss!r}")
  elif mc.data.feedback == "implicit" and mc.meta.loss == "mse":
    problems.append(f"method {name}: meta.loss=mse is for ratings; with data.feedback=implicit use "
                    "meta.loss=bce (pointwise) or meta.loss=bpr (pairwise)")
  elif mc.data.feedback == "rating" and mc.meta.loss != "mse":
    problems.append(f"method {name}: meta.loss={mc.meta.loss} needs data.feedback=implicit")
  if mc.data.feedback == "implicit" and mc.model.residual:
    problems.append(f"method {name}: model.residual adds a rating baseline; it does not apply to "
                    "data.feedback=implicit")


# --------------------------------------------------------------------------- a trained model


@dataclasses.dataclass(frozen=True)
class Adaptation:
  """How a fitted model adapts to a user's support set: the learner and the inner rate it runs at."""

  spec: LearnerSpec
  inner_lr: float


@dataclasses.dataclass
class FittedModel(Fitted):
  """A trained model as a value: per validation set, the params selected on it and how they adapt.

  Attributes:
    name: the method.
    selection: validation set -> what was chosen on it (JSON-ready).
    model: the Flax model (`RecModel` or any model `make_predict` serves).
    predict: its predict function.
    params: validation set -> the selected meta params.
    adaptation: validation set -> the learner and inner rate used there.
    features: the seed's device-resident feature tables.
    eval_chunk: tasks per evaluation call (``eval.tasks_per_chunk``).
  """

  name: str
  selection: dict[str, dict[str, Any]]
  model: Any
  predict: PredictFn
  params: dict[str, MetaParams]
  adaptation: dict[str, Adaptation]
  features: Features
  eval_chunk: int
  predictors: dict[LearnerSpec, Callable] = dataclasses.field(default_factory=dict)

  def predictor(self, spec: LearnerSpec) -> Callable:
    """The jitted ``(meta, features, batch, inner_lr) -> predictions`` of ``spec`` (one per spec)."""
    if spec not in self.predictors:
      self.predictors[spec] = make_adapted_predictor(spec, self.predict)
    return self.predictors[spec]

  def predictions(self, valid_set: str = MAIN_VALID) -> Predictions:
    a = self.adaptation[valid_set]
    predictor, params, features = self.predictor(a.spec), self.params[valid_set], self.features
    return lambda batch: predict_in_chunks(lambda b: predictor(params, features, b, a.inner_lr), batch,
                                           eval_chunk(batch, self.eval_chunk))

  def recommender(self, valid_set: str = MAIN_VALID, **kwargs):
    from metarec_jax.serving import Recommender
    a = self.adaptation[valid_set]
    return Recommender(self.model, a.spec, self.params[valid_set], self.features, predict=self.predict,
                       inner_lr=a.inner_lr, name=self.name, **kwargs)


@dataclasses.dataclass
class Trained:
  """A model trained by the shared loop: its parts and the params selected on each validation set."""

  model: Any
  predict: PredictFn
  spec: LearnerSpec
  best: dict[str, MetaParams]
  best_val: dict[str, float]
  best_step: dict[str, int]
  predictor: Callable

  @property
  def params(self) -> MetaParams:
    """The params selected on the main (warm) validation users."""
    return self.best[MAIN_VALID]

  def fitted(self, name: str, prep: Prepared, config: ml_collections.ConfigDict,
             adaptation: dict[str, Adaptation] | None = None, selection: dict | None = None) -> FittedModel:
    """The trained model as a method's `FittedModel` (its own learner, unless ``adaptation`` says otherwise)."""
    own = Adaptation(self.spec, self.spec.inner_lr)
    adaptation = adaptation or {k: own for k in self.best}
    selection = selection or {k: {"best_step": self.best_step[k], "val_mae": self.best_val[k]} for k in self.best}
    return FittedModel(name, selection, self.model, self.predict, dict(self.best), adaptation, prep.features,
                       config.eval.tasks_per_chunk, predictors={self.spec: self.predictor})


def selection_key(prep: Prepared) -> str:
  return "val_1-auc" if prep.implicit else "val_mae"  # the selection value: lower is better


def validator(predictor: Callable, prep: Prepared, features: Features, lr: float, chunk: int) -> Callable:
  """``meta params -> {validation set: value}`` of an adapted predictor (lower is better)."""
  def validate(params):
    return {k: validation_value(lambda b: predictor(params, features, b, lr), prep, k, chunk)
            for k in prep.valid_batches}
  return validate


@dataclasses.dataclass(frozen=True)
class ModelParts:
  """What `train_model` trains: a model, its predict function, how to initialise it, and the learner.

  Attributes:
    model: the Flax model (`RecModel`, or any model with ``user_specs``,
      ``item_side`` and ``embed`` that serving reads).
    predict: the engine's predict function of the model.
    init: ``(features, key) -> model params``.
    spec: the learner that trains it.
    make_step: builds the train step, with `meta.step.make_meta_train_step`'s
      signature (None: that function; MAMO passes its step with memory writes).
  """

  model: Any
  predict: PredictFn
  init: Callable[[Features, jax.Array], Any]
  spec: LearnerSpec
  make_step: Callable[..., Callable] | None = None


def score_offset(prep: Prepared) -> float:
  """The initial global bias of a model: the mean training rating (0 for implicit feedback: logits)."""
  return 0.0 if prep.implicit else prep.stats.mean


def default_parts(config: ml_collections.ConfigDict, prep: Prepared) -> ModelParts:
  """The `RecModel` of ``config.model`` with the learner of ``config.meta``."""
  model = build_model(config, prep.data, score_offset(prep))
  return ModelParts(model, predict_of(config, model), lambda features, key: init_params(model, features, key),
                    spec_of(config))


def freeze_pattern(config: ml_collections.ConfigDict, params: MetaParams) -> str:
  """The regex of the model params the outer loop leaves untouched (empty: none).

  ``model.freeze`` (checked to match something), or-ed with the text
  encoder's weights that ``model.text_encoder.finetune`` keeps fixed: all of
  them (``frozen``), all but the adapters (``lora``), none (``all``).
  """
  patterns = []
  if config.model.freeze:
    freeze_labels(params, config.model.freeze)  # raises when it matches nothing
    patterns.append(config.model.freeze)
  encoder = frozen_encoder_pattern(config.model.text_encoder.finetune)
  if encoder and any(re.search(encoder, k) for k in flatten(params["model"])):
    patterns.append(encoder)
  return patterns[0] if len(patterns) == 1 else "|".join(f"(?:{p})" for p in patterns)


def outer_optimizer(config: ml_collections.ConfigDict, params: MetaParams, lr: Any = None) -> optax.GradientTransformation:
  """``config.optimizer`` (at rate ``lr`` if given), with `freeze_pattern`'s params left untouched."""
  optimizer = make_optimizer(config.optimizer.name, config.optimizer.lr if lr is None else lr,
                             config.optimizer.clip_norm, config.optimizer.weight_decay)
  pattern = freeze_pattern(config, params)
  if pattern:
    optimizer = optax.multi_transform({"train": optimizer, "freeze": optax.set_to_zero()},
                                      freeze_labels(params, pattern))
  return optimizer


def step_options(config: ml_collections.ConfigDict, prep: Prepared, mean: Any = None) -> dict[str, Any]:
  """The keyword arguments of the train step of ``config`` on ``prep`` (`meta.step.make_meta_train_step`).

  ``mean`` replaces the mean training rating that item-cold simulation
  (``train.item_cold_share``) gives hidden items (a traced value in a population).
  """
  t = config.train
  augment = None
  if t.item_cold_share > 0:
    share, mu = float(t.item_cold_share), prep.stats.mean if mean is None else mean
    augment = lambda key, features: hide_items(features, key, share, mu)
  return dict(tasks_per_batch=t.tasks_per_batch, query_size=config.data.query_size, support_size=prep.support_size,
              tasks_per_chunk=config.meta.tasks_per_chunk, augment=augment,
              negatives_per_positive=loss_options(config)["negatives_per_positive"])


def _validator_of(config: ml_collections.ConfigDict, prep: Prepared, spec: LearnerSpec, predictor: Callable) -> Callable:
  return validator(predictor, prep, prep.features, spec.inner_lr, config.eval.tasks_per_chunk)


def train_model(config: ml_collections.ConfigDict, ctx: FitContext, owner: str,
                parts: ModelParts | None = None) -> Trained:
  """Meta-trains the model and learner of ``config`` with validation selection (`train.loop`).

  Args:
    config: the method's config.
    ctx: the seed's fitting context (data, run folder, resume).
    owner: the checkpoint's name; it also names the PRNG stream.
    parts: the model and learner (default: `default_parts` of ``config``).
  """
  prep, t = ctx.prep, config.train
  parts = parts or default_parts(config, prep)
  model, predict, spec = parts.model, parts.predict, parts.spec
  k_init, k_run = jax.random.split(method_key(ctx.seed, owner))
  params = init_meta_params(spec, parts.init(prep.features, k_init))
  optimizer = outer_optimizer(config, params)
  state = init_state(params, optimizer, k_run)
  mesh = task_mesh(t.devices) if t.devices != 1 and jax.device_count() > 1 else None
  make_step = parts.make_step or make_meta_train_step
  step_fn = make_step(spec, predict, optimizer, mesh=mesh, **step_options(config, prep))
  predictor = make_adapted_predictor(spec, predict)
  sel = train_loop(owner, ctx.seed, state, step_fn, prep.train, prep.features, sets=list(prep.valid_batches),
                   validate=_validator_of(config, prep, spec, predictor), settings=LoopSettings.from_config(t),
                   ckpt_dir=ctx.checkpoint_dir(owner), log=ctx.log, progress=ctx.progress, on_step=ctx.on_step,
                   restore_only=ctx.restore_only, selection_key=selection_key(prep), mesh=mesh)
  return Trained(model, predict, spec, sel.best, sel.best_val, sel.best_step, predictor)


# Keys whose values may differ between the members of one population: they are traced into the step.
POPULATION_KEYS = ("optimizer.lr", "meta.inner_lr")


def population_compatible(a: ml_collections.ConfigDict, b: ml_collections.ConfigDict) -> bool:
  """Whether two methods' configs differ in `POPULATION_KEYS` only (their members can share one program)."""
  fa, fb = cfg_lib.flat_keys(a), cfg_lib.flat_keys(b)
  return all(k in POPULATION_KEYS for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))


def train_population_model(members: list[tuple[ml_collections.ConfigDict, FitContext, str]]) -> list[Trained]:
  """`train_model` of several (config, seed, owner) members at once: one vmapped program (the loop: `train.population`).

  The members' configs may differ in `POPULATION_KEYS` only (outer and inner
  rates: a grid of variants) and their seeds in their data. Each member has
  what `train_model` would give it: its own initial params and PRNG stream
  (`method_key` of its seed and owner), its own task set and feature columns
  (stacked; task lengths padded to the longest), its own model offset,
  item-cold mean and rates (traced into the step it builds), its own
  validation selection and checkpoint folder. The numbers equal
  `train_model`'s for each member to float tolerance (vmapped matmuls may sum
  in another order).

  Raises:
    PopulationMismatch: the members' task sets or feature tables differ in
      shape (the message names the array); callers train them one by one then.
    ValueError: two members' configs differ beyond `POPULATION_KEYS`.
  """
  configs, ctxs, owners = zip(*members)
  first_config = configs[0]
  for c in configs[1:]:
    if not population_compatible(first_config, c):
      raise ValueError(f"population members may differ in {', '.join(POPULATION_KEYS)} only")
  preps = [c.prep for c in ctxs]
  specs = [spec_of(c) for c in configs]
  parts = [default_parts(c, p) for c, p in zip(configs, preps)]
  length = max(p.train.max_length for p in preps)
  tasks = stack_members([pad_task_length(p.train, length) for p in preps], "meta-training task sets")
  features = stack_members([p.features for p in preps], "feature tables")
  keys = [jax.random.split(method_key(ctx.seed, owner)) for ctx, owner in zip(ctxs, owners)]
  params = [init_meta_params(s, pt.init(p.features, k[0])) for s, pt, p, k in zip(specs, parts, preps, keys)]
  optimizer = outer_optimizer(first_config, params[0])  # its initial state does not depend on the rate
  states = init_population(params, optimizer, [k[1] for k in keys])
  scalars = [jnp.asarray(v, jnp.float32) for v in zip(*[(score_offset(p), p.stats.mean, c.meta.inner_lr,
                                                         c.optimizer.lr) for c, p in zip(configs, preps)])]
  data, first = preps[0].data, preps[0]

  def member(state, tasks, features, offset, mean, inner_lr, lr):
    model = build_model(first_config, data, offset)  # default_parts' model, with this member's offset
    spec = dataclasses.replace(specs[0], inner_lr=inner_lr)
    step = make_meta_train_step(spec, predict_of(first_config, model),
                                outer_optimizer(first_config, state.params, lr), jit=False,
                                **step_options(first_config, first, mean))
    return step(state, tasks, features)

  step = make_member_step(member)
  predictors = [make_adapted_predictor(s, pt.predict) for s, pt in zip(specs, parts)]
  ctx = ctxs[0]
  sels = train_population([(o, c.seed) for o, c in zip(owners, ctxs)], states,
                          lambda s, t, f: step(s, t, f, *scalars), tasks, features, sets=list(first.valid_batches),
                          validates=[_validator_of(c, p, s, pr) for c, p, s, pr in zip(configs, preps, specs, predictors)],
                          settings=LoopSettings.from_config(first_config.train),
                          ckpt_dirs=[c.checkpoint_dir(o) for c, o in zip(ctxs, owners)], log=ctx.log,
                          progress=ctx.progress, on_step=ctx.on_step, selection_key=selection_key(first))
  return [Trained(pt.model, pt.predict, s, sel.best, sel.best_val, sel.best_step, pr)
          for pt, s, sel, pr in zip(parts, specs, sels, predictors)]


class LearnedMethod(Method):
  """A method that trains a model: it owns a checkpoint and is servable.

  Class attributes:
    not_benchable: why `parts` on the benchmark's synthetic workload would
      not time the method's training (empty: it would; ``metarec bench
      meta-step --learner NAME`` refuses the method with this reason).
  """

  servable: ClassVar[bool] = True
  ignored: ClassVar[tuple[str, ...]] = ("distill.",)
  not_benchable: ClassVar[str] = ""

  @property
  def checkpoint(self) -> str | None:
    return self.name

  def validate(self, problems: list[str]) -> None:
    super().validate(problems)
    check_model_config(self.name, self.config, problems)

  def parts(self, prep: Prepared) -> ModelParts:
    """The model and learner the method trains (default: the `RecModel` and learner of its config)."""
    return default_parts(self.config, prep)

  def train(self, ctx: FitContext) -> Trained:
    """Trains (or restores) the method's model, once per checkpoint and seed."""
    return ctx.trained(self.checkpoint, self.config,
                       lambda: train_model(self.config, ctx, self.checkpoint, self.parts(ctx.prep)))

  def population_blocker(self) -> str:
    """Why the method's seeds cannot train as one population (`train_population_model`); empty: they can."""
    cls = type(self)
    if cls.parts is not LearnedMethod.parts or cls.train is not LearnedMethod.train:
      return f"{self.name} trains its own model, not the config's RecModel"
    if jax.process_count() > 1:
      return "population training runs in one process (metarec run --distributed shards each step instead)"
    if self.config.train.devices != 1 and jax.device_count() > 1:
      return f"{self.name} shards each step over devices (train.devices={self.config.train.devices})"
    return ""

  def remember_trained(self, ctx: FitContext, value: Trained) -> None:
    """Hands a seed's context the `Trained` a population produced for this method."""
    ctx.remember(self.checkpoint, self.config, value)


class MetaLearner(LearnedMethod):
  """A meta-learner of the engine's table (MAML, FOMAML, Meta-SGD, Reptile, ANIL / MeLU, yours).

  Resolved for a learner name (``maml``), a variant without a base (the
  learner its ``meta.learner`` names) or a variant whose base is a learner.
  """

  def __init__(self, name: str, config: ml_collections.ConfigDict, *, variant_keys: frozenset[str] = frozenset(),
               learner: str | None = None):
    self.learner = learner  # the learner it fixes (None: the one its config's meta.learner names)
    super().__init__(name, config, variant_keys=variant_keys)

  def fixed(self) -> dict[str, Any]:
    return {"meta.learner": self.learner} if self.learner else {}

  def fit(self, ctx: FitContext) -> Fitted:
    return self.train(ctx).fitted(self.name, ctx.prep, self.config)
