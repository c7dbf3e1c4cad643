"""Evaluation: metrics, simple baselines, adapt-then-score."""

from metarec_jax.eval.baselines import RatingStats, predict_global_mean, predict_item_mean_user_bias
from metarec_jax.eval.evaluate import make_adapted_predictor, predict_in_chunks, score
from metarec_jax.eval.metrics import (METRIC_FAMILIES, METRICS, NDCG_FAMILIES, check_metric_names, compute_metrics,
                                      hit_rate_at_k, mae, ndcg_at_k, ndcg_linear_at_k, ndcg_mamo_at_k,
                                      ndcg_melu_tf_at_k, ndcg_metahin_at_k, ndcg_recbole_at_k, ndcg_tanp_at_k, rmse)
from metarec_jax.eval.ranking import RANKING_METRICS, ranking_metrics
from metarec_jax.eval.implicit import popularity, score_implicit
from metarec_jax.eval.full_ranking import full_ranking_metrics, score_full_ranking
