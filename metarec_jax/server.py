"""``metarec serve``: an exported artifact behind a small HTTP JSON endpoint (standard library only).

    metarec serve exported/melu1 --port 8000
    curl -s localhost:8000/recommend -d '{"items": [1193, 661, 914], "ratings": [5, 3, 4], "k": 10}'
    -> {"items": [...], "scores": [...]}

Routes:

* ``POST /recommend`` with a JSON object: ``items`` (the rated items: the data
  set's ids when the artifact has them, else item rows), ``ratings`` (same
  length, within the rating scale), ``k`` (default 10), ``user`` (optional
  side features by field name, ids as in ``GET /health``), ``exclude_seen``
  (default true) -> ``{"items": [...], "scores": [...]}``, best first.
* ``GET /health`` -> ``{"status": "ok", "method", "items", "k_max",
  "max_support", "rating_scale", "item_ids", "user_fields"}``.

A malformed request (not JSON, wrong types, unknown fields or item ids,
ratings out of scale, empty or repeated items, lengths that differ, ``k``
out of range, a body over ``max_body`` bytes, an unknown path or method)
gets a 4xx with ``{"error": reason}``; an unexpected failure a 500 with
the same shape, and the server goes on.

Built on ``http.server.ThreadingHTTPServer`` (one thread per connection,
HTTP/1.1 keep-alive) rather than a web framework: the endpoint is one route
of JSON in and out whose cost is the model call (milliseconds), not the
HTTP parsing; the standard library keeps the artifact's runtime to jax and
numpy (the artifact carries a copy of this file: ``python
DIR/metarec_server.py --port 8000`` needs no metarec-jax), and an async
framework would gain nothing while the JAX call blocks. No TLS and no
authentication: it listens on 127.0.0.1 by default; put a reverse proxy in
front to expose it, or call `export.Artifact.recommend` from the web stack
you already run.
"""

from __future__ import annotations

import argparse
import http.server
import json
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable

if __package__:
  from metarec_jax.export import Artifact, RequestError, load_artifact
else:  # the artifact's own copy, metarec_server.py, run or imported beside metarec_artifact.py: no metarec-jax
  from metarec_artifact import Artifact, RequestError, load_artifact  # type: ignore[no-redef]

MAX_BODY = 1 << 20  # bytes of one request body
REQUEST_KEYS = ("items", "ratings", "k", "user", "exclude_seen")


DRAIN_LIMIT = 64 << 20  # bytes of a refused body read and dropped after the answer (so the client reads it)
DRAIN_SECONDS = 2.0


class _Reject(Exception):
  """An HTTP error answer: status and reason; ``close``: close the connection after, ``drain``: unread body bytes."""

  def __init__(self, status: int, reason: str, close: bool = False, drain: int = 0):
    super().__init__(reason)
    self.status, self.reason, self.close, self.drain = status, reason, close, drain


class RecommendHandler(http.server.BaseHTTPRequestHandler):
  """Answers ``POST /recommend`` and ``GET /health`` with the server's `export.Artifact`."""

  protocol_version = "HTTP/1.1"  # keep-alive: every answer has a Content-Length
  server_version = "metarec-serve/1"
  timeout = 30  # seconds a connection may sit idle or half-sent before it is closed
  disable_nagle_algorithm = True  # TCP_NODELAY: headers and body are two writes; Nagle + delayed ACK add 40 ms
  server: "RecommendServer"

  # ------------------------------------------------------------------ routes

  def do_GET(self) -> None:
    path = self.path.split("?", 1)[0]
    if path == "/health":
      self._send(200, self.server.health)
    elif path == "/recommend":
      self._send(405, {"error": "use POST for /recommend"}, allow="POST")
    else:
      self._send(404, {"error": f"unknown path {path!r}; routes: POST /recommend, GET /health"})

  def do_POST(self) -> None:
    path = self.path.split("?", 1)[0]
    try:
      try:
        body = self._body()  # read first: keep-alive needs the body consumed whatever the answer
      except OSError:  # the client went away or stalled past `timeout` mid-body
        self.close_connection = True
        return
      if path != "/recommend":
        raise _Reject(405 if path == "/health" else 404,
                      "use GET for /health" if path == "/health" else
                      f"unknown path {path!r}; routes: POST /recommend, GET /health")
      self._send(200, self.server.recommend(body))
    except _Reject as e:
      if e.close:
        self.close_connection = True
      self._send(e.status, {"error": e.reason}, allow="GET" if path == "/health" else None)
      if e.drain:
        self._discard(e.drain)
    except Exception as e:  # noqa: BLE001  (a bug, not the client's fault: answer 500, keep serving)
      traceback.print_exc(file=sys.stderr)
      self._send(500, {"error": f"internal error: {type(e).__name__}: {e}"})

  def _not_allowed(self) -> None:
    self.close_connection = True  # the body (if any) is not read
    self._send(405, {"error": f"method {self.command} not allowed; routes: POST /recommend, GET /health"},
               allow="GET, POST")

  do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed

  # ------------------------------------------------------------------ plumbing

  def _body(self) -> bytes:
    if self.headers.get("Transfer-Encoding"):
      raise _Reject(411, "chunked bodies are not supported: send Content-Length", close=True)
    length = self.headers.get("Content-Length")
    if length is None:
      raise _Reject(411, "missing Content-Length", close=True)
    try:
      size = int(length)
      if size < 0:
        raise ValueError
    except ValueError:
      raise _Reject(400, f"bad Content-Length {length!r}", close=True) from None
    if size > self.server.max_body:
      raise _Reject(413, f"body too large: {size} bytes > {self.server.max_body}", close=True, drain=size)
    return self.rfile.read(size)

  def _discard(self, size: int) -> None:
    """Reads and drops a refused body (bounded in bytes and time): a client that sends the whole body before
    reading the answer then gets the answer, not a connection reset."""
    try:
      self.wfile.flush()
      self.connection.settimeout(DRAIN_SECONDS)
      left = min(size, DRAIN_LIMIT)
      while left > 0:
        chunk = self.rfile.read1(min(left, 1 << 16)) if hasattr(self.rfile, "read1") else self.rfile.read(
            min(left, 1 << 16))
        if not chunk:
          break
        left -= len(chunk)
    except OSError:
      pass

  def _send(self, status: int, payload: Any, allow: str | None = None) -> None:
    data = json.dumps(payload).encode()
    try:
      self.send_response(status)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      if allow:
        self.send_header("Allow", allow)
      if self.close_connection:
        self.send_header("Connection", "close")
      self.end_headers()
      if self.command != "HEAD":
        self.wfile.write(data)
    except OSError:  # the client went away before its answer: nothing to tell it
      self.close_connection = True

  def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
    """The base class's errors (bad request line, unknown method, header too long) as JSON too."""
    if code == 501:  # an unknown method
      code, message = 405, f"method {self.command} not allowed; routes: POST /recommend, GET /health"
    if self.request_version == "HTTP/0.9":  # a garbled request line: answer with a status line and headers anyway
      self.request_version = "HTTP/1.0"
    self.close_connection = True
    self._send(code, {"error": message or self.responses.get(code, ("error",))[0]})

  def log_message(self, format: str, *args: Any) -> None:
    if self.server.log_requests:
      super().log_message(format, *args)


class RecommendServer(http.server.ThreadingHTTPServer):
  """A `ThreadingHTTPServer` answering with one `export.Artifact`.

  Args:
    address: ``(host, port)``; port 0 picks a free one (see ``server_address``).
    artifact: the loaded artifact.
    max_body: the largest request body in bytes.
    log_requests: print a line per request on stderr.
  """

  # Handler threads are joined on close (their open connections shut first, so it is prompt): a thread
  # still alive when the interpreter finalizes can abort the process in JAX's thread-local clean-up.
  daemon_threads = False
  block_on_close = True
  allow_reuse_address = True
  request_queue_size = 256  # many clients connecting at once are queued, not refused

  def __init__(self, address: tuple[str, int], artifact: Artifact, *, max_body: int = MAX_BODY,
               log_requests: bool = False):
    self.artifact = artifact
    self.max_body = int(max_body)
    self.log_requests = log_requests
    m = artifact.manifest
    self.health = {"status": "ok", "method": artifact.method, "items": artifact.num_items, "k_max": artifact.k_max,
                   "max_support": artifact.max_support, "rating_scale": list(artifact.rating_scale),
                   "item_ids": m["item_ids"]["kind"],
                   "user_fields": {f.name: {"kind": f.kind, "vocab_size": f.vocab_size, "width": f.width}
                                   for f in artifact.user_fields.values()}}
    self._open: set[socket.socket] = set()
    self._open_lock = threading.Lock()
    super().__init__(address, RecommendHandler)

  def process_request(self, request, client_address) -> None:
    with self._open_lock:
      self._open.add(request)
    super().process_request(request, client_address)

  def shutdown_request(self, request) -> None:
    with self._open_lock:
      self._open.discard(request)
    super().shutdown_request(request)

  def server_close(self) -> None:
    """Stops listening, shuts the open connections (idle keep-alive ones would wait out `RecommendHandler.timeout`)
    and joins their threads (a request being answered finishes first)."""
    self.socket.close()
    with self._open_lock:
      still_open = list(self._open)
    for connection in still_open:
      try:
        connection.shutdown(socket.SHUT_RD)
      except OSError:
        pass
    super().server_close()

  @property
  def url(self) -> str:
    host, port = self.server_address[:2]
    return f"http://{host}:{port}"

  def recommend(self, body: bytes) -> dict[str, Any]:
    """A request body -> the answer; `_Reject` (400) on a malformed request."""
    try:
      request = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
      raise _Reject(400, f"the body is not JSON: {e}") from None
    if not isinstance(request, dict):
      raise _Reject(400, "the body must be a JSON object with items, ratings, k (and optionally user, exclude_seen)")
    unknown = sorted(set(request) - set(REQUEST_KEYS))
    if unknown:
      raise _Reject(400, f"unknown key {unknown[0]!r}; keys: {', '.join(REQUEST_KEYS)}")
    missing = [key for key in ("items", "ratings") if key not in request]
    if missing:
      raise _Reject(400, f"missing {missing[0]!r}")
    try:
      items, scores = self.artifact.recommend(request["items"], request["ratings"], request.get("k", 10),
                                              request.get("user"), request.get("exclude_seen", True))
    except RequestError as e:
      raise _Reject(400, str(e)) from None
    return {"items": items.tolist(), "scores": [float(s) for s in scores]}


def make_server(artifact: Artifact | str, host: str = "127.0.0.1", port: int = 0, **kwargs) -> RecommendServer:
  """A `RecommendServer` on ``host:port`` (not yet serving: call ``serve_forever``, e.g. in a thread).

  Args:
    artifact: a loaded `export.Artifact`, or its folder.
    host, port: where to listen (port 0: a free one).
    **kwargs: `RecommendServer`'s ``max_body``, ``log_requests``.
  """
  if not isinstance(artifact, Artifact):
    artifact = load_artifact(artifact)
  return RecommendServer((host, int(port)), artifact, **kwargs)


def serve(path: str, host: str = "127.0.0.1", port: int = 8000, *, warmup: bool = True, max_body: int = MAX_BODY,
          log_requests: bool = False, log: Callable[[str], None] = print) -> None:
  """Loads the artifact at ``path`` and serves it until Ctrl-C (then closes the socket and returns).

  Args:
    path: the artifact folder (``metarec export``).
    host, port: where to listen (port 0: a free one; the first line printed says which).
    warmup: compile every support bucket before listening (else the first request of each length waits).
    max_body: the largest request body in bytes.
    log_requests: a line per request on stderr.
    log: where the status lines go.
  """
  t0 = time.perf_counter()
  artifact = load_artifact(path)
  if warmup:
    artifact.warmup()
  try:
    server = make_server(artifact, host, port, max_body=max_body, log_requests=log_requests)
  except OSError as e:
    raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
  log(f"serving {artifact.method} ({artifact.num_items:,} items, k <= {artifact.k_max}, "
      f"support <= {artifact.max_support}) on {server.url} (POST /recommend, GET /health); "
      f"ready in {time.perf_counter() - t0:.1f} s; Ctrl-C stops")
  previous = None
  if threading.current_thread() is threading.main_thread():  # SIGTERM (docker stop, systemd) stops as Ctrl-C does
    previous = signal.signal(signal.SIGTERM, _interrupt)
  try:
    server.serve_forever(poll_interval=0.5)
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)
  log("stopped")


def _interrupt(signum, frame) -> None:
  raise KeyboardInterrupt


def serve_in_thread(server: RecommendServer) -> threading.Thread:
  """Runs ``server.serve_forever`` in a daemon thread (tests, notebooks); stop with ``server.shutdown()``."""
  thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
  thread.start()
  return thread


def main(argv: list[str] | None = None) -> int:
  """``python DIR/metarec_server.py [--port N] [--host H]``: the artifact's own copy, no metarec-jax needed."""
  import pathlib
  parser = argparse.ArgumentParser(description="Serve the metarec artifact this file sits in (or --artifact DIR).")
  parser.add_argument("--artifact", default=str(pathlib.Path(__file__).resolve().parent),
                      help="the artifact folder (default: this file's folder)")
  parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
  parser.add_argument("--port", type=int, default=8000, help="port, 0 for a free one (default: 8000)")
  parser.add_argument("--max-body", type=int, default=MAX_BODY, help=f"largest request body in bytes "
                      f"(default: {MAX_BODY})")
  parser.add_argument("--no-warmup", action="store_true", help="compile at the first request of each length")
  args = parser.parse_args(argv)
  try:
    serve(args.artifact, args.host, args.port, warmup=not args.no_warmup, max_body=args.max_body)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
