"""``metarec serve``: the HTTP JSON endpoint over an exported artifact, good and malformed requests."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import jax
import numpy as np
import pytest

from metarec_jax.cli import main
from metarec_jax.data.tasks import features_from_tables
from metarec_jax.export import SERVER_COPY, export_recommender, load_artifact
from metarec_jax.meta.learners import init_meta_params, learner_spec
from metarec_jax.models.model import RecModel, init_params
from metarec_jax.server import make_server, serve_in_thread
from metarec_jax.serving import Recommender

RAW = lambda row: 1000 + 3 * row  # noqa: E731  (the data set's item ids: not the rows)


@pytest.fixture(scope="module")
def artifact_dir(tiny_data, tmp_path_factory):
  features = features_from_tables(tiny_data.users, tiny_data.items)
  model = RecModel(tiny_data.users.specs, tiny_data.items.specs, embed_dim=3, head_hidden=(5,), offset=3.5)
  spec = learner_spec("anil", inner_lr=0.1, inner_steps=1)
  rec = Recommender(model, spec, init_meta_params(spec, init_params(model, features, jax.random.PRNGKey(0))),
                    features, name="anil")
  out = tmp_path_factory.mktemp("serve") / "artifact"
  export_recommender(rec, out, k_max=20, max_support=40, item_raw_ids=[RAW(i) for i in range(rec.num_items)],
                     platforms=("cpu",), verify=False)
  return out


@pytest.fixture(scope="module")
def server(artifact_dir):
  server = make_server(load_artifact(artifact_dir, warmup=True), port=0)
  thread = serve_in_thread(server)
  yield server
  server.shutdown()
  server.server_close()
  thread.join(5)


def request(conn: http.client.HTTPConnection, method: str, path: str, body=None, headers=None):
  if body is not None and not isinstance(body, (bytes, str)):
    body = json.dumps(body)
  conn.request(method, path, body=body, headers=headers or {})
  response = conn.getresponse()
  data = response.read()
  assert response.getheader("Content-Type") == "application/json"
  return response.status, json.loads(data)


def connect(server) -> http.client.HTTPConnection:
  host, port = server.server_address[:2]
  return http.client.HTTPConnection(host, port, timeout=10)


GOOD = {"items": [RAW(5), RAW(17), RAW(2)], "ratings": [5, 3, 4.5], "k": 5}


def test_health_and_recommend(server, artifact_dir):
  with urllib.request.urlopen(server.url + "/health", timeout=10) as r:
    health = json.loads(r.read())
  assert health["status"] == "ok" and health["method"] == "anil" and health["items"] == 120
  assert health["k_max"] == 20 and health["max_support"] == 40 and health["item_ids"] == "raw"
  assert health["user_fields"]["gender"] == {"kind": "categorical", "vocab_size": 3, "width": 1}
  art = load_artifact(artifact_dir)
  post = urllib.request.Request(server.url + "/recommend", data=json.dumps(GOOD).encode(), method="POST",
                                headers={"Content-Type": "application/json"})
  with urllib.request.urlopen(post, timeout=10) as r:
    got = json.loads(r.read())
  ids, scores = art.recommend(GOOD["items"], GOOD["ratings"], 5)
  assert got["items"] == ids.tolist() and all(i % 3 == 1000 % 3 for i in got["items"])  # raw ids out
  np.testing.assert_allclose(got["scores"], scores, rtol=1e-6)
  conn = connect(server)  # one keep-alive connection: user fields, exclude_seen, the default k
  status, body = request(conn, "POST", "/recommend", {**GOOD, "user": {"gender": 1, "age": 3}})
  want, _ = art.recommend(GOOD["items"], GOOD["ratings"], 5, user={"gender": 1, "age": 3})
  assert status == 200 and body["items"] == want.tolist()
  status, body = request(conn, "POST", "/recommend", {**GOOD, "k": 20, "exclude_seen": False})
  want, _ = art.recommend(GOOD["items"], GOOD["ratings"], 20, exclude_seen=False)
  assert status == 200 and body["items"] == want.tolist()
  status, body = request(conn, "POST", "/recommend", {"items": GOOD["items"], "ratings": GOOD["ratings"]})
  assert status == 200 and len(body["items"]) == 10
  conn.close()


MALFORMED = [
    (b"{not json", 400, "the body is not JSON"),
    (b"\xff\xfe", 400, "the body is not JSON"),
    ([1, 2], 400, "must be a JSON object"),
    ({"ratings": [3]}, 400, "missing 'items'"),
    ({"items": [RAW(1)]}, 400, "missing 'ratings'"),
    ({**GOOD, "rating": 1}, 400, "unknown key 'rating'"),
    ({**GOOD, "items": "1003"}, 400, "items must be a list, got a string"),
    ({**GOOD, "items": [RAW(5), "1051", RAW(2)]}, 400, "items[1] must be an integer"),
    ({**GOOD, "items": [RAW(5), 1001, RAW(2)]}, 400, "unknown item id 1001"),
    ({**GOOD, "items": [RAW(5), RAW(120), RAW(2)]}, 400, "unknown item id 1360"),
    ({**GOOD, "ratings": [5, 3, 6]}, 400, "ratings[2] = 6 is outside the rating scale [1, 5]"),
    ({**GOOD, "ratings": [5, 0.5, 1]}, 400, "outside the rating scale"),
    ({**GOOD, "ratings": [5, None, 1]}, 400, "ratings[1] must be a number, got null"),
    ({**GOOD, "ratings": [5, 3]}, 400, "3 items but 2 ratings"),
    ({"items": [], "ratings": []}, 400, "items is empty"),
    ({**GOOD, "items": [RAW(5), RAW(17), RAW(5)]}, 400, "item 1015 appears more than once"),
    ({**GOOD, "items": [RAW(i) for i in range(41)], "ratings": [3] * 41}, 400, "too many rated items: 41 > 40"),
    ({**GOOD, "k": 0}, 400, "k must lie in [1, 20]"),
    ({**GOOD, "k": 21}, 400, "k must lie in [1, 20] (k_max)"),
    ({**GOOD, "k": "5"}, 400, "k must be an integer, got a string"),
    ({**GOOD, "k": True}, 400, "k must be an integer, got a boolean"),
    ({**GOOD, "user": {"gender": 7}}, 400, "user field 'gender': id 7 outside [0, 3)"),
    ({**GOOD, "user": {"height": 1}}, 400, "unknown user field 'height'"),
    ({**GOOD, "user": "F"}, 400, "user must be an object"),
    ({**GOOD, "exclude_seen": 1}, 400, "exclude_seen must be true or false"),
]


def test_malformed_requests_get_a_4xx_with_a_reason_and_the_server_goes_on(server):
  conn = connect(server)  # all on one keep-alive connection: each error answer leaves it usable
  for body, status, reason in MALFORMED:
    got, answer = request(conn, "POST", "/recommend", body)
    assert (got, list(answer)) == (status, ["error"]), (body, answer)
    assert reason in answer["error"], (body, answer)
  for method, path, status, reason in (("GET", "/nope", 404, "unknown path '/nope'"),
                                       ("POST", "/nope", 404, "unknown path"),
                                       ("GET", "/recommend", 405, "use POST"),
                                       ("POST", "/health", 405, "use GET")):
    got, answer = request(conn, method, path, b"{}" if method == "POST" else None)
    assert got == status and reason in answer["error"]
  status, body = request(conn, "POST", "/recommend", GOOD)
  assert status == 200 and len(body["items"]) == 5
  conn.close()
  conn = connect(server)
  assert request(conn, "DELETE", "/recommend") == (405, {"error": "method DELETE not allowed; routes: "
                                                                  "POST /recommend, GET /health"})
  conn.close()


def raw_exchange(server, data: bytes) -> tuple[int, dict]:
  """Sends raw bytes; the answer's status and JSON body (read by its Content-Length)."""
  with socket.create_connection(server.server_address[:2], timeout=10) as s:
    s.sendall(data)
    response = http.client.HTTPResponse(s)
    response.begin()
    assert response.getheader("Connection") == "close"
    return response.status, json.loads(response.read())


def test_oversized_unframed_and_garbled_requests(server):
  too_big = server.max_body + 1
  status, answer = raw_exchange(server, f"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: {too_big}\r\n\r\n"
                                .encode() + b"{")
  assert status == 413 and "body too large" in answer["error"]
  status, answer = raw_exchange(server, b"POST /recommend HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
  assert status == 411 and "Content-Length" in answer["error"]
  status, answer = raw_exchange(server, b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: -4\r\n\r\n")
  assert status == 400 and "bad Content-Length" in answer["error"]
  status, answer = raw_exchange(server, b"HELLO THERE\r\n\r\n")
  assert 400 <= status < 500 and answer["error"]
  with pytest.raises(urllib.error.HTTPError) as e:  # the body is larger than the limit: refused unread
    urllib.request.urlopen(urllib.request.Request(server.url + "/recommend", data=b" " * too_big), timeout=10)
  assert e.value.code == 413
  with urllib.request.urlopen(server.url + "/health", timeout=10) as r:
    assert r.status == 200


def test_concurrent_clients_get_their_own_answers(server, artifact_dir):
  art = load_artifact(artifact_dir)
  rng = np.random.default_rng(0)
  users = []
  for _ in range(12):
    n = int(rng.integers(1, 40))
    rows = rng.choice(120, size=n, replace=False)
    users.append({"items": [RAW(int(r)) for r in rows], "ratings": rng.integers(1, 6, size=n).tolist(), "k": 8})
  want = [art.recommend(u["items"], u["ratings"], 8)[0].tolist() for u in users]
  results = {}

  def client(c):
    conn = connect(server)
    for i in range(c % 3, len(users), 3):
      results[(c, i)] = request(conn, "POST", "/recommend", users[i])
    conn.close()

  threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(60)
  assert len(results) == sum(len(range(c % 3, 12, 3)) for c in range(8))
  for (c, i), (status, body) in results.items():
    assert status == 200 and body["items"] == want[i]


def test_ctrl_c_stops_the_artifacts_own_server(artifact_dir):
  # The artifact's copy of the server, started as a user would; SIGINT (Ctrl-C) stops it with status 0.
  proc = subprocess.Popen([sys.executable, "-u", str(artifact_dir / SERVER_COPY), "--port", "0", "--no-warmup"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    line = proc.stdout.readline()
    assert "serving anil (120 items" in line, line + proc.stderr.read()
    url = line.split(" on ", 1)[1].split()[0]
    with urllib.request.urlopen(url + "/health", timeout=10) as r:
      assert json.loads(r.read())["status"] == "ok"
    idle = http.client.HTTPConnection(*url[len("http://"):].split(":"), timeout=10)  # an open keep-alive connection
    assert request(idle, "POST", "/recommend", GOOD)[0] == 200
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    idle.close()
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0 and "stopped" in out and "Traceback" not in err, err
  assert time.perf_counter() - t0 < 5  # the idle connection is shut, not waited out (30 s)


def test_serve_command_failures(server, artifact_dir, tmp_path, capsys):
  assert main(["serve", str(tmp_path), "--port", "0"]) == 2
  busy = server.server_address[1]
  assert main(["serve", str(artifact_dir), "--port", str(busy), "--no-warmup"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 2 and "not an exported artifact" in err[0] and f"cannot listen on 127.0.0.1:{busy}" in err[1]
  with pytest.raises(SystemExit):
    main(["serve", "--help"])
  assert "(default: 8000)" in capsys.readouterr().out
