"""The run log: metrics.jsonl, TensorBoard event files (read back here), W&B (a fake module) and the console."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import pathlib
import struct
import sys
import types
from typing import Any

import jax.numpy as jnp
import pytest

from metarec_jax import ConfigError, experiment
from metarec_jax.rundir import RunDir
from metarec_jax.runlog import RunLog, TensorBoardLog, console_line
from metarec_jax.train.loop import LoopSettings, train_loop
from tests.conftest import tiny_config

# ---------------------------------------------------------------------- reading event files back


def _crc32c_table() -> list[int]:
  table = []
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_TABLE = _crc32c_table()


def _masked_crc(data: bytes) -> int:
  """TFRecord's checksum: CRC-32C, rotated and offset."""
  c = 0xFFFFFFFF
  for b in data:
    c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
  c ^= 0xFFFFFFFF
  return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(path: pathlib.Path) -> list[Any]:
  """The `Event` protos of one event file (TFRecord: 8-byte length, its crc, the data, its crc)."""
  from tensorboardX.proto.event_pb2 import Event
  events, raw, at = [], path.read_bytes(), 0
  while at < len(raw):
    header = raw[at:at + 8]
    (length,) = struct.unpack("<Q", header)
    (length_crc,) = struct.unpack("<I", raw[at + 8:at + 12])
    assert length_crc == _masked_crc(header), f"{path}: bad length checksum at byte {at}"
    data = raw[at + 12:at + 12 + length]
    (data_crc,) = struct.unpack("<I", raw[at + 12 + length:at + 16 + length])
    assert data_crc == _masked_crc(data), f"{path}: bad data checksum at byte {at}"
    events.append(Event.FromString(data))
    at += 16 + length
  return events


def scalars(folder: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
  """tag -> [(step, value)] over every event file of a TensorBoard run folder, in file order."""
  out: dict[str, list[tuple[int, float]]] = {}
  for path in sorted(folder.glob("events.out.tfevents.*")):
    for event in read_events(path):
      for v in event.summary.value:
        if v.HasField("simple_value"):
          out.setdefault(v.tag, []).append((event.step, v.simple_value))
  return out


def texts(folder: pathlib.Path) -> dict[str, str]:
  out = {}
  for path in sorted(folder.glob("events.out.tfevents.*")):
    for event in read_events(path):
      for v in event.summary.value:
        if v.metadata.plugin_data.plugin_name == "text":
          out[v.tag.removesuffix("/text_summary")] = v.tensor.string_val[0].decode()
  return out


# ---------------------------------------------------------------------- a fake wandb


class FakeWandbRun:
  def __init__(self, **kwargs):
    self.kwargs = kwargs
    self.logged: list[dict[str, Any]] = []
    self.axes: list[tuple[str, str | None]] = []
    self.summary: dict[str, Any] = {}
    self.finished = False

  def define_metric(self, name, step_metric=None):
    self.axes.append((name, step_metric))

  def log(self, values):
    self.logged.append(dict(values))

  def finish(self):
    self.finished = True


def fake_wandb() -> types.ModuleType:
  module = types.ModuleType("wandb")
  module.runs = []

  def init(**kwargs):
    module.runs.append(FakeWandbRun(**kwargs))
    return module.runs[-1]

  module.init = init
  return module


# ---------------------------------------------------------------------- one tiny run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A tiny run of a baseline and maml without progress bars, logging to a fake W&B; its console output."""
  c = tiny_config()
  c.methods = ("global_mean", "maml")
  c.eval.scenarios = ("user_cold",)
  c.train.wandb_project = "metarec-test"
  wd = tmp_path_factory.mktemp("runlog") / "wd"
  wandb = fake_wandb()
  out = io.StringIO()
  with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
    mp.setitem(sys.modules, "wandb", wandb)
    experiment.run(c, wd, progress=False, verbose=False)
  log = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
  return c, wd, log, wandb, out.getvalue()


def test_tensorboard_scalars_equal_metrics_jsonl(run):
  c, wd, log, _, _ = run
  assert sorted(p.name for p in (wd / "tensorboard").iterdir()) == ["maml__seed0"]  # a baseline has no curves
  got = scalars(wd / "tensorboard" / "maml__seed0")
  train = [r for r in log if r.get("method") == "maml" and "loss" in r]
  valid = [r for r in log if r.get("method") == "maml" and "val_mae" in r]
  assert [s for s, _ in got["train/loss"]] == [r["step"] for r in train] == [4, 8, 12]
  assert [v for _, v in got["train/loss"]] == pytest.approx([r["loss"] for r in train], rel=1e-6)
  for key in ("support_loss", "grad_norm", "param_norm", "tasks_per_s"):
    assert [v for _, v in got[f"train/{key}"]] == pytest.approx([r[key] for r in train], rel=1e-6), key
  assert [s for s, _ in got["valid/val_mae"]] == [r["step"] for r in valid] == [0, 6, 12]
  assert [v for _, v in got["valid/val_mae"]] == pytest.approx([r["val_mae"] for r in valid], rel=1e-6)
  text = texts(wd / "tensorboard" / "maml__seed0")
  config = json.loads(text["config"].strip("`\n").removeprefix("json\n"))
  assert config == json.loads((wd / "config.json").read_text())
  assert json.loads(text["selection"].strip("`\n").removeprefix("json\n"))["valid"]["best_step"] in (0, 6, 12)


def test_console_line_every_log_step_without_progress(run):
  *_, out = run
  lines = [line for line in out.splitlines() if line.startswith("maml seed 0 step")]
  assert [line.split(":")[0] for line in lines] == [f"maml seed 0 step {s}/12" for s in (4, 8, 12)]
  for line in lines:
    assert " loss " in line and " grad_norm " in line and " val_mae " in line and line.endswith(" tasks/s")


def test_wandb_gets_every_record_under_the_method_and_seed(run):
  c, wd, log, wandb, _ = run
  assert len(wandb.runs) == 1
  w = wandb.runs[0]
  assert w.finished and w.kwargs["project"] == "metarec-test" and w.kwargs["dir"] == str(wd)
  assert w.kwargs["config"]["train.steps"] == c.train.steps
  assert ("maml__seed0/*", "maml__seed0/step") in w.axes
  losses = [(d["maml__seed0/step"], d["maml__seed0/train/loss"]) for d in w.logged if "maml__seed0/train/loss" in d]
  assert losses == [(r["step"], r["loss"]) for r in log if r.get("method") == "maml" and "loss" in r]
  assert w.summary["maml__seed0/selection/valid/best_step"] in (0, 6, 12)


def test_missing_wandb_is_a_one_line_error(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails
  c = tiny_config()
  c.train.wandb_project = "p"
  with pytest.raises(ConfigError, match=r"pip install metarec-jax\[wandb\]") as e:
    RunDir.create(tmp_path / "wd", c)
  assert "\n" not in str(e.value) and not (tmp_path / "wd").exists()


def test_tensorboard_off_and_other_processes_write_nothing(tmp_path):
  c = tiny_config()
  c.train.tensorboard = False
  assert RunDir.create(tmp_path / "wd", c).log.tensorboard is None
  silent = RunLog(tmp_path / "m.jsonl", tensorboard=tmp_path / "tb", writer=False)
  silent.begin("maml", 0, steps=4, eval_every=2, console=True)
  silent.write(method="maml", seed=0, step=1, loss=1.0)
  silent.end("maml", 0)
  silent.close()
  assert list(tmp_path.iterdir()) == [tmp_path / "wd"]


def test_resumed_writer_hides_the_steps_logged_again(tmp_path):
  first = TensorBoardLog(tmp_path)
  for step in (2, 4, 6):
    first.write({"method": "m", "seed": 0, "step": step, "loss": float(step)})
  first.close()
  again = TensorBoardLog(tmp_path)
  again.resume_at("m", 0, 4)  # the checkpoint of step 4: step 6 is logged again
  again.write({"method": "m", "seed": 0, "step": 6, "loss": 60.0})
  again.close()
  files = sorted((tmp_path / "m__seed0").glob("events.out.tfevents.*"))
  assert len(files) == 2
  starts = [e.step for e in read_events(files[1]) if e.HasField("session_log")]
  assert starts == [5]  # TensorBoard drops the first file's events from step 5 on
  assert scalars(tmp_path / "m__seed0")["train/loss"] == [(2, 2.0), (4, 4.0), (6, 6.0), (6, 60.0)]


# ---------------------------------------------------------------------- the console line, from the loop


@dataclasses.dataclass
class _State:
  step: Any
  params: Any


def _loop(progress: bool, log: Any = None, steps: int = 6):
  def step_fn(state, tasks, features):
    s = int(state.step) + 1
    return _State(jnp.asarray(s), state.params), {"loss": 1.0 / s, "grad_norm": 2.0, "param_norm": 3.0}

  settings = LoopSettings(steps=steps, tasks_per_batch=8, eval_every=3, log_every=2, checkpoint_every=100)
  return train_loop("m", 7, _State(jnp.asarray(0), {"w": jnp.zeros(2)}), step_fn, None, None,
                    sets=["valid", "valid_cold"], validate=lambda p: {"valid": 0.5, "valid_cold": 0.25},
                    settings=settings, log=log, progress=progress)


def test_loop_prints_a_line_per_log_step_without_progress_bar(capsys):
  _loop(progress=False)
  lines = capsys.readouterr().out.splitlines()
  assert [line.split(":")[0] for line in lines] == ["m seed 7 step 2/6", "m seed 7 step 4/6", "m seed 7 step 6/6"]
  assert lines[0].startswith("m seed 7 step 2/6: loss 0.5 grad_norm 2 val_mae 0.5 ") and lines[0].endswith(" tasks/s")
  _loop(progress=True)
  assert "seed 7 step" not in capsys.readouterr().out


def test_console_line_format():
  line = console_line("maml", 0, 100, 1000, {"loss": 0.81234, "grad_norm": 1.3, "tasks_per_s": 411.7},
                      ("val_mae", 0.77123))
  assert line == "maml seed 0 step 100/1000: loss 0.8123 grad_norm 1.3 val_mae 0.7712 412 tasks/s"
  assert console_line("maml", 0, 5, None, {"loss": 1.0}, None) == "maml seed 0 step 5: loss 1"
