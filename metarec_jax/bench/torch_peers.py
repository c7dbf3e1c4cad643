"""PyTorch peers of the benchmark workload: the same model math and meta-update.

Two forms of the MeLU-shaped meta-train step, on the same weights and the same
task batch as the JAX step:

* `LoopPeer`: a Python loop over the tasks of a batch, inner steps with
  ``torch.autograd.grad(create_graph=True)``, the query losses stacked,
  averaged and back-propagated once: how MeLU's reference code (and, one task
  at a time, learn2learn) does it.
* `FuncPeer`: ``torch.func.vmap`` over tasks of a per-task loss built with
  ``functional_call`` and ``torch.func.grad`` (the inner steps), the outer
  gradient with ``torch.func.grad_and_value``: the strongest PyTorch form.

Both use ``torch.optim.Adam`` with optax's defaults. Model math, as in the
engine's `RecModel` with an ``mlp`` head: one embedding per field, multi-hot
fields averaged over their non-zero ids, ``concat(user fields, item fields)``
(the first layer's user half computed once per task, as the engine's
`heads.PairDense` does), ReLU layers, a linear output; masked MSE on support and query; SGD inner
steps on the adapted params (the decision layers), second order unless the
learner is first order. Meta-SGD's learned inner rates are supported; Reptile
and the pooled model are not (the peers implement MAML-kind learners).

PyTorch is an optional dependency: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np

from metarec_jax.bench.workload import Workload
from metarec_jax.data.tasks import TaskBatch
from metarec_jax.meta.inner import adapt_pattern, flatten

try:
  import torch
  import torch.nn.functional as F
  from torch import nn
except ImportError:  # the peers are optional
  torch = None

TORCH_HINT = 'PyTorch is not installed: pip install -e ".[bench]" (a CPU build is enough)'


def torch_available() -> bool:
  return torch is not None


def require_torch() -> None:
  if torch is None:
    raise ImportError(TORCH_HINT)


def supported(workload: Workload) -> str | None:
  """None when the peers implement the workload's learner, else the reason they do not."""
  spec = workload.learner
  if workload.method is not None:
    return f"the PyTorch peers implement MeLU's model with MAML-kind learners, not the method {workload.method!r}"
  if spec.kind != "maml":
    return f"the PyTorch peers implement MAML-kind learners, not {spec.name!r} ({spec.kind})"
  return None


# --------------------------------------------------------------------------- names


def torch_name(path: str) -> str:
  """Torch parameter name of a flax path (``head/dense_0/kernel`` -> ``head.dense_0.weight``)."""
  parts = path.split("/")
  if parts[-1] in ("kernel", "embedding"):
    parts[-1] = "weight"
  return ".".join(parts)


def to_torch(path: str, value: Any) -> "torch.Tensor":
  """A flax leaf as the matching torch tensor (dense kernels are transposed)."""
  x = torch.from_numpy(np.array(value, dtype=np.float32))
  return x.T.contiguous() if path.endswith("/kernel") else x


def to_flax(path: str, value: "torch.Tensor") -> np.ndarray:
  """The inverse of `to_torch`."""
  x = value.detach().cpu().numpy()
  return x.T if path.endswith("/kernel") else x


# --------------------------------------------------------------------------- model


def field_embeddings(p: dict, kind: str, specs, tables: dict, ids) -> "torch.Tensor":
  """The fields extractor in torch: one embedding per field, multi-hot fields mean-pooled over non-zero ids.

  Args:
    p: torch name -> weight (``extractor.<kind>.<field>.weight``).
    kind: ``user`` or ``item``.
    specs: the side's field specs.
    tables: field name -> ``[rows, ...]`` id table.
    ids: the user / item ids to embed.
  """
  parts = []
  for s in specs:
    x = tables[s.name][ids]
    vecs = F.embedding(x, p[f"extractor.{kind}.{s.name}.weight"])
    if s.kind == "multi":
      mask = (x > 0).unsqueeze(-1).to(vecs.dtype)
      vecs = (vecs * mask).sum(-2) / mask.sum(-2).clamp(min=1.0)
    parts.append(vecs)
  return torch.cat(parts, dim=-1)


def _model_class():
  class TorchRecModel(nn.Module):
    """`RecModel` with an ``mlp`` head in PyTorch; forward for one task (one user, N items)."""

    def __init__(self, model, user_tables: dict, item_tables: dict):
      super().__init__()
      self.user_specs = tuple(model.user_specs)
      self.item_specs = tuple(model.item_specs)
      self.hidden = tuple(model.head_hidden)
      self.user_tables = user_tables
      self.item_tables = item_tables
      dim = model.embed_dim
      self.extractor = nn.Module()
      self.extractor.user = nn.ModuleDict({s.name: nn.Embedding(s.vocab_size, dim) for s in self.user_specs})
      self.extractor.item = nn.ModuleDict({s.name: nn.Embedding(s.vocab_size, dim) for s in self.item_specs})
      width = dim * (len(self.user_specs) + len(self.item_specs))
      self.head = nn.Module()
      for i, size in enumerate(self.hidden):
        setattr(self.head, f"dense_{i}", nn.Linear(width, size))
        width = size
      self.head.out = nn.Linear(width, 1)

    def forward(self, user, items, params: dict | None = None):
      """Scores ``items`` ``[N]`` for ``user`` (a 0-d id); ``params`` overrides named weights."""
      p = params if params is not None else dict(self.named_parameters())

      f_u = field_embeddings(p, "user", self.user_specs, self.user_tables, user)
      f_i = field_embeddings(p, "item", self.item_specs, self.item_tables, items)
      if self.hidden:  # the first layer's user half once per task, as the JAX head (`PairDense`) does
        w, d_u = p["head.dense_0.weight"], f_u.shape[-1]
        x = F.relu(F.linear(f_i, w[:, d_u:]) + F.linear(f_u, w[:, :d_u], p["head.dense_0.bias"]).unsqueeze(-2))
      else:
        x = torch.cat([f_u.unsqueeze(-2).expand(f_i.shape[:-1] + f_u.shape[-1:]), f_i], dim=-1)
      for i in range(1, len(self.hidden)):
        x = F.relu(F.linear(x, p[f"head.dense_{i}.weight"], p[f"head.dense_{i}.bias"]))
      return F.linear(x, p["head.out.weight"], p["head.out.bias"]).squeeze(-1)

  return TorchRecModel


def masked_mse(pred, target, mask):
  m = mask.to(pred.dtype)
  return (m * (pred - target) ** 2).sum() / m.sum().clamp(min=1.0)


def batch_to_torch(batch: TaskBatch) -> dict[str, "torch.Tensor"]:
  """A task batch as torch tensors: ids int64, ratings float32, masks bool."""
  out = {}
  for name in ("user", "support_items", "support_ratings", "support_mask", "query_items", "query_ratings",
               "query_mask"):
    x = np.asarray(getattr(batch, name))
    out[name] = torch.from_numpy(x.astype(np.int64) if x.dtype.kind in "iu" else x.copy())
  return out


# --------------------------------------------------------------------------- peers


class PeerBase:
  """What every PyTorch peer shares: Adam over its params and learned inner rates, the fixed batch, the loop.

  A peer's ``__init__`` sets ``workload``, ``params`` (torch name ->
  parameter), ``paths`` (torch name -> flax path) and ``lrs`` (torch name ->
  learned inner rate; empty when none are learned), then calls `_finish`;
  subclasses implement `meta_gradient`.
  """

  def _finish(self, workload: Workload) -> None:
    """Checks that the torch and flax params match; builds Adam (optax's defaults) and the fixed batch."""
    if set(self.params) != set(self.paths):
      raise ValueError(f"torch and flax params differ: {sorted(set(self.params) ^ set(self.paths))}")
    self.optimizer = torch.optim.Adam(list(self.params.values()) + list(self.lrs.values()),
                                      lr=workload.spec.outer_lr, betas=(0.9, 0.999), eps=1e-8)
    self.batch = batch_to_torch(workload.batch(0))

  def meta_gradient(self, batch: dict) -> tuple["torch.Tensor", dict, dict]:
    """(mean query loss, name -> gradient of the params, name -> gradient of the
    learned inner rates) of one batch; subclasses implement it."""
    raise NotImplementedError

  def step(self, batch: dict | None = None) -> float:
    """One meta-train step: meta-gradient, then Adam. Returns the loss."""
    loss, grads, lr_grads = self.meta_gradient(self.batch if batch is None else batch)
    for name, p in self.params.items():
      p.grad = grads[name]
    for name, p in self.lrs.items():
      p.grad = lr_grads[name]
    self.optimizer.step()
    return float(loss)

  def run(self, n: int) -> float:
    """Runs ``n`` steps on the fixed batch; returns seconds."""
    start = time.perf_counter()
    for _ in range(n):
      self.step()
    return time.perf_counter() - start

  def flax_grads(self, grads: dict, lr_grads: dict | None = None) -> dict:
    """Gradients keyed like the engine's flat meta params: ``{"model": {path: ...}, ["inner_lr": ...]}``."""
    out = {"model": {self.paths[n]: to_flax(self.paths[n], grads[n]) for n in self.params}}
    if self.lrs:
      out["inner_lr"] = {self.paths[n]: to_flax(self.paths[n], lr_grads[n]) for n in self.lrs}
    return out


class _Peer(PeerBase):
  """Shared set-up of the MeLU-model peers: the model on the workload's weights, the adapted names."""

  def __init__(self, workload: Workload, meta: Any | None = None):
    require_torch()
    reason = supported(workload)
    if reason:
      raise ValueError(reason)
    w = workload
    self.workload = w
    self.spec = w.learner
    meta = w.meta if meta is None else meta
    tables = lambda cols: {k: torch.from_numpy(np.asarray(v).astype(np.int64)) for k, v in cols.items()}
    self.model = _model_class()(w.model, tables(w.features.user), tables(w.features.item))
    flat = flatten(meta["model"])
    self.paths = {torch_name(k): k for k in flat}
    own = dict(self.model.named_parameters())
    if set(own) != set(self.paths):
      raise ValueError(f"torch and flax params differ: {sorted(set(own) ^ set(self.paths))}")
    with torch.no_grad():
      for name, path in self.paths.items():
        own[name].copy_(to_torch(path, flat[path]))
    rx = re.compile(adapt_pattern(self.spec.adapt))
    self.adapted = [n for n, path in self.paths.items() if rx.search(path)]
    self.params = dict(self.model.named_parameters())
    self.lrs: dict[str, torch.Tensor] = {}
    if self.spec.learn_inner_lr:
      for name in self.adapted:
        self.lrs[name] = nn.Parameter(to_torch(self.paths[name], meta["inner_lr"][self.paths[name]]))
    self._finish(w)

  def lr(self, name):
    return self.lrs[name] if self.lrs else self.spec.inner_lr


class LoopPeer(_Peer):
  """Per-task Python loop with ``torch.autograd.grad(create_graph=True)`` (MeLU's reference form)."""

  def meta_gradient(self, batch):
    second_order = not self.spec.first_order
    leaves = list(self.params.values()) + list(self.lrs.values())
    losses = []
    for t in range(batch["user"].shape[0]):
      user = batch["user"][t]
      fast = {n: self.params[n] for n in self.adapted}
      for _ in range(self.spec.inner_steps):
        pred = self.model(user, batch["support_items"][t], {**self.params, **fast})
        loss = masked_mse(pred, batch["support_ratings"][t], batch["support_mask"][t])
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=second_order)
        fast = {n: w - self.lr(n) * g for (n, w), g in zip(fast.items(), grads)}
      pred = self.model(user, batch["query_items"][t], {**self.params, **fast})
      losses.append(masked_mse(pred, batch["query_ratings"][t], batch["query_mask"][t]))
    loss = torch.stack(losses).mean()
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(leaves, grads)]
    n = len(self.params)
    return loss.detach(), dict(zip(self.params, grads[:n])), dict(zip(self.lrs, grads[n:]))


class FuncPeer(_Peer):
  """``torch.func.vmap`` over tasks of ``functional_call`` + ``torch.func.grad`` inner steps."""

  def __init__(self, workload: Workload, meta: Any | None = None):
    super().__init__(workload, meta)
    from torch.func import functional_call, grad, grad_and_value, vmap
    spec, model, adapted = self.spec, self.model, self.adapted
    second_order = not spec.first_order

    def set_loss(params, user, items, ratings, mask):
      return masked_mse(functional_call(model, params, (user, items)), ratings, mask)

    def task_loss(params, lrs, user, s_items, s_ratings, s_mask, q_items, q_ratings, q_mask):
      fast = {n: params[n] for n in adapted}
      frozen = {n: v for n, v in params.items() if n not in fast}
      for _ in range(spec.inner_steps):
        g = grad(lambda f: set_loss({**frozen, **f}, user, s_items, s_ratings, s_mask))(fast)
        if not second_order:
          g = {n: v.detach() for n, v in g.items()}
        fast = {n: fast[n] - (lrs[n] if lrs else spec.inner_lr) * g[n] for n in fast}
      return set_loss({**frozen, **fast}, user, q_items, q_ratings, q_mask)

    batched = vmap(task_loss, in_dims=(None, None, 0, 0, 0, 0, 0, 0, 0))

    def mean_loss(params, lrs, batch):
      return batched(params, lrs, batch["user"], batch["support_items"], batch["support_ratings"],
                     batch["support_mask"], batch["query_items"], batch["query_ratings"],
                     batch["query_mask"]).mean()

    self._grad = grad_and_value(mean_loss, argnums=(0, 1))

  def meta_gradient(self, batch):
    params = {n: p.detach() for n, p in self.params.items()}
    lrs = {n: p.detach() for n, p in self.lrs.items()}
    (g_params, g_lrs), loss = self._grad(params, lrs, batch)
    return loss, g_params, g_lrs


PEERS = {"torch_loop": LoopPeer, "torch_func": FuncPeer}
