"""What a method is: `Method` (a row of the results tables), `Fitted` (a trained method as a value), `FitContext`.

A method has a name, the config it trains with, the checkpoint it owns, its
slice of config validation, and ``fit(ctx) -> Fitted``. The runner
(`experiment.run`) fits or restores every method of a run through the same
call; evaluation, serving and distillation use only the `Fitted` value.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import ml_collections
import numpy as np

from metarec_jax import config as cfg_lib
from metarec_jax.prepared import MAIN_VALID, Prepared
from metarec_jax.types import TaskBatch

if TYPE_CHECKING:
  from metarec_jax.rundir import RunDir
  from metarec_jax.runlog import RunLog
  from metarec_jax.serving import Recommender

Predictions = Callable[[TaskBatch], np.ndarray]  # a test batch -> query predictions [T, Q]

# Keys every method reads: the data, the splits and what is scored.
RUN_KEYS = ("name", "seed", "num_seeds", "methods", "data.", "eval.", *cfg_lib.LOGGING_KEYS)


class NotServable(ValueError):
  """The method has no model that adapts to a new user (a baseline)."""


class Fitted:
  """A fitted method as a value: how it predicts, per validation set it was selected on.

  Attributes:
    name: the method.
    selection: validation set -> what was chosen on it, as JSON-ready data
      (``val_mae`` and e.g. ``best_step``, ``tuned``, ``tried``).
  """

  name: str
  selection: dict[str, dict[str, Any]]

  def predictions(self, valid_set: str = MAIN_VALID) -> Predictions:
    """The predictor selected on ``valid_set``: ``batch -> query predictions [T, Q]``."""
    raise NotImplementedError

  def recommender(self, valid_set: str = MAIN_VALID, **kwargs) -> "Recommender":
    """A `serving.Recommender` with the params selected on ``valid_set``.

    Raises:
      NotServable: the method has no model (a baseline).
    """
    raise NotServable(f"{self.name} is a baseline, not a learned method: it has no model that adapts to a "
                      "new user. Serve one of the run's learned methods.")


@dataclasses.dataclass
class FittedBaseline(Fitted):
  """A baseline: ``predict(valid_set, batch) -> predictions`` on the host."""

  name: str
  selection: dict[str, dict[str, Any]]
  predict: Callable[[str, TaskBatch], np.ndarray]

  def predictions(self, valid_set: str = MAIN_VALID) -> Predictions:
    return lambda batch: self.predict(valid_set, batch)


class Method:
  """One row of a results table.

  Subclasses set the class attributes and implement `fit`; register them
  with `methods.register_method`. The registry builds a method from its
  name and the run config: ``cls(name, config, variant_keys=...)``.

  Class attributes:
    servable: the fitted method has a model that serves new users.
    reads: prefixes of the config keys the method reads beyond `RUN_KEYS`
      (``("",)``: every key).
    ignored: keys (or prefixes ending in ``.``) the method never reads
      although they match ``reads``.
    feedbacks: the ``data.feedback`` values it supports.
    noun: what messages call it (``method``, ``baseline``).
    config_blocks: the method's own config blocks with their defaults
      (``{"tanp": {"z_dim": 32, ...}}``); `config.default_config` holds
      the blocks of every registered method, and a key under a block is
      read only by the methods that declare it.

  Attributes:
    name: the row label.
    config: the config it fits with (variant and fixed values applied).
    variant_keys: the keys its variant sets.
  """

  servable: ClassVar[bool] = False
  reads: ClassVar[tuple[str, ...]] = ("",)
  ignored: ClassVar[tuple[str, ...]] = ()
  feedbacks: ClassVar[tuple[str, ...]] = ("rating", "implicit")
  noun: ClassVar[str] = "method"
  config_blocks: ClassVar[dict[str, dict[str, Any]]] = {}

  def __init__(self, name: str, config: ml_collections.ConfigDict, *, variant_keys: frozenset[str] = frozenset()):
    self.name = name
    self.variant_keys = frozenset(variant_keys)
    fixed = self.fixed()
    self.config = cfg_lib.set_values(config, fixed, f"method {name}") if fixed else config

  def __repr__(self) -> str:
    return f"{type(self).__name__}({self.name!r})"

  # ------------------------------------------------------------------ what it owns and reads

  def fixed(self) -> dict[str, Any]:
    """Config values the method sets itself, whatever the run config says (e.g. ``meta.learner``)."""
    return {}

  @property
  def checkpoint(self) -> str | None:
    """The checkpoint folder name it owns (shared by methods that train the same model); None: none."""
    return None

  def reads_key(self, key: str) -> bool:
    """Whether the method's results can depend on config key ``key``."""
    if key in RUN_KEYS or key.startswith(RUN_KEYS):
      return True
    from metarec_jax.methods.registry import BLOCKS
    block = key.split(".", 1)[0]
    if block in BLOCKS:  # a method's own block: read by the methods that declare it only
      return block in self.config_blocks
    if any(key == i or (i.endswith(".") and key.startswith(i)) for i in self.ignored):
      return False
    return any(key.startswith(p) for p in self.reads)

  def ignores(self, key: str) -> str | None:
    """Why a run-level value of ``key`` does not reach the method (None: it does)."""
    fixed = self.fixed()
    if key in fixed:
      return f"{self.name} sets {key}={fixed[key]!r} itself"
    if key in self.variant_keys:
      return f"variant {self.name} sets {key} itself"
    return None if self.reads_key(key) else self.not_read(key)

  def not_read(self, key: str) -> str:
    """The reason given for a key the method does not read."""
    return f"{self.name} does not read {key}"

  def validate(self, problems: list[str]) -> None:
    """Appends the method's config problems (its slice of `config.validate`)."""
    feedback = self.config.data.feedback
    if feedback in self.feedbacks:
      return
    if feedback == "implicit":
      problems.append(f"methods: {self.name} predicts ratings; with data.feedback=implicit use popularity, "
                      "pooled, pooled_finetune and the learners")
    elif feedback == "rating":
      problems.append(f"methods: {self.name} is an implicit-feedback {self.noun}; set data.feedback=implicit")

  # ------------------------------------------------------------------ fitting

  def fit(self, ctx: "FitContext") -> Fitted:
    """Fits the method on ``ctx.prep`` (or restores it when ``ctx.restore_only``)."""
    raise NotImplementedError


@dataclasses.dataclass
class FitContext:
  """What fitting the methods of one seed may use.

  Attributes:
    config: the run config.
    prep: the seed's prepared data.
    seed: the seed.
    run: the run folder (None: nothing is written, nothing resumes).
    progress: show progress bars.
    on_step: called after every training step with (owner, seed, step).
    restore_only: restore finished checkpoints, train nothing.
    methods: the run's methods by name (other names resolve from ``config``).
  """

  config: ml_collections.ConfigDict
  prep: Prepared
  seed: int
  run: "RunDir | None" = None
  progress: bool = True
  on_step: Callable[[str, int, int], None] | None = None
  restore_only: bool = False
  methods: Mapping[str, Method] = dataclasses.field(default_factory=dict)
  _fitted: dict[str, Fitted] = dataclasses.field(default_factory=dict)
  _trained: dict[str, tuple[ml_collections.ConfigDict, Any]] = dataclasses.field(default_factory=dict)

  @property
  def log(self) -> "RunLog":
    """The run's log (`runlog.RunLog`); without a run folder, one that prints the console lines only."""
    from metarec_jax.runlog import RunLog
    return self.run.log if self.run is not None else RunLog()

  def checkpoint_dir(self, owner: str) -> pathlib.Path | None:
    return self.run.checkpoint_dir(owner, self.seed) if self.run is not None else None

  def method(self, name: str) -> Method:
    """A method of the run by name (one the run does not list resolves from its config)."""
    if name not in self.methods:
      from metarec_jax.methods.registry import resolve
      self.methods = {**self.methods, name: resolve(name, self.config)}
    return self.methods[name]

  def fit(self, method: Method | str) -> Fitted:
    """Fits (or restores) ``method`` once for this seed; later calls return the same value."""
    method = self.method(method) if isinstance(method, str) else method
    if method.name not in self._fitted:
      self._fitted[method.name] = method.fit(self)
    return self._fitted[method.name]

  def trained(self, owner: str, config: ml_collections.ConfigDict, train: Callable[[], Any]) -> Any:
    """What ``train()`` returns, once per checkpoint ``owner`` and seed (methods that share a checkpoint).

    Raises:
      ConfigError: two methods share the checkpoint but train with different configs.
    """
    if owner in self._trained:
      first, value = self._trained[owner]
      changes = [c for c in cfg_lib.diff(first, config) if not c.startswith("eval.")]  # evaluation trains nothing
      if changes:
        raise cfg_lib.ConfigError(f"methods sharing the checkpoint {owner!r} must train with the same config; "
                                  "they differ in:\n  " + "\n  ".join(changes))
      return value
    value = train()
    self._trained[owner] = (config, value)
    return value

  def remember(self, owner: str, config: ml_collections.ConfigDict, value: Any) -> None:
    """Records what training ``owner`` returned for this seed (population training trains seeds together)."""
    self._trained[owner] = (config, value)
