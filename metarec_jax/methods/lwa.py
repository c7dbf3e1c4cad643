"""LWA and NLBA: class-representative adaptation (Vartak et al., NeurIPS 2017).

Paper: M. Vartak, A. Thiagarajan, C. Miranda, J. Bratman, H. Larochelle, "A
Meta-Learning Perspective on Cold-Start Recommendations for Items", NeurIPS
2017. A user's history (here: the support set) is split into two classes,
items the user engaged with (positives, class 1) and items shown but not
engaged with (negatives, class 0). Each class is summarised by its
*class representative*, the mean of its items' feature vectors (paper,
Sec. 3)::

    R_c = 1/|V_c| sum_{t in V_c} F(t),    c in {0, 1}                         (1)

and a scorer for new items is produced from ``(R_0, R_1)`` without any
gradient step:

- **LWA** (linear weight adaptation, Sec. 3.1): a logistic regression whose
  weight vector is linear in the representatives::

      w = G_0 R_0 + G_1 R_1,    P(y = 1 | t) = sigma(<w, F(t)> + b)           (2)

- **NLBA** (non-linear bias adaptation, Sec. 3.2): a neural network whose
  weights are shared by all users and whose biases are linear in the
  representatives::

      h_l = relu(W_l h_{l-1} + c_l + V^0_l R_0 + V^1_l R_1),  h_0 = F(t)
      P(y = 1 | t) = sigma(w . h_L + c + v^0 . R_0 + v^1 . R_1)              (3)

Reference code: RecBole-MetaRec (``model/LWA/LWA.py``, ``model/NLBA/NLBA.py``
and their ``.yaml``), read for the defaults: item tower = field embeddings
(32 per field) -> Linear(64) -> ReLU -> Linear(32) (``embedding: 32``,
``embeddingHiddenDim: 64``); LWA: ``w = W0 R0 + W1 R1`` with ``W0, W1`` of
shape 32 x 32 and one shared scalar bias; NLBA: one hidden layer of 36 units
(``recHiddenDim: 36``) whose bias is ``R0 V0 + R1 V1``, and an output unit
whose bias is ``R0 . v0 + R1 . v1`` (both biases adapted, no static bias);
labels are ratings >= 4 (its ``convertRatingToCTR.py``, ``threshold=4``);
sigmoid + cross-entropy; Adam at 1e-4. The paper's PDF was not available to
us; equations (1)-(3) are written from the paper's description and checked
against the reference code, which agrees with them except where noted below.

Code map (`class_representatives`, `LWAModel`, `NLBAModel`):

- ``F(t)``: the run's extractor (``model.*``, `ConditionedModel.embed_task`)
  followed by the method's item tower ``lwa.item_mlp`` (ReLU between layers,
  last layer linear; ``()``: the extractor's vector itself). Query and
  support items share the tower.
- class labels: `positive_labels` (``lwa.rule``, ``lwa.threshold``).
- ``R_0, R_1``: `class_representatives` (masked means, eq. 1).
- LWA: ``G_0``, ``G_1`` are the Dense layers ``g0``, ``g1`` (no bias),
  ``b`` the param ``b``.
- NLBA: ``W_l, c_l`` are ``hidden_l`` (Dense with bias), ``V^c_l`` are
  ``v{c}_l`` (Dense, no bias); ``w, c`` are ``out`` and ``v^c`` are
  ``v{c}_out``.

Deviations and choices (each stated):

- **Means, not sums.** The reference code sums the class's feature vectors;
  the paper averages them (eq. 1). We average: a sum grows with the support
  size, which varies from 1 to 90 across MeLU's users.
- **Empty classes** (a user with no positive or no negative in the support
  set, and every class of an empty support set): ``lwa.empty="learned"``
  (default) replaces the representative of an empty class by a learned
  vector per class (param ``default_rep [2, D]``, initialised at zero), so the
  prediction with no support at all is a learned prior; ``"zeros"`` uses
  the zero vector (the reference code's empty sum).
- **Class rule for ratings.** Implicit feedback (``data.feedback=implicit``):
  the support labels are 0/1 and a label >= 0.5 is a positive
  (``lwa.rule`` is not used). Explicit ratings: ``lwa.rule="threshold"``
  (default, the reference code's rule: rating >= ``lwa.threshold``, 4) or
  ``"user_mean"`` (rating >= the mean of the user's own support ratings,
  ties positive).
- **Ratings as targets.** The paper and the reference code predict clicks
  with a sigmoid. With explicit ratings the score is a regression output:
  ``offset + <w, F(t)> + b`` (LWA) and ``offset + NN(F(t))`` (NLBA), where
  ``offset`` is the mean training rating, trained with the run's
  ``meta.loss`` (MSE). With implicit feedback the score is the logit and the
  loss is ``meta.loss`` (BCE or BPR); the sigmoid is the loss's.
- **User features.** The paper is item-side (a task is an item's history);
  here a task is a user, who has side features ``f_u``. With
  ``lwa.user_features=true`` (default) ``f_u`` enters like a third
  representative: LWA adds ``G_u f_u`` to ``w`` and ``c_u . f_u`` to ``b``;
  NLBA adds ``U_l f_u`` to every adapted bias and ``u . f_u`` to the output
  bias. ``false``: the paper's model.
- **Support-rating bias** (``lwa.support_bias``, default false: not in
  the paper). With explicit ratings the two classes carry no rating level:
  a user who rates everything 2 and one who rates everything 3 have the same
  classes under ``rule=threshold``. ``true`` adds ``beta * (mean support
  rating - offset)`` to every score (``beta`` learned, initialised at 0), the
  user bias of the ``item_mean_user_bias`` baseline.
- **Static biases.** NLBA's hidden layers and output keep a learned static
  bias ``c_l``, ``c`` beside the adapted part (the reference code has none).
- **Depth.** ``nlba.hidden`` lists NLBA's hidden widths (default ``(36,)``,
  the reference code's one layer); every hidden layer's bias is adapted.
- **Initialisation.** Flax's defaults (LeCun-normal kernels, zero biases)
  instead of the reference code's standard-normal ``randn`` for ``W0, W1,
  V0, V1, v0, v1``, which gives logits of size ~sqrt(32) at initialisation.
- **Training.** The engine's meta-training step (tasks per batch, optimizer
  and learning rate from the run config), model selection on validation
  users, instead of the reference code's epochs over the training tasks.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from metarec_jax.methods.conditioned import ConditionedMethod
from metarec_jax.methods.registry import register_method
from metarec_jax.models.conditioned import ConditionedModel, masked_mean
from metarec_jax.models.extractor import MLP
from metarec_jax.prepared import Prepared

RULES = ("threshold", "user_mean")
EMPTY = ("learned", "zeros")

# One block shared by both methods (same defaults in both declarations), plus NLBA's own.
LWA_BLOCK = {"rule": "threshold", "threshold": 4.0, "item_mlp": (64, 32), "user_features": True,
             "empty": "learned", "support_bias": False}
NLBA_BLOCK = {"hidden": (36,)}


def positive_labels(s_y: jax.Array, s_mask: jax.Array, rule: str, threshold: float = 4.0) -> jax.Array:
  """Which support entries are positives (class 1), as floats 0/1 (masked entries: whatever, unused).

  Args:
    s_y: ``[S]`` support ratings or 0/1 labels.
    s_mask: ``[S]`` float mask of the valid entries.
    rule: ``"label"`` (0/1 labels: >= 0.5), ``"threshold"`` (>= ``threshold``)
      or ``"user_mean"`` (>= the mean of the valid ratings).
    threshold: the rating threshold of ``"threshold"``.
  """
  if rule == "label":
    cut = 0.5
  elif rule == "threshold":
    cut = threshold
  elif rule == "user_mean":
    cut = jnp.sum(s_y * s_mask) / jnp.maximum(jnp.sum(s_mask), 1.0)
  else:
    raise ValueError(f"unknown class rule {rule!r}; expected label, {', '.join(RULES)}")
  return (s_y >= cut).astype(jnp.float32)


def class_representatives(f_s: jax.Array, positive: jax.Array, s_mask: jax.Array
                          ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Eq. (1): the masked means of the support vectors per class.

  Args:
    f_s: ``[S, D]`` support item vectors.
    positive: ``[S]`` 1 for positives (class 1), 0 for negatives (class 0).
    s_mask: ``[S]`` float mask of the valid entries.

  Returns:
    ``(R_0 [D], R_1 [D], n_0, n_1)``: the representatives of the negatives
    and of the positives (zero for an empty class) and the class sizes.
  """
  w1 = s_mask * positive
  w0 = s_mask * (1.0 - positive)
  return masked_mean(f_s, w0), masked_mean(f_s, w1), jnp.sum(w0), jnp.sum(w1)


class _ClassModel(ConditionedModel):
  """Shared part of LWA and NLBA: item tower, class labels, representatives with empty-class defaults.

  Attributes:
    rule: ``label`` (implicit 0/1), ``threshold`` or ``user_mean``.
    threshold: the rating threshold of ``rule="threshold"``.
    tower: the item tower's widths applied after the extractor (empty: none).
    user_features: ``f_u`` enters the adapted parameters.
    empty: ``learned`` (a learned representative per empty class) or ``zeros``.
    support_bias: add ``beta * (mean support rating - offset)`` to every score (not in the paper).
  """

  rule: str = "threshold"
  threshold: float = 4.0
  tower: Sequence[int] = (64, 32)
  user_features: bool = True
  empty: str = "learned"
  support_bias: bool = False

  @nn.nowrap
  def bias_from_support(self, s_y: jax.Array, s_mask: jax.Array) -> jax.Array:
    """``beta * (masked mean of the support ratings - offset)`` (0 for an empty support set), or 0."""
    if not self.support_bias:
      return jnp.zeros(())
    beta = self.param("beta", nn.initializers.zeros, (), jnp.float32)
    return beta * jnp.sum((s_y - self.offset) * s_mask) / jnp.maximum(jnp.sum(s_mask), 1.0)

  @nn.nowrap
  def task_vectors(self, user_cols, item_cols, support) -> tuple[jax.Array, ...]:
    """``(f_u [Du], F(query) [N, D], R_0 [D], R_1 [D], support bias [])`` (inside a compact ``__call__``)."""
    f_u, f_i, f_s, s_y, s_mask = self.embed_task(user_cols, item_cols, support)
    if self.tower:
      tower = MLP(tuple(self.tower), final_activation=False, name="tower")
      f_i, f_s = tower(f_i), tower(f_s)
    positive = positive_labels(s_y, s_mask, self.rule, self.threshold)
    r0, r1, n0, n1 = class_representatives(f_s, positive, s_mask)
    if self.empty == "learned":
      default = self.param("default_rep", nn.initializers.zeros, (2, f_s.shape[-1]), jnp.float32)
      r0 = jnp.where(n0 > 0, r0, default[0])
      r1 = jnp.where(n1 > 0, r1, default[1])
    elif self.empty != "zeros":
      raise ValueError(f"lwa.empty={self.empty!r}; expected one of {EMPTY}")
    return f_u, f_i, r0, r1, self.bias_from_support(s_y, s_mask)


class LWAModel(_ClassModel):
  """Linear weight adaptation, eq. (2): ``score = offset + <G_0 R_0 + G_1 R_1 [+ G_u f_u], F(t)> + b``."""

  @nn.compact
  def __call__(self, user_cols, item_cols, support, loo=False, target=None):
    f_u, f_i, r0, r1, sb = self.task_vectors(user_cols, item_cols, support)
    d = f_i.shape[-1]
    w = nn.Dense(d, use_bias=False, name="g0")(r0) + nn.Dense(d, use_bias=False, name="g1")(r1)
    b = self.param("b", nn.initializers.zeros, (), jnp.float32)
    if self.user_features:
      w = w + nn.Dense(d, use_bias=False, name="gu")(f_u)
      b = b + nn.Dense(1, use_bias=False, name="cu")(f_u)[0]
    return self.offset + f_i @ w + b + sb


class NLBAModel(_ClassModel):
  """Non-linear bias adaptation, eq. (3): shared weights, biases linear in ``(R_0, R_1[, f_u])``.

  Attributes:
    hidden: the hidden widths; every hidden layer's bias and the output bias are adapted.
  """

  hidden: Sequence[int] = (36,)

  @nn.nowrap
  def _adapted_bias(self, width: int, suffix: str, r0, r1, f_u) -> jax.Array:
    bias = nn.Dense(width, use_bias=False, name=f"v0_{suffix}")(r0)
    bias = bias + nn.Dense(width, use_bias=False, name=f"v1_{suffix}")(r1)
    if self.user_features:
      bias = bias + nn.Dense(width, use_bias=False, name=f"u_{suffix}")(f_u)
    return bias

  @nn.compact
  def __call__(self, user_cols, item_cols, support, loo=False, target=None):
    f_u, h, r0, r1, sb = self.task_vectors(user_cols, item_cols, support)
    for l, width in enumerate(self.hidden):
      h = nn.relu(nn.Dense(width, name=f"hidden_{l}")(h) + self._adapted_bias(width, str(l), r0, r1, f_u))
    out = nn.Dense(1, name="out")(h)[:, 0] + self._adapted_bias(1, "out", r0, r1, f_u)[0]
    return self.offset + out + sb


class _ClassMethod(ConditionedMethod):
  """What LWA and NLBA share: the ``lwa`` block and its validation."""

  def class_kwargs(self, prep: Prepared) -> dict[str, Any]:
    """The `_ClassModel` fields from the ``lwa`` block (implicit feedback: the 0/1 label rule)."""
    b = self.config.lwa
    return dict(rule="label" if prep.implicit else b.rule, threshold=float(b.threshold),
                tower=tuple(int(x) for x in b.item_mlp), user_features=bool(b.user_features), empty=b.empty,
                support_bias=bool(b.support_bias), **self.extractor_kwargs(prep))

  def validate(self, problems: list[str]) -> None:
    super().validate(problems)
    b = self.config.lwa
    if b.rule not in RULES:
      problems.append(f"lwa.rule={b.rule!r}: expected one of {RULES}")
    if b.empty not in EMPTY:
      problems.append(f"lwa.empty={b.empty!r}: expected one of {EMPTY}")
    if any(int(x) < 1 for x in b.item_mlp):
      problems.append(f"lwa.item_mlp={tuple(b.item_mlp)}: widths must be >= 1")


@register_method("lwa")
class LWA(_ClassMethod):
  """LWA (Vartak et al., 2017): a linear scorer whose weights are linear in the class representatives."""

  config_blocks = {"lwa": LWA_BLOCK}

  def make_model(self, prep: Prepared) -> LWAModel:
    return LWAModel(**self.class_kwargs(prep))


@register_method("nlba")
class NLBA(_ClassMethod):
  """NLBA (Vartak et al., 2017): a shared network whose biases are linear in the class representatives."""

  config_blocks = {"lwa": LWA_BLOCK, "nlba": NLBA_BLOCK}

  def make_model(self, prep: Prepared) -> NLBAModel:
    return NLBAModel(hidden=tuple(int(x) for x in self.config.nlba.hidden), **self.class_kwargs(prep))

  def validate(self, problems: list[str]) -> None:
    super().validate(problems)
    if any(int(x) < 1 for x in self.config.nlba.hidden):
      problems.append(f"nlba.hidden={tuple(self.config.nlba.hidden)}: widths must be >= 1")


__all__ = ["LWA", "LWAModel", "NLBA", "NLBAModel", "class_representatives", "positive_labels"]
