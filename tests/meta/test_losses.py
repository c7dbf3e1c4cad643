"""BCE and BPR against hand-computed values."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from metarec_jax.meta.losses import make_loss, masked_bce, masked_bpr, masked_mse

sig = lambda x: 1 / (1 + math.exp(-x))


def test_bce_by_hand():
  scores = jnp.array([2.0, -1.0, 0.5, 9.0])
  labels = jnp.array([1.0, 0.0, 0.0, 1.0])
  mask = jnp.array([True, True, True, False])  # the last entry is padding
  want = -(math.log(sig(2.0)) + math.log(1 - sig(-1.0)) + math.log(1 - sig(0.5))) / 3
  np.testing.assert_allclose(masked_bce(scores, labels, mask), want, rtol=1e-6)
  # Stable where a naive log(sigmoid) would overflow.
  big = masked_bce(jnp.array([-100.0]), jnp.array([1.0]), jnp.array([True]))
  np.testing.assert_allclose(big, 100.0, rtol=1e-6)


def test_bpr_by_hand_on_the_grouped_layout():
  # Two positives, two negatives each: [p0, n00, n01, p1, n10, n11]; n11 is padding.
  scores = jnp.array([1.0, 0.0, 2.0, 0.5, 0.5, 7.0])
  mask = jnp.array([True, True, True, True, True, False])
  pairs = [1.0 - 0.0, 1.0 - 2.0, 0.5 - 0.5]
  want = -sum(math.log(sig(d)) for d in pairs) / 3
  np.testing.assert_allclose(masked_bpr(scores, mask, group=3), want, rtol=1e-6)
  loss = make_loss("bpr", negatives_per_positive=2)
  np.testing.assert_allclose(loss(scores, jnp.zeros(6), mask), want, rtol=1e-6)
  # A padded positive contributes no pair at all.
  mask2 = mask.at[3].set(False)
  want2 = -sum(math.log(sig(d)) for d in pairs[:2]) / 2
  np.testing.assert_allclose(masked_bpr(scores, mask2, group=3), want2, rtol=1e-6)


def test_make_loss_names_and_errors():
  assert make_loss("mse") is masked_mse and make_loss("bce") is masked_bce
  with pytest.raises(ValueError, match="negatives_per_positive"):
    make_loss("bpr", 0)
  with pytest.raises(ValueError, match="meta.loss"):
    make_loss("hinge")
