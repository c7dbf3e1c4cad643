"""The non-meta baselines with a model: ``pooled`` (trained on all training ratings) and ``pooled_finetune``.

Both train the same model with the ``pooled`` learner (no adaptation, the
loss of the shared params on each task's drawn ratings) and declare once
that they share its checkpoint (`Pooled.checkpoint`). ``pooled_finetune``
then fine-tunes it on each test user's support set with plain SGD, the
steps and the rate chosen on each validation set (``eval.finetune_steps`` x
``eval.finetune_lrs``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from metarec_jax.eval.evaluate import validation_value
from metarec_jax.meta.learners import learner_spec
from metarec_jax.methods.base import FitContext, Fitted
from metarec_jax.methods.learned import Adaptation, LearnedMethod, loss_options
from metarec_jax.methods.registry import register_method
from metarec_jax.train.loop import NonFiniteError

# Keys a learner that never adapts does not read.
_NO_ADAPTATION = ("distill.", "meta.learner", "meta.inner_lr", "meta.inner_steps", "meta.first_order", "meta.adapt",
                  "meta.remat", "meta.local_tables", "meta.factored")


@register_method("pooled")
class Pooled(LearnedMethod):
  """The model trained on pooled training ratings, no adaptation (the non-meta baseline)."""

  checkpoint_name: ClassVar[str] = "pooled"
  ignored: ClassVar[tuple[str, ...]] = _NO_ADAPTATION

  def fixed(self) -> dict[str, Any]:
    return {"meta.learner": "pooled"}

  @property
  def checkpoint(self) -> str:
    """``pooled`` for the whole family; a variant that changes training owns a checkpoint of its own."""
    if any(not k.startswith("eval.") for k in self.variant_keys):
      return self.name
    return self.checkpoint_name

  def fit(self, ctx: FitContext) -> Fitted:
    return self.train(ctx).fitted(self.name, ctx.prep, self.config)


@register_method("pooled_finetune")
class PooledFinetune(Pooled):
  """The pooled model fine-tuned on each user's support set; steps and rate chosen on validation users."""

  # Fine-tuning adapts ``meta.adapt`` (default all); its SGD steps use the default schedule.
  ignored: ClassVar[tuple[str, ...]] = tuple(k for k in _NO_ADAPTATION if k != "meta.adapt")

  def fit(self, ctx: FitContext) -> Fitted:
    trained = self.train(ctx)
    config, prep = self.config, ctx.prep
    fitted = trained.fitted(self.name, prep, config)
    candidates = [learner_spec("maml", inner_lr=0.0, inner_steps=steps, adapt=config.meta.adapt or "all",
                               **loss_options(config)) for steps in config.eval.finetune_steps]
    for key in prep.valid_batches:
      best, tried = None, []
      for spec in candidates:
        predictor, params = fitted.predictor(spec), trained.best[key]
        for lr in config.eval.finetune_lrs:
          try:
            val = validation_value(lambda b: predictor(params, prep.features, b, lr), prep, key,
                                   config.eval.tasks_per_chunk)
          except FloatingPointError:  # this rate diverges: not a candidate
            val = float("inf")
          tried.append({"inner_steps": spec.inner_steps, "inner_lr": lr, "val_mae": val})
          if best is None or val < best[0]:
            best = (val, spec, float(lr)) if val < float("inf") else best
      if best is None:
        raise NonFiniteError(f"{self.name}: every fine-tuning setting diverged on validation set {key}: {tried}")
      val, spec, lr = best
      fitted.adaptation[key] = Adaptation(spec, lr)
      fitted.selection[key].update(val_mae=val, tuned={"inner_steps": spec.inner_steps, "inner_lr": lr},
                                   tried=tried)
    return fitted
