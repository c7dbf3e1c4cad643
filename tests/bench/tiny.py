"""A tiny workload for the benchmark tests: MeLU's field layout, small shapes."""

from __future__ import annotations

from metarec_jax.bench.workload import Field, WorkloadSpec

TINY_USER_FIELDS = (Field("gender", 2), Field("age", 7), Field("occupation", 5), Field("zip", 11))
TINY_ITEM_FIELDS = (Field("rate", 6), Field("genre", 9, 3), Field("director", 13, 1), Field("actor", 17, 4))


def tiny_spec(**overrides) -> WorkloadSpec:
  """A MeLU-shaped workload small enough to compile in a second or two."""
  base = dict(tasks=4, support=5, query=3, inner_steps=2, inner_lr=0.1, outer_lr=0.01, embed_dim=4,
              head_hidden=(8, 6), user_fields=TINY_USER_FIELDS, item_fields=TINY_ITEM_FIELDS, num_users=30,
              num_items=40)
  base.update(overrides)
  return WorkloadSpec(**base)
