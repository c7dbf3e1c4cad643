"""MAMO: memory-augmented meta-optimization (Dong et al., KDD 2020), as a method of the engine.

Dong, Yuan, Yao, Xu, Zhu. "MAMO: Memory-Augmented Meta-Optimization for
Cold-start Recommendation", KDD 2020 (arXiv 2007.03183). Reference code:
github.com/dongmanqing/Code-for-MAMO (``mamoRec.py``, ``models.py``,
``modules/memories.py``, ``modules/rec_model.py``, ``modules/info_embedding.py``,
``configs.py``).

One task is one user ``u``. In the paper's notation, with the code's names:

* **Recommendation model** (`MAMOModel`). The profiles ``p_u``, ``p_i`` are
  the concatenated field embeddings (``model.extractor``, no MLP; the
  reference's ``MLUserLoading`` / ``MLItemLoading``). The user and item
  embeddings are ``e_u = f_θu(p_u)``, ``e_i = f_θi(p_i)`` (`Tower`,
  ``user_tower`` / ``item_tower``: ``n_layer - 1`` leaky-ReLU layers of width
  ``dim(p)/2``, then one to ``model.embed_dim``, also leaky-ReLU; the
  reference's ``UserEmbedding`` / ``ItemEmbedding``). The rating is
  ``ŷ = f_θr(M_{u,I} [e_u; e_i])`` (`Rec`, ``rec``): the preference layer
  ``rec/pref`` (a ``2E x 2E`` dense layer without activation, the
  reference's ``mem_layer``), ``n_layer - 1`` halving leaky-ReLU layers, a
  linear output, plus ``model.offset``.
* **Feature-specific memory**: the profile memory ``M_P`` [K, dim(p_u)]
  (``memory/profile``) and the bias memory ``M_U`` (``memory/bias_l``: one
  [K, ...] slab per user-tower kernel ``l``). Attention
  ``a_u = softmax_k cos(p_u, M_P[k])`` (`Memory.attention`), the personalised
  bias ``b_u = a_u^T M_U`` and the personalised initial user-tower kernels
  ``θ_u = φ_u - τ b_u``.
* **Task-specific memory** ``M_{U,I}`` [K, 2E, 2E] (``memory/preference``):
  the user's preference matrix ``M_{u,I} = a_u^T M_{U,I}`` (fast weights of the
  preference layer).
* **Local update** on the support set: ``θ ← θ - ρ ∇_θ L(f_θ)`` for the
  recommendation params ``θ = (θ_u, θ_i, θ_r)`` (the engine's inner loop;
  ``meta.inner_lr = ρ``, ``meta.inner_steps``).
* **Global update** of ``φ = (φ_u, φ_i, φ_r)`` by the query loss after the
  local update, first order by default (the reference takes the query
  gradients at the adapted params; ``mamo.first_order=false`` differentiates
  through the local update), with the run's outer optimizer.
* **Memory writes** after each task (``mamo.memory="write"``, the default):
  ``M_P ← α a_u ⊗ p_u + (1 - α) M_P``, ``M_U ← β a_u ⊗ ∇_θu L + (1 - β) M_U``
  (``∇_θu L``: the query gradient of the user-tower kernels, at the adapted
  params in first order) and ``M_{U,I} ← γ a_u ⊗ M_{u,I} + (1 - γ) M_{U,I}``
  (``M_{u,I}``: the preference matrix after the local update).

How it sits on the engine. The personalised initial value lives in the
forward pass: each personalised layer computes with ``W - τ b_u`` (user
tower) or ``W + a_u^T M_{U,I}`` (preference layer), where ``b_u`` and
``a_u`` depend on the user's profile and the memories only. Adapting ``W``
in the engine's inner loop (adapt filter `ADAPT`: the towers and ``rec``,
never ``extractor`` or ``memory``) is then exactly SGD from the personalised
initial value (``∇_W L = ∇_{W - τ b} L``; tested), so training, evaluation
(`make_adapted_predictor`) and serving are the engine's. In write mode the
step (`make_write_step`) is the engine's step plus the writes: the batch's
write targets ``mean_t a_t ⊗ p_t`` and ``mean_t a_t ⊗ M_{t,I}`` are the
meta-gradients of zero probes added to the per-task loss
(`mamo_task_loss`: ``Σ probe ⊙ stop_gradient(target)``, value unchanged),
and ``mean_t a_t ⊗ ∇_θu L_t`` is ``-1/τ`` times the meta-gradient of ``M_U``
(``∂L/∂M_U[k] = -τ a[k] ∇_θu L``); the memories take no optimizer update.
With ``mamo.memory="gradient"`` the memories are ordinary params trained by
the outer optimizer through the engine's own step. (On MeLU's ML-1M the
written profile memory collapses: after training its K slots are parallel
and every user's attention is uniform, so the written memories personalise
nothing; the gradient-trained ones stay distinct. ``docs/mamo.md``.)

Defaults (``config.mamo``) are the reference's ``configs.py``: ``K = 3``
slots (``n_k``), ``α = 0.5``, ``β = 0.05``, ``γ = 0.1``, ``τ = 0.01``
(``tao``), ``n_layer = 2``, leaky ReLU with slope 0.1, ``M_P ~ N(0, 1)``,
``M_U ~ N(0, 0.05²)``. The reference's local rate ``ρ = 0.01`` (``rho``) is
an Adam rate over mini-batches of 5 support ratings for 3 epochs, its global
rate ``λ = 0.05`` plain SGD on the sum of 100 users' gradients, its
embeddings 100 wide, support 15 and query 5 ratings: those are the run's
settings here (``meta.inner_lr`` / ``meta.inner_steps``: SGD on the whole
support set; ``optimizer.*``, ``model.embed_dim``, ``data.*``).

Deviations from the paper and the reference code:

* The rating is regressed (``meta.loss``: MSE, or BCE / BPR on implicit
  feedback) as in RecBole-MetaRec's MAMO, not classified into 5 classes
  (the reference's softmax output, fed to ``CrossEntropyLoss``).
* The attention is the paper's ``softmax(cos(p_u, M_P))``; the reference
  passes the cosines through a ``Linear(K, K)`` that is created afresh,
  untrained, at every read.
* The preference layer computes with ``W_pref + a_u^T M_{U,I}``: the
  reference overwrites the layer's kernel with ``a_u^T M_{U,I}`` alone (its
  meta-updated copy of that kernel is never used). Here ``W_pref`` is
  meta-trained like every ``φ`` and the memory holds the personalised part
  (initialised ``N(0, 0.05²)``, not the reference's ``N(0, 1)``); the write
  target is that part after the local update, ``a_u ⊗ (W'_pref - W_pref +
  a_u^T M_{U,I})``. Without ``W_pref`` the written memory decays to the
  running mean of the local updates (``M ← (1 - γ) M + γ a ⊗ (a^T M + δ)``),
  which with one small SGD step is nearly zero.
* The writes are applied once per meta-step with the batch mean of the
  targets (``M ← (1 - r) M + r mean_t target_t``), not user by user; the
  reference writes ``M_P`` at every read during training and ``M_U``,
  ``M_{U,I}`` after each user. In second order (``mamo.first_order=false``)
  ``∇_θu L`` is the meta-gradient of the personalised initial kernels.
* The attention is not differentiated in write mode (the reference copies
  the bias into the weights' ``.data``); in gradient mode everything is.
* Only the user-tower kernels are personalised (as in the reference; the
  biases are not). The local update is the engine's SGD on the whole support
  set without the reference's gradient clipping (norm 5). The field
  embedding tables are meta-trained and not adapted (the reference's local
  Adam steps change them in place and never restore them, a leak across
  users).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from metarec_jax.data.interactions import FieldSpec
from metarec_jax.meta.learners import LearnerSpec, learner_spec, meta_gradient, query_loss_after_adapting
from metarec_jax.meta.step import MetaTrainState, global_norm, make_batch_draw
from metarec_jax.methods.base import FitContext, Fitted
from metarec_jax.methods.learned import LearnedMethod, ModelParts, build_model, loss_options, score_offset
from metarec_jax.methods.registry import register_method
from metarec_jax.models import registry as model_registry
from metarec_jax.models.model import Predict, load_pretrained_encoders
from metarec_jax.prepared import Prepared
from metarec_jax.types import Features, MetaParams, Params, PredictFn, TaskBatch

ADAPT = r"^(user_tower|item_tower|rec)/"  # the recommendation params θ = (θ_u, θ_i, θ_r) of the local update
PROBE = "mamo_write"                      # meta key of the zero probes whose gradients are the write targets
SLOPE = 0.1                               # the reference's LeakyReLU(0.1)
MEMORY_MODES = ("write", "gradient")


def _leaky(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, SLOPE)


def tower_dims(d_in: int, n_layer: int, d_out: int) -> tuple[tuple[int, int], ...]:
  """The reference's tower: ``n_layer - 1`` layers of width ``d_in // 2``, then ``d_out``; (in, out) per layer."""
  hidden = max(d_in // 2, 1)
  dims = [d_in] + [hidden] * (n_layer - 1) + [d_out]
  return tuple(zip(dims[:-1], dims[1:]))


def rec_dims(embed_dim: int, n_layer: int) -> tuple[tuple[int, int], ...]:
  """The hidden layers after the preference layer: ``n_layer - 1`` halvings of ``2E``."""
  dims, last = [], 2 * embed_dim
  for _ in range(n_layer - 1):
    dims.append((last, max(last // 2, 1)))
    last = dims[-1][1]
  return tuple(dims)


class ShiftedDense(nn.Module):
  """A dense layer computing with ``kernel + shift`` (``shift``: a per-user offset of the initial kernel)."""

  features: int

  @nn.compact
  def __call__(self, x: jax.Array, shift: jax.Array | None = None) -> jax.Array:
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    if shift is not None:
      kernel = kernel + shift
    return x @ kernel + bias


class Tower(nn.Module):
  """``f_θ(p)``: leaky-ReLU layers of the given widths; each kernel may be shifted."""

  widths: Sequence[int]

  @nn.compact
  def __call__(self, x: jax.Array, shifts: Sequence[jax.Array] | None = None) -> jax.Array:
    for i, width in enumerate(self.widths):
      x = _leaky(ShiftedDense(width, name=f"layer_{i}")(x, None if shifts is None else shifts[i]))
    return x


class Rec(nn.Module):
  """``f_θr``: the preference layer (kernel + ``M_{u,I}``, no activation), halving leaky-ReLU layers, the output."""

  embed_dim: int
  n_layer: int

  @nn.compact
  def __call__(self, x: jax.Array, preference: jax.Array | None = None) -> jax.Array:
    h = ShiftedDense(2 * self.embed_dim, name="pref")(x, preference)
    for i, (_, width) in enumerate(rec_dims(self.embed_dim, self.n_layer)):
      h = _leaky(nn.Dense(width, name=f"hidden_{i}")(h))
    return nn.Dense(1, name="out")(h)[..., 0]


def cosine(p: jax.Array, m: jax.Array, eps: float = 1e-5) -> jax.Array:
  """``cos(p, m[k])`` for every row ``k`` of ``m`` (the reference's epsilon inside the norms)."""
  num = m @ p
  return num / (jnp.sqrt(jnp.sum(p ** 2) + eps) * jnp.sqrt(jnp.sum(m ** 2, -1) + eps))


class Memory(nn.Module):
  """The memories: profile ``M_P`` [K, Dp], bias ``M_U`` (one [K, in, out] per user-tower kernel), ``M_{U,I}``."""

  slots: int
  profile_dim: int
  bias_shapes: Sequence[tuple[int, int]]
  pref_dim: int
  init_std: float

  def setup(self):
    normal = nn.initializers.normal(1.0)
    small = nn.initializers.normal(self.init_std)
    self.profile = self.param("profile", normal, (self.slots, self.profile_dim))
    self.bias = [self.param(f"bias_{i}", small, (self.slots,) + tuple(s)) for i, s in enumerate(self.bias_shapes)]
    self.preference = self.param("preference", small, (self.slots, self.pref_dim, self.pref_dim))

  def attention(self, p_u: jax.Array) -> jax.Array:
    """``a_u = softmax_k cos(p_u, M_P[k])`` [K]."""
    return jax.nn.softmax(cosine(p_u, self.profile))

  def bias_terms(self, a: jax.Array) -> list[jax.Array]:
    """``b_u = a_u^T M_U``, one array per user-tower kernel."""
    return [jnp.tensordot(a, m, axes=1) for m in self.bias]

  def preference_matrix(self, a: jax.Array) -> jax.Array:
    """``M_{u,I} = a_u^T M_{U,I}`` [2E, 2E]."""
    return jnp.tensordot(a, self.preference, axes=1)


class MAMOModel(nn.Module):
  """MAMO's recommendation model with its memories (see the module docstring).

  Attributes:
    user_specs: user fields (the profile ``p_u``).
    item_specs: item fields (``p_i``).
    user_dim: width of ``p_u`` (the extractor's user output).
    item_dim: width of ``p_i``.
    embed_dim: ``E``, the width of ``e_u`` and ``e_i``.
    n_layer: the reference's ``n_layer`` (tower and rec depth).
    slots: ``K``, memory slots (0: no memory, the plain model).
    tau: ``τ`` of ``θ_u = φ_u - τ b_u``.
    init_std: std of the initial ``M_U`` and ``M_{U,I}``.
    attention_grad: differentiate through the attention (False: write mode).
    offset: the mean training rating (0 for implicit feedback).
    extractor: a registered extractor (field embeddings; no MLP).
    transformer: the field transformer's spec (``extractor="transformer"``).
    dtype: the extractor's compute dtype (None: float32).
  """

  user_specs: Sequence[FieldSpec]
  item_specs: Sequence[FieldSpec]
  user_dim: int
  item_dim: int
  embed_dim: int = 32
  n_layer: int = 2
  slots: int = 3
  tau: float = 0.01
  init_std: float = 0.05
  attention_grad: bool = True
  offset: float = 0.0
  extractor: str = "fields"
  transformer: Any = None
  dtype: Any = None
  user_mlp: Sequence[int] = ()  # the extractor gives the profiles: no MLP there (the towers are MAMO's)
  item_mlp: Sequence[int] = ()

  @nn.nowrap
  def make_extractor(self, **module_kwargs) -> nn.Module:
    """The model's extractor module (params under ``extractor``)."""
    return model_registry.build_extractor(self, **module_kwargs)

  def setup(self):
    user = tower_dims(self.user_dim, self.n_layer, self.embed_dim)
    item = tower_dims(self.item_dim, self.n_layer, self.embed_dim)
    self.ext = self.make_extractor(name="extractor")
    self.user_tower = Tower(tuple(o for _, o in user), name="user_tower")
    self.item_tower = Tower(tuple(o for _, o in item), name="item_tower")
    self.rec = Rec(self.embed_dim, self.n_layer, name="rec")
    if self.slots:
      self.memory = Memory(self.slots, self.user_dim, user, 2 * self.embed_dim, self.init_std, name="memory")

  def profile(self, user_cols: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """``(a_u [K], p_u [Dp])`` (``a_u`` empty without memory)."""
    p_u = self.ext.embed_user(user_cols).astype(jnp.float32)
    if not self.slots:
      return jnp.zeros((0,), jnp.float32), p_u
    a = self.memory.attention(p_u)
    return (a if self.attention_grad else jax.lax.stop_gradient(a)), p_u

  def user_side(self, user_cols: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """``(e_u [E], a_u [K])``: the user embedding under ``θ_u = φ_u - τ b_u``."""
    a, p_u = self.profile(user_cols)
    shifts = [-self.tau * b for b in self.memory.bias_terms(a)] if self.slots else None
    return self.user_tower(p_u, shifts), a

  def item_side_embed(self, item_cols: dict[str, jax.Array]) -> jax.Array:
    """``e_i [..., E]``."""
    return self.item_tower(self.ext.embed_items(item_cols).astype(jnp.float32))

  def score(self, e_u: jax.Array, a: jax.Array, e_i: jax.Array) -> jax.Array:
    """Scores ``[N]`` of item embeddings ``e_i [N, E]`` for one user (``e_u [E]``, attention ``a [K]``)."""
    x = jnp.concatenate([jnp.broadcast_to(e_u, e_i.shape[:-1] + e_u.shape[-1:]), e_i], axis=-1)
    preference = self.memory.preference_matrix(a) if self.slots else None
    return self.rec(x, preference) + self.offset

  def __call__(self, user_cols: dict[str, jax.Array], item_cols: dict[str, jax.Array]) -> jax.Array:
    e_u, a = self.user_side(user_cols)
    return self.score(e_u, a, self.item_side_embed(item_cols))

  # ------------------------------------------------------------------ what serving reads

  @nn.nowrap
  def embed(self, params: Params, user_cols: dict[str, jax.Array],
            item_cols: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """``(f_u, f_i)`` for serving: ``f_u = [e_u; a_u]`` (the attention rides along), ``f_i = e_i``."""
    e_u, a = self.apply({"params": params}, user_cols, method=MAMOModel.user_side)
    return jnp.concatenate([e_u, a], -1), self.apply({"params": params}, item_cols,
                                                      method=MAMOModel.item_side_embed)

  @nn.nowrap
  def score_features(self, params: Params, f_u: jax.Array, f_i: jax.Array) -> jax.Array:
    """The scores of `embed`'s features."""
    return self.apply({"params": params}, f_u[..., :self.embed_dim], f_u[..., self.embed_dim:], f_i,
                      method=MAMOModel.score)

  @nn.nowrap
  def item_side(self, path: str) -> bool:
    """Whether the param at ``path`` shapes item features."""
    return path.startswith(("extractor/item", "item_tower/"))


def _columns(model: MAMOModel, features: Features, user, items=None):
  user_cols = {s.name: features.user[s.name][user] for s in model.user_specs}
  if items is None:
    return user_cols, None
  return user_cols, {s.name: features.item[s.name][items] for s in model.item_specs}


def make_mamo_predict(model: MAMOModel) -> Predict:
  """The engine's predict function of the model (`types.PredictFn`); scores ignore the support set."""

  def predict(params, features, user, items, support=None, loo=False, capture=False):
    if capture:
      raise ValueError("MAMO has no factored layers; use meta.factored=off")
    user_cols, item_cols = _columns(model, features, user, items)
    return model.apply({"params": params}, user_cols, item_cols)

  return Predict(predict, fast_layers=(), uses_support=False)


def init_mamo(model: MAMOModel, features: Features, key: jax.Array) -> Params:
  """Initialises the model's params on one dummy (user, 2 items) example."""
  user_cols, item_cols = _columns(model, features, 0, jnp.zeros((2,), jnp.int32))
  params = jax.jit(lambda k: model.init(k, user_cols, item_cols))(key)["params"]
  return load_pretrained_encoders(model, params)  # tokens item fields: the encoder's pretrained weights


def attention_and_profile(model: MAMOModel, params: Params, features: Features, user) -> tuple[jax.Array, jax.Array]:
  """``(a_u, p_u)`` of one user."""
  user_cols, _ = _columns(model, features, user)
  return model.apply({"params": params}, user_cols, method=MAMOModel.profile)


def extractor_dims(config: ml_collections.ConfigDict, prep: Prepared) -> dict[str, Any]:
  """The extractor settings of ``config.model`` and the widths of ``p_u``, ``p_i`` on the seed's features."""
  rec = build_model(config, prep.data, score_offset(prep))
  kw = dict(user_specs=rec.user_specs, item_specs=rec.item_specs, embed_dim=rec.embed_dim, extractor=rec.extractor,
            transformer=rec.transformer, dtype=rec.dtype)
  probe = MAMOModel(user_dim=1, item_dim=1, **kw)
  ext = probe.make_extractor(parent=None)
  user_cols, item_cols = _columns(probe, prep.features, 0, jnp.zeros((2,), jnp.int32))
  f_u, f_i = jax.eval_shape(lambda k: ext.init_with_output(k, user_cols, item_cols)[0], jax.random.PRNGKey(0))
  return dict(kw, user_dim=int(f_u.shape[-1]), item_dim=int(f_i.shape[-1]))


# --------------------------------------------------------------------------- the memory writes


@dataclasses.dataclass(frozen=True)
class WriteRates:
  """The write rates: ``α`` (profile), ``β`` (bias), ``γ`` (preference); and ``τ`` (to read the bias target)."""

  alpha: float = 0.5
  beta: float = 0.05
  gamma: float = 0.1
  tau: float = 0.01


def write_targets_of_task(model: MAMOModel, meta: MetaParams, features: Features, user,
                          adapted: Params) -> dict[str, jax.Array]:
  """One task's ``a ⊗ p_u`` (profile) and ``a ⊗ M'_{u,I}`` (preference, the personalised part after adapting)."""
  params = meta["model"]
  a, p_u = attention_and_profile(model, params, features, user)
  read = jnp.tensordot(a, params["memory"]["preference"], axes=1)
  part = adapted["rec"]["pref"]["kernel"] - params["rec"]["pref"]["kernel"] + read
  return {"profile": a[:, None] * p_u[None, :], "preference": a[:, None, None] * part[None]}


def mamo_task_loss(model: MAMOModel) -> Callable:
  """MAML's per-task query loss after adapting; with the zero probes in ``meta[PROBE]``, plus ``Σ probe ⊙ target``.

  The probe term is zero (the loss value is unchanged), and the meta-gradient
  of each probe is the batch mean of that write target (`make_write_step`).
  """

  def loss(spec: LearnerSpec, predict: PredictFn, meta: MetaParams, features: Features, task: TaskBatch):
    q, a = query_loss_after_adapting(spec, predict, meta, features, task)
    before = a.support_losses[0] if spec.inner_steps else q
    if PROBE in meta:
      targets = write_targets_of_task(model, meta, features, task.user, a.params)
      q = q + sum(jnp.sum(meta[PROBE][k] * jax.lax.stop_gradient(v)) for k, v in targets.items())
    return q, {"support_loss": before}

  return loss


def write_memories(memory: dict, targets: dict, rates: WriteRates) -> dict:
  """``M ← (1 - r) M + r target`` for each memory with a target (``bias_l``: rate ``β``)."""
  out = dict(memory)
  rate = {"profile": rates.alpha, "preference": rates.gamma}
  for k, t in targets.items():
    r = rate.get(k, rates.beta)
    out[k] = (1.0 - r) * memory[k] + r * t
  return out


def batch_write_targets(memory: dict, memory_grads: dict, probe_grads: dict, tau: float) -> dict:
  """The batch-mean write targets: the probes' gradients, and ``-∂L/∂M_U / τ`` for the bias memory."""
  targets = dict(probe_grads)
  if tau:
    targets.update({k: -g / tau for k, g in memory_grads.items() if k.startswith("bias_")})
  return targets


def make_write_step(spec: LearnerSpec, predict: PredictFn, optimizer: optax.GradientTransformation,
                    rates: WriteRates, *, tasks_per_batch: int, query_size: int, support_size: int,
                    tasks_per_chunk: int = 0, augment: Callable | None = None, negatives_per_positive: int = 0,
                    mesh: jax.sharding.Mesh | None = None, jit: bool = True) -> Callable:
  """The engine's meta-train step (`meta.step.make_meta_train_step`) plus MAMO's memory writes.

  The batch, negatives, augmentation and sharding are drawn as in the
  engine's step; the meta-gradient is the engine's (`meta_gradient`) with the
  write probes added to the meta params. The memories take no optimizer
  update: after the update of every other param they are written with the
  batch-mean targets (`write_memories`). ``spec.task_loss`` must be
  `mamo_task_loss`.
  """
  draw = make_batch_draw(tasks_per_batch=tasks_per_batch, query_size=query_size, support_size=support_size,
                         augment=augment, negatives_per_positive=negatives_per_positive, mesh=mesh)

  def step(state: MetaTrainState, tasks, features: Features):
    features, batch = draw(state, tasks, features)
    memory = state.params["model"]["memory"]
    probes = {"profile": jnp.zeros_like(memory["profile"]), "preference": jnp.zeros_like(memory["preference"])}
    loss, grads, aux = meta_gradient(spec, predict, {**state.params, PROBE: probes}, features, batch,
                                     tasks_per_chunk)
    targets = batch_write_targets(memory, grads["model"]["memory"], grads[PROBE], rates.tau)
    grads = {k: v for k, v in grads.items() if k != PROBE}
    grads["model"] = {**grads["model"], "memory": jax.tree_util.tree_map(jnp.zeros_like, memory)}
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    params["model"] = {**params["model"], "memory": write_memories(memory, targets, rates)}
    metrics = {"loss": loss, "grad_norm": global_norm(grads), "param_norm": global_norm(params), **aux}
    return MetaTrainState(state.step + 1, params, opt_state, state.rng), metrics

  return jax.jit(step, donate_argnums=(0,)) if jit else step


# --------------------------------------------------------------------------- the method

# Keys MAMO never reads: its learner, towers and head are its own.
NOT_READ = ("distill.", "meta.learner", "meta.first_order", "meta.factored", "model.head", "model.head_hidden",
            "model.user_mlp", "model.item_mlp", "model.support_vector", "model.ridge_dim", "model.residual",
            "model.bias_reg")


@register_method("mamo")
class MAMO(LearnedMethod):
  """MAMO (see the module docstring); hyperparameters in ``config.mamo``, the local update in ``meta.*``.

  ``meta.adapt`` (empty: `ADAPT`) chooses the locally updated params;
  ``meta.inner_lr`` / ``meta.inner_steps`` are the local rate and steps.
  """

  ignored: ClassVar[tuple[str, ...]] = NOT_READ
  config_blocks: ClassVar[dict[str, dict[str, Any]]] = {"mamo": {
      "slots": 3,              # K (reference n_k)
      "tau": 0.01,             # τ: θ_u = φ_u - τ b_u (reference tao)
      "alpha": 0.5,            # profile memory write rate
      "beta": 0.05,            # bias memory write rate
      "gamma": 0.1,            # preference memory write rate
      "n_layer": 2,            # tower / rec depth (reference n_layer)
      "init_std": 0.05,        # std of the initial M_U and M_{U,I}
      "memory": "write",       # write: the reference's write rules | gradient: memories trained by the optimizer
      "first_order": True,     # global update with the query gradients at the adapted params (reference)
  }}

  @property
  def block(self) -> ml_collections.ConfigDict:
    return self.config.mamo

  @property
  def writes(self) -> bool:
    return self.block.memory == "write"

  def validate(self, problems: list[str]) -> None:
    super().validate(problems)
    b = self.block
    if b.memory not in MEMORY_MODES:
      problems.append(f"method {self.name}: mamo.memory must be one of {MEMORY_MODES}, got {b.memory!r}")
    if b.slots < 0 or (b.slots == 0 and b.memory == "write"):
      problems.append(f"method {self.name}: mamo.slots must be >= 1 (0: no memory, with mamo.memory=gradient), "
                      f"got {b.slots}")
    if b.n_layer < 1:
      problems.append(f"method {self.name}: mamo.n_layer must be >= 1, got {b.n_layer}")
    for key in ("alpha", "beta", "gamma"):
      if not 0.0 <= b[key] <= 1.0:
        problems.append(f"method {self.name}: mamo.{key} is a write rate in [0, 1], got {b[key]}")

  def make_model(self, prep: Prepared) -> MAMOModel:
    """The model for the seed's data."""
    b = self.block
    return MAMOModel(n_layer=int(b.n_layer), slots=int(b.slots), tau=float(b.tau), init_std=float(b.init_std),
                     attention_grad=not self.writes, offset=score_offset(prep), **extractor_dims(self.config, prep))

  def learner(self) -> LearnerSpec:
    """The local and global update: maml-kind, first order unless ``mamo.first_order=false``."""
    m = self.config.meta
    return learner_spec("maml", inner_lr=m.inner_lr, inner_steps=m.inner_steps, adapt=m.adapt or ADAPT,
                        first_order=bool(self.block.first_order), remat=m.remat, local_tables=m.local_tables,
                        factored="off", **loss_options(self.config))

  def parts(self, prep: Prepared) -> ModelParts:
    model = self.make_model(prep)
    spec = dataclasses.replace(self.learner(), name=self.name,
                               task_loss=mamo_task_loss(model) if self.writes else None)
    make_step = functools.partial(make_write_step, rates=self.rates()) if self.writes else None
    return ModelParts(model, make_mamo_predict(model), lambda f, k: init_mamo(model, f, k), spec,
                      make_step=make_step)

  def rates(self) -> WriteRates:
    b = self.block
    return WriteRates(float(b.alpha), float(b.beta), float(b.gamma), float(b.tau))

  def fit(self, ctx: FitContext) -> Fitted:
    return self.train(ctx).fitted(self.name, ctx.prep, self.config)


__all__ = ["ADAPT", "MAMO", "MAMOModel", "Memory", "PROBE", "WriteRates", "make_mamo_predict", "init_mamo",
           "mamo_task_loss", "make_write_step", "write_memories", "tower_dims",
           "attention_and_profile", "extractor_dims"]
