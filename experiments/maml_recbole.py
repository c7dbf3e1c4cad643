"""MAML, MeLU-style and the baselines on any RecBole atomic data set.

Command:   metarec run experiments/maml_recbole.py --set data.path=DIR
           (DIR holds NAME.inter, NAME.user, NAME.item; the data set's name is
           taken from the file names; RecBole's ml-100k is the example below)
Protocol:  `random_users` (RecBole-MetaRec's): users with 13..100 ratings are
           split 8:1:1 into meta-training / validation / test (seeded); test
           users are unseen, so the one scenario is `user_cold`; query = 10
           random ratings, support = the rest (up to 90). Every field of the
           .user / .item files is a feature (token -> categorical, token_seq ->
           multi-hot, float -> dense); name some with --set model.user_fields=...
Runtime:   34 min 41 s wall for 3 seeds of the 8 methods below on the 2-core CPU while six
           other jobs ran beside it (load average 12); about 2 min 45 s a seed for the first six
           methods on an idle machine.
Expected:  RecBole's ml-100k, 466 meta-training, 58 validation and 58 test users per seed.
           user_cold MAE (nDCG@3), mean ± sample std over seeds 0-2:
             melu_ridge           0.7684 ± 0.0511 (0.7266)   <- the preset, best
             melu_plus            0.7783 ± 0.0369 (0.7099)   <- the preset
             item_mean_user_bias  0.7826 ± 0.0511 (0.7131)
             maml                 0.7842 ± 0.0333 (0.7151)
             melu                 0.7907 ± 0.0390 (0.7048)
             pooled_finetune      0.7971 ± 0.0350 (0.6822)
             pooled               0.8523 ± 0.0457 (0.6882)
             global_mean          0.9113 ± 0.0753 (0.5735)
           With 58 test users the seeds differ by ±0.04: read differences below that as ties.
"""

from metarec_jax import default_config


def get_config():
  c = default_config()
  c.name = "maml_recbole"
  # melu_plus / melu_ridge: the framework's named presets (metarec_jax/methods/presets.py), the strong
  # configuration on any data set: residual over item mean + user bias, item id and statistics,
  # a support-set user vector (+ a closed-form ridge user vector).
  c.methods = ("global_mean", "item_mean_user_bias", "pooled", "pooled_finetune", "maml", "melu", "melu_plus",
               "melu_ridge")
  c.data.name = "recbole"
  c.data.path = ""                    # give it: --set data.path=DIR
  c.data.protocol = "random_users"
  c.data.max_ratings = 100
  c.data.support_cap = 90             # support = every rating but the 10 query ones
  c.eval.scenarios = ("user_cold",)
  c.train.steps = 1000
  c.train.eval_every = 100
  return c
