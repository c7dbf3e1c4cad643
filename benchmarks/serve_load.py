"""Benchmark: ``metarec serve`` under load on localhost: p50 / p99 latency and throughput at 1, 8 and 64 clients.

Command:   METAREC_DATA=/path/to/data python benchmarks/serve_load.py [--workdir runs/serve_load]
               [--methods melu1,melu_ridge] [--steps 300] [--clients 1,8,64] [--seconds 15] [--json FILE]
Runtime:   about 6 minutes on a 2-core CPU, training included (3 minutes with a trained --workdir)
Measured:  benchmarks/README.md, "Serving over HTTP"

Steps:

1. Trains, unless ``--workdir`` holds a finished run: ``metarec run
   experiments/melu_ml1m.py --set methods=melu1,melu_ridge --set
   train.steps=300 --workdir W`` (the MeLU ML-1M experiment with two of its
   methods and 300 instead of 1,000 meta-training steps: latency does not
   depend on how long it trained).
2. Exports each method: ``metarec export W --method M --out W/export/M``.
3. Starts ``metarec serve W/export/M --port 0`` in a subprocess (warm-up
   compiles every support bucket before it listens).
4. Builds the requests from real ML-1M users: MeLU's user-cold state file
   (users the runs never trained on), users with 13..100 ratings as the
   protocol keeps them, each user's ratings less 10 random ones (the query set
   evaluation holds out) as ``items`` / ``ratings`` in the data set's movie
   ids, their gender, age, occupation and zip ids as ``user``, ``k`` = 10.
5. For each number of clients: that many threads, each with its own
   keep-alive ``http.client`` connection, send requests back to back (cycling
   over the users from a different offset) for ``--seconds`` after one
   untimed request each. Latency is a client's send-to-parsed-answer time;
   throughput is answered requests over the timed wall time. Every answer
   must be a 200 with ``k`` items.
6. For reference, the same users through ``Artifact.recommend`` in this
   process, one at a time (no HTTP): the model's share of the latency.

The clients run in this process and share the machine with the server: on a
2-core machine the numbers at 8 and 64 clients are the two processes
competing for the cores, not the server alone.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pathlib
import platform
import subprocess
import sys
import threading
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXPERIMENT = ROOT / "experiments" / "melu_ml1m.py"
QUERY = 10  # ratings held out per user, as the protocol's query set


def percentile(values: list[float], q: float) -> float:
  """Nearest-rank percentile (as `metarec_jax.bench.timing.percentile`)."""
  ordered = sorted(values)
  return ordered[max(1, int(np.ceil(q / 100 * len(ordered)))) - 1]


def log(message: str) -> None:
  print(f"[serve_load] {message}", file=sys.stderr, flush=True)


def metarec(*args: str) -> list[str]:
  return [sys.executable, "-m", "metarec_jax.cli", *args]


def train(workdir: pathlib.Path, methods: list[str], steps: int) -> float:
  """Runs the shrunk experiment unless the workdir has finished it; returns the seconds spent."""
  if (workdir / "results.json").is_file():
    log(f"using the finished run in {workdir}")
    return 0.0
  command = metarec("run", str(EXPERIMENT), "--set", f"methods={','.join(methods)}", "--set", f"train.steps={steps}",
                    "--workdir", str(workdir), "--no-progress")
  log("training: " + " ".join(command[2:]))
  t0 = time.perf_counter()
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
  return time.perf_counter() - t0


def user_requests(k: int, seed: int = 0) -> list[dict]:
  """One request per user-cold ML-1M user with 13..100 ratings: all but 10 random ratings, demographics, k."""
  import warnings

  from metarec_jax import load_experiment
  from metarec_jax.data.parsing import DataWarning
  from metarec_jax.prepared import load_dataset

  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DataWarning)
    data = load_dataset(load_experiment(str(EXPERIMENT)).data)
  ratings = data.scenarios["user_cold"]
  rng = np.random.default_rng(seed)
  order = np.argsort(ratings.user, kind="stable")
  users, starts = np.unique(ratings.user[order], return_index=True)
  requests = []
  for user, rows in zip(users, np.split(order, starts[1:])):
    if not 13 <= len(rows) <= 100:
      continue
    support = rng.permutation(rows)[QUERY:]
    requests.append({
        "items": [int(data.item_raw_ids[i]) for i in ratings.item[support]],
        "ratings": [float(r) for r in ratings.rating[support]],
        "k": k,
        "user": {name: int(data.users.columns[name][user]) for name in ("gender", "age", "occupation", "zip")},
    })
  return requests


class Server:
  """``metarec serve DIR --port 0`` in a subprocess; its URL from the first line it prints."""

  def __init__(self, artifact: pathlib.Path):
    self.proc = subprocess.Popen(metarec("serve", str(artifact), "--port", "0"), stdout=subprocess.PIPE, text=True)
    line = self.proc.stdout.readline()
    if " on http://" not in line:
      self.proc.kill()
      raise RuntimeError(f"metarec serve did not start: {line!r}")
    host_port = line.split(" on http://", 1)[1].split()[0]
    self.host, port = host_port.rsplit(":", 1)
    self.port = int(port)
    self.ready = line.strip()

  def stop(self) -> int:
    """Ctrl-C (SIGINT); the exit status (0: stopped cleanly)."""
    self.proc.send_signal(2)
    try:
      return self.proc.wait(20)
    except subprocess.TimeoutExpired:
      self.proc.kill()
      return self.proc.wait()


def load(server: Server, bodies: list[bytes], k: int, clients: int, seconds: float) -> dict:
  """``clients`` threads sending requests back to back for ``seconds``; latency percentiles and throughput."""
  latencies: list[list[float]] = [[] for _ in range(clients)]
  errors: list[str] = []
  start = threading.Barrier(clients + 1)
  stop_at = [0.0]

  def client(c: int) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    headers = {"Content-Type": "application/json"}
    i = (c * 997) % len(bodies)

    def one() -> None:
      nonlocal i
      conn.request("POST", "/recommend", body=bodies[i], headers=headers)
      response = conn.getresponse()
      answer = json.loads(response.read())
      if response.status != 200 or len(answer.get("items", ())) != k:
        errors.append(f"{response.status}: {answer}")
      i = (i + 1) % len(bodies)

    try:
      one()  # untimed: opens the connection
      start.wait()
      while True:
        t0 = time.perf_counter()
        if t0 >= stop_at[0]:
          break
        one()
        latencies[c].append(time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001
      errors.append(f"{type(e).__name__}: {e}")
      if not start.broken:
        start.abort()
    finally:
      conn.close()

  threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
  for t in threads:
    t.start()
  stop_at[0] = float("inf")
  try:
    start.wait(120)
  except threading.BrokenBarrierError:
    pass
  t0 = time.perf_counter()
  stop_at[0] = t0 + seconds
  for t in threads:
    t.join()
  wall = time.perf_counter() - t0
  ms = [x * 1e3 for per in latencies for x in per]
  if errors:
    raise RuntimeError(f"{len(errors)} failed requests at {clients} clients, e.g. {errors[0]}")
  return {"clients": clients, "requests": len(ms), "seconds": round(wall, 2),
          "p50_ms": round(percentile(ms, 50), 2), "p99_ms": round(percentile(ms, 99), 2),
          "mean_ms": round(float(np.mean(ms)), 2), "throughput_rps": round(len(ms) / wall, 1)}


def in_process(artifact: pathlib.Path, requests: list[dict], seconds: float) -> dict:
  """The same requests through `Artifact.recommend`, one at a time, no HTTP."""
  from metarec_jax.export import load_artifact
  art = load_artifact(artifact, warmup=True)
  ms, i, t_end = [], 0, time.perf_counter() + seconds
  while time.perf_counter() < t_end:
    r = requests[i % len(requests)]
    t0 = time.perf_counter()
    art.recommend(r["items"], r["ratings"], r["k"], r["user"])
    ms.append((time.perf_counter() - t0) * 1e3)
    i += 1
  return {"requests": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p99_ms": round(percentile(ms, 99), 2)}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default=str(ROOT / "runs" / "serve_load"),
                      help="a run of experiments/melu_ml1m.py with --methods (trained when absent; "
                           "default: runs/serve_load)")
  parser.add_argument("--methods", default="melu1,melu_ridge", help="methods to train, export and serve "
                      "(default: melu1,melu_ridge)")
  parser.add_argument("--steps", type=int, default=300, help="meta-training steps when training (default: 300)")
  parser.add_argument("--clients", default="1,8,64", help="concurrent clients per level (default: 1,8,64)")
  parser.add_argument("--seconds", type=float, default=15.0, help="timed seconds per level (default: 15)")
  parser.add_argument("--k", type=int, default=10, help="items per request (default: 10)")
  parser.add_argument("--json", help="also write the results to this file")
  args = parser.parse_args(argv)
  if not os.environ.get("METAREC_DATA"):
    parser.error("set METAREC_DATA to the folder holding melu-ml1m")
  methods = [m for m in args.methods.split(",") if m]
  levels = [int(c) for c in args.clients.split(",")]
  workdir = pathlib.Path(args.workdir)

  train_s = train(workdir, methods, args.steps)
  requests = user_requests(args.k)
  sizes = [len(r["items"]) for r in requests]
  log(f"{len(requests)} user-cold ML-1M users, support {min(sizes)}..{max(sizes)} ratings (median "
      f"{int(np.median(sizes))})")
  bodies = [json.dumps(r).encode() for r in requests]
  result = {"workdir": str(workdir), "train_seconds": round(train_s, 1), "users": len(requests),
            "support": [min(sizes), int(np.median(sizes)), max(sizes)], "k": args.k, "seconds": args.seconds,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "methods": {}}
  for method in methods:
    artifact = workdir / "export" / method
    t0 = time.perf_counter()
    subprocess.run(metarec("export", str(workdir), "--method", method, "--out", str(artifact)), check=True,
                   stdout=subprocess.DEVNULL)
    export_s = time.perf_counter() - t0
    server = Server(artifact)
    log(server.ready)
    rows = []
    try:
      for clients in levels:
        before = os.getloadavg()[0]
        row = load(server, bodies, args.k, clients, args.seconds)
        row["load_avg_before"] = round(before, 2)
        rows.append(row)
        log(f"{method}: {clients:>3} clients: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
            f"{row['throughput_rps']} req/s ({row['requests']} requests)")
    finally:
      status = server.stop()
    if status != 0:
      raise RuntimeError(f"metarec serve exited with status {status} on Ctrl-C")
    reference = in_process(artifact, requests, min(args.seconds, 10.0))
    log(f"{method}: in-process Artifact.recommend: p50 {reference['p50_ms']} ms, p99 {reference['p99_ms']} ms")
    result["methods"][method] = {"export_seconds": round(export_s, 1), "levels": rows, "in_process": reference}
  text = json.dumps(result, indent=1)
  if args.json:
    pathlib.Path(args.json).write_text(text + "\n")
  print(text)
  print(table(result))
  return 0


def table(result: dict) -> str:
  """The results as the markdown table of benchmarks/README.md."""
  lines = ["| method | clients | p50 ms | p99 ms | requests/s | in-process p50 / p99 ms |",
           "|---|---:|---:|---:|---:|---|"]
  for method, r in result["methods"].items():
    ref = r["in_process"]
    for row in r["levels"]:
      lines.append(f"| {method} | {row['clients']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
                   f"{row['throughput_rps']:.0f} | {ref['p50_ms']:.1f} / {ref['p99_ms']:.1f} |")
  return "\n".join(lines)


if __name__ == "__main__":
  sys.exit(main())
