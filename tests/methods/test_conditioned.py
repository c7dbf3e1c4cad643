"""The support-conditioned method base: a toy set encoder through every shared check, config blocks, serving."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from metarec_jax import ConfigError, apply_overrides, default_config
from metarec_jax.methods import METHODS, check_overrides_used, register_method, resolve
from metarec_jax.methods.conditioned import ConditionedMethod
from metarec_jax.methods.registry import BLOCKS
from metarec_jax.models.conditioned import ConditionedModel, masked_mean

from tests.methods import conditioned_checks as checks


class MeanEncoder(ConditionedModel):
  """score = offset + <W f_i, g(f_u, mean of (f_s, y_s - offset) over the support)>."""

  width: int = 6

  @nn.compact
  def __call__(self, user_cols, item_cols, support, loo=False, target=None):
    f_u, f_i, f_s, s_y, mask = self.embed_task(user_cols, item_cols, support)
    r = masked_mean(jnp.concatenate([f_s, (s_y - self.offset)[:, None]], -1), mask)
    h = nn.Dense(self.width, name="task")(jnp.concatenate([f_u, r]))
    self.sow("losses", "l2", 1e-3 * jnp.sum(h ** 2))
    return self.offset + jnp.sum(nn.Dense(self.width, name="item")(f_i) * h, -1)


@register_method("test_mean_encoder")
class MeanEncoderMethod(ConditionedMethod):
  config_blocks = {"test_mean_encoder": {"width": 6}}

  def make_model(self, prep):
    return MeanEncoder(width=self.config.test_mean_encoder.width, **self.extractor_kwargs(prep))


CASE = checks.case("test_mean_encoder")


def test_the_shared_checks_pass_on_a_toy_encoder():
  checks.run_all(CASE())


def test_the_regulariser_joins_the_loss_and_is_logged():
  c = CASE()
  from metarec_jax.meta.learners import row, task_loss
  loss, aux = task_loss(c.parts.spec, c.parts.predict, c.meta, c.prep.features, row(c.batch, 0))
  assert set(aux) == {"support_loss", "reg_l2"}
  np.testing.assert_allclose(float(loss), float(aux["support_loss"] + aux["reg_l2"]), rtol=1e-6)
  assert float(aux["reg_l2"]) > 0


def test_a_method_block_is_in_the_defaults_and_read_by_its_method_only():
  c = default_config()
  assert c.test_mean_encoder.width == 6 and BLOCKS["test_mean_encoder"] == {"width": 6}
  c.methods = ("maml", "test_mean_encoder")
  enc, maml = resolve("test_mean_encoder", c), resolve("maml", c)
  assert enc.reads_key("test_mean_encoder.width") and not maml.reads_key("test_mean_encoder.width")
  assert not enc.reads_key("meta.inner_lr") and not enc.reads_key("model.head")
  assert enc.config.meta.inner_steps == 0
  check_overrides_used(apply_overrides(c, ["test_mean_encoder.width=3"]), ["test_mean_encoder.width"])
  c.methods = ("maml",)
  with pytest.raises(ConfigError, match="maml does not read test_mean_encoder.width"):
    check_overrides_used(c, ["test_mean_encoder.width"])


def test_a_block_declared_twice_with_other_defaults_is_refused():
  class Other(ConditionedMethod):
    config_blocks = {"test_mean_encoder": {"width": 9}}
  with pytest.raises(ValueError, match="config block 'test_mean_encoder'"):
    register_method("test_other_encoder", Other)
  assert "test_other_encoder" not in METHODS


def test_a_run_trains_evaluates_and_serves_the_method(tmp_path):
  from metarec_jax import run
  from metarec_jax.serving import Recommender
  from tests.conftest import tiny_config
  c = tiny_config()
  c.methods = ("global_mean", "test_mean_encoder")
  c.eval.scenarios = ("user_cold",)
  out = run(c, workdir=tmp_path / "run", progress=False)
  rows = {(r["method"], r["scenario"]): r for r in out["rows"]}
  assert np.isfinite(rows[("test_mean_encoder", "user_cold")]["mae"])
  rec = Recommender.load(tmp_path / "run", method="test_mean_encoder")
  scorer = rec.adapt([3, 5, 7], [5.0, 1.0, 4.0])
  items, scores = scorer.top_k(4)
  assert len(items) == 4 and not set(items.tolist()) & {3, 5, 7}
  other = rec.adapt([3, 5, 7], [1.0, 5.0, 2.0]).scores()
  assert np.max(np.abs(scorer.scores() - other)) > 1e-6  # the ratings reach the scores
