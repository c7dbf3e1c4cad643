"""MeLU's cold-start protocol on MovieLens 100K: meta-learners vs. the baselines.

Command:   metarec run experiments/melu_ml100k.py --set data.path=DIR
           (DIR holds u.data, u.user, u.item, u.genre, u.occupation;
           fetch them with: metarec data download ml-100k --to DIR)
Protocol:  `temporal` (MeLU's rule on raw data): movies released in or after
           1997 are new (about 20% of the movies), users whose first rating
           comes after the 0.8 quantile of first-rating times are new; users
           with 13..100 ratings per scenario; query = 10 random ratings, support
           = the rest (up to 90). 10% of the warm users validate, another 10%
           are the `warm` test. Tasks: warm 368 (before the hold-outs),
           user_cold 86, item_cold 424, user_item_cold 125.
Runtime:   about 1 min 45 s on a 2-core CPU (6 methods, 1 seed, 1,000 steps each;
           measured 1:42 wall, 0.86 GB peak memory).
Expected:  seed 0, MAE on the query ratings (nDCG@3 in brackets):
             scenario        item_mean_user_bias  pooled_finetune  maml           melu
             warm            0.789 (0.709)        0.852 (0.576)    0.804 (0.678)  0.799 (0.650)
             user_cold       0.768 (0.703)        0.802 (0.599)    0.775 (0.693)  0.774 (0.685)
             item_cold       0.907 (0.542)        0.935 (0.566)    0.899 (0.635)  0.907 (0.616)
             user_item_cold  0.911 (0.559)        0.923 (0.535)    0.915 (0.602)  0.921 (0.580)
           global_mean: 0.910 / 0.868 / 0.986 / 0.959. MAML and MeLU have a lower
           MAE than the pooled baselines everywhere and MAML is best on item_cold, but the
           item-mean + user-bias baseline keeps the lowest MAE on warm,
           user_cold and user_item_cold. The test sets are small (37..424
           users): run --seeds 3 or more before reading differences of 0.01.
"""

from metarec_jax import default_config


def get_config():
  c = default_config()
  c.name = "melu_ml100k"
  c.methods = ("global_mean", "item_mean_user_bias", "pooled", "pooled_finetune", "maml", "melu")
  c.data.name = "movielens"
  c.data.path = ""                    # give it: --set data.path=DIR
  c.data.protocol = "temporal"
  c.data.new_item_year = 1997
  c.data.max_ratings = 100
  c.data.support_cap = 90             # support = every rating but the 10 query ones
  c.model.user_fields = ("gender", "age", "occupation", "zip")
  c.model.item_fields = ("genre", "year")
  c.train.steps = 1000
  c.train.eval_every = 100
  return c
