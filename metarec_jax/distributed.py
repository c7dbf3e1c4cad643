"""Many hosts with JAX's multi-controller runtime (opt-in: ``metarec run --distributed``).

Every process runs the same program on the same data: the experiment, the
data files and the seeds are read identically everywhere, and the task batch
of a meta-train step is sharded over the *global* mesh (every device of every
process, `meta.step.task_mesh`). XLA all-reduces the meta-gradient across
hosts; on CPU it does so through the gloo collectives, which `initialize`
switches on. Only process 0 writes the run folder (`rundir.RunDir`);
checkpoints are written by all processes together (orbax), so every process
can resume.

``initialize()`` with no arguments lets JAX find the cluster itself (Cloud
TPU pods, Slurm, Open MPI, Kubernetes); elsewhere give the coordinator's
``HOST:PORT``, the number of processes and this process's id (or set
``JAX_COORDINATOR_ADDRESS``, which JAX reads).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


class DistributedError(RuntimeError):
  """The multi-controller runtime could not start (said with the flags to give)."""


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, initialization_timeout: int = 300) -> None:
  """Joins this process to the multi-controller runtime (`jax.distributed.initialize`).

  Call it before anything touches a JAX device. CPU collectives (gloo) are
  switched on first, so processes on CPU can all-reduce; this changes nothing
  on GPU or TPU.

  Args:
    coordinator_address: ``HOST:PORT`` of process 0's coordinator service;
      None: ``JAX_COORDINATOR_ADDRESS`` or the cluster's own (TPU, Slurm,
      Open MPI).
    num_processes: how many processes take part; None: detected.
    process_id: this process's id in ``0 .. num_processes - 1``; None:
      detected.
    initialization_timeout: seconds to wait for every process to join.

  Raises:
    DistributedError: JAX was used before this call, the runtime is already up,
      or the cluster could not be joined (the message says which argument
      to give).
  """
  if num_processes is not None and num_processes < 1:
    raise ValueError(f"num_processes must be >= 1, got {num_processes}")
  if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
    raise ValueError(f"process_id must be in 0 .. {num_processes - 1}, got {process_id}")
  enable_cpu_collectives()
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, initialization_timeout=initialization_timeout)
  except (RuntimeError, ValueError) as e:
    raise DistributedError(
        f"jax.distributed.initialize failed: {e}\nOn a TPU pod, under Slurm or Open MPI no arguments are needed; "
        "elsewhere pass --coordinator HOST:PORT --num-processes N --process-id I (the same HOST:PORT and N on "
        "every process), before any JAX computation.") from e


def enable_cpu_collectives(implementation: str = "gloo") -> None:
  """Lets CPU processes all-reduce across hosts (a no-op for GPU and TPU devices).

  Raises:
    DistributedError: the installed jaxlib has no CPU collectives.
  """
  try:
    current = jax.config.jax_cpu_collectives_implementation
  except AttributeError:
    raise DistributedError(f"jax {jax.__version__} has no CPU collectives (jax_cpu_collectives_implementation); "
                       "multi-process runs on CPU need a newer jax") from None
  if current in (None, "", "none"):
    jax.config.update("jax_cpu_collectives_implementation", implementation)


def is_multiprocess() -> bool:
  """Whether more than one process takes part (after `initialize`)."""
  return jax.process_count() > 1


def is_primary() -> bool:
  """Whether this is process 0, the one that writes the run folder, logs and results."""
  return jax.process_index() == 0


def replicate_global(tree: Any, mesh: Mesh) -> Any:
  """Every leaf of ``tree`` as one global array, replicated on all devices of ``mesh``.

  Each process passes its own copy of the same value (every process reads
  the same data with the same seeds); each places it on its addressable
  devices of the mesh. Leaves that are already global arrays on the mesh are
  kept; other jax arrays must be fully replicated (their local value is
  used). PRNG key arrays keep their key type.
  """
  sharding = NamedSharding(mesh, PartitionSpec())

  def put(x):
    if isinstance(x, jax.Array):
      if x.sharding == sharding:
        return x
      if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
      if not x.is_fully_addressable and not x.is_fully_replicated:
        raise ValueError(f"cannot replicate a sharded global array of shape {x.shape}: gather it first")
      x = np.asarray(x.addressable_data(0))
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree_util.tree_map(put, tree)


def shard_global(tree: Any, mesh: Mesh, axis: str) -> Any:
  """Every leaf of ``tree`` (the same full value on each process) split along its first dimension over ``axis``.

  Each process supplies the whole array and keeps only the rows its devices
  hold, so nothing crosses hosts. The first dimension must be a multiple of
  the mesh axis's size.

  Raises:
    ValueError: a leaf's first dimension does not divide over the axis.
  """
  sharding = NamedSharding(mesh, PartitionSpec(axis))
  size = mesh.shape[axis]

  def put(x):
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] % size:
      raise ValueError(f"cannot shard shape {x.shape} over the {size} devices of mesh axis {axis!r}")
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree_util.tree_map(put, tree)


def to_local(tree: Any) -> Any:
  """Every fully replicated global array of ``tree`` as a host numpy array (the same on each process).

  For handing results of a global computation to code that runs on one
  process's devices (evaluation, serving, writing files).

  Raises:
    ValueError: a leaf is sharded rather than replicated.
  """
  def get(x):
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
      return x
    if not x.is_fully_replicated:
      raise ValueError(f"a sharded global array of shape {x.shape} has no local copy; replicate it first")
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(np.asarray(jax.random.key_data(x).addressable_data(0)),
                                      impl=jax.random.key_impl(x))
    return np.asarray(x.addressable_data(0))

  return jax.tree_util.tree_map(get, tree)
