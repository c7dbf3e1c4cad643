"""metarec data download: checksums on local files and the no-network error (never the real network)."""

from __future__ import annotations

import hashlib
import urllib.error
import zipfile

import pytest

from metarec_jax.data import download as dl
from metarec_jax.cli import build_parser


def _sha(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


@pytest.fixture
def local_sources(tmp_path, monkeypatch):
  """A zip archive and a plain file served from file:// URLs."""
  src = tmp_path / "src"
  src.mkdir()
  archive = src / "set.zip"
  with zipfile.ZipFile(archive, "w") as z:
    z.writestr("set/u.data", "1\t1\t5\t1\n")
    z.writestr("set/README", "hello\n")
  (src / "f.json").write_text("{}")
  sources = {
      "zipped": (dl.Remote(archive.as_uri(), md5=hashlib.md5(archive.read_bytes()).hexdigest(),
                           members=(("set/u.data", _sha(b"1\t1\t5\t1\n")), ("set/README", ""))),),
      "plain": (dl.Remote((src / "f.json").as_uri(), sha256=_sha(b"{}"), name="f.json"),),
      "bad": (dl.Remote((src / "f.json").as_uri(), sha256="0" * 64, name="f.json"),),
      "badzip": (dl.Remote(archive.as_uri(), md5="0" * 32, members=(("set/u.data", ""),)),),
  }
  monkeypatch.setattr(dl, "SOURCES", sources)
  return sources


def test_download_and_verify(tmp_path, local_sources):
  to = tmp_path / "out"
  got = dl.download("zipped", to, log=None)
  assert sorted(p.name for p in got) == ["README", "u.data"]
  assert (to / "u.data").read_text() == "1\t1\t5\t1\n"
  assert sorted(p.name for p in to.iterdir()) == ["README", "u.data"]  # flat, no leftovers
  assert dl.download("plain", to, log=None) == [to / "f.json"]
  # Present with the right checksum: not fetched again.
  messages = []
  dl.download("plain", to, log=messages.append)
  assert "checksum ok" in messages[0]


def test_checksum_mismatch_deletes(tmp_path, local_sources):
  to = tmp_path / "out"
  with pytest.raises(dl.DownloadError, match="sha256 checksum mismatch"):
    dl.download("bad", to, log=None)
  with pytest.raises(dl.DownloadError, match="md5 checksum mismatch"):
    dl.download("badzip", to, log=None)
  assert list(to.iterdir()) == []


def test_no_network_is_one_line(tmp_path, monkeypatch, capsys):
  def offline(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
  monkeypatch.setattr(dl.urllib.request, "urlopen", offline)
  with pytest.raises(dl.DownloadError, match="is unreachable .*no network"):
    dl.download("ml-100k", tmp_path / "x", log=None)
  args = build_parser().parse_args(["data", "download", "melu-ml1m", "--to", str(tmp_path / "y")])
  assert args.func(args) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("metarec: error: cannot download melu-ml1m") and "\n" not in err
  assert not any((tmp_path / "y").iterdir())


def test_sources_have_checksums():
  for name, remotes in dl.SOURCES.items():
    for r in remotes:
      assert r.md5 or r.sha256, name
      assert r.url.startswith("https://")


def test_mismatch_names_file_and_both_hashes_and_leaves_nothing(tmp_path, local_sources):
  to = tmp_path / "out"
  got = _sha(b"{}")
  with pytest.raises(dl.DownloadError) as e:
    dl.download("bad", to, log=None)
  message = str(e.value)
  assert "f.json" in message and "0" * 64 in message and got in message and "\n" not in message
  assert "deleted" in message
  assert list(to.iterdir()) == []  # neither the file nor its .part


def test_member_mismatch_in_a_good_archive(tmp_path, local_sources, monkeypatch):
  """The archive's MD5 matches but an unpacked member's SHA-256 does not: refused, the member not kept."""
  archive = local_sources["zipped"][0]
  wrong = dl.Remote(archive.url, md5=archive.md5, members=(("set/u.data", "f" * 64), ("set/README", "")))
  monkeypatch.setitem(dl.SOURCES, "badmember", (wrong,))
  to = tmp_path / "out"
  with pytest.raises(dl.DownloadError, match=r"set\.zip:set/u\.data: sha256 checksum mismatch \(expected f{64}, "
                     r"got " + _sha(b"1\t1\t5\t1\n") + r"\)"):
    dl.download("badmember", to, log=None)
  assert list(to.iterdir()) == []  # no u.data, no README, no temporary folder


def test_a_corrupt_file_in_place_is_fetched_again(tmp_path, local_sources):
  to = tmp_path / "out"
  to.mkdir()
  (to / "f.json").write_text("{corrupt")
  messages = []
  dl.download("plain", to, log=messages.append)
  assert (to / "f.json").read_text() == "{}" and any("fetching" in m for m in messages)


def test_mismatch_through_the_cli_is_one_line(tmp_path, local_sources, capsys):
  to = tmp_path / "out"
  from metarec_jax.cli import main
  assert main(["data", "download", "bad", "--to", str(to)]) == 2  # the parser's choices are the patched SOURCES
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "sha256 checksum mismatch" in err and "Traceback" not in err
  assert list(to.iterdir()) == []
