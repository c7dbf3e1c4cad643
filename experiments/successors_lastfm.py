"""MeLU's successors on Last.fm implicit feedback (new users), beside MAML and the implicit baselines.

Command:   metarec run experiments/successors_lastfm.py --seeds 3
           (data.path defaults to $METAREC_DATA/lastfm-hetrec2011-2k when METAREC_DATA is set)
Protocol:  exactly experiments/maml_lastfm.py's (it is loaded from there): an artist played at least
           50 times is a positive; users with 13..100 positives split 8:1:1 into meta-training /
           validation / test users (scenario user_cold); support up to 20 positives, query 10, each
           joined by 4 sampled unseen artists inside the jitted step; loss BCE; each query positive
           ranked against 99 sampled negatives (table user_cold) and against every unseen artist
           (user_cold:all); selection on validation AUC.
Methods:   popularity and pooled (baselines), maml; the successors that their papers or
           RecBole-MetaRec run on implicit feedback: tanp (TaNP evaluates on Last.fm), coldnas
           (ColdNAS evaluates on Last.fm), mamo, cmml, lwa and nlba (RecBole-MetaRec's CTR setting).
           Every one trains with maml_lastfm.py's outer settings (Adam 3e-3, 32 users per step) but
           1,500 steps instead of its 150 (validation every 250): at 150 steps every learner ties with
           popularity; at 1,500 every one beats it and validation AUC is still improving.
           coldnas runs the structure ColdNAS's reference code searched on Last.fm (model_lfm4.py:
           add / add / max+add / none at the input and the three hidden layers), not the ML-1M default.
           This file keeps our implicit protocol for every method (README "MeLU's successors" says
           where the papers' own Last.fm protocols differ), so all are scored on the same candidates.
Runtime:   about 20 min for 3 seeds on the 2-core CPU (measured as two runs: 14.6 min for
           popularity, maml, tanp, coldnas and mamo; 5.8 min for pooled, cmml, lwa and nlba).
Expected:  README "MeLU's successors" (Last.fm) has the 3-seed tables; against 99 sampled negatives,
           AUC / nDCG@10: popularity 0.810 / 0.462, maml 0.837 / 0.482, tanp 0.846 / 0.500,
           coldnas 0.848 / 0.508, mamo 0.850 / 0.504, pooled 0.840 / 0.469, cmml 0.828 / 0.494,
           lwa 0.856 / 0.516, nlba 0.857 / 0.522 (mean of seeds 0-2).
"""

import pathlib

from metarec_jax import load_experiment


def get_config():
  c = load_experiment(pathlib.Path(__file__).with_name("maml_lastfm.py"))
  c.name = "successors_lastfm"
  c.methods = ("popularity", "pooled", "maml", "tanp", "coldnas", "mamo", "cmml", "lwa", "nlba")
  c.coldnas_fixed.ops = ("add", "add", "max+add", "none")  # the reference's searched Last.fm model
  c.train.steps = 1500
  c.train.eval_every = 250
  return c
