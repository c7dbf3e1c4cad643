"""Flax linen modules: feature extractor, heads and the recommender."""

from metarec_jax.models.extractor import MLP, Extractor, FieldEmbedding
from metarec_jax.models.fast_weights import FastDense
from metarec_jax.models.heads import DotHead, MLPHead, RelationHead
from metarec_jax.models.model import HEADS, FeatureModel, Predict, RecModel, init_params, make_predict
from metarec_jax.models.registry import (EXTRACTORS, build_extractor, build_head, register_extractor,
                                         register_head)
