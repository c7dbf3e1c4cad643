"""Exact integer draws inside jitted code: uniform below a bound, and distinct indices at O(k²) cost.

`randbelow` draws integers uniform in ``[0, bound)`` from 64 random bits
(no rejection loop, cheap to compile). `distinct_below` draws ``k`` distinct
indices of ``range(n)`` in random order at a cost independent of ``n``; the
task batch of a large task set is drawn with it (`data.tasks.sample_batch`),
where `jax.random.choice(replace=False)` would permute all ``n`` tasks on every
step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _mulhi(a: jax.Array, b: jax.Array) -> jax.Array:
  """The high 32 bits of the 64-bit product of ``uint32`` arrays (16-bit limbs: no x64 needed)."""
  lo16 = jnp.uint32(0xFFFF)
  a0, a1, b0, b1 = a & lo16, a >> 16, b & lo16, b >> 16
  p00, p01, p10 = a0 * b0, a0 * b1, a1 * b0
  mid = (p00 >> 16) + (p01 & lo16) + (p10 & lo16)
  return a1 * b1 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)


def randbelow(key: jax.Array, bound: jax.Array, num: int) -> jax.Array:
  """``num`` integers uniform in ``[0, bound)`` (``1 <= bound < 2**31``), as ``int32``.

  ``floor(R * bound / 2**64)`` of 64 random bits ``R``: every value has
  ``floor`` or ``ceil`` of ``2**64 / bound`` of the ``R``s, a relative error
  below ``2**-33``; no rejection loop, and far cheaper to compile than
  `jax.random.randint`.
  """
  bits = jax.random.bits(key, (2, num), jnp.uint32)
  m = jnp.asarray(bound).astype(jnp.uint32)
  low = bits[0] * m                       # R_hi * m = (high:low), plus mulhi(R_lo, m), carried
  total = low + _mulhi(bits[1], m)
  return (_mulhi(bits[0], m) + (total < low).astype(jnp.uint32)).astype(jnp.int32)


def distinct_below(key: jax.Array, n: int, k: int) -> jax.Array:
  """``k`` distinct integers of ``range(n)``, a uniformly random ordered sample (``k <= n``), as ``int32``.

  The same distribution as ``jax.random.choice(key, n, (k,), replace=False)``
  (a uniform ordered sample without replacement; not the same numbers), at
  O(k²) work and O(k) memory instead of a permutation of all ``n``: draw
  ``i`` is uniform below ``n - i`` and is mapped to the ``r``-th integer not
  drawn yet, ``r + #{j : s_j - j <= r}`` over the drawn ones ``s`` in
  ascending order.

  Raises:
    ValueError: ``k > n`` or ``n >= 2**31``.
  """
  if k > n or n >= 2 ** 31:
    raise ValueError(f"distinct_below draws k <= n < 2**31 integers; got k={k}, n={n}")
  r = randbelow(key, n - jnp.arange(k), k)
  j = jnp.arange(k)
  big = jnp.iinfo(jnp.int32).max

  def draw(i, carry):
    drawn, out = carry                 # drawn: the first i draws, ascending, then int32 max
    x = r[i] + jnp.sum((drawn - j <= r[i]) & (j < i))
    pos = jnp.sum(drawn < x)
    drawn = jnp.where(j < pos, drawn, jnp.where(j == pos, x, jnp.roll(drawn, 1)))
    return drawn, out.at[i].set(x)

  return jax.lax.fori_loop(0, k, draw, (jnp.full((k,), big, jnp.int32), jnp.zeros((k,), jnp.int32)))[1]
