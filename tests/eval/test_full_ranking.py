"""Full-ranking Recall@K / NDCG@K / Precision@K / AUC against lists worked out by hand."""

import math

import numpy as np
import pytest

from metarec_jax.eval.full_ranking import check_full_ranking_names, score_full_ranking

L2 = math.log2


NAMES = ("recall@1", "recall@2", "recall@3", "recall@4", "ndcg@1", "ndcg@2", "ndcg@4", "precision@2", "auc")
WIDTH = 10


def metrics(scores, relevant, valid=None, chunk=4):
  """The metrics of a few users' lists, padded to WIDTH items with excluded ones (one compile for the file)."""
  scores = np.atleast_2d(np.asarray(scores, np.float32))
  relevant = np.atleast_2d(np.asarray(relevant, bool))
  valid = np.ones_like(relevant) if valid is None else np.atleast_2d(np.asarray(valid, bool))
  pad = ((0, 0), (0, WIDTH - scores.shape[1]))
  # Padding is excluded, so it must change nothing: the padded items score highest on purpose.
  scores = np.pad(scores, pad, constant_values=9.0)
  relevant, valid = np.pad(relevant, pad), np.pad(valid, pad)
  return score_full_ranking(scores, relevant, valid, NAMES, chunk=chunk)


def test_distinct_scores():
  # ranking: item0 (not relevant), item1 (relevant), item2, item3 (relevant), item4
  out = metrics([0.9, 0.8, 0.7, 0.6, 0.5], [0, 1, 0, 1, 0])
  assert out["recall@2"] == pytest.approx(1 / 2)          # one of the two relevant in the top 2, |R| = 2
  assert out["precision@2"] == pytest.approx(1 / 2)
  assert out["ndcg@2"] == pytest.approx((1 / L2(3)) / (1 + 1 / L2(3)))
  assert out["recall@4"] == pytest.approx(1.0)
  assert out["ndcg@4"] == pytest.approx((1 / L2(3) + 1 / L2(5)) / (1 + 1 / L2(3)))
  assert out["tasks"] == 1


def test_excluded_items_are_not_ranked():
  # item0 scores highest but is excluded (a training item): item1 moves to rank 0, the relevant item2 to rank 1.
  args = ([0.9, 0.8, 0.7], [0, 0, 1], [False, True, True])
  assert metrics(*args)["recall@1"] == 0.0
  out = metrics(*args)
  assert out["recall@2"] == 1.0
  assert out["ndcg@2"] == pytest.approx(1 / L2(3))
  # An excluded item is never relevant either.
  assert metrics([0.9, 0.1], [1, 1], [False, True])["recall@1"] == 1.0


def test_ties_count_in_expectation():
  # The relevant item ties with two others at the top: rank 0, 1 or 2 with probability 1/3 each.
  s, r = [0.5, 0.5, 0.5, 0.1], [1, 0, 0, 0]
  out = metrics(s, r)
  assert out["recall@1"] == pytest.approx(1 / 3)
  assert out["ndcg@1"] == pytest.approx(1 / 3)
  assert out["recall@2"] == pytest.approx(2 / 3)
  assert out["ndcg@2"] == pytest.approx((1 + 1 / L2(3)) / 3)
  assert out["recall@3"] == pytest.approx(1.0)
  # Two relevant items tied at the top: exactly one of them is first, whatever the draw.
  out = metrics([0.5, 0.5, 0.2], [1, 1, 0])
  assert out["recall@1"] == pytest.approx(1 / 2)
  assert out["ndcg@1"] == pytest.approx(1.0)
  # A constant scorer gets a random ranking's value: recall@K = K / C.
  out = metrics(np.zeros(10), [1, 0, 0, 1, 0, 0, 0, 0, 0, 0])
  assert out["recall@2"] == pytest.approx(0.2)
  assert out["auc"] == pytest.approx(0.5)
  # Item order does not matter.
  a = metrics([0.3, 0.5, 0.5, 0.5], [0, 1, 0, 1])
  b = metrics([0.5, 0.5, 0.5, 0.3], [1, 1, 0, 0])
  assert a["ndcg@2"] == pytest.approx(b["ndcg@2"]) and a["recall@2"] == pytest.approx(b["recall@2"])


def test_denominator_is_all_relevant_items():
  # Four relevant items, K = 2: recall divides by |R| = 4 (ALDI / LLM-InS), nDCG's ideal has min(K, |R|) = 2.
  out = metrics([4, 3, 2, 1], [1, 1, 1, 1])
  assert out["recall@2"] == pytest.approx(0.5)
  assert out["ndcg@2"] == pytest.approx(1.0)


def test_auc_by_hand():
  # negatives 0.9, 0.7; positives 0.8 (beats 0.7) and 0.6 (beats none): 1 of 4 pairs in order.
  assert metrics([0.9, 0.8, 0.7, 0.6], [0, 1, 0, 1])["auc"] == pytest.approx(0.25)
  # A tie between a positive and a negative counts one half.
  assert metrics([0.5, 0.5, 0.1], [1, 0, 0])["auc"] == pytest.approx(0.75)


def test_mean_over_users_with_a_relevant_item_in_chunks():
  scores = [[0.9, 0.8, 0.7], [0.9, 0.8, 0.7], [0.1, 0.2, 0.3]]
  rel = [[1, 0, 0], [0, 0, 1], [0, 0, 0]]    # the third user has none: left out of the mean
  for chunk in (1, 4):
    out = metrics(scores, rel, chunk=chunk)
    assert out["tasks"] == 2
    assert out["recall@1"] == pytest.approx(0.5)


def test_bad_inputs():
  with pytest.raises(ValueError, match="full-ranking"):
    check_full_ranking_names(("hr@10",))
  with pytest.raises(FloatingPointError):
    metrics([np.nan, 1.0], [1, 0])
