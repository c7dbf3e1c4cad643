"""Dense layers whose inner-loop updates stay factored (never a per-task kernel).

An SGD step on a dense kernel moves it by ``-lr · Xᵀ D``: ``X`` are the
layer's inputs on the support rows ``[S, Din]`` and ``D`` the loss gradient at
its outputs ``[S, F]``. So after ``k`` steps the adapted layer computes

    x W_k = x W - Σ_j lr (x X_jᵀ) D_j

and the per-task kernel ``W_k`` (``Din × F`` numbers per task: 16,384 for
MeLU's first layer) is never needed: ``x X_jᵀ`` is ``[N, S]`` and ``D_j`` is
``[S, F]``. Under ``vmap`` over tasks the shared ``x W`` also becomes one wide
product instead of one product per task. `meta.factored` runs the inner loop
this way (exactly the same numbers as adapting the kernel, up to rounding; tested).

A layer reads three optional entries next to its ``kernel`` and ``bias`` in
``params``, which only the factored inner loop puts there:

* ``fast_probe`` ``[S, F]`` (zeros): added to the output; its gradient is ``D``.
* ``fast_in{suffix}`` ``[K, S, Din]``: support inputs of the ``K`` inner steps
  (`PairDense` keeps its user and item halves: ``fast_in_user``, ``fast_in_item``).
* ``fast_delta`` ``[K, S, F]``: ``-lr · D`` of those steps.

Applied with ``mutable=["intermediates"]``, a layer records its inputs under
``fast_in{suffix}`` (what the inner loop stores as ``X``). Without any of
these, the layers are `flax.linen.Dense` (same params, init and numbers).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
from flax.linen.dtypes import promote_dtype
import jax
import jax.numpy as jnp

FAST_PROBE = "fast_probe"
FAST_IN = "fast_in"
FAST_DELTA = "fast_delta"


def fast_weight_terms(module: nn.Module, y: jax.Array, inputs: dict[str, jax.Array]) -> jax.Array:
  """Adds a layer's factored updates (and probe) to its output ``y``; records its inputs.

  Args:
    module: the layer (bound), whose ``params`` may hold the ``fast_*`` entries.
    y: the layer's output without them, ``[..., N, F]`` (or ``[..., F]``).
    inputs: ``{suffix: x}``: the layer's inputs, each ``[..., N, Din_part]``
      or one row ``[Din_part]`` shared by all N outputs (`PairDense`'s user half).

  Returns:
    ``y + Σ_parts (x X_partᵀ) (-lr D) + probe``.
  """
  if module.is_mutable_collection("intermediates"):
    for suffix, x in inputs.items():
      if x.ndim < y.ndim:  # one row for all outputs: record it once per output row
        x = jnp.broadcast_to(jnp.expand_dims(x, -2), y.shape[:-1] + x.shape[-1:])
      module.sow("intermediates", FAST_IN + suffix, x)
  if module.has_variable("params", FAST_DELTA):
    delta = module.get_variable("params", FAST_DELTA)  # [K, S, F]
    rows = delta.shape[0] * delta.shape[1]
    coef = 0.0
    for suffix, x in inputs.items():
      stored = module.get_variable("params", FAST_IN + suffix)  # [K, S, Din_part]
      part = x @ stored.reshape(rows, -1).astype(x.dtype).T  # [..., (N,) K·S]
      coef = coef + (jnp.expand_dims(part, -2) if x.ndim < y.ndim else part)
    y = y + (coef @ delta.reshape(rows, -1).astype(y.dtype)).astype(y.dtype)
  if module.has_variable("params", FAST_PROBE):
    y = y + module.get_variable("params", FAST_PROBE).astype(y.dtype)
  return y


class FastDense(nn.Module):
  """`flax.linen.Dense` that accepts factored inner-loop updates (`fast_weight_terms`).

  Same params (``kernel [Din, F]``, ``bias [F]``), initialisation and outputs
  as ``nn.Dense`` when no ``fast_*`` entry is present.
  """

  features: int
  dtype: Any = None
  bias_init: Callable = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
    bias = self.param("bias", self.bias_init, (self.features,))
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ()))) + bias
    return fast_weight_terms(self, y, {"": x})


__all__ = ["FAST_DELTA", "FAST_IN", "FAST_PROBE", "FastDense", "fast_weight_terms"]
