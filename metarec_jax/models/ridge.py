"""Closed-form user adaptation: a ridge-regression user vector over learned item factors.

Matrix factorisation "folds in" a new user by solving a small ridge problem
over the item factors of the items the user rated. `RidgeUserVector` does the
same inside the model, differentiably, so the outer loop learns item factors
(and a user prior from the user's side features) that make that one solve
predict well from a few ratings: closed-form adaptation in the inner loop, as
in R2-D2 (Bertinetto et al., ICLR 2019), here per user.

For one user with support items ``s`` and support targets ``t_s`` (residual
ratings), item factors ``q_s = [1, W f_s]`` (an intercept, which is the user
bias, then ``dim`` learned factors) and a prior ``p_0 = [0, V f_u]`` from the
user's features, the user vector is

    p = p_0 + (Q_sᵀ Q_s + diag(λ))⁻¹ Q_sᵀ (t - Q_s p_0)

and an item scores ``q_iᵀ p``. ``λ`` (one per factor, the first for the
intercept) is learned.

Content that only the user's own ratings should weigh (``content_dim``:
e.g. text embeddings, through ``model.ridge_fields``) adds a block of
factors ``C c_i`` to ``q_i`` whose prior is 0: its weights are solved from
the support set alone, so the outer loop cannot fold a global item effect
(an item's quality, memorised through its unique text) into them. On the support items themselves the scores are
leave-one-out, from the usual identity for ridge regression: with hat
diagonal ``h_s``, the fit without ``s`` is ``(f_s - h_s e_s) / (1 - h_s)``
where ``f_s`` is the fitted value and ``e_s`` the target of the fitted part.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def spd_solve(a: jax.Array, b: jax.Array) -> jax.Array:
  """Solves ``a x = b`` for a small symmetric positive definite ``a`` ``[n, n]``.

  Cholesky factorisation and the two triangular solves as ``fori_loop``s of
  plain XLA ops (``b`` is ``[n]`` or ``[n, k]``). On the CPU, jaxlib's LAPACK
  kernels batched under ``vmap`` split their batch over XLA's thread pool and
  were seen to deadlock on a 2-core machine (every worker waiting, nothing
  running); these loops never leave XLA. Differentiable to any order; ``a``
  is symmetrised first, so its gradient is symmetric too.
  """
  a = (a + a.T) / 2
  n = a.shape[-1]
  rows = jnp.arange(n)

  def factor(j, low):
    v = a[:, j] - low @ low[j]  # row j of low holds columns < j only
    return low.at[:, j].set(jnp.where(rows >= j, v / jnp.sqrt(v[j]), 0.0))

  low = jax.lax.fori_loop(0, n, factor, jnp.zeros_like(a))

  def forward(i, y):  # low y = b; entries >= i of y are still 0
    return y.at[i].set((b[i] - low[i] @ y) / low[i, i])

  def backward(k, x):  # lowᵀ x = y; entries <= i of x are still 0
    i = n - 1 - k
    return x.at[i].set((y[i] - low[:, i] @ x) / low[i, i])

  y = jax.lax.fori_loop(0, n, forward, jnp.zeros_like(b))
  return jax.lax.fori_loop(0, n, backward, jnp.zeros_like(b))


class RidgeUserVector(nn.Module):
  """Scores items with a per-user ridge solution over learned item factors.

  Attributes:
    dim: number of learned item factors (the intercept comes on top).
    init_reg: initial ridge penalty ``λ`` of every factor (the intercept's
      plays the role of the user-bias shrinkage ``model.bias_reg``).
    content_dim: factors of the content block (0: none).
    content_reg: initial penalty of the content factors (large: the block
      starts nearly off and the outer loop opens it where it helps).
  """

  dim: int = 16
  init_reg: float = 5.0
  content_dim: int = 0
  content_reg: float = 100.0

  @nn.compact
  def __call__(self, f_u: jax.Array, f_i: jax.Array, f_s: jax.Array, targets: jax.Array,
               mask: jax.Array, loo: bool = False, c_i: jax.Array | None = None,
               c_s: jax.Array | None = None) -> jax.Array:
    """Scores ``[N]``.

    Args:
      f_u: the user's side-feature vector ``[Du]`` (drives the prior).
      f_i: feature vectors of the scored items ``[N, Di]``.
      f_s: feature vectors of the support items ``[S, Di]``.
      targets: support targets ``[S]`` (0 where masked).
      mask: support mask ``[S]`` (1 = a real rating).
      loo: the scored items are the support items, position for position;
        each is then scored by the solution fitted without it.
      c_i: content of the scored items ``[N, Dc]`` (with ``content_dim``):
        ``content_dim`` more factors, with prior 0.
      c_s: content of the support items ``[S, Dc]``.
    """
    if f_u.ndim != 1 or f_i.ndim != 2 or f_s.ndim != 2:
      raise ValueError(f"RidgeUserVector scores one user at a time: got f_u {f_u.shape}, f_i {f_i.shape}, "
                       f"f_s {f_s.shape}; vmap over users")
    f32 = jnp.float32
    mask = mask.astype(f32)
    factors = nn.Dense(self.dim, name="item_factors")
    prior = nn.Dense(self.dim, name="user_prior", kernel_init=nn.initializers.zeros)(f_u.astype(f32))
    if (c_i is None) != (not self.content_dim) or (c_s is None) != (c_i is None):
      raise ValueError(f"RidgeUserVector(content_dim={self.content_dim}) needs content c_i and c_s exactly "
                       "when content_dim > 0")
    init = jnp.concatenate([jnp.full((self.dim + 1,), math.log(self.init_reg)),
                            jnp.full((self.content_dim,), math.log(self.content_reg))])
    log_reg = self.param("log_reg", lambda key, shape: init, (self.dim + 1 + self.content_dim,))

    def with_intercept(q):
      return jnp.concatenate([jnp.ones(q.shape[:-1] + (1,), f32), q], axis=-1)

    q_i = with_intercept(factors(f_i.astype(f32)))
    q_s = with_intercept(factors(f_s.astype(f32)))
    p_0 = jnp.concatenate([jnp.zeros((1,), f32), prior])
    if self.content_dim:
      content = nn.Dense(self.content_dim, name="content_factors")
      q_i = jnp.concatenate([q_i, content(c_i.astype(f32))], axis=-1)
      q_s = jnp.concatenate([q_s, content(c_s.astype(f32))], axis=-1)
      p_0 = jnp.concatenate([p_0, jnp.zeros((self.content_dim,), f32)])
    q_s = q_s * mask[:, None]
    resid = (targets.astype(f32) - q_s @ p_0) * mask  # what the prior leaves unexplained
    a = q_s.T @ q_s + jnp.diag(jnp.exp(log_reg))
    shift = spd_solve(a, q_s.T @ resid)
    if not loo:
      return q_i @ (p_0 + shift)
    fitted = q_s @ shift
    hat = jnp.sum(q_s * spd_solve(a, q_s.T).T, axis=-1)  # diagonal of Q A⁻¹ Qᵀ, < 1
    return q_i @ p_0 + (fitted - hat * resid) / (1.0 - hat)
