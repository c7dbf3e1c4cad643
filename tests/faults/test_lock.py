"""The run folder's lock: a second process is refused, a dead holder's lock is taken over; unwritable folders."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys

import pytest

from metarec_jax import config as cfg_lib
from metarec_jax import rundir
from metarec_jax.rundir import RunDir, RunDirLocked, RunDirWriteError
from tests.conftest import tiny_config


def _write_lock(folder, pid, host=None):
  folder.mkdir(parents=True, exist_ok=True)
  (folder / rundir.LOCK).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                                 "start": "2024-01-01T00:00:00", "command": "metarec run x.py"}))


@pytest.fixture
def sleeper():
  proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  yield proc.pid
  proc.kill()
  proc.wait()


def _dead_pid():
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


def test_a_live_holder_refuses_a_second_process(tmp_path, sleeper):
  wd = tmp_path / "wd"
  _write_lock(wd, sleeper)
  with pytest.raises(RunDirLocked, match=rf"workdir {wd} is in use by process {sleeper} on {socket.gethostname()}"):
    RunDir.create(wd, tiny_config(), lock=True)
  assert isinstance(RunDirLocked("x"), cfg_lib.ConfigError)  # the CLI prints it in one line
  assert json.loads((wd / "lock").read_text())["pid"] == sleeper  # untouched
  assert not (wd / "config.json").exists()  # nothing written


def test_another_hosts_lock_refuses_even_with_a_dead_pid(tmp_path):
  wd = tmp_path / "wd"
  _write_lock(wd, _dead_pid(), host="elsewhere.example")
  with pytest.raises(RunDirLocked, match="on elsewhere.example"):
    RunDir.create(wd, tiny_config(), lock=True)


def test_a_dead_holders_lock_is_taken_over_and_released(tmp_path, capsys):
  wd = tmp_path / "wd"
  dead = _dead_pid()
  _write_lock(wd, dead)
  (wd / ".env.json.tmp99999").write_text("half")  # a killed write's temporary file
  rd = RunDir.create(wd, tiny_config(), lock=True)
  assert f"taking over the stale lock of process {dead}" in capsys.readouterr().out
  held = json.loads((wd / "lock").read_text())
  assert held["pid"] == os.getpid() and held["host"] == socket.gethostname() and {"start", "command"} <= set(held)
  assert not (wd / ".env.json.tmp99999").exists()
  rd.close()
  assert not (wd / "lock").exists()


def test_the_lock_is_reentrant_within_a_process_and_eval_takes_it(tmp_path, sleeper):
  wd = tmp_path / "wd"
  with RunDir.create(wd, tiny_config(), lock=True):
    with RunDir.open(wd, lock=True):  # `metarec eval` runs `run` inside: the same process
      pass
    assert (wd / "lock").exists()
  assert not (wd / "lock").exists()
  assert RunDir.open(wd).path == wd and not (wd / "lock").exists()  # readers take no lock
  _write_lock(wd, sleeper)
  with pytest.raises(RunDirLocked, match=str(sleeper)):
    RunDir.open(wd, lock=True)


def test_an_unwritable_folder_is_one_line_naming_the_path(tmp_path, monkeypatch):
  def full(src, dst):
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(rundir.os, "replace", full)
  target = tmp_path / "wd" / "results.json"
  with pytest.raises(RunDirWriteError, match=rf"cannot write {target}: No space left on device") as err:
    rundir.write_text(target, "{}")
  assert err.value.errno == errno.ENOSPC and isinstance(err.value, ValueError)  # cli: one line
  assert "\n" not in str(err.value) and not list(target.parent.glob(".*tmp*"))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_run_folder_is_one_line_naming_the_path(tmp_path):
  wd = tmp_path / "wd"
  wd.mkdir()
  wd.chmod(0o555)
  try:
    with pytest.raises(RunDirWriteError, match=rf"cannot write {wd / 'config.json'}"):
      RunDir.create(wd, tiny_config())
  finally:
    wd.chmod(0o755)
