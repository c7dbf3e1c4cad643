"""Methods whose model reads the support set through an encoder: the base of TaNP, CMML / ColdNAS, LWA / NLBA.

A `ConditionedMethod` trains a `models.conditioned.ConditionedModel` with
the engine's maml-kind step and no inner gradient steps: per task, the model
encodes the support set and scores the query set, and the outer loss is the
query loss plus the regularisers the model sows (`task_query_loss`). The
step is the same jitted, vmapped, chunkable `meta.step` every learner uses;
evaluation and serving go through `FittedModel` unchanged.

A new method of this kind is a model and a few lines::

    @register_method("my_np")
    class MyNP(ConditionedMethod):
      config_blocks = {"my_np": {"hidden": 64}}

      def make_model(self, prep):
        return MyModel(hidden=self.config.my_np.hidden, **self.extractor_kwargs(prep))
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar

import jax.numpy as jnp

from metarec_jax.meta.learners import LearnerSpec, learner_spec
from metarec_jax.methods.base import FitContext, Fitted
from metarec_jax.methods.learned import LearnedMethod, ModelParts, build_model, loss_options, score_offset
from metarec_jax.models.conditioned import (ConditionedModel, apply_conditioned, init_conditioned,
                                            make_conditioned_predict)
from metarec_jax.prepared import Prepared
from metarec_jax.types import Features, MetaParams, PredictFn, TaskBatch

# The keys a model without inner steps and without the RecModel head never reads.
NOT_READ = ("distill.", "meta.learner", "meta.inner_lr", "meta.inner_steps", "meta.first_order", "meta.adapt",
            "meta.remat", "meta.local_tables", "meta.factored", "model.head", "model.head_hidden",
            "model.support_vector", "model.ridge_dim", "model.residual", "model.bias_reg")


def task_query_loss(model: ConditionedModel) -> Callable:
  """The per-task outer loss of a conditioned model: query loss given the support set, plus its regularisers.

  Returns ``fn(spec, predict, meta, features, task) -> (loss, aux)`` (a
  `meta.learners.Learner.task_loss`); aux holds ``support_loss`` (here the
  query loss itself: there is no inner loop) and every sown regulariser.
  """

  def loss(spec: LearnerSpec, predict: PredictFn, meta: MetaParams, features: Features, task: TaskBatch):
    support = (task.support_items, task.support_ratings, task.support_mask)
    scores, regs = apply_conditioned(model, meta["model"], features, task.user, task.query_items, support,
                                     target=(task.query_ratings, task.query_mask))
    query = spec.loss_fn(scores, task.query_ratings, task.query_mask)
    total = query + sum(regs.values(), jnp.zeros(()))
    return total, {"support_loss": query, **{f"reg_{k.replace('/', '_')}": v for k, v in regs.items()}}

  return loss


class ConditionedMethod(LearnedMethod):
  """A learned method whose model conditions on the support set; no inner gradient steps.

  Subclasses set ``config_blocks`` (their hyperparameters) and implement
  `make_model`; `extractor_kwargs` gives the extractor settings every
  model shares (``model.*``: fields, widths, extractor, dtype, derived id
  and statistics fields).
  """

  ignored: ClassVar[tuple[str, ...]] = NOT_READ

  def fixed(self) -> dict[str, Any]:
    return {"meta.learner": "maml", "meta.inner_steps": 0}

  def extractor_kwargs(self, prep: Prepared) -> dict[str, Any]:
    """The `ConditionedModel` fields from ``config.model`` (the same extractor a `RecModel` would get)."""
    rec = build_model(self.config, prep.data, score_offset(prep))
    return dict(user_specs=rec.user_specs, item_specs=rec.item_specs, embed_dim=rec.embed_dim,
                user_mlp=rec.user_mlp, item_mlp=rec.item_mlp, extractor=rec.extractor,
                transformer=rec.transformer, dtype=rec.dtype, offset=score_offset(prep))

  def make_model(self, prep: Prepared, **model_kwargs) -> ConditionedModel:
    """The method's model for the seed's data (``model_kwargs``: choices a subclass passes, e.g. operators)."""
    raise NotImplementedError

  def task_loss(self, model: ConditionedModel) -> Callable:
    """The per-task outer loss (default: `task_query_loss`)."""
    return task_query_loss(model)

  def parts(self, prep: Prepared, **model_kwargs) -> ModelParts:
    model = self.make_model(prep, **model_kwargs)
    spec = learner_spec("maml", inner_lr=0.0, inner_steps=0, **loss_options(self.config))
    spec = dataclasses.replace(spec, name=self.name, task_loss=self.task_loss(model))
    return ModelParts(model, make_conditioned_predict(model), lambda f, k: init_conditioned(model, f, k), spec)

  def fit(self, ctx: FitContext) -> Fitted:
    return self.train(ctx).fitted(self.name, ctx.prep, self.config)


__all__ = ["ConditionedMethod", "NOT_READ", "task_query_loss"]
