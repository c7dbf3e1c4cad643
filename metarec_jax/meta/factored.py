"""Inner loop with factored dense-layer updates: no per-task kernel is ever built.

An inner SGD step on a dense kernel adds ``-lr · Xᵀ D`` to it (``X`` the
layer's support inputs, ``D`` the loss gradient at its outputs). This loop
keeps ``X`` and ``-lr · D`` of every step instead of the sum, and the layers
apply them as ``(x Xᵀ)(-lr D)`` (`models.fast_weights`). The adapted model
computes exactly what the plain loop's adapted model computes (tested, MAML /
FOMAML / MeLU, several steps, with remat), with far fewer FLOPs and bytes
per task when ``S`` is small against the layer's width: MeLU's first layer is
256 × 64 = 16,384 numbers per task; its factors at S = 20 are 20 × (256 + 64).

It applies when every adapted leaf is the kernel or bias of a layer the
predict function lists in ``predict.fast_layers`` and the inner rate is one
number (Meta-SGD's per-entry rates do not factor): `factored_applies`. Its
cost grows with the square of the inner steps (each step reads the factors
of the steps before it), so ``meta.factored="auto"`` (the default) uses it
only where it needs fewer FLOPs than per-task kernels (`factored_pays`);
``"on"`` uses it wherever it applies, ``"off"`` never. The plain loop
(`inner.adapt`) runs otherwise.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from metarec_jax.meta.inner import Flat, merge
from metarec_jax.meta.losses import LossFn, masked_mse
from metarec_jax.models.fast_weights import FAST_DELTA, FAST_IN, FAST_PROBE
from metarec_jax.types import Features, PredictFn

PARAM_NAMES = ("kernel", "bias")


def _split(path: str) -> tuple[str, str]:
  layer, _, name = path.rpartition("/")
  return layer, name


MODES = ("auto", "on", "off")


def factored_mode(value: Any) -> str:
  """``meta.factored`` as one of `MODES` (True / False mean ``on`` / ``off``).

  Raises:
    ValueError: any other value.
  """
  if isinstance(value, bool):
    return "on" if value else "off"
  if value in MODES:
    return value
  raise ValueError(f"meta.factored must be one of {MODES} (or true / false), got {value!r}")


def factored_applies(predict: PredictFn, adapted: Flat, lrs: Any) -> bool:
  """Whether the factored loop can adapt ``adapted`` with rate(s) ``lrs``."""
  layers = set(predict.fast_layers)
  if not layers or isinstance(lrs, dict):
    return False
  return all(_split(k)[0] in layers and _split(k)[1] in PARAM_NAMES for k in adapted)


def factored_pays(adapted: Flat, steps: int, support: int, query: int) -> bool:
  """The cost rule of ``meta.factored="auto"``: fewer FLOPs than building per-task kernels.

  Per scored row, step ``j`` of the factored loop adds ``j · S`` rows of
  ``(Din + F)`` products to each layer, where building the kernel costs
  ``Din · F`` per step; so it pays while ``S (steps - 1) / 2 + Q`` stays
  below half of ``Σ Din·F / Σ (Din + F)`` over the adapted kernels (the
  factor 1/2 fitted on the MeLU-shaped step: 1 and 2 inner steps faster
  factored, 3 a tie, 5 and 10 slower; `benchmarks/README.md`).
  """
  shapes = [v.shape for k, v in adapted.items() if k.endswith("/kernel")]
  if not shapes or steps == 0:
    return False
  width = sum(a * b for a, b in shapes) / sum(a + b for a, b in shapes)
  return support * (steps - 1) / 2 + query <= width / 2


def use_factored(mode: str, predict: PredictFn, adapted: Flat, lrs: Any, steps: int, support: int,
                 query: int) -> bool:
  """Whether ``meta.factored=mode`` adapts ``adapted`` with the factored loop (sets of these sizes)."""
  return mode != "off" and factored_applies(predict, adapted, lrs) and (
      mode == "on" or factored_pays(adapted, steps, support, query))


def _layer_inputs(captured: dict, layer: str) -> dict[str, jax.Array]:
  """``{fast_in<suffix>: X}`` that ``layer`` recorded in a capture (sow keeps a tuple, one entry per call).

  Raises:
    ValueError: the layer ran more than once in one prediction (its factors
      would need every call's inputs).
  """
  node = captured
  for part in layer.split("/"):
    node = node[part]
  out = {}
  for name, values in node.items():
    if name.startswith(FAST_IN):
      if len(values) != 1:
        raise ValueError(f"layer {layer!r} ran {len(values)} times in one prediction; factored inner updates "
                         "need one call per layer: set meta.factored=false")
      out[name] = values[0]
  return out


def adapt_factored(predict: PredictFn, adapted: Flat, frozen: Flat, features: Features, user: jax.Array,
                   items: jax.Array, ratings: jax.Array, mask: jax.Array, lr: jax.Array | float,
                   steps: int, *, first_order: bool = False, remat: bool = False, unroll: bool = False,
                   loss_fn: LossFn = masked_mse) -> tuple[Flat, jax.Array]:
  """`inner.adapt` for dense layers, with updates kept factored.

  Same arguments as `inner.adapt` (``lr`` one rate). Returns the adapted leaves
  (biases updated, kernels unchanged) plus each adapted kernel's
  ``fast_in*`` / ``fast_delta`` factors under its layer path, and the support
  loss before each step ``[steps]``: ``merge(fast, frozen)`` scores like the
  plain loop's adapted params.
  """
  del unroll  # always unrolled (see below)
  if steps == 0:
    return adapted, jnp.zeros((0,), jnp.float32)
  layers = sorted({_split(k)[0] for k in adapted})
  kernels = {layer for layer in layers if f"{layer}/kernel" in adapted}
  leaf = {layer: adapted[f"{layer}/kernel"] if layer in kernels else adapted[f"{layer}/bias"] for layer in layers}
  probes = {f"{layer}/{FAST_PROBE}": jnp.zeros((items.shape[0], x.shape[-1]), x.dtype) for layer, x in leaf.items()}

  def support_loss(probe, fast):
    scores, captured = predict(merge({**fast, **probe}, frozen), features, user, items,
                               (items, ratings, mask), True, capture=True)
    return loss_fn(scores, ratings, mask), captured

  def step(fast: Flat, earlier: dict) -> tuple[Flat, tuple[jax.Array, dict]]:
    """One SGD step on top of the ``earlier`` steps' stacked factors: the new leaves, loss and ``(X, -lr D)``."""
    (loss, captured), grads = jax.value_and_grad(support_loss, has_aux=True)(probes, {**fast, **earlier})
    if first_order:
      grads, captured = jax.lax.stop_gradient((grads, captured))
    new, factors = dict(fast), {}
    for layer in layers:
      d = grads[f"{layer}/{FAST_PROBE}"]
      if f"{layer}/bias" in fast:
        new[f"{layer}/bias"] = fast[f"{layer}/bias"] - lr * jnp.sum(d, axis=0)
      if layer in kernels:
        factors[f"{layer}/{FAST_DELTA}"] = -lr * d
        factors.update({f"{layer}/{name}": x for name, x in _layer_inputs(captured, layer).items()})
    return new, (loss, factors)

  if remat:
    step = jax.checkpoint(step)
  # Unrolled: step j reads exactly the j earlier steps' factors. (A scan would
  # carry [steps, S, ·] buffers whose every slot the backward pass visits at
  # every step: quadratic memory traffic, slower than per-task kernels by 5 steps.)
  fast, losses, history = dict(adapted), [], []
  for _ in range(steps):
    earlier = {k: jnp.stack([h[k] for h in history]) for k in history[0]} if history else {}
    fast, (loss, factors) = step(fast, earlier)
    losses.append(loss)
    history.append(factors)
  fast.update({k: jnp.stack([h[k] for h in history]) for k in history[0]})
  return fast, jnp.stack(losses)


__all__ = ["MODES", "adapt_factored", "factored_applies", "factored_mode", "factored_pays", "use_factored"]
