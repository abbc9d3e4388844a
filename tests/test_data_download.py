"""Dataset downloads against a loopback HTTP server serving the real MedMNIST file: MD5-checked,
atomic, never replacing a good file with a bad one, with clear errors."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest

import medbench
from medbench.cli import main
from medbench.data import get_spec, md5sum
from medbench.download import MIRROR_ENV, DataDownloadError, download
from medbench.errors import ChecksumMismatchError

from conftest import need_real


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path):
    """A folder served on 127.0.0.1; yields (folder, base URL, request log)."""
    served = tmp_path / "served"
    served.mkdir()
    _Handler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/medmnist/", _Handler.requests
    finally:
        server.shutdown()
        server.server_close()


def _serve(served: Path, real_root: Path, name: str = "breastmnist.npz", truncate: bool = False) -> Path:
    (served / "medmnist").mkdir(exist_ok=True)
    target = served / "medmnist" / name
    data = (real_root / name).read_bytes()
    target.write_bytes(data[: len(data) // 2] if truncate else data)
    return target


@pytest.mark.realdata
def test_download_verifies_and_loads(real_root, mirror, tmp_path):
    need_real(real_root, "breastmnist.npz")
    served, url, requests = mirror
    _serve(served, real_root)
    root = tmp_path / "data"
    path = download("breastmnist", root=root, mirror=url, progress=False)
    assert path == root / "breastmnist.npz" and md5sum(path) == get_spec("breastmnist").md5[28]
    assert not list(root.glob("*.part"))
    assert len(medbench.load_dataset("breastmnist", "test", root=root)) == 156
    assert download("breastmnist", root=root, mirror=url, progress=False) == path
    assert len(requests) == 1  # a valid file already present is not fetched again


@pytest.mark.realdata
def test_corrupt_download_never_replaces_a_good_file(real_root, mirror, tmp_path):
    need_real(real_root, "breastmnist.npz")
    served, url, _ = mirror
    _serve(served, real_root, truncate=True)
    root = tmp_path / "data"
    root.mkdir()
    good = shutil.copy(real_root / "breastmnist.npz", root / "breastmnist.npz")
    before = Path(good).read_bytes()
    with pytest.raises(ChecksumMismatchError, match="discarded") as info:
        download("breastmnist", root=root, mirror=url, force=True, progress=False)
    assert url in str(info.value)
    assert Path(good).read_bytes() == before and not list(root.glob("*.part"))
    (root / "breastmnist.npz").unlink()
    with pytest.raises(ChecksumMismatchError):
        download("breastmnist", root=root, mirror=url, progress=False)
    assert list(root.iterdir()) == []  # nothing that looks like a dataset is left behind


def test_missing_file_and_dead_server_are_clear_errors(mirror, tmp_path, monkeypatch):
    _, url, _ = mirror
    with pytest.raises(DataDownloadError, match="HTTP 404"):
        download("pneumoniamnist", root=tmp_path / "a", mirror=url, progress=False)
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9/nothing-listens-here/")
    with pytest.raises(DataDownloadError, match="Nothing was written") as info:
        download("pneumoniamnist", root=tmp_path / "b", progress=False, timeout=5)
    assert "pneumoniamnist.npz" in str(info.value)
    assert not (tmp_path / "b" / "pneumoniamnist.npz").exists()


@pytest.mark.realdata
def test_cli_download_through_the_mirror_variable(real_root, mirror, tmp_path, monkeypatch, capsys):
    need_real(real_root, "breastmnist.npz")
    served, url, _ = mirror
    _serve(served, real_root)
    monkeypatch.setenv(MIRROR_ENV, url)
    assert main(["data", "download", "breastmnist", "--root", str(tmp_path), "--quiet"]) == 0
    assert f"verified {tmp_path / 'breastmnist.npz'}" in capsys.readouterr().out
    assert main(["data", "download", "breastmnist", "--size", "33", "--root", str(tmp_path)]) == 1
    assert "size" in capsys.readouterr().err
