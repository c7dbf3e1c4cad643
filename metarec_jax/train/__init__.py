"""Training: the one loop with validation selection, checkpoints, resume and the NaN stop."""

from metarec_jax.train.loop import NonFiniteError, Selection, train_loop
