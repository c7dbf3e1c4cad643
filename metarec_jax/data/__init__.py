"""Data: raw files -> columnar numpy -> scenarios -> device-resident task sets."""

from metarec_jax.data.interactions import Dataset, FeatureTable, FieldSpec, Interactions
from metarec_jax.data.splits import SCENARIOS, ScenarioSplit, make_split, split_cold_flags
from metarec_jax.data.synthetic import SyntheticSpec, make_synthetic
from metarec_jax.data.tasks import (Features, TaskBatch, TaskSet, build_taskset, features_from_tables,
                                    merge_support_query, pad_batch, sample_batch, split_tasks)
