"""PyTorch peers of the TaNP meta-train step (``metarec bench meta-step --learner tanp``).

TaNP (Lin et al., WWW 2021; reference code github.com/IIEdm/TaNP) in PyTorch
with exactly the math of our JAX model (`metarec_jax.methods.tanp`), loaded
from the workload's flax params (``workload.meta["model"]``) and reading the
workload's feature tables:

* the extractor: one embedding per field, multi-hot fields averaged over
  their non-zero ids (as `torch_peers`' MeLU model and the engine's
  `FieldEmbedding`), the optional user / item MLP towers of the extractor;
* the towers ``e_u``, ``e_v`` (``user_emb``, ``item_emb``), ``x = [u, v]``;
* the latent path ``xy_to_z`` / ``z_to_mu_sigma``: prior ``q(z | C)`` over the
  support (context) set, posterior ``q(z | C ∪ T)`` over support and query
  (target) set, one mean over both;
* the customization module ``xy_to_task`` / ``memory`` (Student-t soft
  assignment on the unsquared distance, ``p = c A + o``);
* the FiLM decoder (or Gating-FiLM for ``tanp_gating``) over ``[x, z]``
  with ``z`` the posterior mean;
* per task: masked MSE over ``C ∪ T`` (``tanp.context_in_loss``; else the
  query set only) + ``KL(q(z | C ∪ T) || q(z | C))`` + ``λ KL(t || c)`` with the
  per-task target distribution (``f_k = 1``), the loss our docstring states;
  the batch loss is the mean over tasks.

Two forms of the step, both with ``torch.optim.Adam`` at optax's defaults
(``b1 = 0.9``, ``b2 = 0.999``, ``eps = 1e-8``):

* `TaNPLoopPeer`: the reference code's ``Trainer.global_update`` (and
  RecBole-MetaRec's) way: a Python loop over the tasks of the batch, one
  forward per task, the task losses stacked and averaged, one backward.
* `TaNPFuncPeer`: ``torch.func.vmap`` over tasks of the same per-task loss
  (``functional_call``), the gradient by ``torch.func.grad_and_value``.

Differences from the JAX step that change the work, not the numbers: the
peers embed each task's items once (query and support rows together) and
run the latent encoder once over them, where the JAX model embeds the
support items twice (as context and, with ``context_in_loss``, as scored
items) and encodes the scored support rows into the posterior under a zero
mask. The peers thus do slightly less work than the JAX step. Differences from the reference
code's training loop are those of our JAX model (see its docstring): ``z``
is the posterior mean, not a sample; the clustering loss is per task; the
context / target split is the engine's support / query split.

PyTorch is an optional dependency: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from metarec_jax.bench.torch_peers import (TORCH_HINT, PeerBase, field_embeddings, masked_mse, require_torch,
                                           to_torch, torch_available, torch_name)
from metarec_jax.bench.workload import Workload
from metarec_jax.meta.inner import flatten

try:
  import torch
  import torch.nn.functional as F
  from torch import nn
except ImportError:  # the peers are optional
  torch = None

METHODS = ("tanp", "tanp_gating")  # the registered methods these peers implement


def handles(workload: Workload) -> bool:
  """Whether the workload trains a TaNP model (these peers, not `torch_peers`', are its peers)."""
  return workload.method in METHODS


def supported(workload: Workload) -> str | None:
  """None when the TaNP peers implement the workload, else the reason they do not."""
  if not handles(workload):
    return f"the TaNP peers implement the methods {METHODS}, not {workload.method or workload.learner.name!r}"
  m = workload.model
  if m.extractor != "fields":
    return f"the TaNP peers implement the 'fields' extractor, not {m.extractor!r}"
  if m.dtype is not None and jnp.dtype(m.dtype) != jnp.float32:
    return f"the TaNP peers compute in float32, not {m.dtype}"
  kinds = {s.kind for s in tuple(m.user_specs) + tuple(m.item_specs)}
  if not kinds <= {"categorical", "multi"}:
    return f"the TaNP peers embed categorical and multi-hot fields, not {sorted(kinds - {'categorical', 'multi'})}"
  if workload.learner.loss.name != "mse":
    return f"the TaNP peers implement the mse loss (explicit ratings), not {workload.learner.loss.name!r}"
  return None


def context_in_loss_of(method: str) -> bool:
  """``tanp.context_in_loss`` of the method resolved from the default config, as `workload.method_parts` does."""
  from metarec_jax.config import default_config
  from metarec_jax.methods import resolve
  return bool(resolve(method, default_config()).config.tanp.context_in_loss)


# --------------------------------------------------------------------------- model


def _module_with(paths: dict[str, Any]) -> "nn.Module":
  """An ``nn.Module`` tree whose ``named_parameters()`` are ``torch_name(path)`` of every flax path."""
  root = nn.Module()
  for path, value in paths.items():
    parts = torch_name(path).split(".")
    node = root
    for part in parts[:-1]:
      if not hasattr(node, part):
        node.add_module(part, nn.Module())
      node = getattr(node, part)
    node.register_parameter(parts[-1], nn.Parameter(to_torch(path, value)))
  return root


def _count(names, prefix: str) -> int:
  """Number of consecutive ``{prefix}{i}.weight`` entries in ``names``."""
  n = 0
  while f"{prefix}{n}.weight" in names:
    n += 1
  return n


def _model_class():
  class TorchTaNP(nn.Module):
    """`TaNPModel` in PyTorch: `task_loss` is one task's training loss (`tanp_task_loss`)."""

    def __init__(self, model, params: dict[str, Any], user_tables: dict, item_tables: dict,
                 context_in_loss: bool = True):
      super().__init__()
      self.user_specs = tuple(model.user_specs)
      self.item_specs = tuple(model.item_specs)
      self.user_tables = user_tables
      self.item_tables = item_tables
      self.offset = float(model.offset)
      self.temperature = float(model.temperature)
      self.cluster_weight = float(model.cluster_weight)
      self.gating = model.decoder == "gating"
      self.context_in_loss = context_in_loss
      tree = _module_with(params)
      for name, child in tree.named_children():
        self.add_module(name, child)
      names = {n for n, _ in self.named_parameters()}
      self.user_tower = _count(names, "extractor.user_tower.dense_")
      self.item_tower = _count(names, "extractor.item_tower.dense_")
      self.dec_layers = _count(names, "decoder.hidden_")

    # -- layers (p: name -> tensor, so that functional_call and explicit dicts both work)

    def fields(self, p, kind: str, specs, tables, ids):
      out = field_embeddings(p, kind, specs, tables, ids)
      for i in range(self.user_tower if kind == "user" else self.item_tower):  # the extractor's MLP (final ReLU)
        name = f"extractor.{kind}_tower.dense_{i}"
        out = F.relu(F.linear(out, p[f"{name}.weight"], p[f"{name}.bias"]))
      # Rounded to float32 as `ConditionedModel.embed_task` does: a no-op in float32, exact in float64 tests.
      return out.to(torch.float32).to(out.dtype)

    @staticmethod
    def relu_layers(p, prefix: str, x, layers: int, last_relu: bool):
      for l in range(layers):
        x = F.linear(x, p[f"{prefix}{l}.weight"], p[f"{prefix}{l}.bias"])
        if last_relu or l < layers - 1:
          x = F.relu(x)
      return x

    def to_mu_log_var(self, p, r):
      s = F.relu(F.linear(r, p["z_to_mu_sigma.hidden.weight"], p["z_to_mu_sigma.hidden.bias"]))
      return (F.linear(s, p["z_to_mu_sigma.mu.weight"], p["z_to_mu_sigma.mu.bias"]),
              F.linear(s, p["z_to_mu_sigma.log_var.weight"], p["z_to_mu_sigma.log_var.bias"]))

    def assign(self, p, o):
      centres = p["memory.centres"]
      sq = ((o.unsqueeze(0) - centres) ** 2).sum(-1)
      d = torch.sqrt(sq.clamp(min=1e-12))
      q = (1.0 + d / self.temperature) ** (-(self.temperature + 1.0) / 2.0)
      c = q / q.sum()
      return c, c @ centres + o

    def decode(self, p, x, z, task):
      h = torch.cat([x, z.unsqueeze(0).expand(x.shape[0], z.shape[-1])], dim=-1)
      for l in range(self.dec_layers):
        h = F.linear(h, p[f"decoder.hidden_{l}.weight"], p[f"decoder.hidden_{l}.bias"])
        gamma = torch.tanh(F.linear(task, p[f"decoder.film_{l}_gamma.weight"]))
        beta = torch.tanh(F.linear(task, p[f"decoder.film_{l}_beta.weight"]))
        if self.gating:
          eta = torch.tanh(F.linear(task, p[f"decoder.film_{l}_eta.weight"]))
          delta = torch.sigmoid(F.linear(task, p[f"decoder.film_{l}_delta.weight"]))
          gamma = gamma * delta + eta * (1.0 - delta)
          beta = beta * delta + eta * (1.0 - delta)
        h = F.relu(h * gamma + beta)
      return F.linear(h, p["decoder.output.weight"], p["decoder.output.bias"]).squeeze(-1)

    # -- one task

    def task_loss(self, p, user, s_items, s_y, s_mask, q_items, q_y, q_mask):
      """One task's loss: decoder MSE over ``C ∪ T`` (or ``T``) + KL + λ L_u; a 0-d tensor."""
      nq = q_items.shape[0]
      s_m, q_m = s_mask.to(torch.float32), q_mask.to(torch.float32)
      u = self.relu_layers(p, "user_emb.layer_", self.fields(p, "user", self.user_specs, self.user_tables, user),
                           2, True)
      items = torch.cat([q_items, s_items])  # query rows first, as the JAX loss orders C ∪ T
      v = self.relu_layers(p, "item_emb.layer_", self.fields(p, "item", self.item_specs, self.item_tables, items),
                           2, True)
      x = torch.cat([u.unsqueeze(0).expand(v.shape[0], u.shape[-1]), v], dim=-1)
      y = torch.cat([q_y, s_y]) - self.offset
      xy = torch.cat([x, y.unsqueeze(-1)], dim=-1)
      r = self.relu_layers(p, "xy_to_z.layer_", xy, 3, False)
      sum_c, n_c = (r[nq:] * s_m.unsqueeze(-1)).sum(0), s_m.sum()
      sum_t, n_t = (r[:nq] * q_m.unsqueeze(-1)).sum(0), q_m.sum()
      mu_c, log_var_c = self.to_mu_log_var(p, sum_c / n_c.clamp(min=1.0))  # prior q(z | C)
      mu_t, log_var_t = self.to_mu_log_var(p, (sum_c + sum_t) / (n_c + n_t).clamp(min=1.0))  # q(z | C ∪ T)
      o = self.relu_layers(p, "xy_to_task.layer_", xy[nq:], 3, False)
      o = (o * s_m.unsqueeze(-1)).sum(0) / n_c.clamp(min=1.0)
      c, task = self.assign(p, o)
      kl = 0.5 * ((torch.exp(log_var_t) + (mu_t - mu_c) ** 2) / torch.exp(log_var_c) - 1.0
                  + log_var_c - log_var_t).sum()
      w = c ** 2
      t = w / w.sum()
      cluster = self.cluster_weight * (t * (torch.log(t) - torch.log(c))).sum()
      if self.context_in_loss:
        scores = self.offset + self.decode(p, x, mu_t, task)
        fit = masked_mse(scores, torch.cat([q_y, s_y]), torch.cat([q_mask, s_mask]))
      else:
        scores = self.offset + self.decode(p, x[:nq], mu_t, task)
        fit = masked_mse(scores, q_y, q_mask)
      return fit + (kl + cluster)

  return TorchTaNP


# --------------------------------------------------------------------------- peers

_TASK_KEYS = ("user", "support_items", "support_ratings", "support_mask", "query_items", "query_ratings",
              "query_mask")


class _TaNPPeer(PeerBase):
  """Shared set-up: the TaNP model on the workload's weights; Adam, the fixed batch and the loop are `PeerBase`'s.

  Attributes:
    model: the `TorchTaNP` module.
    params: torch name -> parameter.
    paths: torch name -> flax path.
    lrs: empty (TaNP learns no inner rates).
  """

  def __init__(self, workload: Workload, meta: Any | None = None, context_in_loss: bool | None = None):
    require_torch()
    reason = supported(workload)
    if reason:
      raise ValueError(reason)
    w = workload
    self.workload = w
    meta = w.meta if meta is None else meta
    if context_in_loss is None:
      context_in_loss = context_in_loss_of(w.method)
    tables = lambda cols: {k: torch.from_numpy(np.asarray(v).astype(np.int64)) for k, v in cols.items()}
    flat = flatten(meta["model"])
    self.model = _model_class()(w.model, flat, tables(w.features.user), tables(w.features.item),
                                context_in_loss)
    self.paths = {torch_name(k): k for k in flat}
    self.params = dict(self.model.named_parameters())
    self.lrs: dict[str, Any] = {}
    self._finish(w)


class TaNPLoopPeer(_TaNPPeer):
  """A Python loop over tasks, one forward each, losses stacked and averaged, one backward (the reference's form)."""

  def meta_gradient(self, batch):
    p = self.params
    losses = [self.model.task_loss(p, *(batch[k][t] for k in _TASK_KEYS)) for t in range(batch["user"].shape[0])]
    loss = torch.stack(losses).mean()
    leaves = list(p.values())
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads)]
    return loss.detach(), dict(zip(p, grads)), {}


class TaNPFuncPeer(_TaNPPeer):
  """``torch.func.vmap`` over tasks of the per-task loss, gradient by ``torch.func.grad_and_value``."""

  def __init__(self, workload: Workload, meta: Any | None = None, context_in_loss: bool | None = None):
    super().__init__(workload, meta, context_in_loss)
    from torch.func import grad_and_value, vmap
    model = self.model
    batched = vmap(model.task_loss, in_dims=(None,) + (0,) * len(_TASK_KEYS))

    def mean_loss(params, batch):
      return batched(params, *(batch[k] for k in _TASK_KEYS)).mean()

    self._grad = grad_and_value(mean_loss)

  def meta_gradient(self, batch):
    params = {n: x.detach() for n, x in self.params.items()}
    grads, loss = self._grad(params, batch)
    return loss, grads, {}


# The JSON keys of `bench_meta_step` (the same as the MeLU peers').
PEERS = {"torch_loop": TaNPLoopPeer, "torch_func": TaNPFuncPeer}

__all__ = ["METHODS", "PEERS", "TORCH_HINT", "TaNPFuncPeer", "TaNPLoopPeer", "context_in_loss_of", "handles",
           "supported", "torch_available"]
