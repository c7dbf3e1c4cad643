"""The baselines without a model: ``global_mean``, ``item_mean_user_bias`` (ratings) and ``popularity`` (implicit).

They read only the data, the splits and the evaluation settings; none owns
a checkpoint or serves new users.
"""

from __future__ import annotations

from typing import ClassVar

from metarec_jax.eval.baselines import predict_global_mean, predict_item_mean_user_bias
from metarec_jax.eval.evaluate import score
from metarec_jax.eval.implicit import popularity, predict_popularity
from metarec_jax.methods.base import FitContext, Fitted, FittedBaseline, Method
from metarec_jax.methods.registry import register_method


class Baseline(Method):
  """A method without a model: it reads only the run-wide keys (data, splits, evaluation)."""

  reads: ClassVar[tuple[str, ...]] = ()
  noun: ClassVar[str] = "baseline"

  def not_read(self, key: str) -> str:
    return f"{self.name} is a baseline without a model: it does not read {key}"


@register_method("global_mean")
class GlobalMean(Baseline):
  """The mean training rating for every query rating."""

  feedbacks: ClassVar[tuple[str, ...]] = ("rating",)

  def fit(self, ctx: FitContext) -> Fitted:
    stats = ctx.prep.stats
    return FittedBaseline(self.name, {}, lambda key, batch: predict_global_mean(stats, batch))


@register_method("item_mean_user_bias")
class ItemMeanUserBias(Baseline):
  """Shrunk item mean + the user's shrunk support residual; both shrinkages chosen on each validation set."""

  feedbacks: ClassVar[tuple[str, ...]] = ("rating",)

  def fit(self, ctx: FitContext) -> Fitted:
    prep, regs = ctx.prep, self.config.eval.bias_regs
    tuned = {}
    for key, batch in prep.valid_batches.items():
      best = (float("inf"), 0.0, 0.0)
      for ir in regs:
        for ur in regs:
          val = score(predict_item_mean_user_bias(prep.stats, batch, ir, ur), batch, ("mae",),
                      prep.data.rating_scale)["mae"]
          if val < best[0]:
            best = (val, ir, ur)
      tuned[key] = best
    selection = {k: {"item_reg": ir, "user_reg": ur, "val_mae": val} for k, (val, ir, ur) in tuned.items()}
    return FittedBaseline(self.name, selection,
                          lambda key, batch: predict_item_mean_user_bias(prep.stats, batch, *tuned[key][1:]))


@register_method("popularity")
class Popularity(Baseline):
  """Every candidate scored by ``log(1 + training positives)``: no personalisation."""

  feedbacks: ClassVar[tuple[str, ...]] = ("implicit",)

  def fit(self, ctx: FitContext) -> Fitted:
    pop = popularity(ctx.prep.split.train, ctx.prep.data.num_items)
    return FittedBaseline(self.name, {}, lambda key, batch: predict_popularity(pop, batch))
