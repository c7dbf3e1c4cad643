"""Modulation (hypernetwork) learners: CMML and ColdNAS as support-conditioned methods.

Both read the user's support set through an encoder, aggregate it with a
masked mean, and turn the result into per-layer modulation parameters of a
predictor MLP over ``[f_u, f_i]``. There are no inner gradient steps: the
encoder is the adaptation (`methods.conditioned.ConditionedMethod`).

The shared predictor (`ModulatedMLP`) has positions ``p = 0 .. P-1``: the
input ``x = [f_u, f_i]`` (position 0, only when ``modulate_input``) and the
output of each hidden `Dense` before its activation. At position ``p``,
``h <- m_p(h, phi_p)`` with ``m_p`` the method's modulation function, then
``h <- leaky_relu(h)``; the score is ``offset + w^T h + b``.

CMML (Feng et al., CIKM 2021, "CMML: Contextual Modulation Meta Learning for
Cold-Start Recommendation", arXiv 2108.10511; reference code
github.com/waterhorse1/CMML_pytorch, ``cmml_user/module.py``:
``Mean_encoder``, ``mlp_hypernet``, ``film_condition_mlp``,
``meta_mlp_context``), registered as ``cmml``:

* context encoder: ``e_j = [f_u, f_s_j]`` (support pair embedding, with the
  gradient stopped as the reference's ``.detach()``), ``r_j = MLP_y(y_j)``
  (1 -> 64 -> 64, ReLU), ``c = mean_j MLP_c([e_j, r_j])`` (-> 64 -> D,
  ReLU) over the valid support entries (`CMMLModel.__call__`, ``c``);
* hypernetwork on the context-item interaction ``x * c`` (``x`` the query
  pair embedding): ``u_1 = ReLU(W_1 (x * c))``, ``u_l = ReLU(W_l u_{l-1})``
  (width ``cmml.hyper_hidden`` = 256), ``[gamma_l, beta_l] = V_l u_l``
  (`CMMLModel.__call__`, ``film``);
* FiLM predictor: ``h_l = leaky_relu(gamma_l * (W_l h_{l-1} + b_l) + beta_l)``
  for the hidden widths ``cmml.hidden`` = (64, 64), then a linear output
  (`film`, `ModulatedMLP`).

  Reference defaults: 32-dim embedding per field (8 fields -> D = 256),
  Adam 3e-4 with weight decay 1e-5, gradients clamped to [-10, 10], 32
  tasks per batch, 30 epochs; the FiLM MLP (``--model mlp``) with the mean
  context encoder.

ColdNAS (Wu et al., WWW 2023, "ColdNAS: Search to Modulate for User
Cold-Start Recommendation", arXiv 2306.03387; reference code
github.com/LARS-research/ColdNAS: ``nas4lfm.py`` (the supernet),
``model_lfm4.py`` (the searched model), ``ColdNAS_options.py``):

* adaptation network: ``c = mean_j leaky_relu(W_c [f_s_j, f_u, y_j])``
  (width ``coldnas.context_dim``; the reference's ``8 * embedding_dim`` =
  256), ``phi = W_o c + b_o`` split into four vectors per position:
  ``p_max``, ``p_min``, ``p_mul = ReLU(.)``, ``p_add`` (`ColdNASModel`);
* predictor: input ``[f_u, f_i]`` and hidden widths ``coldnas.hidden`` =
  (128, 64, 32); positions: the input and the three hidden outputs (4);
* modulation: the transformed search space -- at each position a subset
  of ``{max, min, mul, add}`` applied in the fixed order
  ``min(max(h, p_max), p_min) * p_mul + p_add`` (operators left out are
  skipped; `modulate_ops`, `OPS`), so a position's choice is one of 16
  subsets. The order is the reference supernet's (``modulate`` in
  ``nas4lfm.py``); the paper's abstract says its symbolic search space is
  proven equivalent to this much smaller one (we could not read the body
  of the paper, only its abstract and the code);
* search (``coldnas_search``, `ColdNASSearch`): the supernet gates every
  operator by ``a = sigmoid(alpha[p, k])``: ``h <- a * op_k(h) + (1 - a) * h``
  in the fixed order (`modulate_relaxed`), ``alpha`` [P, 4] trained jointly
  with the other weights by the same optimiser on the training loss (the
  reference's single-level search); the ``alpha`` of the validation-selected
  supernet is discretised by keeping the ``coldnas_search.top_k`` gates with
  the largest ``sigmoid(alpha)`` over all positions (the reference README:
  "Select top-K by output alpha"; the Last.FM model in ``model_lfm4.py``
  keeps 4 operators, our default K), and the fixed architecture is
  retrained from a fresh initialisation (``evaluate.py`` trains the
  searched ``stackmodel`` from scratch) and scored. The chosen operators,
  the gates and the supernet's selected step are in ``Fitted.selection``.
* ``coldnas``: the fixed architecture of ``coldnas_fixed.ops``.

  Reference defaults: 32-dim embeddings, Adam 1e-4, 32 tasks per batch, 100
  epochs for the search and 100 for the retraining, ratings predicted as
  ``rating_range * sigmoid(out)``.

Deviations (from the papers and their code):

* ``coldnas_fixed.ops`` -- the operators ColdNAS keeps on MovieLens -- are
  not in the reference code (it holds only the Last.FM search,
  ``nas4lfm.py`` / ``model_lfm4.py``: ``add / add / max+add / none``) and we
  could not read the paper's table of searched structures; the default is
  the structure our own ``coldnas_search`` found on MeLU's ML-1M release
  (seed 0; ``docs/modulation.md``).
* The reference's supernet gates the last position with ``alpha[2]`` (a
  typo: ``alpha[3]`` is never used); each position has its own gates here.
* The architecture of the supernet is read from the checkpoint selected on
  the held-out warm validation users (``valid``; the reference picks the
  epoch of best *test* loss).
* Ratings: support ratings enter the encoders centred on ``offset`` (the
  mean training rating; 0 for implicit feedback), and scores are
  ``offset + out`` (logits for implicit feedback), not ColdNAS's
  ``rating_range * sigmoid(out)`` nor CMML's raw ``out``.
* The extractor is the run's (``model.*``; MeLU's 32-dim field embeddings
  in ``experiments/melu_ml1m.py``), and the pair embedding is ``[f_u, f_i]``
  (the references put the item first). Dense layers use Flax's default
  initialisation (ColdNAS's supernet draws every weight from N(0, 0.01);
  ``alpha`` starts at 0 here, at N(0, 0.01) there).
* Optimiser, steps and batch size are the run's (``optimizer.*``,
  ``train.*``), for the search as well unless ``coldnas_search.steps`` is
  set; CMML's weight decay and gradient clamp are not applied unless the
  run sets ``optimizer.weight_decay`` / ``optimizer.clip_norm``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from metarec_jax.methods.base import FitContext, Fitted
from metarec_jax.methods.conditioned import ConditionedMethod
from metarec_jax.methods.learned import ModelParts, train_model
from metarec_jax.methods.registry import register_method
from metarec_jax.models.conditioned import ConditionedModel, masked_mean
from metarec_jax.prepared import MAIN_VALID, Prepared

OPS = ("max", "min", "mul", "add")  # ColdNAS's operators, in the order the transformed space applies them
NONE = "none"  # a position without modulation

# --------------------------------------------------------------------------- modulation functions


def film(h: jax.Array, gamma: jax.Array, beta: jax.Array) -> jax.Array:
  """Feature-wise linear modulation: ``gamma * h + beta``."""
  return gamma * h + beta


def apply_op(op: str, h: jax.Array, p: jax.Array) -> jax.Array:
  """One ColdNAS operator between ``h`` and its parameter ``p`` (element-wise)."""
  if op == "max":
    return jnp.maximum(h, p)
  if op == "min":
    return jnp.minimum(h, p)
  if op == "mul":
    return h * p
  if op == "add":
    return h + p
  raise ValueError(f"unknown ColdNAS operator {op!r}; known: {OPS}")


def modulate_ops(h: jax.Array, params: dict[str, jax.Array], ops: Sequence[str]) -> jax.Array:
  """The fixed modulation ``min(max(h, p_max), p_min) * p_mul + p_add`` restricted to ``ops``.

  Args:
    h: the hidden representation ``[..., W]``.
    params: operator name -> its parameter (broadcast against ``h``).
    ops: the operators kept at this position (any order: they apply in `OPS` order).
  """
  for op in OPS:
    if op in ops:
      h = apply_op(op, h, params[op])
  return h


def modulate_relaxed(h: jax.Array, params: dict[str, jax.Array], gates: jax.Array) -> jax.Array:
  """ColdNAS's supernet at one position: ``h <- g_k * op_k(h) + (1 - g_k) * h`` for k in `OPS` order.

  Args:
    h: the hidden representation ``[..., W]``.
    params: operator name -> its parameter.
    gates: ``[4]`` weights in [0, 1] (``sigmoid(alpha[p])``); a 0/1 vector
      is the fixed modulation of the operators it selects.
  """
  for k, op in enumerate(OPS):
    h = gates[k] * apply_op(op, h, params[op]) + (1.0 - gates[k]) * h
  return h


def parse_ops(spec: Sequence[str]) -> tuple[tuple[str, ...], ...]:
  """``("add", "max+add", "none")`` -> one tuple of operators per position, in `OPS` order.

  Raises:
    ValueError: an unknown operator name.
  """
  out = []
  for entry in spec:
    names = [n.strip() for n in str(entry).split("+") if n.strip()]
    if names in ([], [NONE]):
      out.append(())
      continue
    bad = [n for n in names if n not in OPS]
    if bad:
      raise ValueError(f"unknown ColdNAS operator(s) {bad} in {entry!r}; use {'+'.join(OPS)} or {NONE!r}")
    out.append(tuple(op for op in OPS if op in names))
  return tuple(out)


def format_ops(ops: Sequence[Sequence[str]]) -> list[str]:
  """One string per position (``"max+add"``, ``"none"``): the form ``coldnas_fixed.ops`` takes."""
  return ["+".join(o) if o else NONE for o in ops]


def discretise(alpha: np.ndarray, top_k: int) -> tuple[tuple[str, ...], ...]:
  """The operators of the ``top_k`` largest gates ``sigmoid(alpha)`` over all positions.

  Args:
    alpha: ``[P, 4]`` architecture weights (columns in `OPS` order).
    top_k: how many (position, operator) pairs to keep.
  """
  alpha = np.asarray(alpha, np.float64)
  order = np.argsort(-alpha.reshape(-1), kind="stable")[:top_k]
  keep = {(int(i) // len(OPS), int(i) % len(OPS)) for i in order}
  return tuple(tuple(op for k, op in enumerate(OPS) if (p, k) in keep) for p in range(alpha.shape[0]))


# --------------------------------------------------------------------------- the modulated predictor


class ModulatedMLP(nn.Module):
  """An MLP over ``x = [f_u, f_i]`` whose positions are modulated: ``h <- leaky_relu(m_p(h))``.

  Positions: the input (only when ``modulate_input``), then the output of each
  hidden `Dense` before its activation. Params: ``dense_<l>``, ``out`` and,
  for ``kind="relaxed"``, the architecture weights ``alpha`` ``[P, 4]``.

  Attributes:
    hidden: hidden widths.
    kind: ``film`` (``mods[p] = (gamma, beta)``), ``ops`` (``mods[p]`` an
      operator -> parameter dict, the operators of ``ops[p]`` applied),
      ``relaxed`` (the same dicts, every operator gated by
      ``sigmoid(alpha[p])``) or ``none`` (no modulation: a plain MLP).
    ops: per position, the operators kept (``kind="ops"``).
    modulate_input: position 0 is the input (ColdNAS); else the first
      position is the first hidden layer (CMML).
  """

  hidden: Sequence[int]
  kind: str = "none"
  ops: Sequence[Sequence[str]] = ()
  modulate_input: bool = False

  @nn.nowrap
  def widths(self, in_dim: int) -> list[int]:
    """The width of each modulated position."""
    return ([in_dim] if self.modulate_input else []) + list(self.hidden)

  @nn.nowrap
  def modulate(self, p: int, h: jax.Array, mods: Sequence[Any] | None, gates: jax.Array | None) -> jax.Array:
    if self.kind == "none" or mods is None:
      return h
    if self.kind == "film":
      gamma, beta = mods[p]
      return film(h, gamma, beta)
    if self.kind == "ops":
      return modulate_ops(h, mods[p], self.ops[p])
    if self.kind == "relaxed":
      return modulate_relaxed(h, mods[p], gates[p])
    raise ValueError(f"unknown modulation kind {self.kind!r}")

  @nn.compact
  def __call__(self, x: jax.Array, mods: Sequence[Any] | None = None) -> jax.Array:
    """Scores ``[N]`` of the rows of ``x`` ``[N, D]`` under the modulation parameters ``mods`` (one per position)."""
    gates = None
    if self.kind == "relaxed":
      alpha = self.param("alpha", nn.initializers.zeros, (len(self.widths(x.shape[-1])), len(OPS)), jnp.float32)
      gates = jax.nn.sigmoid(alpha)
    h, p = x, 0
    if self.modulate_input:
      h = nn.leaky_relu(self.modulate(0, h, mods, gates))
      p = 1
    for l, width in enumerate(self.hidden):
      h = nn.Dense(width, name=f"dense_{l}")(h)
      h = nn.leaky_relu(self.modulate(p, h, mods, gates))
      p += 1
    return nn.Dense(1, name="out")(h)[..., 0]


def _pairs(f_u: jax.Array, f: jax.Array) -> jax.Array:
  """``[f_u, f_j]`` for every row ``f_j`` of ``f`` ``[N, Di]`` -> ``[N, Du + Di]``."""
  return jnp.concatenate([jnp.broadcast_to(f_u, (f.shape[0], f_u.shape[-1])), f], -1)


class CMMLModel(ConditionedModel):
  """CMML: a mean context encoder, a hypernetwork on ``x * c`` and a FiLM-modulated MLP.

  Attributes:
    hidden: the predictor's hidden widths (reference: 64, 64).
    encoder_hidden: width of the rating MLP and of the context MLP's hidden layer (64).
    hyper_hidden: width of the hypernetwork's hidden layers (256).
    detach_support: stop the gradient through the support pair embeddings
      (the reference's ``.detach()``).
  """

  hidden: Sequence[int] = (64, 64)
  encoder_hidden: int = 64
  hyper_hidden: int = 256
  detach_support: bool = True

  @nn.compact
  def __call__(self, user_cols, item_cols, support, loo=False, target=None):
    f_u, f_i, f_s, s_y, s_mask = self.embed_task(user_cols, item_cols, support)
    x = _pairs(f_u, f_i)                                   # [N, D] query pairs
    e = _pairs(f_u, f_s)                                   # [S, D] support pairs
    if self.detach_support:
      e = jax.lax.stop_gradient(e)
    y = (s_y - self.offset)[:, None]
    r = nn.Dense(self.encoder_hidden, name="rating_1")(y)
    r = nn.Dense(self.encoder_hidden, name="rating_2")(nn.relu(r))
    z = nn.Dense(self.encoder_hidden, name="context_1")(jnp.concatenate([e, r], -1))
    z = nn.Dense(x.shape[-1], name="context_2")(nn.relu(z))
    c = masked_mean(z, s_mask)                             # [D] the task's context
    u = x * c                                              # context-item interaction
    film_params = []
    for l, width in enumerate(self.hidden):
      u = nn.relu(nn.Dense(self.hyper_hidden, name=f"hyper_{l}")(u))
      o = nn.Dense(2 * width, name=f"film_{l}")(u)
      film_params.append((o[..., :width], o[..., width:]))  # (gamma_l, beta_l) per query item
    out = ModulatedMLP(tuple(self.hidden), kind="film", name="predictor")(x, film_params)
    return self.offset + out


class ColdNASModel(ConditionedModel):
  """ColdNAS: the adaptation network and the modulated predictor, fixed (``ops``) or relaxed (``search``).

  Attributes:
    hidden: the predictor's hidden widths (reference: 128, 64, 32).
    context_dim: width of the adaptation network's hidden layer (256).
    ops: per position (input, then each hidden layer), the operators kept.
    search: the supernet: every operator at every position, gated by
      ``sigmoid(alpha)`` (``ops`` is ignored).
  """

  hidden: Sequence[int] = (128, 64, 32)
  context_dim: int = 256
  ops: Sequence[Sequence[str]] = ()
  search: bool = False

  @nn.compact
  def __call__(self, user_cols, item_cols, support, loo=False, target=None):
    f_u, f_i, f_s, s_y, s_mask = self.embed_task(user_cols, item_cols, support)
    x = _pairs(f_u, f_i)
    predictor = ModulatedMLP(tuple(self.hidden), kind="relaxed" if self.search else "ops",
                             ops=tuple(tuple(o) for o in self.ops), modulate_input=True, name="predictor")
    widths = predictor.widths(x.shape[-1])
    if not self.search and len(self.ops) != len(widths):
      raise ValueError(f"ColdNAS: ops names {len(self.ops)} positions, the predictor has {len(widths)} "
                       f"(the input and {len(self.hidden)} hidden layers)")
    y = (s_y - self.offset)[:, None]
    z = nn.Dense(self.context_dim, name="context")(jnp.concatenate([f_s, jnp.broadcast_to(f_u, (f_s.shape[0],
                                                                    f_u.shape[-1])), y], -1))
    c = masked_mean(nn.leaky_relu(z), s_mask)
    phi = nn.Dense(len(OPS) * sum(widths), name="hyper")(c).reshape(len(OPS), sum(widths))
    mods, start = [], 0
    for w in widths:
      p = phi[:, start:start + w]
      mods.append({"max": p[0], "min": p[1], "mul": nn.relu(p[2]), "add": p[3]})
      start += w
    return self.offset + predictor(x, mods)


# --------------------------------------------------------------------------- the methods

CMML_BLOCK = {"hidden": (64, 64), "encoder_hidden": 64, "hyper_hidden": 256, "detach_support": True}
COLDNAS_BLOCK = {"hidden": (128, 64, 32), "context_dim": 256}
# The operators per position (input, hidden 1, 2, 3) that coldnas_search found on MeLU's ML-1M release
# (experiments/melu_ml1m.py, seed 0, top_k=4; docs/modulation.md). The reference's Last.FM model
# (model_lfm4.py) is ("add", "add", "max+add", "none").
COLDNAS_FIXED_BLOCK = {"ops": ("min+mul", "none", "add", "add")}
COLDNAS_SEARCH_BLOCK = {"top_k": 4, "steps": 0}


def _check_widths(name: str, block: str, hidden: Sequence[int], problems: list[str]) -> None:
  if not hidden or any(int(h) <= 0 for h in hidden):
    problems.append(f"method {name}: {block}.hidden must be positive widths, got {tuple(hidden)}")


@register_method("cmml")
class CMML(ConditionedMethod):
  """CMML (Feng et al., CIKM 2021): FiLM modulation from a mean context encoder (module docstring)."""

  config_blocks: ClassVar[dict[str, dict[str, Any]]] = {"cmml": CMML_BLOCK}

  def validate(self, problems: list[str]) -> None:
    super().validate(problems)
    b = self.config.cmml
    _check_widths(self.name, "cmml", b.hidden, problems)
    if b.encoder_hidden <= 0 or b.hyper_hidden <= 0:
      problems.append(f"method {self.name}: cmml.encoder_hidden and cmml.hyper_hidden must be > 0")

  def make_model(self, prep: Prepared) -> CMMLModel:
    b = self.config.cmml
    return CMMLModel(hidden=tuple(int(h) for h in b.hidden), encoder_hidden=int(b.encoder_hidden),
                     hyper_hidden=int(b.hyper_hidden), detach_support=bool(b.detach_support),
                     **self.extractor_kwargs(prep))


class _ColdNASBase(ConditionedMethod):
  """What ``coldnas`` and ``coldnas_search`` share: the ``coldnas`` block and the model."""

  def validate(self, problems: list[str]) -> None:
    super().validate(problems)
    b = self.config.coldnas
    _check_widths(self.name, "coldnas", b.hidden, problems)
    if b.context_dim <= 0:
      problems.append(f"method {self.name}: coldnas.context_dim must be > 0, got {b.context_dim}")

  def make_model(self, prep: Prepared, ops: Sequence[Sequence[str]] = (), search: bool = False) -> ColdNASModel:
    b = self.config.coldnas
    return ColdNASModel(hidden=tuple(int(h) for h in b.hidden), context_dim=int(b.context_dim),
                        ops=tuple(tuple(o) for o in ops), search=search, **self.extractor_kwargs(prep))

  def positions(self) -> int:
    """Modulated positions: the input and each hidden layer."""
    return len(self.config.coldnas.hidden) + 1


@register_method("coldnas")
class ColdNAS(_ColdNASBase):
  """ColdNAS's searched model with the operators of ``coldnas_fixed.ops`` (module docstring)."""

  config_blocks: ClassVar[dict[str, dict[str, Any]]] = {"coldnas": COLDNAS_BLOCK,
                                                        "coldnas_fixed": COLDNAS_FIXED_BLOCK}

  def validate(self, problems: list[str]) -> None:
    super().validate(problems)
    try:
      ops = parse_ops(self.config.coldnas_fixed.ops)
    except ValueError as err:
      problems.append(f"method {self.name}: coldnas_fixed.ops: {err}")
      return
    if len(ops) != self.positions():
      problems.append(f"method {self.name}: coldnas_fixed.ops names {len(ops)} positions; the predictor has "
                      f"{self.positions()} (the input and each of coldnas.hidden)")
    elif not any(ops):
      problems.append(f"method {self.name}: coldnas_fixed.ops modulates nothing: the support set would be unused")

  def parts(self, prep: Prepared, **model_kwargs) -> ModelParts:
    model_kwargs.setdefault("ops", parse_ops(self.config.coldnas_fixed.ops))
    return super().parts(prep, **model_kwargs)


@register_method("coldnas_search")
class ColdNASSearch(_ColdNASBase):
  """ColdNAS's search: train the supernet, keep the top-K gates, retrain that architecture and score it.

  Two checkpoints per seed: ``<name>_supernet`` (the relaxed model) and
  ``<name>`` (the discretised architecture, trained from scratch). The
  selection of each validation set records ``ops`` (one string per
  position), ``gates`` (``sigmoid(alpha)``, ``[P][4]`` in `OPS` order) and
  ``supernet_best_step``.
  """

  config_blocks: ClassVar[dict[str, dict[str, Any]]] = {"coldnas": COLDNAS_BLOCK,
                                                        "coldnas_search": COLDNAS_SEARCH_BLOCK}

  def validate(self, problems: list[str]) -> None:
    super().validate(problems)
    s = self.config.coldnas_search
    if not 1 <= s.top_k <= len(OPS) * self.positions():
      problems.append(f"method {self.name}: coldnas_search.top_k must lie in [1, {len(OPS) * self.positions()}] "
                      f"(4 operators x {self.positions()} positions), got {s.top_k}")
    if s.steps < 0:
      problems.append(f"method {self.name}: coldnas_search.steps must be >= 0 (0: train.steps), got {s.steps}")

  @property
  def supernet(self) -> str:
    """The supernet's checkpoint owner."""
    return f"{self.name}_supernet"

  def search_config(self) -> ml_collections.ConfigDict:
    """The config the supernet trains with (``train.steps`` from ``coldnas_search.steps`` when set)."""
    c = ml_collections.ConfigDict(self.config.to_dict())
    if self.config.coldnas_search.steps:
      c.train.steps = int(self.config.coldnas_search.steps)
    return c

  def search(self, ctx: FitContext):
    """Trains (or restores) the supernet; returns ``(trained supernet, gates [P, 4], ops per position)``."""
    config = self.search_config()
    parts = self.parts(ctx.prep, search=True)
    trained = ctx.trained(self.supernet, config, lambda: train_model(config, ctx, self.supernet, parts))
    alpha = np.asarray(trained.best[MAIN_VALID]["model"]["predictor"]["alpha"], np.float64)
    gates = 1.0 / (1.0 + np.exp(-alpha))
    return trained, gates, discretise(alpha, int(self.config.coldnas_search.top_k))

  def fit(self, ctx: FitContext) -> Fitted:
    supernet, gates, ops = self.search(ctx)
    parts = self.parts(ctx.prep, ops=ops)
    trained = ctx.trained(self.checkpoint, self.config,
                          lambda: train_model(self.config, ctx, self.checkpoint, parts))
    fitted = trained.fitted(self.name, ctx.prep, self.config)
    found = {"ops": format_ops(ops), "gates": gates.tolist(),
             "supernet_best_step": int(supernet.best_step[MAIN_VALID])}
    fitted.selection = {k: {**v, **found} for k, v in fitted.selection.items()}
    return fitted


__all__ = ["CMML", "CMMLModel", "ColdNAS", "ColdNASModel", "ColdNASSearch", "ModulatedMLP", "OPS", "apply_op",
           "discretise", "film", "format_ops", "modulate_ops", "modulate_relaxed", "parse_ops"]
