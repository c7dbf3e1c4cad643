"""The one registry of methods: names and variants -> `Method` objects.

A name in ``config.methods`` resolves, in this order, to

1. a variant (``config.variants[name]``, or else a named preset of
   `methods.presets`: ``melu_plus``, ``melu_ridge``, ...): its base method
   (``base=NAME``) or, without one, the learner its config's
   ``meta.learner`` names, with the variant's changes applied;
2. a registered method type (`register_method`): the baselines, ``pooled``,
   ``pooled_finetune``, ``distill`` and yours;
3. a learner of the engine's table (`meta.learners.LEARNERS`, including
   those added with `meta.learners.register_learner`): a `MetaLearner`
   trained with it.

Your own method, in an experiment file or a module it imports::

    from metarec_jax.methods import Method, register_method

    @register_method("my_method")
    class MyMethod(Method):
      ...

then ``c.methods = (..., "my_method")``.
"""

from __future__ import annotations

from typing import Iterable

import ml_collections

from metarec_jax import config as cfg_lib
from metarec_jax.meta.learners import LEARNERS
from metarec_jax.methods.base import Method
from metarec_jax.methods.presets import PRESETS, with_presets
from metarec_jax.pyfile import origin
from metarec_jax.suggest import did_you_mean

METHODS: dict[str, type[Method]] = {}
# Config blocks of the registered methods (block name -> defaults); `config.default_config` adds them.
BLOCKS: dict[str, dict] = {}


def register_method(name: str, cls: type[Method] | None = None):
  """Registers a method type under ``name`` (usable as a class decorator).

  Re-registering from the same module and class name (a re-imported
  experiment file) replaces the entry.

  A method type named like a learner takes precedence over it (``pooled``).

  Raises:
    ValueError: ``name`` is taken by another class.
  """
  def add(c: type[Method]) -> type[Method]:
    old = METHODS.get(name)
    if old is not None and (old.__module__, old.__qualname__) != (c.__module__, c.__qualname__):
      raise ValueError(f"method {name!r} is already registered ({old.__module__}.{old.__qualname__}); "
                       "choose another name")
    for block, values in c.config_blocks.items():
      taken = BLOCKS.get(block)
      if taken is not None and taken != values:
        raise ValueError(f"method {name!r}: config block {block!r} is declared by another method with other "
                         f"defaults ({taken}); share the same defaults or choose another block name")
      BLOCKS[block] = dict(values)
    METHODS[name] = c
    return c
  return add(cls) if cls is not None else add


def config_blocks() -> dict[str, dict]:
  """The config blocks of every registered method (the built-in ones are imported first)."""
  import metarec_jax.methods  # noqa: F401  (the built-in registrations)
  return {block: dict(values) for block, values in BLOCKS.items()}


def known_methods(config: ml_collections.ConfigDict) -> list[str]:
  """Every name ``config.methods`` may list."""
  return sorted(set(METHODS) | set(LEARNERS) | set(PRESETS) | set(config.variants.keys()))


def resolve(name: str, config: ml_collections.ConfigDict) -> Method:
  """The method ``name`` of a run with ``config``.

  Raises:
    ConfigError: an unknown name, a variant whose base is unknown, or a
      malformed variant.
  """
  base, mc, keys = None, config, frozenset()
  config = with_presets(config, [name])
  if name in config.variants:
    base, mc, keys = cfg_lib.apply_variant(config, name)
    kind = base or mc.meta.learner
    if kind == name:
      raise cfg_lib.ConfigError(f"variants.{name}: a variant cannot be its own base")
  else:
    kind = name
  if kind in METHODS:
    return METHODS[kind](name, mc, variant_keys=keys)
  if kind in LEARNERS:
    from metarec_jax.methods.learned import MetaLearner
    fixed_learner = kind if (base is not None or name not in config.variants) else None
    return MetaLearner(name, mc, variant_keys=keys, learner=fixed_learner)
  if name in config.variants:
    what = f"base={base!r}" if base else f"meta.learner={kind!r}"
    raise cfg_lib.ConfigError(f"variants.{name}: {what} names no method or learner; known: "
                              f"{sorted(set(METHODS) | set(LEARNERS))}")
  known = known_methods(config)
  raise cfg_lib.ConfigError(f"methods: unknown method {name!r}{did_you_mean(name, known)} (known: {', '.join(known)})")


def resolve_all(config: ml_collections.ConfigDict) -> list[Method]:
  """``config.methods`` as methods, in order."""
  return [resolve(name, config) for name in config.methods]


def method_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The config method ``name`` fits with (variant changes and the values it fixes applied)."""
  return resolve(name, config).config


def check_methods(config: ml_collections.ConfigDict, problems: list[str]) -> None:
  """Each method's slice of validation (called by `config.validate`)."""
  for name in config.methods:
    try:
      method = resolve(name, config)
    except cfg_lib.ConfigError as err:
      problems.append(str(err))
      continue
    method.validate(problems)


def check_overrides_used(config: ml_collections.ConfigDict, keys: Iterable[str]) -> None:
  """Refuses ``--set`` keys that no method of the run reads.

  A key every method shadows (each names its own learner, its variant sets
  the key, or it does not read it) would change nothing: a typo or a
  misunderstanding, said with the reason per method.

  Raises:
    ConfigError: a key no method reads.
  """
  methods = resolve_all(config)
  problems = []
  for key in dict.fromkeys(keys):
    reasons = [m.ignores(key) for m in methods]
    if all(reasons):
      problems.append(f"--set {key}: no method of this run uses it, so it would change nothing ("
                      + "; ".join(reasons) + ")")
  if problems:
    raise cfg_lib.ConfigError("; ".join(problems))


def origins(config: ml_collections.ConfigDict) -> list[dict[str, str]]:
  """The files / modules outside this package that define the run's methods and model parts.

  A reopened run folder imports them again (`rundir.RunDir.open`), so the
  registrations its config names exist.
  """
  from metarec_jax.models import registry as models
  found = []
  for method in resolve_all(config):
    mc = method.config
    objects = [type(method)]
    learner = LEARNERS.get(mc.meta.learner)
    if learner is not None and learner.task_loss is not None:
      objects.append(learner.task_loss)
    if mc.model.head in models.HEADS:
      objects.append(models.HEADS[mc.model.head].build)
    if mc.model.extractor in models.EXTRACTORS:
      objects.append(models.EXTRACTORS[mc.model.extractor])
    for obj in objects:
      entry = origin(obj)
      if entry is not None and entry not in found:
        found.append(entry)
  return found
