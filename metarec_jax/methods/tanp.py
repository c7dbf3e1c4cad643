"""TaNP: the task-adaptive neural process (Lin et al., WWW 2021), as a support-conditioned method.

Lin, Wu, Zhou, Pan, Cao, Wang. "Task-adaptive Neural Process for User
Cold-Start Recommendation", The Web Conference 2021 (arXiv 2103.06137).
Reference code: github.com/IIEdm/TaNP (``TaNP/TaNP.py``,
``TaNP/embeddings_TaNP.py``, ``TaNP/train.sh``).

One task is one user ``i``: the context set ``C`` (our support set) and the
target set ``T`` (our query set) of pairs ``(x_ij, y_ij)``. Here ``x_ij =
[u_i, v_j]`` with ``u_i = e_u(f_u)`` and ``v_j = e_v(f_j)``: the extractor's
user and item features (`ConditionedModel.embed_task`: field embeddings,
the field transformer or text fields, whatever ``model.extractor`` names)
through the reference's two-layer ReLU towers ``e_u``, ``e_v``
(``first_embedding_dim`` -> ``second_embedding_dim``; modules ``user_emb``,
``item_emb``). ``y`` is the rating centred on ``model.offset`` (0 and the 0/1
label for implicit feedback). In the code:

* **Latent path** (the encoder ``h_θ``; modules ``xy_to_z``,
  ``z_to_mu_sigma``): ``r_ij = MLP([x_ij, y_ij])`` (Linear ``enc_h1_dim``,
  ReLU, Linear ``enc_h2_dim``, ReLU, Linear ``z1_dim``), ``r = mean_j r_ij``,
  ``s = ReLU(W_s r + b)``, ``μ = W_μ s + b``, ``log σ² = W_σ s + b``. The prior
  ``q(z | C)`` encodes the context set, the posterior ``q(z | C ∪ T)`` the
  context and the target set together (one mean over both, `_sum_count`).
* **Customization module** (task identity network ``m_φ`` and global pool
  ``A``; modules ``xy_to_task``, ``memory``): ``o_i = mean_j MLP([x_ij, y_ij])``
  over the context (Linear ``taskenc_h1_dim``, ReLU, Linear ``taskenc_h2_dim``,
  ReLU, Linear ``taskenc_final_dim``); the Student-t soft assignment to the
  ``clusters_k`` rows ``a_k`` of ``A``,
  ``c_ik = (1 + d_ik / τ)^(-(τ+1)/2) / Σ_k' (1 + d_ik' / τ)^(-(τ+1)/2)`` with
  ``d_ik = ||o_i - a_k||`` (`soft_assignment`); the task embedding
  ``p_i = c_i A + o_i``.
* **Clustering loss** (``L_u``): the sharpened target distribution
  ``t_ik = (c_ik² / f_k) / Σ_k' (c_ik'² / f_k')`` and ``KL(t_i || c_i)``
  (`target_distribution`, `clustering_loss`), weighted by ``λ``
  (``cluster_weight``).
* **Adaptive decoder** ``g_ω`` (module ``decoder``): three layers over
  ``[x_ij, z]`` (``dec_h1_dim``, ``dec_h2_dim``, ``dec_h3_dim``) then a linear
  output. FiLM (``decoder="film"``, the reference's active decoder):
  ``h_l = ReLU(γ_l ⊙ (W_l h_{l-1} + b_l) + β_l)`` with ``γ_l = tanh(W_γl p_i)``,
  ``β_l = tanh(W_βl p_i)`` (no biases). Gating-FiLM (``decoder="gating"``,
  registered as ``tanp_gating``; the reference's ``Gating_Decoder``): also
  ``η_l = tanh(W_ηl p_i)``, ``δ_l = sigmoid(W_δl p_i)``, and
  ``γ_l ← γ_l δ_l + η_l (1 - δ_l)``, ``β_l ← β_l δ_l + η_l (1 - δ_l)``.
* **Objective** per task: ``loss(g_ω(x_ij, z), y_ij)`` over ``C ∪ T`` (MSE on
  ratings as in the reference; ``meta.loss`` bce / bpr on implicit feedback)
  ``+ KL(q(z | C ∪ T) || q(z | C))`` (Gaussians with log-variances, summed
  over the ``z_dim`` dimensions, the reference's ``new_kl_div``)
  ``+ λ L_u``. The KL and ``λ L_u`` are sown as ``kl`` and ``cluster``
  (logged as ``reg_kl``, ``reg_cluster``).

Defaults (``config.tanp``) are the reference's ``train.sh`` ("training with
default hyper-parameters"): embeddings 32 -> 16, ``z1 = z2 = z = 32``,
encoder 32 -> 16, task encoder 32 -> 32 -> 16, ``k = 10`` clusters,
``τ = 1``, ``λ = 1``, decoder 32 -> 32 -> 16, dropout 0, Adam 1e-4, 32 tasks
per batch, 100 epochs. (``train_TaNP.py``'s argparse defaults differ:
encoder 64 -> 64, task encoder 128 -> 64 -> 64, ``k = 7``, ``λ = 0.1``,
decoder 128 -> 128 -> 128, 150 epochs.) The optimizer, the batch size and the
number of steps are the run's (``optimizer.lr``, ``train.*``).

Deviations from the paper and the reference code:

* **z is the mean, never a sample.** The engine's per-task loss takes no
  PRNG key, so training decodes with the posterior mean ``μ(C ∪ T)`` (the
  reference samples ``z ~ q(z | C ∪ T)`` by reparameterisation) and scoring
  with the prior mean ``μ(C)`` (the reference samples ``z ~ q(z | C)`` at
  test time too). Scores are deterministic; the KL term is unchanged.
* **The clustering loss is per task.** The reference's target distribution
  normalises ``c_ik²`` by the batch's cluster frequencies ``f_k = Σ_i c_ik``;
  the engine averages independent per-task losses (vmapped, chunkable), and
  one task alone has ``f_k = c_ik``, which makes ``t_i = c_i`` and the loss
  0. Here ``f_k = 1`` (uniform frequencies): ``t_ik = c_ik² / Σ_k' c_ik'²``,
  the same sharpening without the frequency correction. As in the reference,
  the gradient also flows through the target distribution (it is not
  stopped). The exact batch version needs a batch-level loss hook in the
  engine (``meta.learners.meta_gradient``).
* **Context and target sets are the engine's support and query sets.** The
  reference re-splits support ∪ query into a random context (at least
  ``context_min = 20`` ratings) and target each step; here the engine's
  sampler draws the support / query split. Like the reference, the decoder's
  loss runs over ``C ∪ T`` (``context_in_loss=True``; False: the query set
  only).
* The distance in ``c_ik`` is ``||o_i - a_k||`` as in the reference code
  (the paper writes the squared distance of DEC's Student-t kernel).
* The towers ``e_u``, ``e_v`` read the extractor's features instead of
  one-hot / multi-hot vectors (the extractor's embeddings are the linear map
  the reference's first layer applies to them); ratings are centred on
  ``model.offset`` and the offset added back to the decoder's output.
* An empty context set (no support ratings) encodes to the zero mean
  (``r = o = 0``): the prior prediction. The reference never meets one.
* Dropout (reference default 0) is not implemented. Layers are initialised
  like torch's ``nn.Linear`` (kernel and bias ``U(±1/sqrt(fan_in))``), ``A``
  like ``xavier_uniform_`` (Glorot-uniform), as in the reference; with
  these, ``γ_l = tanh(W_γl p)`` starts small and the decoder's output
  nearly constant (score std ~1e-3 on the tiny test data): TaNP needs a
  few hundred steps before its scores depend on the task.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from metarec_jax.meta.learners import LearnerSpec
from metarec_jax.methods.conditioned import ConditionedMethod
from metarec_jax.methods.registry import register_method
from metarec_jax.models.conditioned import LOSSES, ConditionedModel, apply_conditioned
from metarec_jax.prepared import Prepared
from metarec_jax.types import Features, MetaParams, PredictFn, TaskBatch

DECODERS = ("film", "gating")

# The reference's train.sh values (see the module docstring).
DEFAULTS: dict[str, Any] = dict(
    first_embedding_dim=32, second_embedding_dim=16,
    z1_dim=32, z2_dim=32, z_dim=32,
    enc_h1_dim=32, enc_h2_dim=16,
    taskenc_h1_dim=32, taskenc_h2_dim=32, taskenc_final_dim=16,
    clusters_k=10, temperature=1.0, cluster_weight=1.0,
    dec_h1_dim=32, dec_h2_dim=32, dec_h3_dim=16,
    decoder="film", context_in_loss=True,
)


class TorchDense(nn.Module):
  """A dense layer initialised like ``torch.nn.Linear``: kernel and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""

  features: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    bound = 1.0 / float(x.shape[-1]) ** 0.5
    init = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)
    y = x @ self.param("kernel", init, (x.shape[-1], self.features))
    return y + self.param("bias", init, (self.features,)) if self.use_bias else y


def _dense(width: int, name: str, use_bias: bool = True) -> TorchDense:
  return TorchDense(width, use_bias=use_bias, name=name)


class PairMLP(nn.Module):
  """``[x, y] -> Linear, ReLU, Linear, ReLU, Linear`` per pair (the reference's ``Encoder`` / ``TaskEncoder``).

  Attributes:
    widths: the three layer widths (the last one has no activation).
  """

  widths: Sequence[int]

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
    h = jnp.concatenate([x, y[:, None]], axis=-1)
    for l, w in enumerate(self.widths):
      h = _dense(w, f"layer_{l}")(h)
      if l < len(self.widths) - 1:
        h = nn.relu(h)
    return h


class Tower(nn.Module):
  """``Linear, ReLU, Linear, ReLU`` (the reference's ``User`` / ``Item`` embedding)."""

  widths: Sequence[int]

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for l, w in enumerate(self.widths):
      x = nn.relu(_dense(w, f"layer_{l}")(x))
    return x


class MuLogVar(nn.Module):
  """``r -> (μ, log σ²)`` through one ReLU layer (the reference's ``MuSigmaEncoder``).

  The reference names the second output ``log_sigma``; it is a log-variance
  (its sample is ``μ + ε exp(0.5 log_sigma)``).
  """

  hidden: int
  z_dim: int

  @nn.compact
  def __call__(self, r: jax.Array) -> tuple[jax.Array, jax.Array]:
    s = nn.relu(_dense(self.hidden, "hidden")(r))
    return _dense(self.z_dim, "mu")(s), _dense(self.z_dim, "log_var")(s)


def soft_assignment(o: jax.Array, centres: jax.Array, temperature: float) -> jax.Array:
  """``c_k ∝ (1 + ||o - a_k|| / τ)^(-(τ+1)/2)``, normalised over the ``K`` centres; ``[K]``, sums to 1.

  The distance is not squared, as in the reference code. Its gradient is
  finite where ``o`` meets a centre (the squared distance is floored at 1e-12).
  """
  sq = jnp.sum((o[None, :] - centres) ** 2, axis=-1)
  d = jnp.sqrt(jnp.maximum(sq, 1e-12))
  q = (1.0 + d / temperature) ** (-(temperature + 1.0) / 2.0)
  return q / jnp.sum(q)


def target_distribution(c: jax.Array, frequencies: jax.Array | None = None) -> jax.Array:
  """DEC's sharpened target ``t_k = (c_k² / f_k) / Σ_k' (c_k'² / f_k')`` over the last axis.

  Args:
    c: ``[..., K]`` soft assignments.
    frequencies: ``[K]`` soft cluster frequencies ``f_k``; the reference
      uses ``Σ_i c_ik`` over the task batch. None: uniform (``f_k = 1``),
      what a per-task loss can compute.
  """
  w = c ** 2 if frequencies is None else c ** 2 / frequencies
  return w / jnp.sum(w, axis=-1, keepdims=True)


def clustering_loss(c: jax.Array, frequencies: jax.Array | None = None) -> jax.Array:
  """``KL(t || c)`` with ``t = target_distribution(c, frequencies)`` (summed over ``K``, mean over leading axes)."""
  t = target_distribution(c, frequencies)
  return jnp.mean(jnp.sum(t * (jnp.log(t) - jnp.log(c)), axis=-1))


def gaussian_kl(mu_q: jax.Array, log_var_q: jax.Array, mu_p: jax.Array, log_var_p: jax.Array) -> jax.Array:
  """``KL(N(μ_q, σ_q²) || N(μ_p, σ_p²))`` of diagonal Gaussians, summed over dimensions."""
  return 0.5 * jnp.sum((jnp.exp(log_var_q) + (mu_q - mu_p) ** 2) / jnp.exp(log_var_p) - 1.0
                       + log_var_p - log_var_q)


class Memory(nn.Module):
  """The global pool ``A [K, d]`` and the task embedding ``p = c A + o``; returns ``(c [K], p [d])``."""

  clusters_k: int
  temperature: float

  @nn.compact
  def __call__(self, o: jax.Array) -> tuple[jax.Array, jax.Array]:
    centres = self.param("centres", nn.initializers.glorot_uniform(), (self.clusters_k, o.shape[-1]))
    c = soft_assignment(o, centres, self.temperature)
    return c, c @ centres + o


class FiLMDecoder(nn.Module):
  """``g_ω``: layers over ``[x, z]`` modulated by the task embedding (FiLM or Gating-FiLM); ``[N]`` outputs."""

  hidden: Sequence[int]
  gating: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, z: jax.Array, p: jax.Array) -> jax.Array:
    h = jnp.concatenate([x, jnp.broadcast_to(z, (x.shape[0], z.shape[-1]))], axis=-1)
    for l, w in enumerate(self.hidden):
      h = _dense(w, f"hidden_{l}")(h)
      gamma = jnp.tanh(_dense(w, f"film_{l}_gamma", use_bias=False)(p))
      beta = jnp.tanh(_dense(w, f"film_{l}_beta", use_bias=False)(p))
      if self.gating:
        eta = jnp.tanh(_dense(w, f"film_{l}_eta", use_bias=False)(p))
        delta = nn.sigmoid(_dense(w, f"film_{l}_delta", use_bias=False)(p))
        gamma = gamma * delta + eta * (1.0 - delta)
        beta = beta * delta + eta * (1.0 - delta)
      h = nn.relu(h * gamma + beta)
    return _dense(1, "output")(h)[:, 0]


def _sum_count(r: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  return jnp.sum(r * mask[:, None], axis=0), jnp.sum(mask)


class TaNPModel(ConditionedModel):
  """TaNP's encoder, customization module and adaptive decoder over the extractor's features.

  Attributes (the ``tanp`` config block; see the module docstring):
    first_embedding_dim: first layer of the user / item towers.
    second_embedding_dim: second layer (``x = [u, v]`` has twice this width).
    z1_dim: per-pair output of the latent encoder.
    z2_dim: hidden width of the ``(μ, log σ²)`` head.
    z_dim: latent width.
    enc_h1_dim: latent encoder's first hidden width.
    enc_h2_dim: latent encoder's second hidden width.
    taskenc_h1_dim: task identity network's first hidden width.
    taskenc_h2_dim: task identity network's second hidden width.
    taskenc_final_dim: task embedding width (and the centres').
    clusters_k: number of centres ``K`` in the global pool.
    temperature: ``τ`` of the Student-t kernel.
    cluster_weight: ``λ`` of the clustering loss.
    dec_h1_dim: decoder's first hidden width.
    dec_h2_dim: decoder's second hidden width.
    dec_h3_dim: decoder's third hidden width.
    decoder: ``film`` or ``gating`` (Gating-FiLM).
  """

  first_embedding_dim: int = 32
  second_embedding_dim: int = 16
  z1_dim: int = 32
  z2_dim: int = 32
  z_dim: int = 32
  enc_h1_dim: int = 32
  enc_h2_dim: int = 16
  taskenc_h1_dim: int = 32
  taskenc_h2_dim: int = 32
  taskenc_final_dim: int = 16
  clusters_k: int = 10
  temperature: float = 1.0
  cluster_weight: float = 1.0
  dec_h1_dim: int = 32
  dec_h2_dim: int = 32
  dec_h3_dim: int = 16
  decoder: str = "film"

  @nn.compact
  def __call__(self, user_cols, item_cols, support, loo=False, target=None):
    """Scores ``[N]`` of the items given the support set (the context); ``target`` adds the training losses.

    ``target = (ratings [N], mask [N])`` of the scored items is the target
    set ``T``: the posterior reads ``C ∪ T`` (masked target entries are not
    in ``T``); the KL and the clustering loss are sown into ``losses``. The
    soft assignment ``c`` is sown into ``intermediates`` as ``assignment``.
    """
    f_u, f_i, f_s, s_y, s_mask = self.embed_task(user_cols, item_cols, support)
    towers = (self.first_embedding_dim, self.second_embedding_dim)
    u = Tower(towers, name="user_emb")(f_u)
    item_emb = Tower(towers, name="item_emb")
    pair = lambda v: jnp.concatenate([jnp.broadcast_to(u, (v.shape[0], u.shape[-1])), v], axis=-1)
    x_s, x_i = pair(item_emb(f_s)), pair(item_emb(f_i))
    y_s = s_y - self.offset

    xy_to_z = PairMLP((self.enc_h1_dim, self.enc_h2_dim, self.z1_dim), name="xy_to_z")
    to_z = MuLogVar(self.z2_dim, self.z_dim, name="z_to_mu_sigma")
    sum_c, n_c = _sum_count(xy_to_z(x_s, y_s), s_mask)
    mu_c, log_var_c = to_z(sum_c / jnp.maximum(n_c, 1.0))  # prior q(z | C)

    o = _sum_count(PairMLP((self.taskenc_h1_dim, self.taskenc_h2_dim, self.taskenc_final_dim),
                           name="xy_to_task")(x_s, y_s), s_mask)
    o = o[0] / jnp.maximum(o[1], 1.0)
    c, p = Memory(self.clusters_k, self.temperature, name="memory")(o)
    self.sow("intermediates", "assignment", c)

    z = mu_c
    if target is not None:
      t_y, t_mask = target
      t_mask = t_mask.astype(jnp.float32)
      sum_t, n_t = _sum_count(xy_to_z(x_i, t_y.astype(jnp.float32) - self.offset), t_mask)
      mu_t, log_var_t = to_z((sum_c + sum_t) / jnp.maximum(n_c + n_t, 1.0))  # posterior q(z | C ∪ T)
      self.sow(LOSSES, "kl", gaussian_kl(mu_t, log_var_t, mu_c, log_var_c))
      self.sow(LOSSES, "cluster", self.cluster_weight * clustering_loss(c))
      z = mu_t
    hidden = (self.dec_h1_dim, self.dec_h2_dim, self.dec_h3_dim)
    return self.offset + FiLMDecoder(hidden, gating=self.decoder == "gating", name="decoder")(x_i, z, p)


def tanp_task_loss(model: TaNPModel, context_in_loss: bool = True) -> Callable:
  """TaNP's per-task outer loss: decoder loss over ``C ∪ T`` (or ``T``) + KL + λ L_u.

  The context ``C`` is the support set and the target ``T`` the query set.
  Returns ``fn(spec, predict, meta, features, task) -> (loss, aux)``; aux
  holds ``support_loss`` (the query set's loss, as in every conditioned
  method), ``reg_kl`` and ``reg_cluster``.
  """

  def loss(spec: LearnerSpec, predict: PredictFn, meta: MetaParams, features: Features, task: TaskBatch):
    support = (task.support_items, task.support_ratings, task.support_mask)
    nq = task.query_items.shape[0]
    if context_in_loss:  # score C ∪ T; the target holds T only (C is already the support)
      items = jnp.concatenate([task.query_items, task.support_items])
      labels = jnp.concatenate([task.query_ratings, task.support_ratings])
      mask = jnp.concatenate([task.query_mask, task.support_mask])
      t_mask = jnp.concatenate([task.query_mask, jnp.zeros_like(task.support_mask)])
    else:
      items, labels, mask, t_mask = task.query_items, task.query_ratings, task.query_mask, task.query_mask
    scores, regs = apply_conditioned(model, meta["model"], features, task.user, items, support,
                                     target=(labels, t_mask))
    total = spec.loss_fn(scores, labels, mask) + sum(regs.values(), jnp.zeros(()))
    query = spec.loss_fn(scores[:nq], task.query_ratings, task.query_mask)
    return total, {"support_loss": query, **{f"reg_{k.replace('/', '_')}": v for k, v in regs.items()}}

  return loss


@register_method("tanp")
class TaNP(ConditionedMethod):
  """TaNP (Lin et al., WWW 2021) with the reference's FiLM decoder; hyperparameters in ``config.tanp``."""

  config_blocks: ClassVar[dict[str, dict[str, Any]]] = {"tanp": dict(DEFAULTS)}

  def make_model(self, prep: Prepared) -> TaNPModel:
    b = self.config.tanp
    kw = {k: b[k] for k in DEFAULTS if k != "context_in_loss"}
    return TaNPModel(**kw, **self.extractor_kwargs(prep))

  def task_loss(self, model: TaNPModel) -> Callable:
    return tanp_task_loss(model, bool(self.config.tanp.context_in_loss))

  def validate(self, problems: list[str]) -> None:
    super().validate(problems)
    b = self.config.tanp
    if b.decoder not in DECODERS:
      problems.append(f"method {self.name}: tanp.decoder must be one of {DECODERS}, got {b.decoder!r}")
    for key, value in DEFAULTS.items():
      if isinstance(value, int) and not isinstance(value, bool) and b[key] < 1:
        problems.append(f"method {self.name}: tanp.{key} must be >= 1, got {b[key]}")
    if b.temperature <= 0:
      problems.append(f"method {self.name}: tanp.temperature must be > 0, got {b.temperature}")
    if b.cluster_weight < 0:
      problems.append(f"method {self.name}: tanp.cluster_weight must be >= 0, got {b.cluster_weight}")


@register_method("tanp_gating")
class TaNPGating(TaNP):
  """TaNP with the Gating-FiLM decoder (the reference's ``Gating_Decoder``): ``tanp.decoder=gating``."""

  def fixed(self) -> dict[str, Any]:
    return {**super().fixed(), "tanp.decoder": "gating"}


__all__ = ["DEFAULTS", "FiLMDecoder", "Memory", "TaNP", "TaNPGating", "TaNPModel", "clustering_loss",
           "gaussian_kl", "soft_assignment", "tanp_task_loss", "target_distribution"]
