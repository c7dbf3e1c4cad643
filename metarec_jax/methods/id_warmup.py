"""Item-id cold start: MetaEmb (Pan et al., SIGIR 2019) and MWUF (Zhu et al., SIGIR 2021) on a trained base model.

With ``model.item_id=true`` every training item has its own id embedding
``e_i`` (`data.derived`: ids 1..n) and every item unseen in training shares
row 0, so in the item-cold scenarios all new items look alike to the id
field. Both methods learn, on the training (old) items with the base model
frozen, what id embedding a new item should get from its content, and serve
it for every item whose id is unknown (id 0); a known item keeps its own row
(`models.id_warmup.WarmedModel`).

**The base.** ``id_warmup.base`` names a method of the engine (``pooled``,
``melu1``, ``maml``, ... : a `MetaLearner` or the pooled family). It is the
run's own row when the run lists it with ``model.item_id=true`` and the
same settings (its checkpoint is shared); otherwise it is trained once per
seed with ``model.item_id=true`` forced, under the checkpoint
``<base>_item_id`` (shared by both methods). Its adaptation at test time is
its own (the warm-up params never adapt). The warm-up part trains against,
and every validation set is served with, the base params selected on the
warm validation users (``valid``); only the warm-up params are selected per
validation set. (The base's own choice on a cold-item validation set is a
choice of how little to lean on the shared, never-trained id row 0 — with
``eval.selection=per_scenario`` on ML-1M it picks step 50 of 1,000 — and
that row is what the warm-up replaces.) Per validation set, the base's
adaptation (learner, inner rate; ``pooled_finetune``'s tuned steps and
rate) is kept.

**Item tasks.** A task is one training item with its training ratings
(user, rating), built with `data.tasks.build_taskset` on the interactions
with users and items swapped (each item capped at
``id_warmup.max_item_ratings`` random ratings). A step draws
``id_warmup.items_per_batch`` items and splits each one's ratings into two
disjoint batches ``a`` and ``b`` of at most ``id_warmup.pairs`` ratings
(each half of the item's ratings at most). A pair ``(u, i)`` is scored by
the base model's own predict function with the item's id row replaced by
the embedding under study and its statistics hidden (the item seen as new).
Everything is vmapped over the items and jitted; there is no per-item loop.
Implicit feedback (``data.feedback=implicit``, ``meta.loss`` bce / bpr):
every positive user of ``a`` and ``b`` is joined by
``data.negatives_per_positive`` users drawn uniformly among the training
users who never interacted with the item (`data.negatives.sample_negatives`
on the item's column of the seen matrix), in the grouped layout of
`meta.losses`.

**MetaEmb** (Pan et al. 2019, §3: the generator and the two-phase
meta-loss). With ``Z_i`` the base model's frozen embeddings of item ``i``'s
content fields (every item field but ``item_id`` / ``item_stats``)::

    φ_i   = g(Z_i; w)                          generator (`MetaEmbNet`)
    l_a   = ℓ(f(D_a; φ_i))                     cold-start loss on batch a
    φ_i'  = φ_i − η ∂l_a/∂φ_i                  one warm-up step (η = metaemb.cold_lr)
    l_b   = ℓ(f(D_b; φ_i'))                    warm-up loss on batch b
    L     = α l_a + (1 − α) l_b                meta-loss (α = metaemb.alpha), minimised over w

second order (the gradient flows through ``∂l_a/∂φ_i``), averaged over the
items of the batch, Adam at ``id_warmup.lr`` (code: `metaemb_item_loss`).

**MWUF** (Zhu et al. 2021, §3: the Meta Scaling and Meta Shifting networks).
Every training item gets a cold embedding ``c_i`` initialised to the mean
``ē`` of the existing item id embeddings (the paper's initialisation of new
items' embeddings); the meta networks give the warm embedding::

    τ_scale = h(Z_i)                           meta scaling network, item content
    τ_shift = s(mean_{u ∈ U(i)} f_u)           meta shifting network, the item's users' vectors
    w_i     = τ_scale ⊙ c_i + τ_shift          (code: (1 + h(Z_i)) ⊙ c_i + s(·), `MWUFNet.warm`)
    L_cold  = ℓ(f(D; c_i))                     trains the cold embeddings only
    L_warm  = ℓ(f(D; w_i))                     trains the meta networks only (c_i stopped)

on the union ``D`` of batches a and b, one Adam over ``L_cold + L_warm``
(the gradients of the two losses never meet, so this is the reference
code's two optimisers; code: `mwuf_item_loss`). ``f_u`` is the base
extractor's user feature vector (user fields, and ``user_id`` when the base
has it). **Which interactions the shift uses at test time:** only training
interactions. The users of a new item in MeLU's item-cold scenario are
other test users, whose ratings live in other tasks; a task never reads
another test user's data (support or query), so every new item has no
recorded users and its shift input is a learned vector ``d`` (the "no
interactions" input). ``d`` is trained by treating a random share
``mwuf.no_history_share`` of the training items of each batch as having no
recorded users. At test time a new item's embedding is therefore
``(1 + h(Z_i)) ⊙ ē + s(d)``: in the strict item-cold setting MWUF's shift is
a learned constant, and its item-specific part comes from the scaling
network alone.

Defaults (config blocks ``id_warmup``, ``metaemb``, ``mwuf``), from the
reference code: MetaEmb's TensorFlow notebook (Feiyang/MetaEmbedding):
α = 0.1, cold-start rate η = 1e-4 (its ``LR / 10``), Adam 1e-3 for the
generator, mini-batches of 20 ratings per ad and batch (``pairs``), 25 ads
per batch (we draw 32 items), a 1-layer ``tanh`` generator scaled by 1/5;
RecBole-MetaRec's MetaEmb (written for user ids): α = 0.2, cold-start rate
1e-4, a 32-unit ReLU MLP generator; RecBole-MetaRec's MWUF (user ids, every
cold row reset to the mean) and the CVAR repository's item-id MWUF
(Zhao et al. 2022): ReLU MLPs with 32 / 16 hidden units, cold embeddings
initialised to the mean existing embedding, the shift from the mean
embedding of the item's training users (CVAR: zeros when it has none, then
the scored user's own id embedding).

Deviations, all deliberate:

* The generator is ``ē + MLP(Z_i)`` with a zero-initialised output kernel
  (``metaemb.hidden`` ReLU layers, default 32): it starts at MWUF's mean
  initialisation instead of the reference's random ``tanh`` layer.
* MWUF's scaling is written ``1 + h(Z_i)`` and both meta networks' output
  kernels start at zero, so ``w_i = c_i`` at initialisation; the reference
  initialises every meta weight uniformly in ±0.01 (a scale near 0).
* The reference MWUF trains on pointwise batches of the pooled training
  data; we train on item tasks (batches a ∪ b of each drawn item), like
  MetaEmb. The shift input of a training item is the mean vector of its
  training users in its (capped) task, or ``d`` (see above).
* MetaEmb's reference notebook minimises ``l_b`` alone despite defining
  the weighted meta-loss; we minimise the paper's ``α l_a + (1 − α) l_b``.
* Neither paper's warm-up phases (new items' embeddings trained on arriving
  batches) exist in MeLU's protocol: each test user is adapted on its own
  support set by the base learner, and the id rows of new items are the
  generated ones throughout. MWUF's per-item cold embeddings of training
  items move during training, while a new item's stays ``ē``.
* The generator and the scaling network read the content ids that occur
  among the training items only (`models.id_warmup.known_ids`): an id no
  training item has (half of the new items' directors and actors on
  MeLU's ML-1M) still holds its random initial row, and reads as missing.
* Item tasks score pairs with the base's global (not user-adapted) params;
  bases whose scores need the user's support set (``model.residual``,
  ``model.support_vector``, ``model.ridge_dim``) are refused, and so are
  extractors other than ``fields``.

Measured (docs/id_warmup.md): on MeLU's ML-1M the validation-selected
warm-up is the initial mean embedding for every cold scenario (training on
old items raises the item-cold validation MAE: new items are rated lower and
half of their directors and actors never occur in training); on the
synthetic data MetaEmb lowers the item-cold MAE well below the baselines'.

A run::

    c.methods = ("pooled", "metaemb", "mwuf")                  # base: pooled (model.item_id=true forced)
    c.variants.metaemb_melu = {"base": "metaemb", "id_warmup": {"base": "melu1"}}
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from metarec_jax import config as cfg_lib
from metarec_jax.data.interactions import Interactions
from metarec_jax.data.negatives import SEEN, pool_logits, sample_negatives
from metarec_jax.data.tasks import build_taskset
from metarec_jax.eval.evaluate import make_adapted_predictor, validation_value
from metarec_jax.meta.losses import LossFn, make_loss
from metarec_jax.meta.step import MetaTrainState, global_norm, init_state
from metarec_jax.methods.base import FitContext, Fitted, Method
from metarec_jax.methods.learned import (Adaptation, FittedModel, LearnedMethod, MetaLearner, check_model_config,
                                         method_key, selection_key, train_model)
from metarec_jax.methods.pooled import Pooled
from metarec_jax.methods.registry import register_method
from metarec_jax.models.id_warmup import (ID_FIELD, KEY, MetaEmbNet, MWUFNet, WarmedModel, content_vectors,
                                          content_width, exclude_warmup, id_table, known_ids, make_warmed_predict,
                                          user_vectors, with_id_table)
from metarec_jax.models.model import RecModel
from metarec_jax.prepared import MAIN_VALID, Prepared
from metarec_jax.train.loop import LoopSettings, train_loop
from metarec_jax.types import Features, Params, PredictFn, TaskSet

# The config blocks (`Method.config_blocks`); `id_warmup` is shared by both methods.
COMMON = {"base": "pooled", "steps": 500, "items_per_batch": 32, "pairs": 20, "lr": 1e-3, "max_item_ratings": 256}
METAEMB_DEFAULTS = {"alpha": 0.1, "cold_lr": 1e-4, "hidden": (32,)}
MWUF_DEFAULTS = {"hidden": (32,), "no_history_share": 0.5}
ALL_BLOCKS = {"id_warmup": COMMON, "metaemb": METAEMB_DEFAULTS, "mwuf": MWUF_DEFAULTS}


# --------------------------------------------------------------------------- item tasks


def item_tasks(train: Interactions, *, cap: int, pad_to: int, seed: int) -> TaskSet:
  """One task per training item with at least 2 ratings: its users (in ``items``) and ratings.

  Built with `build_taskset` on the interactions with users and items
  swapped; an item with more than ``cap`` ratings keeps ``cap`` of them,
  drawn with ``np.random.default_rng`` from ``seed`` (vectorised).

  Args:
    train: the meta-training ratings (implicit: positives).
    cap: most ratings per item.
    pad_to: the least padded length (at least ``2 * pairs``, so both batches fit).
    seed: the seed of the draw.

  Returns:
    A `TaskSet` (numpy) with ``user`` = item ids and ``items`` = user ids.
  """
  rng = np.random.default_rng([int(seed), 0x1D])
  order = np.lexsort((rng.random(len(train)), train.item))
  _, starts, counts = np.unique(train.item[order], return_index=True, return_counts=True)
  rank = np.arange(len(order)) - np.repeat(starts, counts)
  keep = order[rank < cap]
  swapped = Interactions(user=train.item[keep], item=train.user[keep], rating=train.rating[keep])
  longest = int(min(cap, counts.max()))
  return build_taskset(swapped, min_length=2, pad_to=max(longest, int(pad_to)), order_by_time=False)


@flax.struct.dataclass
class ItemBatch:
  """Item tasks drawn for one step (leading axis = item).

  Attributes:
    item: ``[B]`` item ids (rows of the item table).
    a_users, a_labels, a_mask: ``[B, Ka]`` batch a (the cold-start batch).
    b_users, b_labels, b_mask: ``[B, Kb]`` batch b (the warm-up batch).
    users, users_mask: ``[B, L]`` every drawn rating's user (MWUF's shift input).
  """

  item: jax.Array
  a_users: jax.Array
  a_labels: jax.Array
  a_mask: jax.Array
  b_users: jax.Array
  b_labels: jax.Array
  b_mask: jax.Array
  users: jax.Array
  users_mask: jax.Array


def _split_item(key, users, labels, length, pairs: int):
  """Two disjoint random batches of one item's ratings, each at most ``pairs`` and half of them."""
  positions = jnp.arange(users.shape[0])
  u = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i)))(positions)
  order = jnp.argsort(jnp.where(positions < length, u, 2.0))
  n_a = jnp.minimum(pairs, length // 2)
  n_b = jnp.minimum(pairs, length - n_a)
  slot = jnp.arange(pairs)
  a_idx = order[slot]
  b_idx = order[jnp.minimum(n_a + slot, users.shape[0] - 1)]
  a_mask, b_mask = slot < n_a, slot < n_b
  return (jnp.where(a_mask, users[a_idx], 0), jnp.where(a_mask, labels[a_idx], 0.0), a_mask,
          jnp.where(b_mask, users[b_idx], 0), jnp.where(b_mask, labels[b_idx], 0.0), b_mask)


def split_items(tasks: TaskSet, key: jax.Array, pairs: int) -> ItemBatch:
  """Splits every item task into batches a and b; each item's split comes from ``fold_in(key, item)``.

  Padding a task set to a longer length changes no split.
  """
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(tasks.user)
  out = jax.vmap(_split_item, in_axes=(0, 0, 0, 0, None))(keys, tasks.items, tasks.ratings, tasks.lengths, pairs)
  return ItemBatch(tasks.user, *out, users=tasks.items, users_mask=tasks.mask)


def sample_item_batch(tasks: TaskSet, key: jax.Array, batch_size: int, pairs: int) -> ItemBatch:
  """Draws ``batch_size`` item tasks (without replacement when there are enough) and splits them."""
  k_pick, k_split = jax.random.split(key)
  n = tasks.user.shape[0]
  idx = jax.random.choice(k_pick, n, (batch_size,), replace=batch_size > n)
  return split_items(jax.tree_util.tree_map(lambda x: x[idx], tasks), k_split, pairs)


def _grouped(pos, pos_mask, neg, neg_valid):
  """``[K]`` positive users + ``[K, r]`` negative users -> the grouped (users, labels, mask) of `meta.losses`."""
  users = jnp.concatenate([pos[:, None], neg], 1)
  labels = jnp.zeros(users.shape, jnp.float32).at[:, 0].set(1.0)
  mask = jnp.concatenate([pos_mask[:, None], pos_mask[:, None] & neg_valid], 1)
  return users.reshape(-1), labels.reshape(-1), mask.reshape(-1)


def with_negative_users(batch: ItemBatch, key: jax.Array, user_logits: jax.Array, seen: jax.Array,
                        ratio: int) -> ItemBatch:
  """Joins every positive user of batches a and b with ``ratio`` users who never interacted with the item.

  Each item draws ``(Ka + Kb) * ratio`` distinct users from ``fold_in(key,
  item)`` with probabilities ∝ ``exp(user_logits)`` outside its column of
  ``seen``; the layout is grouped (positive first, labels ``1, 0, ..., 0``).
  """
  def one(item, a_users, a_mask, b_users, b_mask):
    ka, kb = a_users.shape[0], b_users.shape[0]
    neg, valid = sample_negatives(jax.random.fold_in(key, item), user_logits, seen[:, item], (ka + kb) * ratio)
    a = _grouped(a_users, a_mask, neg[:ka * ratio].reshape(ka, ratio), valid[:ka * ratio].reshape(ka, ratio))
    b = _grouped(b_users, b_mask, neg[ka * ratio:].reshape(kb, ratio), valid[ka * ratio:].reshape(kb, ratio))
    return a + b

  a_u, a_l, a_m, b_u, b_l, b_m = jax.vmap(one)(batch.item, batch.a_users, batch.a_mask, batch.b_users,
                                                batch.b_mask)
  return batch.replace(a_users=a_u, a_labels=a_l, a_mask=a_m, b_users=b_u, b_labels=b_l, b_mask=b_m)


# --------------------------------------------------------------------------- scoring (user, item) pairs


def as_new_items(features: Features) -> Features:
  """Every item seen as new: id 0 (the table under study has one row) and no statistics."""
  item = dict(features.item)
  item[ID_FIELD] = jnp.zeros_like(item[ID_FIELD])
  if "item_stats" in item:
    item["item_stats"] = jnp.zeros_like(item["item_stats"])
  return features.replace(item=item)


def pair_scores(predict: PredictFn, base_params: Params, features0: Features, users: jax.Array, item: jax.Array,
                emb: jax.Array) -> jax.Array:
  """Scores ``[K]`` of ``users [K]`` for one item whose id embedding is ``emb [D]``.

  ``features0`` is `as_new_items` of the feature tables, so the item's id
  field looks up the one-row table ``emb``; everything else is the base
  model's predict function with the base params.
  """
  p = with_id_table(base_params, emb[None, :].astype(id_table(base_params).dtype))
  return jax.vmap(lambda u: predict(p, features0, u, item[None])[0])(users)


@dataclasses.dataclass(frozen=True, eq=False)
class WarmupSetup:
  """What the warm-up losses close over.

  Attributes:
    model: the base `RecModel`.
    predict: its predict function.
    loss_fn: the per-set loss (``meta.loss``: mse, bce or bpr).
    net: `MetaEmbNet` or `MWUFNet`.
    known: `models.id_warmup.known_ids` of the training items.
  """

  model: Any
  predict: PredictFn
  loss_fn: LossFn
  net: Any
  known: dict | None = None

  def set_loss(self, base_params, features0, item, emb, users, labels, mask) -> jax.Array:
    return self.loss_fn(pair_scores(self.predict, base_params, features0, users, item, emb), labels, mask)

  def content(self, base_params: Params, features: Features, items: jax.Array) -> jax.Array:
    cols = {s.name: features.item[s.name][items] for s in self.model.item_specs}
    return content_vectors(self.model, base_params, cols, self.known)


def row(batch: ItemBatch, i: int) -> ItemBatch:
  """Item ``i`` of a batch, without the batch axis (loops and tests)."""
  return jax.tree_util.tree_map(lambda x: x[i], batch)


def metaemb_item_loss(s: WarmupSetup, alpha: float, cold_lr: float, params: Params, base_params: Params,
                      features0: Features, content: jax.Array, b: ItemBatch) -> tuple[jax.Array, dict]:
  """MetaEmb's meta-loss of one item: ``α l_a(φ) + (1 − α) l_b(φ − η ∂l_a/∂φ)``, ``φ = g(content)``."""
  phi = s.net.cold_embedding(params, content)
  loss_a, grad = jax.value_and_grad(
      lambda e: s.set_loss(base_params, features0, b.item, e, b.a_users, b.a_labels, b.a_mask))(phi)
  loss_b = s.set_loss(base_params, features0, b.item, phi - cold_lr * grad, b.b_users, b.b_labels, b.b_mask)
  return alpha * loss_a + (1.0 - alpha) * loss_b, {"loss_a": loss_a, "loss_b": loss_b}


def mwuf_item_loss(s: WarmupSetup, params: Params, base_params: Params, features0: Features, content: jax.Array,
                   cold_id: jax.Array, history: jax.Array, no_history: jax.Array,
                   b: ItemBatch) -> tuple[jax.Array, dict]:
  """MWUF's ``L_cold + L_warm`` of one item on batches a ∪ b.

  Args:
    s: the setup.
    params: the training params (`MWUFNet` params and the cold table ``"cold"``).
    base_params: the frozen base params.
    features0: `as_new_items` of the feature tables.
    content: ``[C]`` the item's content vector.
    cold_id: the item's id (its row of the cold table).
    history: ``[Du]`` mean user vector of its training users.
    no_history: treat the item as having no recorded users (shift input ``d``).
    b: the item's batches.
  """
  users = jnp.concatenate([b.a_users, b.b_users])
  labels = jnp.concatenate([b.a_labels, b.b_labels])
  mask = jnp.concatenate([b.a_mask, b.b_mask])
  cold = params["cold"][cold_id]
  loss_cold = s.set_loss(base_params, features0, b.item, cold, users, labels, mask)
  shift_in = jnp.where(no_history, params["default"], history)
  warm = s.net.warm(params, content, jax.lax.stop_gradient(cold), shift_in)
  loss_warm = s.set_loss(base_params, features0, b.item, warm, users, labels, mask)
  return loss_cold + loss_warm, {"cold_loss": loss_cold, "warm_loss": loss_warm}


def mean_user_vectors(s: WarmupSetup, base_params: Params, features: Features, users: jax.Array,
                      mask: jax.Array) -> jax.Array:
  """``[B, Du]`` the mean base user vector over each row's valid users (``users [B, L]``)."""
  cols = {spec.name: features.user[spec.name][users] for spec in s.model.user_specs}
  vecs = user_vectors(s.model, base_params, cols)
  m = mask.astype(vecs.dtype)[..., None]
  return jnp.sum(vecs * m, -2) / jnp.maximum(jnp.sum(m, -2), 1.0)


def make_warmup_step(batch_loss: Callable, optimizer: optax.GradientTransformation, items_per_batch: int,
                     pairs: int, ratio: int = 0) -> Callable:
  """``step(state, item_tasks, (features, base_params, user_logits)) -> (state, metrics)`` (`train.loop`)."""

  def step(state: MetaTrainState, tasks: TaskSet, inputs):
    features, base_params, user_logits = inputs
    k_batch, k_neg, k_loss = jax.random.split(jax.random.fold_in(state.rng, state.step), 3)
    batch = sample_item_batch(tasks, k_batch, items_per_batch, pairs)
    if ratio:
      batch = with_negative_users(batch, k_neg, user_logits, features.extra[SEEN], ratio)
    (loss, aux), grads = jax.value_and_grad(batch_loss, has_aux=True)(state.params, base_params, features, batch,
                                                                      k_loss)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return MetaTrainState(state.step + 1, params, opt_state, state.rng), {"loss": loss,
                                                                          "grad_norm": global_norm(grads), **aux}

  return step


# --------------------------------------------------------------------------- the methods


def _serious(changes: list[str]) -> list[str]:
  return [c for c in changes if not c.startswith("eval.")]  # evaluation keys train nothing


class IdWarmup(LearnedMethod):
  """A base model with ``model.item_id=true`` plus a warm-up network for unknown item ids.

  Subclasses set ``config_blocks`` and implement `make_net`, `init_params`
  and `batch_loss` (and `serving` when the trained params hold more than
  prediction needs).
  """

  ignored: ClassVar[tuple[str, ...]] = ("distill.",)
  not_benchable: ClassVar[str] = ("it trains a warm-up network on item tasks after its base model, not a meta-step "
                                  "over user tasks; its runs log tasks/s in metrics.jsonl")

  # ------------------------------------------------------------------ the base

  def base_method(self, config: ml_collections.ConfigDict | None = None) -> Method:
    """``id_warmup.base`` resolved with ``model.item_id=true`` (and the warm-up blocks at their defaults).

    Args:
      config: resolve against this config (default: the method's own).

    Raises:
      ConfigError: the name is unknown or its variant is malformed.
    """
    from metarec_jax.methods.registry import resolve
    values = {"model.item_id": True}
    values.update({f"{b}.{k}": v for b, block in ALL_BLOCKS.items() for k, v in block.items()})
    config = self.config if config is None else config
    return resolve(self.config.id_warmup.base,
                   cfg_lib.set_values(config, values, f"method {self.name}: id_warmup.base"))

  def fit_base(self, ctx: FitContext) -> tuple[FittedModel, ml_collections.ConfigDict]:
    """The fitted base and its config: the run's own row when it matches, else a private checkpoint."""
    name = self.config.id_warmup.base
    mine = self.base_method()
    listed = ctx.methods.get(name)
    if listed is not None:
      values = {f"{b}.{k}": v for b, block in ALL_BLOCKS.items() for k, v in block.items()}
      if not _serious(cfg_lib.diff(cfg_lib.set_values(listed.config, values), mine.config)):
        return ctx.fit(listed), listed.config
    shared = self.base_method(ctx.config)
    owner = f"{name}_item_id"
    if _serious(cfg_lib.diff(shared.config, mine.config)):  # this method's variant changes the base
      owner = f"{name}_item_id_{self.name}"
    trained = ctx.trained(owner, mine.config, lambda: train_model(mine.config, ctx, owner, mine.parts(ctx.prep)))
    return trained.fitted(owner, ctx.prep, mine.config), mine.config

  def validate(self, problems: list[str]) -> None:
    Method.validate(self, problems)
    w, n = self.config.id_warmup, self.name
    if w.steps < 0 or w.items_per_batch < 1 or w.pairs < 1 or w.lr <= 0 or w.max_item_ratings < 2:
      problems.append(f"method {n}: id_warmup.steps must be >= 0, items_per_batch and pairs >= 1, lr > 0 and "
                      f"max_item_ratings >= 2")
    self.validate_block(problems)
    if not w.base:
      problems.append(f"method {n}: set id_warmup.base to the method whose model to warm up (pooled, melu1, ...)")
      return
    try:
      base = self.base_method()
    except cfg_lib.ConfigError as err:
      problems.append(f"method {n}: id_warmup.base: {err}")
      return
    if isinstance(base, IdWarmup):
      problems.append(f"method {n}: id_warmup.base={w.base} is an id warm-up method itself; name the model to "
                      "warm up (pooled, melu1, maml, ...)")
      return
    if not isinstance(base, (MetaLearner, Pooled)):
      problems.append(f"method {n}: id_warmup.base={w.base} is not a learner of the engine or the pooled model; "
                      "its model has no item-id table to warm up")
      return
    m = base.config.model
    if not m.item_id:
      problems.append(f"method {n}: id_warmup.base={w.base} sets model.item_id=false; the warm-up needs the "
                      "item-id field")
    if m.extractor != "fields":
      problems.append(f"method {n}: id_warmup.base={w.base} uses model.extractor={m.extractor}; the warm-up "
                      "reads the content embeddings of the fields extractor only")
    if m.residual or m.support_vector or m.ridge_dim:
      problems.append(f"method {n}: id_warmup.base={w.base} needs the user's support set to score "
                      "(model.residual / support_vector / ridge_dim); item tasks score (user, item) pairs "
                      "without one")
    check_model_config(base.name, base.config, problems)

  # ------------------------------------------------------------------ what a subclass provides

  def validate_block(self, problems: list[str]) -> None:
    """The method's own block's problems."""

  def make_net(self, base_model: Any) -> Any:
    raise NotImplementedError

  def init_params(self, key: jax.Array, net: Any, setup: WarmupSetup, base_params: Params,
                  prep: Prepared) -> Params:
    """The initial training params."""
    raise NotImplementedError

  def batch_loss(self, setup: WarmupSetup) -> Callable:
    """``loss(params, base_params, features, batch, key) -> (loss, aux)`` over an `ItemBatch`."""
    raise NotImplementedError

  def serving(self, params: Params) -> Params:
    """The params prediction needs (``params[KEY]`` of the served model)."""
    return params

  # ------------------------------------------------------------------ fitting

  def fit(self, ctx: FitContext) -> Fitted:
    prep, w, t = ctx.prep, self.config.id_warmup, self.config.train
    base, base_cfg = self.fit_base(ctx)
    if not isinstance(base, FittedModel) or not isinstance(base.model, RecModel):
      raise cfg_lib.ConfigError(f"{self.name}: id_warmup.base={w.base} has no RecModel to warm up")
    base_meta = base.params[MAIN_VALID]
    base_params = base_meta["model"]
    implicit = prep.implicit
    ratio = int(self.config.data.negatives_per_positive) if implicit else 0
    known = known_ids(base.model, prep.data.items.columns, np.unique(prep.split.train.item))
    setup = WarmupSetup(base.model, base.predict, make_loss(base_cfg.meta.loss, ratio), self.make_net(base.model),
                        known)
    model = WarmedModel(base.model, setup.net, residual=bool(base_cfg.model.residual),
                        bias_reg=float(base_cfg.model.bias_reg), known=known)
    predict = make_warmed_predict(model)
    adaptation = {k: Adaptation(dataclasses.replace(a.spec, adapt=exclude_warmup(a.spec.adapt)), a.inner_lr)
                  for k, a in base.adaptation.items()}
    predictors: dict = {}

    def predictor(spec):
      if spec not in predictors:
        predictors[spec] = make_adapted_predictor(spec, predict)
      return predictors[spec]

    def meta(warm):
      return {**base_meta, "model": {**base_meta["model"], KEY: warm}}

    k_init, k_run = jax.random.split(method_key(ctx.seed, self.checkpoint))
    params = self.init_params(k_init, setup.net, setup, base_params, prep)
    tasks = jax.device_put(item_tasks(prep.split.train, cap=int(w.max_item_ratings), pad_to=2 * int(w.pairs),
                                      seed=ctx.seed))
    users = np.unique(prep.split.train.user)
    user_logits = jnp.asarray(pool_logits(users, prep.data.num_users))
    optimizer = optax.adam(float(w.lr))
    state = init_state(params, optimizer, k_run)
    step = jax.jit(make_warmup_step(self.batch_loss(setup), optimizer, int(w.items_per_batch), int(w.pairs), ratio),
                   donate_argnums=(0,))
    chunk = self.config.eval.tasks_per_chunk

    def validate(p):
      warm = self.serving(p)
      out = {}
      for k in prep.valid_batches:
        a, m = adaptation[k], meta(warm)
        out[k] = validation_value(lambda b: predictor(a.spec)(m, prep.features, b, a.inner_lr), prep, k, chunk)
      return out

    settings = LoopSettings(steps=int(w.steps), tasks_per_batch=int(w.items_per_batch), eval_every=int(t.eval_every),
                            log_every=int(t.log_every), checkpoint_every=int(t.checkpoint_every))
    sel = train_loop(self.checkpoint, ctx.seed, state, step, tasks, (prep.features, base_params, user_logits),
                     sets=list(prep.valid_batches), validate=validate, settings=settings,
                     ckpt_dir=ctx.checkpoint_dir(self.checkpoint), log=ctx.log, progress=ctx.progress,
                     on_step=ctx.on_step, restore_only=ctx.restore_only, selection_key=selection_key(prep),
                     hint="Lower id_warmup.lr.")
    selection = {k: {"best_step": sel.best_step[k], "val_mae": sel.best_val[k], "base": base.name,
                     "base_params_of": MAIN_VALID} for k in sel.best}
    return FittedModel(self.name, selection, model, predict, {k: meta(self.serving(v)) for k, v in sel.best.items()},
                       adaptation, prep.features, chunk, predictors=predictors)


def _mean_training_embedding(base_params: Params, features: Features) -> jax.Array:
  """``ē``: the mean id embedding of the items with training ratings (ids > 0)."""
  ids = np.unique(np.asarray(features.item[ID_FIELD]))
  ids = ids[ids > 0]
  table = id_table(base_params)
  return jnp.mean(table[jnp.asarray(ids)], 0) if len(ids) else jnp.zeros(table.shape[1:], table.dtype)


@register_method("metaemb")
class MetaEmb(IdWarmup):
  """MetaEmb (Pan et al., SIGIR 2019): a generator of new items' id embeddings, trained with the two-batch loss."""

  config_blocks: ClassVar[dict[str, dict[str, Any]]] = {"id_warmup": COMMON, "metaemb": METAEMB_DEFAULTS}

  def validate_block(self, problems: list[str]) -> None:
    m = self.config.metaemb
    if not 0.0 <= m.alpha <= 1.0 or m.cold_lr < 0 or any(h < 1 for h in m.hidden):
      problems.append(f"method {self.name}: metaemb.alpha must lie in [0, 1], metaemb.cold_lr >= 0 and "
                      f"metaemb.hidden sizes >= 1")

  def make_net(self, base_model: Any) -> MetaEmbNet:
    return MetaEmbNet(tuple(int(h) for h in self.config.metaemb.hidden), int(base_model.embed_dim))

  def init_params(self, key, net, setup, base_params, prep) -> Params:
    return net.init(key, content_width(setup.model), _mean_training_embedding(base_params, prep.features))

  def batch_loss(self, setup: WarmupSetup) -> Callable:
    alpha, cold_lr = float(self.config.metaemb.alpha), float(self.config.metaemb.cold_lr)
    return metaemb_batch_loss(setup, alpha, cold_lr)


def metaemb_batch_loss(setup: WarmupSetup, alpha: float, cold_lr: float) -> Callable:
  """MetaEmb's meta-loss averaged over a batch of items, vmapped: ``(params, base_params, features, batch, key)``."""

  def loss(params, base_params, features, batch: ItemBatch, key=None):
    content = setup.content(base_params, features, batch.item)
    features0 = as_new_items(features)
    per, aux = jax.vmap(lambda c, b: metaemb_item_loss(setup, alpha, cold_lr, params, base_params, features0, c,
                                                       b))(content, batch)
    return jnp.mean(per), {k: jnp.mean(v) for k, v in aux.items()}

  return loss


@register_method("mwuf")
class MWUF(IdWarmup):
  """MWUF (Zhu et al., SIGIR 2021): meta scaling and shifting networks over the mean-initialised cold embedding."""

  config_blocks: ClassVar[dict[str, dict[str, Any]]] = {"id_warmup": COMMON, "mwuf": MWUF_DEFAULTS}

  def validate_block(self, problems: list[str]) -> None:
    m = self.config.mwuf
    if not 0.0 <= m.no_history_share <= 1.0 or any(h < 1 for h in m.hidden):
      problems.append(f"method {self.name}: mwuf.no_history_share must lie in [0, 1] and mwuf.hidden sizes >= 1")

  def make_net(self, base_model: Any) -> MWUFNet:
    return MWUFNet(tuple(int(h) for h in self.config.mwuf.hidden), int(base_model.embed_dim))

  def init_params(self, key, net, setup, base_params, prep) -> Params:
    mean = _mean_training_embedding(base_params, prep.features)
    users = jnp.asarray(np.unique(prep.split.train.user))
    cols = {s.name: prep.features.user[s.name][users] for s in setup.model.user_specs}
    default = jnp.mean(user_vectors(setup.model, base_params, cols), 0)
    params = net.init(key, content_width(setup.model), int(default.shape[-1]), mean, default)
    return {**params, "cold": jnp.tile(mean[None, :], (id_table(base_params).shape[0], 1))}

  def serving(self, params: Params) -> Params:
    return {k: v for k, v in params.items() if k != "cold"}

  def batch_loss(self, setup: WarmupSetup) -> Callable:
    return mwuf_batch_loss(setup, float(self.config.mwuf.no_history_share))


def mwuf_batch_loss(setup: WarmupSetup, no_history_share: float) -> Callable:
  """MWUF's ``L_cold + L_warm`` averaged over a batch of items, vmapped.

  Returns ``loss(params, base_params, features, batch, key) -> (loss, aux)``;
  ``key`` draws which items are treated as having no recorded users.
  """

  def loss(params, base_params, features, batch: ItemBatch, key):
    content = setup.content(base_params, features, batch.item)
    history = mean_user_vectors(setup, base_params, features, batch.users, batch.users_mask)
    no_history = jax.random.bernoulli(key, no_history_share, batch.item.shape)
    cold_ids = features.item[ID_FIELD][batch.item]
    features0 = as_new_items(features)
    per, aux = jax.vmap(lambda c, i, h, n, b: mwuf_item_loss(setup, params, base_params, features0, c, i, h, n, b))(
        content, cold_ids, history, no_history, batch)
    return jnp.mean(per), {k: jnp.mean(v) for k, v in aux.items()}

  return loss


__all__ = ["MetaEmb", "MWUF", "IdWarmup", "ItemBatch", "WarmupSetup", "item_tasks", "split_items",
           "sample_item_batch", "with_negative_users", "as_new_items", "pair_scores", "metaemb_item_loss",
           "metaemb_batch_loss", "mwuf_item_loss", "mwuf_batch_loss", "mean_user_vectors", "make_warmup_step", "row"]
