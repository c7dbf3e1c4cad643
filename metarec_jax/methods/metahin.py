"""MetaHIN: meta-learning on heterogeneous information networks (Lu, Fang, Shi, KDD 2020), as a method.

Lu, Fang, Shi. "Meta-learning on Heterogeneous Information Networks for
Cold-start Recommendation", KDD 2020. Reference code: github.com/rootlu/MetaHIN
(``code/HeteML_new.py``: ``HML.mp_update``; ``code/MetaLearner_new.py``:
``MetapathLearner``, ``MetaLearner``; ``code/Config.py``: ``config_ml``;
``data/movielens/MovieLensProcessor.ipynb``: the meta-path contexts).

One task is one user ``u`` with support set ``S_u`` and query set ``Q_u``.
The paper's equations (its Sec. 4.2 semantic-enhanced task constructor and
Sec. 4.3 co-adaptation meta-learner, read through ``HML.mp_update``) and the
code that computes them:

* **Meta-path contexts** ``C_u^p`` for ``p`` in ``P`` = {``U-M``,
  ``U-M-U-M``, ``U-M-A-M``, ``U-M-D-M``} on ML-1M: the items reached from the
  user's support items along ``p`` (`data.metapaths`: fixed-width neighbour
  tables built once per seed from the meta-training ratings and the item
  fields, `context_bags` on the device). ``e_j`` is the extractor's item
  vector (``model.extractor``, any registered extractor, with the params
  `ConditionedModel.embed_task` would give it; `MetaHINModel` embeds the
  whole catalogue once per call and pools it with the bags).
* **User embedding per meta-path** ``x_u^p = g_φ(C_u^p) =
  LeakyReLU(mean_{j ∈ C_u^p} (W e_j + b))`` with ``φ = (W, b)``
  (`aggregate`, params ``aggregator/{kernel,bias}``; the reference's
  ``MetapathLearner`` with ``neigh_agg = mean``; one ``φ`` shared by all
  meta-paths, as there).
* **Rating** ``r̂_ui = h_ω(x_u, e_i)``: an MLP on ``[e_i; x_u]`` with ReLU
  hidden layers (`mlp`, params ``predictor/{w1,b1,...}``; the reference's
  ``MetaLearner``: 64 -> 64 -> 1), plus ``model.offset``.
* **Semantic-wise adaptation**, per meta-path:
  ``φ_u^p = φ - α ∇_φ L(ω, g_φ(C_u^p), S_u)`` (``metahin.mp_lr = α``,
  ``metahin.mp_steps``; the reference's ``mp_update`` loop, ``ω`` at its
  meta value), then ``x_u^p = g_{φ_u^p}(C_u^p)`` and
  ``ω^p = ω ⊙ κ(x_u^p)`` with ``κ`` one sigmoid-activated linear map per
  leaf of ``ω`` (params ``gate/<leaf>/{kernel,bias}``; the reference's
  ``transformer_liners`` on the mean of the support rows' ``x_u^p``).
* **Task-wise adaptation**, per meta-path:
  ``ω_u^p = ω^p - β ∇_{ω^p} L(ω^p, x_u^p, S_u)`` (``metahin.local_lr = β``,
  ``metahin.local_steps``; the reference's ``HML.forward``).
* **Fusion** over meta-paths: ``a = softmax_p(-L(ω_u^p, x_u^p, S_u))``
  (no gradient through ``a``), ``ω_u = Σ_p a_p ω_u^p`` and
  ``x_u = Σ_p a_p x_u^p`` (the reference's ``aggregator`` and ``mp_att``);
  the query is scored with ``h_{ω_u}(x_u, e_i)``.
* **Meta-update**: the query loss ``L(ω_u, x_u, Q_u)`` (MSE; BCE / BPR for
  implicit feedback) averaged over the task batch, differentiated through
  both adaptations (second order, the reference's ``create_graph=True``;
  ``metahin.first_order`` stops the inner gradients) w.r.t. the extractor,
  ``φ``, ``ω`` and ``κ``, with the run's outer optimizer.

The inner steps run inside the model's forward function (``jax.grad`` of the
support loss on plain arrays, vmapped over the meta-paths), not through the
engine's ``adapt``: the co-adaptation moves two different parameter groups
per meta-path (``φ`` then the gated ``ω^p``), gates ``ω`` by a function of
the adapted ``φ`` in between, and fuses the per-path fast weights by their
support losses, none of which the engine's single path-filtered inner loop
expresses. The method is therefore a `ConditionedMethod` (``meta.inner_steps``
fixed to 0; the forward pass is the adaptation), and training, evaluation
and serving run through the engine's jitted, vmapped code unchanged.

Defaults (``config.metahin``) are the reference's ``config_ml``: the four
meta-paths, ``φ`` to 32 dims, hidden layers (64, 64), ``mp_lr = local_lr =
5e-3``, one semantic and one task step (``mp_update = local_update = 1``),
mean aggregation. Its outer rate (Adam 5e-4) and batch (32 tasks) are the
run's ``optimizer.lr`` / ``train.tasks_per_batch`` (``experiments/melu_ml1m.py``
sets both).

Deviations from the paper and the reference code:

* **Contexts come from the support set only, and never hold a scored item.**
  The reference scores a query item with contexts built from that query item
  (its ``U-M`` context is the user's support items plus the query item
  itself, its ``U-M-A-M`` context the movies sharing an actor with it, and so
  on): the query set's item ids reach the user embedding. Here one context
  per meta-path is built from the support items, used for the support and
  the query alike, and every scored item is removed from it (in training the
  task's query items, which the meta-training ratings would otherwise link
  to its support items; at evaluation the scored items). Padded query
  entries (item 0) also remove item 0 from the contexts.
* **Fusion weights from the support set.** The reference weighs the
  meta-paths by ``softmax(-query loss)`` of each path's adapted model, also
  at test time, which reads the test user's query ratings. Here they are the
  softmax of the negated *support* losses after adaptation
  (``metahin.fusion = "support_loss"``; the reference's commented-out
  alternative), or uniform (``"mean"``).
* **Sampled neighbourhoods.** The reference's contexts hold every neighbour
  (thousands of movies per item on ``U-M-U-M``); here up to
  ``metahin.neighbours`` distinct neighbours per item and path, drawn
  uniformly without replacement once per seed. A neighbour is an item with a
  meta-training rating (cold items are nobody's neighbour). Co-rated links
  come from all meta-training ratings, not only the training users' support
  sets; the reference also adds all of the user's support items to every
  ``U-M-U-M`` context, here each support item joins its own contexts once.
* **Item and user features.** ``e_i`` is the run's extractor over its item
  fields (``model.item_fields``; MeLU's four on ML-1M, where the reference
  embeds rate and genre only). Like the reference, the prediction ignores
  the user's own fields unless ``metahin.user_features = true`` (then
  ``f_u`` joins the MLP input).
* **Ratings are centred**: the MLP predicts ``r - model.offset`` (the mean
  training rating; 0 under implicit feedback). ``κ`` is initialised like
  torch's ``Linear`` (uniform ±1/sqrt(fan-in)); ``φ`` and ``ω`` kernels
  Xavier-normal, biases zero, as in the reference.
* **Implicit feedback**: the contexts are built from the support positives
  (label > 0), the inner and outer losses are ``meta.loss`` (BCE / BPR).
* **Serving** (`Recommender`) scores the whole catalogue, so it removes no
  scored item from the contexts.
* **Missing side fields.** A meta-path needs its item field: data without
  ``actor`` / ``director`` (the synthetic data) uses the meta-paths it has
  (``U-M`` and ``U-M-U-M``); ``metahin.side_fields`` names the fields.
* **Cost.** The catalogue is embedded once per forward call (unbatched under
  the task vmap), which suits catalogues of up to some 10^5 items.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from metarec_jax.data.metapaths import MetaPathTables, build_metapath_tables, context_bags
from metarec_jax.meta.learners import LearnerSpec, learner_spec
from metarec_jax.meta.losses import make_loss
from metarec_jax.methods.base import FitContext, Fitted
from metarec_jax.methods.conditioned import ConditionedMethod
from metarec_jax.methods.learned import FittedModel, ModelParts, loss_options
from metarec_jax.methods.registry import register_method
from metarec_jax.models.conditioned import ConditionedModel
from metarec_jax.models.model import Predict, load_pretrained_encoders
from metarec_jax.prepared import MAIN_VALID, Prepared
from metarec_jax.types import Features, Params, TaskBatch

FUSIONS = ("support_loss", "mean")
LEAKY_SLOPE = 0.01  # torch's F.leaky_relu default (the reference's aggregation)

DEFAULTS: dict[str, Any] = {
    "neighbours": 32,                       # K: neighbours per item and meta-path (reference: all of them)
    "co_rated": True,                       # the U-M-U-M meta-path
    "side_fields": ("actor", "director"),   # item fields closing U-M-<field>-M paths (reference: U-M-A-M, U-M-D-M)
    "user_dim": 32,                         # width of x_u^p (reference: 32)
    "hidden": (64, 64),                     # the predictor's hidden layers (reference: 64, 64)
    "mp_lr": 5e-3,                          # α: semantic-wise inner rate (reference mp_lr)
    "mp_steps": 1,                          # semantic-wise steps (reference mp_update)
    "local_lr": 5e-3,                       # β: task-wise inner rate (reference local_lr)
    "local_steps": 1,                       # task-wise steps (reference local_update)
    "fusion": "support_loss",               # meta-path weights: softmax(-adapted support loss) | mean
    "user_features": False,                 # add the user's own fields to the predictor input (reference: no)
    "first_order": False,                   # stop the inner gradients (reference: second order)
    "table_seed": 0,                        # folded with the seed's evaluation key: the neighbour draw
}


# --------------------------------------------------------------------------- pure functions of the params


def aggregate(phi: dict[str, jax.Array], context: jax.Array) -> jax.Array:
  """``g_φ``: ``LeakyReLU(W c + b)`` of a context's mean item vector ``c`` (= the mean of ``W e_j + b``)."""
  return jax.nn.leaky_relu(context @ phi["kernel"] + phi["bias"], LEAKY_SLOPE)


def mlp(omega: dict[str, jax.Array], inputs: jax.Array) -> jax.Array:
  """``h_ω``: ReLU MLP on ``inputs [N, D]`` with layers ``w1, b1, w2, ...``; returns ``[N]``."""
  n = len(omega) // 2
  h = inputs
  for layer in range(1, n + 1):
    h = h @ omega[f"w{layer}"] + omega[f"b{layer}"]
    if layer < n:
      h = jax.nn.relu(h)
  return h[..., 0]


def torch_linear_init(fan_in: int) -> Callable:
  """Uniform ±1/sqrt(fan_in): torch ``nn.Linear``'s default for kernels and biases."""
  bound = 1.0 / np.sqrt(max(fan_in, 1))
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


# --------------------------------------------------------------------------- the model


class MetaHINModel(ConditionedModel):
  """MetaHIN's co-adaptation on the extractor's item vectors (see the module docstring).

  Call it with the task's columns and its meta-path bags::

    model.apply({"params": p}, user_cols, item_cols, (s_cols, s_y, s_mask), catalogue_cols, bags)

  ``catalogue_cols`` are the item fields of every item (``[num_items, ...]``),
  ``bags`` the ``[P, num_items]`` context counts of `context_bags`.

  Attributes:
    paths: the meta-path names (``U-M`` first), one bag each.
    user_dim: width of ``x_u^p``.
    hidden: the predictor's hidden layers.
    mp_lr: ``α``, the semantic-wise inner rate.
    mp_steps: semantic-wise inner steps.
    local_lr: ``β``, the task-wise inner rate.
    local_steps: task-wise inner steps.
    fusion: ``support_loss`` or ``mean``.
    user_features: ``f_u`` joins the predictor input.
    first_order: stop the inner gradients.
    implicit: implicit feedback (contexts from the support positives).
    loss: the inner loss (``mse``, ``bce``, ``bpr``).
    negatives_per_positive: the grouped layout's negatives (BPR).
  """

  paths: tuple[str, ...] = ("U-M",)
  user_dim: int = 32
  hidden: tuple[int, ...] = (64, 64)
  mp_lr: float = 5e-3
  mp_steps: int = 1
  local_lr: float = 5e-3
  local_steps: int = 1
  fusion: str = "support_loss"
  user_features: bool = False
  first_order: bool = False
  implicit: bool = False
  loss: str = "mse"
  negatives_per_positive: int = 0

  def _params(self, d_item: int, d_user: int) -> tuple[dict, dict, dict]:
    """``(φ, ω, κ)``: the params ``aggregator``, ``predictor`` and ``gate``, each a dict of arrays."""
    xavier = nn.initializers.glorot_normal()
    dims = [d_item + self.user_dim + (d_user if self.user_features else 0), *self.hidden, 1]
    shapes = {}
    for layer, (a, b) in enumerate(zip(dims[:-1], dims[1:]), start=1):
      shapes[f"w{layer}"], shapes[f"b{layer}"] = (a, b), (b,)

    def init_phi(key):
      return {"kernel": xavier(key, (d_item, self.user_dim)), "bias": jnp.zeros((self.user_dim,))}

    def init_omega(key):
      keys = jax.random.split(key, len(shapes))
      return {k: xavier(kk, s) if len(s) == 2 else jnp.zeros(s) for kk, (k, s) in zip(keys, shapes.items())}

    def init_kappa(key):
      init, out = torch_linear_init(self.user_dim), {}
      for kk, (k, s) in zip(jax.random.split(key, len(shapes)), shapes.items()):
        k1, k2 = jax.random.split(kk)
        out[k] = {"kernel": init(k1, (self.user_dim, int(np.prod(s)))), "bias": init(k2, (int(np.prod(s)),))}
      return out

    return self.param("aggregator", init_phi), self.param("predictor", init_omega), self.param("gate", init_kappa)

  @nn.compact
  def __call__(self, user_cols: dict[str, jax.Array], item_cols: dict[str, jax.Array], support: tuple,
               catalogue_cols: dict[str, jax.Array], bags: jax.Array) -> jax.Array:
    # embed_task's extractor (same module, same param names), built here because the catalogue goes through it too
    extractor = self.make_extractor(name="extractor")
    s_cols, s_y, s_mask = support
    f_u = extractor.embed_user(user_cols).astype(jnp.float32)
    f_i = extractor.embed_items(item_cols).astype(jnp.float32)
    f_s = extractor.embed_items(s_cols).astype(jnp.float32)
    table = extractor.embed_items(catalogue_cols).astype(jnp.float32)  # [num_items, Di]: no task axis under vmap
    s_y, s_mask = s_y.astype(jnp.float32), s_mask.astype(jnp.float32)
    phi, omega, kappa = self._params(f_i.shape[-1], f_u.shape[-1])
    contexts = (bags @ table) / jnp.maximum(jnp.sum(bags, -1, keepdims=True), 1.0)  # [P, Di]: mean e_j
    loss_fn = make_loss(self.loss, self.negatives_per_positive)
    offset = self.offset

    def score(om, f, x_u):
      parts = [f, jnp.broadcast_to(x_u, f.shape[:-1] + x_u.shape)]
      if self.user_features:
        parts.append(jnp.broadcast_to(f_u, f.shape[:-1] + f_u.shape))
      return offset + mlp(om, jnp.concatenate(parts, -1))

    def support_loss(om, x_u):
      return loss_fn(score(om, f_s, x_u), s_y, s_mask)

    def inner(g):
      return jax.lax.stop_gradient(g) if self.first_order else g

    def one_path(context):
      ph = phi
      for _ in range(self.mp_steps):  # semantic-wise adaptation of φ (ω at its meta value)
        g = inner(jax.grad(lambda p: support_loss(omega, aggregate(p, context)))(ph))
        ph = jax.tree_util.tree_map(lambda a, b: a - self.mp_lr * b, ph, g)
      x_u = aggregate(ph, context)
      om = {k: v * jax.nn.sigmoid(x_u @ kappa[k]["kernel"] + kappa[k]["bias"]).reshape(v.shape)
            for k, v in omega.items()}  # ω^p = ω ⊙ κ(x_u^p)
      for _ in range(self.local_steps):  # task-wise adaptation of ω^p
        g = inner(jax.grad(lambda o: support_loss(o, x_u))(om))
        om = jax.tree_util.tree_map(lambda a, b: a - self.local_lr * b, om, g)
      return om, x_u, jax.lax.stop_gradient(support_loss(om, x_u))

    fast, x_p, losses = jax.vmap(one_path)(contexts)
    if self.fusion == "support_loss":
      weights = jax.nn.softmax(-losses)
    else:
      weights = jnp.full(losses.shape, 1.0 / losses.shape[0])
    self.sow("intermediates", "path_weights", weights)
    omega_u = jax.tree_util.tree_map(lambda v: jnp.tensordot(weights, v, 1), fast)
    return score(omega_u, f_i, weights @ x_p)


# --------------------------------------------------------------------------- scoring a task


def _empty_support() -> tuple:
  return jnp.zeros((1,), jnp.int32), jnp.zeros((1,)), jnp.zeros((1,), bool)


def apply_metahin(model: MetaHINModel, tables: jax.Array, params: Params, features: Features, user: jax.Array,
                  items: jax.Array, support: tuple | None = None, loo: bool = False, exclude_scored: bool = True,
                  capture_weights: bool = False):
  """Scores ``items`` of one user given the support set (``[N]``).

  Args:
    model: the model.
    tables: the meta-path neighbour tables on the device.
    params: its params.
    features: the feature tables.
    user: one user id.
    items: ``[N]`` item ids.
    support: ``(items [S], ratings [S], mask [S])``; None: empty.
    loo: the scored items are the support items, position for position;
      item ``j`` is scored with support entry ``j`` masked out.
    exclude_scored: remove the scored items from every context.
    capture_weights: also return the meta-path weights ``[P]``.
  """
  support = _empty_support() if support is None else support
  if loo:
    if capture_weights:
      raise ValueError("capture_weights is for plain scoring, not leave-one-out")
    s_items, s_y, s_mask = support
    n = s_items.shape[0]

    def one(j):
      keep = s_mask & (jnp.arange(n) != j)
      return apply_metahin(model, tables, params, features, user, items[j][None], (s_items, s_y, keep),
                           exclude_scored=exclude_scored)[0]

    return jax.vmap(one)(jnp.arange(n))
  s_items, s_y, s_mask = support
  num_items = int(next(iter(features.item.values())).shape[0])
  user_cols = {s.name: features.user[s.name][user] for s in model.user_specs}
  item_cols = {s.name: features.item[s.name][items] for s in model.item_specs}
  s_cols = {s.name: features.item[s.name][s_items] for s in model.item_specs}
  catalogue = {s.name: features.item[s.name] for s in model.item_specs}
  own = s_mask & (s_y > 0) if model.implicit else s_mask
  bags = context_bags(tables, s_items, own, num_items, items if exclude_scored else None)
  out, state = model.apply({"params": params}, user_cols, item_cols, (s_cols, s_y, s_mask), catalogue, bags,
                           mutable=["intermediates"])
  if capture_weights:
    return out, state["intermediates"]["path_weights"][0]
  return out


def make_metahin_predict(model: MetaHINModel, tables: jax.Array, exclude_scored: bool = True) -> Predict:
  """The engine's predict function (`types.PredictFn`); ``exclude_scored=False`` for serving.

  The function is jitted (inlined when called inside the engine's jitted
  step; compiled once per shape when called on its own).
  """

  @functools.partial(jax.jit, static_argnames=("loo",))
  def scores(params, features, user, items, support, loo):
    return apply_metahin(model, tables, params, features, user, items, support, loo, exclude_scored)

  def predict(params, features, user, items, support=None, loo=False, capture=False):
    if capture:
      raise ValueError("metahin has no factored layers; use meta.factored=off")
    return scores(params, features, user, items, _empty_support() if support is None else support, bool(loo))

  return Predict(predict, fast_layers=(), uses_support=True)


def init_metahin(model: MetaHINModel, num_paths: int, features: Features, key: jax.Array) -> Params:
  """Initialises the params on one dummy (user, 2 items, 2 support items) example."""
  user_cols = {s.name: features.user[s.name][0] for s in model.user_specs}
  idx = jnp.zeros((2,), jnp.int32)
  item_cols = {s.name: features.item[s.name][idx] for s in model.item_specs}
  catalogue = {s.name: features.item[s.name] for s in model.item_specs}
  num_items = int(next(iter(features.item.values())).shape[0])
  support = (item_cols, jnp.zeros((2,)), jnp.ones((2,)))
  bags = jnp.zeros((num_paths, num_items))
  params = jax.jit(lambda k: model.init(k, user_cols, item_cols, support, catalogue, bags))(key)["params"]
  return load_pretrained_encoders(model, params)  # tokens item fields: the encoder's pretrained weights


def metahin_task_loss(spec: LearnerSpec, predict: Predict, meta, features: Features, task: TaskBatch):
  """The query loss after both adaptations (which run inside ``predict``); aux ``support_loss`` is that loss."""
  support = (task.support_items, task.support_ratings, task.support_mask)
  scores = predict(meta["model"], features, task.user, task.query_items, support)
  loss = spec.loss_fn(scores, task.query_ratings, task.query_mask)
  return loss, {"support_loss": loss}


# --------------------------------------------------------------------------- the method


@dataclasses.dataclass
class MetaHINFitted(FittedModel):
  """A fitted MetaHIN: evaluation removes the scored items from the contexts, serving (all items) does not."""

  serving_predict: Any = None

  def recommender(self, valid_set: str = MAIN_VALID, **kwargs):
    from metarec_jax.serving import Recommender
    a = self.adaptation[valid_set]
    return Recommender(self.model, a.spec, self.params[valid_set], self.features, predict=self.serving_predict,
                       inner_lr=a.inner_lr, name=self.name, **kwargs)


def table_seed(prep: Prepared, offset: int) -> int:
  """The neighbour draw's seed: the seed's evaluation key folded with ``metahin.table_seed``."""
  key = jax.random.fold_in(prep.eval_key, int(offset))
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return int(np.asarray(key).ravel()[-1])


@register_method("metahin")
class MetaHIN(ConditionedMethod):
  """MetaHIN (Lu et al., KDD 2020): meta-path contexts, semantic- and task-wise co-adaptation, fusion."""

  config_blocks: ClassVar[dict[str, dict[str, Any]]] = {"metahin": dict(DEFAULTS)}
  not_benchable: ClassVar[str] = ("its meta-path tables are built from a data set's meta-training ratings, which the "
                                  "synthetic workload does not have; its runs log tasks/s in metrics.jsonl")

  def __init__(self, name: str, config: ml_collections.ConfigDict, **kwargs):
    super().__init__(name, config, **kwargs)
    self._tables: dict[int, tuple[Prepared, MetaPathTables]] = {}

  @property
  def block(self) -> ml_collections.ConfigDict:
    return self.config.metahin

  def validate(self, problems: list[str]) -> None:
    super().validate(problems)
    b = self.block
    if b.fusion not in FUSIONS:
      problems.append(f"method {self.name}: metahin.fusion must be one of {FUSIONS}, got {b.fusion!r}")
    for key in ("neighbours", "user_dim"):
      if b[key] < 1:
        problems.append(f"method {self.name}: metahin.{key} must be >= 1, got {b[key]}")
    for key in ("mp_steps", "local_steps"):
      if b[key] < 0:
        problems.append(f"method {self.name}: metahin.{key} must be >= 0, got {b[key]}")
    for key in ("mp_lr", "local_lr"):
      if b[key] < 0:
        problems.append(f"method {self.name}: metahin.{key} must be >= 0, got {b[key]}")
    if any(h < 1 for h in b.hidden):
      problems.append(f"method {self.name}: metahin.hidden sizes must be >= 1, got {tuple(b.hidden)}")

  def tables(self, prep: Prepared) -> MetaPathTables:
    """The seed's meta-path tables (built once per `Prepared`, from its meta-training ratings)."""
    cached = self._tables.get(id(prep))
    if cached is None or cached[0] is not prep:
      b = self.block
      built = build_metapath_tables(prep.split.train, prep.data.items, k=int(b.neighbours),
                                    seed=table_seed(prep, b.table_seed), fields=tuple(b.side_fields),
                                    co_rated=bool(b.co_rated))
      cached = self._tables[id(prep)] = (prep, built)
    return cached[1]

  def make_model(self, prep: Prepared) -> MetaHINModel:
    b = self.block
    opts = loss_options(self.config)
    return MetaHINModel(paths=self.tables(prep).names, user_dim=int(b.user_dim), hidden=tuple(int(h) for h in b.hidden),
                        mp_lr=float(b.mp_lr), mp_steps=int(b.mp_steps), local_lr=float(b.local_lr),
                        local_steps=int(b.local_steps), fusion=str(b.fusion), user_features=bool(b.user_features),
                        first_order=bool(b.first_order), implicit=prep.implicit, loss=opts["loss"],
                        negatives_per_positive=opts["negatives_per_positive"], **self.extractor_kwargs(prep))

  def parts(self, prep: Prepared) -> ModelParts:
    model = self.make_model(prep)
    tables = self.tables(prep).on_device()
    spec = learner_spec("maml", inner_lr=0.0, inner_steps=0, **loss_options(self.config))
    spec = dataclasses.replace(spec, name=self.name, task_loss=metahin_task_loss)
    return ModelParts(model, make_metahin_predict(model, tables),
                      lambda f, k: init_metahin(model, len(model.paths), f, k), spec)

  def fit(self, ctx: FitContext) -> Fitted:
    trained = self.train(ctx)
    fitted = trained.fitted(self.name, ctx.prep, self.config)
    serving = make_metahin_predict(trained.model, self.tables(ctx.prep).on_device(), exclude_scored=False)
    return MetaHINFitted(**{f.name: getattr(fitted, f.name) for f in dataclasses.fields(FittedModel)},
                         serving_predict=serving)


__all__ = ["DEFAULTS", "FUSIONS", "MetaHIN", "MetaHINFitted", "MetaHINModel", "aggregate", "apply_metahin",
           "init_metahin", "make_metahin_predict", "metahin_task_loss", "mlp", "table_seed"]
