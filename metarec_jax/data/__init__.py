"""Data: raw files -> columnar numpy -> scenarios -> device-resident task sets."""

from metarec_jax.data.interactions import Dataset, FeatureTable, FieldSpec, Interactions
from metarec_jax.data.splits import SCENARIOS, ScenarioSplit, make_split, split_cold_flags, split_cold_items_ranking
from metarec_jax.data.synthetic import SyntheticSpec, make_synthetic
from metarec_jax.data.tasks import (Features, TaskBatch, TaskSet, build_taskset, cap_histories, features_from_tables,
                                    merge_support_query, pad_batch, sample_batch, split_tasks)
from metarec_jax.data.derived import derived_columns, hide_items
from metarec_jax.data.content_prior import ContentPrior, content_matrix, fit_content_prior
from metarec_jax.data.download import DownloadError
from metarec_jax.data.info import dataset_info
from metarec_jax.data.melu import load_melu
from metarec_jax.data.movielens import load_ml100k, load_ml1m, load_movielens
from metarec_jax.data.recbole import load_recbole
from metarec_jax.data.lastfm import load_lastfm
from metarec_jax.data.implicit import FEEDBACKS, to_implicit
from metarec_jax.data.negatives import (CandidateLayout, SeenLists, SortedPool, implicit_eval_batch, pool_logits,
                                        sample_negatives, sample_sorted, seen_lists, seen_matrix, sorted_pool,
                                        with_negatives, with_sorted_negatives, with_train_negatives)
from metarec_jax.data.registry import DATASETS, load_dataset, register
from metarec_jax.data.splits import PROTOCOLS
from metarec_jax.data.parsing import DataError, DataWarning, MissingDataFile
