"""Inner-loop adaptation: ``lax.scan`` of SGD steps on the chosen params.

Params are split by a path filter into the leaves that adapt and the leaves
that stay frozen; both halves are flat dicts keyed by ``'a/b/c'`` paths, so
MAML (adapt all), ANIL / MeLU (adapt the head) and "adapt embeddings only" are
one code path with different regular expressions. A text encoder's params
(``.../text_encoder/...``, the sentence encoder of a ``tokens`` item field)
never adapt in the inner loop, whatever the filter: the outer loop alone
fine-tunes them (``model.text_encoder.finetune``).
"""

from __future__ import annotations

import re
from typing import Any

import flax.traverse_util
import jax
import jax.numpy as jnp

from metarec_jax.meta.losses import LossFn, masked_mse
from metarec_jax.models.text import ENCODER_PATH
from metarec_jax.types import Features, PredictFn

Params = Any
Flat = dict[str, jax.Array]

ADAPT_ALIASES = {"all": r".*", "head": r"^head/", "extractor": r"^extractor/",
                 "embeddings": r"^extractor/(user|item)/"}


def adapt_pattern(spec: str) -> str:
  """Resolves an adapt filter: an alias (all, head, extractor, embeddings) or a regex."""
  return ADAPT_ALIASES.get(spec, spec)


def flatten(params: Params) -> Flat:
  return flax.traverse_util.flatten_dict(params, sep="/")


def unflatten(flat: Flat) -> Params:
  return flax.traverse_util.unflatten_dict(flat, sep="/")


def partition(params: Params, pattern: str) -> tuple[Flat, Flat]:
  """Splits params into (adapted, frozen) flat dicts by a path regex.

  Text encoder params (`models.text.ENCODER_PATH`) are always frozen here.

  Raises:
    ValueError: no parameter path matches (the message lists the paths).
  """
  flat = flatten(params)
  rx = re.compile(adapt_pattern(pattern))
  adapted = {k: v for k, v in flat.items() if rx.search(k) and not ENCODER_PATH.search(k)}
  if not adapted:
    shown = sorted(k for k in flat if not ENCODER_PATH.search(k))
    raise ValueError(f"adapt filter {pattern!r} matches no parameter; paths are: {shown} (text encoder params "
                     "never adapt in the inner loop)")
  frozen = {k: v for k, v in flat.items() if k not in adapted}
  return adapted, frozen


def merge(adapted: Flat, frozen: Flat) -> Params:
  return unflatten({**frozen, **adapted})


def set_loss(predict: PredictFn, params: Params, features: Features, user, items, ratings, mask,
             support=None, loo: bool = False, loss_fn: LossFn = masked_mse):
  """The loss of one task's predictions on one set of its ratings (or labels).

  ``support`` is the set the model may condition on; ``loo`` says it is the
  scored set itself (each rating is then left out of its own prediction).
  ``loss_fn(scores, targets, mask)`` is masked MSE for ratings, BCE or BPR for
  implicit feedback (`meta.losses`).
  """
  return loss_fn(predict(params, features, user, items, support, loo), ratings, mask)


def adapt(predict: PredictFn, adapted: Flat, frozen: Flat, features: Features, user: jax.Array,
          items: jax.Array, ratings: jax.Array, mask: jax.Array, lrs: Flat | jax.Array,
          steps: int, *, first_order: bool = False, remat: bool = False, unroll: bool = False,
          loss_fn: LossFn = masked_mse) -> tuple[Flat, jax.Array]:
  """Runs ``steps`` SGD steps on one task's set, adapting only ``adapted``.

  Args:
    predict: the model's predict function.
    adapted: the leaves that adapt (flat dict).
    frozen: the leaves that stay fixed.
    features: device-resident feature tables.
    user: the task's user id.
    items: ``[S]`` item ids of the set adapted on.
    ratings: ``[S]`` their ratings.
    mask: ``[S]`` validity mask.
    lrs: a scalar inner learning rate or a flat dict of per-parameter rates
      (Meta-SGD) shaped like ``adapted``.
    steps: number of inner steps (0: no adaptation).
    first_order: stop gradients through the inner gradients (FOMAML).
    remat: rematerialise each inner step in the backward pass.
    unroll: unroll the loop of steps (a ``lax.scan`` otherwise).
    loss_fn: the per-set loss (`meta.losses`; masked MSE by default).

  Returns:
    The adapted leaves and the support loss before each step ``[steps]``.
  """

  def support_loss(fast):
    return set_loss(predict, merge(fast, frozen), features, user, items, ratings, mask,
                    support=(items, ratings, mask), loo=True, loss_fn=loss_fn)

  def step(fast, _):
    loss, grads = jax.value_and_grad(support_loss)(fast)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    if isinstance(lrs, dict):
      fast = {k: fast[k] - lrs[k] * grads[k] for k in fast}
    else:
      fast = {k: fast[k] - lrs * grads[k] for k in fast}
    return fast, loss

  if steps == 0:
    return adapted, jnp.zeros((0,), jnp.float32)
  if remat:
    step = jax.checkpoint(step)
  return jax.lax.scan(step, adapted, None, length=steps, unroll=steps if unroll else 1)
