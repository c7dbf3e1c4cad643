"""The one lookup from config names to model parts: extractors (``model.extractor``) and heads (``model.head``).

A builder takes the `RecModel` whose part it builds (every model setting is
an attribute of it) and the module keyword arguments (``name``, ``parent``),
and returns an unbound Flax module. `RecModel` builds its parts only through
here, and exposes them (`RecModel.make_extractor`, `RecModel.make_head`), so
serving and distillation never rebuild a part from strings.

Your own part, in an experiment file or a module it imports::

    from metarec_jax.models import register_head

    @register_head("gated_bilinear")
    def gated_bilinear(model, **module_kwargs):
      return GatedBilinearHead(offset=model.offset, **module_kwargs)

then ``c.model.head = "gated_bilinear"``. A head maps ``f_u [..., Du]`` (or
``[..., N, Du]``) and ``f_i [..., N, Di]`` to scores ``[..., N]``; an
extractor has ``embed_user(user_cols)`` and ``embed_items(item_cols)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from metarec_jax.models.extractor import Extractor
from metarec_jax.models.heads import DotHead, MLPHead, RelationHead
from metarec_jax.suggest import did_you_mean

Builder = Callable[..., nn.Module]  # (model, **module_kwargs) -> unbound module


@dataclasses.dataclass(frozen=True)
class HeadEntry:
  """A registered head.

  Attributes:
    build: ``(model, **module_kwargs) -> module``.
    fast_layers: ``model -> names`` of the head's layers that take factored
      inner-loop updates (`models.fast_weights`; relative to the head).
  """

  build: Builder
  fast_layers: Callable[[Any], tuple[str, ...]] = lambda model: ()


EXTRACTORS: dict[str, Builder] = {}
HEADS: dict[str, HeadEntry] = {}


def _same_origin(old: Callable, new: Callable) -> bool:
  """A re-imported file registers new function objects from the same module: not a clash."""
  return getattr(old, "__module__", None) == getattr(new, "__module__", None) and \
      getattr(old, "__qualname__", None) == getattr(new, "__qualname__", None)


def _register(table: dict, kind: str, name: str, entry: Any, fn: Callable, key: str) -> None:
  old = table.get(name)
  if old is not None and not _same_origin(old.build if kind == "head" else old, fn):
    raise ValueError(f"model.{key}: {name!r} is already registered ({kind}s: {sorted(table)}); choose another name")
  table[name] = entry


def register_extractor(name: str, build: Builder | None = None):
  """Registers an extractor builder under ``name`` (usable as a decorator).

  Raises:
    ValueError: ``name`` is taken by another builder.
  """
  def add(fn: Builder) -> Builder:
    _register(EXTRACTORS, "extractor", name, fn, fn, "extractor")
    return fn
  return add(build) if build is not None else add


def register_head(name: str, build: Builder | None = None, *,
                  fast_layers: Callable[[Any], tuple[str, ...]] | None = None):
  """Registers a head builder under ``name`` (usable as a decorator).

  Args:
    name: the ``model.head`` value.
    build: ``(model, **module_kwargs) -> module``.
    fast_layers: ``model -> layer names`` that take factored updates.

  Raises:
    ValueError: ``name`` is taken by another builder.
  """
  def add(fn: Builder) -> Builder:
    _register(HEADS, "head", name, HeadEntry(fn, fast_layers or (lambda model: ())), fn, "head")
    return fn
  return add(build) if build is not None else add


def _lookup(table: dict, kind: str, name: str):
  if name not in table:
    raise ValueError(f"unknown {kind} {name!r}{did_you_mean(name, table)}; registered: {sorted(table)} "
                     f"(model.{kind}; register your own "
                     f"with metarec_jax.models.register_{kind})")
  return table[name]


def build_extractor(model: Any, **module_kwargs) -> nn.Module:
  """The extractor ``model.extractor`` names, built for ``model``."""
  return _lookup(EXTRACTORS, "extractor", model.extractor)(model, **module_kwargs)


def build_head(model: Any, **module_kwargs) -> nn.Module:
  """The head ``model.head`` names, built for ``model``."""
  return _lookup(HEADS, "head", model.head).build(model, **module_kwargs)


def head_fast_layers(model: Any) -> tuple[str, ...]:
  """The head's layers that take factored updates (relative to the head)."""
  return tuple(_lookup(HEADS, "head", model.head).fast_layers(model))


# --------------------------------------------------------------------------- the built-in parts


@register_extractor("fields")
def _fields(model, **kw) -> nn.Module:
  return Extractor(model.user_specs, model.item_specs, model.embed_dim, model.user_mlp, model.item_mlp,
                   dtype=model.dtype, **kw)


@register_extractor("transformer")
def _transformer(model, **kw) -> nn.Module:
  from metarec_jax.models.field_transformer import FieldTransformerExtractor, TransformerSpec
  return FieldTransformerExtractor(model.user_specs, model.item_specs, model.transformer or TransformerSpec(),
                                   dtype=model.dtype or jnp.float32, **kw)


def _mlp_fast_layers(model) -> tuple[str, ...]:
  return tuple(f"dense_{i}" for i in range(len(model.head_hidden))) + ("out",)


register_head("mlp", lambda model, **kw: MLPHead(model.head_hidden, model.offset, dtype=model.dtype, **kw),
              fast_layers=_mlp_fast_layers)
register_head("relation", lambda model, **kw: RelationHead(model.offset, **kw))
register_head("dot", lambda model, **kw: DotHead(model.offset, **kw))

__all__ = ["EXTRACTORS", "HEADS", "HeadEntry", "register_extractor", "register_head", "build_extractor",
           "build_head", "head_fast_layers"]
