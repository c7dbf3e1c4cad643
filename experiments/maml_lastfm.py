"""Implicit feedback on Last.fm (HetRec 2011): new users, every learner against the implicit baselines.

Command:   metarec run experiments/maml_lastfm.py --seeds 3
           (data.path defaults to $METAREC_DATA/lastfm-hetrec2011-2k when METAREC_DATA is set)
Protocol:  `random_users`: an artist the user played at least 50 times is a positive, one played fewer
           times is "seen" (never drawn as a negative); users with 13..100 positives are split 8:1:1
           into meta-training / validation / test users (scenario `user_cold`). Query = 10 random
           positives, support = up to 20 of the rest, each joined by 4 uniformly sampled unseen artists
           inside the jitted step; loss BCE in the inner and the outer loop. User side information: the
           friend list (multi-hot over users); items: the artist id and its training popularity.
           Test: each query positive ranked against 99 negatives sampled uniformly from the artists the
           user never played (table `user_cold`) and against all of them (table `user_cold:all`); the
           same candidates for every method; selection on validation AUC (99 sampled negatives).
           maml_bpr: MAML with the pairwise BPR loss on the same negatives.
Runtime:   12 min 21 s wall for 3 seeds (8 min 36 s user CPU) on the shared 2-core CPU while another
           3-seed experiment ran beside it; about 4 min per seed, 150 steps per learned method.
Expected:  mean over seeds 0-2, 172 test users (1,379 meta-training users), against 99 sampled negatives
           (against all ~15,000 unseen artists in brackets):
             method       AUC            HR@10          nDCG@10
             popularity   0.810 (0.810)  0.674 (0.080)  0.462 (0.042)
             pooled       0.809 (0.809)  0.675 (0.079)  0.462 (0.040)
             maml         0.810 (0.810)  0.674 (0.074)  0.463 (0.042)
             metasgd      0.818 (0.819)  0.673 (0.050)  0.440 (0.024)
             anil         0.824 (0.824)  0.673 (0.074)  0.460 (0.040)
           No learned model beats popularity on the top-10 metrics: most tie with it (HR@10 within 0.002,
           seed stds about 0.01), Meta-SGD is lower (nDCG@10 0.440, all-artist HR@10 0.050). ANIL and
           Meta-SGD raise AUC by 0.014 and 0.008 (the tail of the ranking), not the top 10.
           150 steps is too short to learn more than popularity: with --set train.steps=1500 (as
           experiments/successors_lastfm.py runs) maml reaches AUC 0.837 and nDCG@10 0.482, still rising.
"""

import os

from metarec_jax import default_config


def get_config():
  c = default_config()
  c.name = "maml_lastfm"
  root = os.environ.get("METAREC_DATA", "")
  c.data.name = "lastfm"
  c.data.path = os.path.join(root, "lastfm-hetrec2011-2k") if root else ""
  c.data.protocol = "random_users"
  c.data.feedback = "implicit"
  c.data.positive_threshold = 50.0   # plays
  c.data.negatives_per_positive = 4
  c.data.negative_sampling = "uniform"
  c.data.query_size = 10
  c.data.support_cap = 20
  c.data.max_ratings = 100
  c.model.item_stats = True          # log count of training positives (popularity) as an item input
  c.model.embed_dim = 16
  c.model.head_hidden = (32, 16)
  c.meta.loss = "bce"
  c.meta.inner_lr = 0.1
  c.meta.inner_steps = 1
  c.meta.local_tables = False        # each task scores 1,000 candidates: full-table adaptation is faster here
  c.optimizer.lr = 3e-3
  c.train.steps = 150
  c.train.tasks_per_batch = 32
  c.train.eval_every = 75
  c.train.log_every = 50
  c.train.checkpoint_every = 150
  c.eval.scenarios = ("user_cold",)
  c.eval.metrics = ("auc", "logloss", "hr@10", "ndcg@10", "mrr@10")
  c.eval.candidates = "sampled,all"
  c.eval.num_negatives = 99
  c.eval.finetune_lrs = (0.03, 0.1)
  c.eval.finetune_steps = (5,)
  c.methods = ("popularity", "pooled", "pooled_finetune", "maml", "fomaml", "metasgd", "reptile", "anil",
               "maml_bpr")
  c.variants.maml_bpr = ("meta.learner=maml", "meta.loss=bpr")   # pairwise loss, same negatives
  return c
