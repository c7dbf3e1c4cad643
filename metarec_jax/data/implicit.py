"""Implicit feedback from any data set: positives by a threshold, everything else seen.

``data.feedback=implicit`` turns a loaded `Dataset` into positives only: an
interaction is positive when its value (a rating, a play count) is at least
``data.positive_threshold`` (RecBole-MetaRec's rule for MovieLens: rating >= 4).
Positives keep their user, item and time with value 1; the protocol's user
filters (``min_ratings``..``max_ratings``) then count positives. Every
interaction, positive or not, stays in ``Dataset.interacted``: negatives are
never drawn among a user's interactions (a movie rated 2 is not an unseen one).
Data that is binary already (clicks, purchases) has value 1 everywhere and a
threshold of 1.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from metarec_jax.data.interactions import Dataset, Interactions

FEEDBACKS = ("rating", "implicit")


def positives(ratings: Interactions, threshold: float) -> Interactions:
  """The interactions with value >= ``threshold``, with value 1."""
  keep = ratings.subset(ratings.rating >= threshold)
  keep.rating = np.ones(len(keep), np.float32)
  return keep


def to_implicit(data: Dataset, threshold: float) -> Dataset:
  """Positives-only copy of ``data`` (interactions and predefined scenarios).

  Raises:
    ValueError: no interaction reaches the threshold.
  """
  if data.feedback == "implicit":
    return data
  pos = positives(data.interactions, threshold)
  if not len(pos):
    lo, hi = float(data.interactions.rating.min()), float(data.interactions.rating.max())
    raise ValueError(f"data.positive_threshold={threshold:g}: no interaction of {data.name!r} reaches it "
                     f"(values lie in {lo:g}..{hi:g})")
  scenarios = None  # predefined scenarios (MeLU's state files) are subsets of the interactions
  if data.scenarios is not None:
    scenarios = {k: positives(v, threshold) for k, v in data.scenarios.items()}
  note = (f"implicit feedback: {len(pos):,} of {len(data.interactions):,} interactions have value >= "
          f"{threshold:g} and are positives; the rest count as seen (never drawn as negatives)")
  return dataclasses.replace(data, interactions=pos, scenarios=scenarios, rating_scale=(0.0, 1.0),
                             feedback="implicit", interacted=data.interactions, notes=tuple(data.notes) + (note,))


__all__ = ["FEEDBACKS", "positives", "to_implicit"]
