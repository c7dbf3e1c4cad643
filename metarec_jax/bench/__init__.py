"""Benchmarks: the meta-train step against PyTorch peers, scaling, serving latency.

PyTorch is optional (``pip install -e ".[bench]"``); without it the JAX side
runs alone and says so. Importing this package does not import PyTorch
(`metarec_jax.bench.torch_peers` does).
"""

from metarec_jax.bench.jax_step import JaxMetaStep, cost_flops, peak_bytes
from metarec_jax.bench.machine import cpu_peak
from metarec_jax.bench.meta_step import bench_meta_step
from metarec_jax.bench.serving_latency import bench_serving, workload_recommender
from metarec_jax.bench.timing import interleaved, percentile
from metarec_jax.bench.workload import (MELU_ITEM_FIELDS, MELU_USER_FIELDS, Field, Workload, WorkloadSpec,
                                        make_workload)
