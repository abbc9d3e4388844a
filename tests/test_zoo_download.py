"""Weight downloads with the real huggingface_hub client against a loopback Hub, mirrors and bundled files."""

from __future__ import annotations

import hashlib
import io
import socket

import pytest
import torch

from hub_server import HTML_PAGE, hub_server  # noqa: F401  (fixture)
from medbench import zoo
from medbench.models.weights import WeightsError
from medbench.zoo import WeightsHashMismatchError, WeightsUnavailableError
from zoo_factory import entry_dict, model_bytes, tiny_model, write_entry

REPO = "medbench-test/zoo"
FILE = "breastmnist/Tiny.safetensors"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Fresh Hugging Face and medbench caches and an empty registry for each test."""
    hf = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(hf))
    monkeypatch.setenv("MEDBENCH_CACHE", str(tmp_path / "medbench-cache"))
    monkeypatch.setenv("MEDBENCH_ZOO", str(tmp_path / "zoo"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    (tmp_path / "zoo").mkdir()
    zoo.clear_cache()
    yield tmp_path
    zoo.clear_cache()


@pytest.fixture(scope="module")
def tiny():
    model = tiny_model()
    return model, model_bytes(model)


def hub_source(revision: str, filename: str = FILE, repo_id: str = REPO) -> dict:
    return {"kind": "hub", "repo_id": repo_id, "filename": filename, "revision": revision}


def register(env, data: bytes, sources: list[dict], model_id: str = "Baseline_Tiny_ERM", **kw) -> str:
    write_entry(env / "zoo", entry_dict(model_id, data, sources, **kw), kw.pop("files", None))
    zoo.clear_cache()
    return model_id


def files_under(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def hf_blobs_and_snapshots(env):
    return [p for p in files_under(env / "hf-cache") if "blobs" in p.parts or "snapshots" in p.parts]


def same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a(x), b(x))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- hub

def test_first_download_then_offline_from_cache(env, hub_server, tiny, monkeypatch):
    model, data = tiny
    rev = hub_server.add_file(REPO, FILE, data)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    mid = register(env, data, [hub_source(rev)])

    first = zoo.load_model(mid, "breastmnist")
    assert not first.training and same_outputs(first, model)
    assert ("HEAD", f"/{REPO}/resolve/{rev}/{FILE}") in hub_server.requests
    cached = env / "hf-cache" / f"models--{REPO.replace('/', '--')}" / "snapshots" / rev / FILE
    assert cached.is_file() and cached.read_bytes() == data  # the standard HF cache layout

    hub_server.stop()  # the network is gone
    n_requests = len(hub_server.requests)
    assert same_outputs(zoo.load_model(mid, "breastmnist"), model)  # a verified cached copy needs no network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert same_outputs(zoo.load_model(mid, "breastmnist"), model)
    assert len(hub_server.requests) == n_requests


def test_offline_without_cache_says_so(env, hub_server, tiny, monkeypatch):
    _, data = tiny
    rev = hub_server.add_file(REPO, FILE, data)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    mid = register(env, data, [hub_source(rev)])
    with pytest.raises(WeightsUnavailableError, match="HF_HUB_OFFLINE is set") as info:
        zoo.load_model(mid, "breastmnist")
    assert not isinstance(info.value, WeightsHashMismatchError)
    assert hub_server.requests == []


def test_pinned_revision_is_honoured(env, hub_server, tiny, monkeypatch):
    old_model, old = tiny
    new = model_bytes(tiny_model(seed=1))
    rev_old = hub_server.add_file(REPO, FILE, old)
    rev_new = hub_server.add_file(REPO, FILE, new)  # main moves on: same file name, new bytes
    assert rev_old != rev_new and hub_server.branches[REPO]["main"] == rev_new
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)

    loaded = zoo.load_model(register(env, old, [hub_source(rev_old)]), "breastmnist")
    assert same_outputs(loaded, old_model)
    assert all(f"/resolve/{rev_new}/" not in path and "/resolve/main/" not in path for _, path in hub_server.requests)

    # pinned to the old commit but expecting the new bytes: the revision wins, so the hash check fails
    register(env, new, [hub_source(rev_old)], model_id="Baseline_Tiny_NEW")
    with pytest.raises(WeightsHashMismatchError):
        zoo.load_model("Baseline_Tiny_NEW", "breastmnist")


def test_sha256_mismatch_is_rejected_and_not_cached(env, hub_server, tiny, monkeypatch):
    _, data = tiny
    rev = hub_server.add_file(REPO, FILE, data, mode="wrong-bytes")  # same size, flipped bytes
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    # something the user already had in the same cache, which must survive
    other = env / "hf-cache" / f"models--{REPO.replace('/', '--')}" / "snapshots" / ("f" * 40) / "keep.txt"
    other.parent.mkdir(parents=True)
    other.write_text("mine")
    mid = register(env, data, [hub_source(rev)])

    with pytest.raises(WeightsHashMismatchError, match="sha256 mismatch") as info:
        zoo.load_model(mid, "breastmnist")
    assert "removed from the Hugging Face cache" in str(info.value)
    assert hf_blobs_and_snapshots(env) == [other] and other.read_text() == "mine"
    assert files_under(env / "medbench-cache") == []
    # a second attempt downloads again (nothing bad was cached) and fails the same way
    n = len(hub_server.requests)
    with pytest.raises(WeightsHashMismatchError):
        zoo.load_model(mid, "breastmnist")
    assert any(m == "GET" for m, _ in hub_server.requests[n:])


def test_bad_file_the_user_already_had_is_refused_but_kept(env, hub_server, tiny, monkeypatch):
    _, data = tiny
    rev = hub_server.add_file(REPO, FILE, data)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    pointer = env / "hf-cache" / f"models--{REPO.replace('/', '--')}" / "snapshots" / rev / FILE
    pointer.parent.mkdir(parents=True)
    pointer.write_bytes(b"\0" * len(data))  # a corrupt copy the user had
    mid = register(env, data, [hub_source(rev)])
    with pytest.raises(WeightsHashMismatchError, match="left untouched"):
        zoo.load_model(mid, "breastmnist")
    assert pointer.read_bytes() == b"\0" * len(data)


def test_truncated_file_is_rejected_and_not_cached(env, hub_server, tiny, monkeypatch):
    _, data = tiny
    rev = hub_server.add_file(REPO, FILE, data, mode="truncated")
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    mid = register(env, data, [hub_source(rev)])
    with pytest.raises(WeightsHashMismatchError, match=f"size mismatch: got {len(data) // 2} bytes, expected {len(data)}"):
        zoo.load_model(mid, "breastmnist")
    assert hf_blobs_and_snapshots(env) == []


def test_html_page_instead_of_weights(env, hub_server, tiny, monkeypatch):
    _, data = tiny
    rev = hub_server.add_file(REPO, FILE, data, mode="html")
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    mid = register(env, data, [hub_source(rev)])
    # the page's length differs from the Hub's X-Linked-Size: the client itself rejects it; nothing is kept
    with pytest.raises(WeightsUnavailableError, match="Consistency check failed: file should be of size"):
        zoo.load_model(mid, "breastmnist")
    assert hf_blobs_and_snapshots(env) == []
    assert [p for p in files_under(env / "hf-cache") if p.name.endswith(".incomplete")] == []


def test_html_page_with_matching_size_is_caught_by_sha256(env, hub_server, tiny, monkeypatch):
    """A page padded to the advertised size passes the client's size check; the sha256 check stops it."""
    _, data = tiny
    page = (HTML_PAGE + b" " * len(data))[: len(data)]
    rev = hub_server.add_file(REPO, FILE, data)
    hub_server.repos[REPO][rev][FILE].data = page  # served bytes; metadata still describes `data`
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    mid = register(env, data, [hub_source(rev)])
    with pytest.raises(WeightsHashMismatchError, match="HTML page"):
        zoo.load_model(mid, "breastmnist")
    assert hf_blobs_and_snapshots(env) == []


def test_html_page_pinned_by_mistake_is_still_refused(env, hub_server, monkeypatch):
    """An entry whose sha256 pins an HTML page (a bad submission): verified bytes, but not safetensors."""
    rev = hub_server.add_file(REPO, FILE, HTML_PAGE)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    mid = register(env, HTML_PAGE, [hub_source(rev)])
    with pytest.raises(WeightsError, match="HTML"):
        zoo.load_model(mid, "breastmnist")


@pytest.mark.parametrize("how", ["torch.save zip", "raw pickle"])
def test_pickle_offered_as_weights_is_refused(env, hub_server, tiny, monkeypatch, how):
    model, _ = tiny
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf, _use_new_zipfile_serialization=(how == "torch.save zip"))
    pickled = buf.getvalue()
    rev = hub_server.add_file(REPO, FILE, pickled)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    # the entry pins the pickle's own hash: the download verifies, the loader still refuses to unpickle
    mid = register(env, pickled, [hub_source(rev)])
    with pytest.raises(WeightsError, match="never unpickles"):
        zoo.load_model(mid, "breastmnist")


def test_dead_hub_repo_falls_back_to_mirror(env, hub_server, tiny, monkeypatch):
    model, data = tiny
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    url = hub_server.add_mirror("tiny.safetensors", data)
    mid = register(env, data, [hub_source("a" * 40, repo_id="gone/repo"), {"kind": "mirror", "url": url}])
    assert same_outputs(zoo.load_model(mid, "breastmnist"), model)
    cached = env / "medbench-cache" / "weights" / f"{hashlib.sha256(data).hexdigest()}.safetensors"
    assert cached.read_bytes() == data
    assert files_under(env / "medbench-cache") == [cached]  # no temporary files left behind

    hub_server.stop()  # both sources gone: the verified mirror copy is used
    assert same_outputs(zoo.load_model(mid, "breastmnist"), model)


@pytest.mark.slow
def test_unreachable_hub_host_falls_back_to_mirror(env, hub_server, tiny, monkeypatch):
    """Connection refused: huggingface_hub retries with backoff (about 20 s), then the mirror is used."""
    model, data = tiny
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    url = hub_server.add_mirror("tiny.safetensors", data)
    mid = register(env, data, [hub_source("a" * 40), {"kind": "mirror", "url": url}])
    assert same_outputs(zoo.load_model(mid, "breastmnist"), model)


# ----------------------------------------------------------------------------- mirrors, bundled, errors

@pytest.mark.parametrize("mode,reason", [("wrong-bytes", "sha256 mismatch"), ("html", "HTML page"),
                                         ("truncated", "size mismatch"), ("cut", "download failed")])
def test_bad_mirror_download_is_discarded(env, hub_server, tiny, mode, reason):
    _, data = tiny
    url = hub_server.add_mirror("tiny.safetensors", data, mode=mode)
    mid = register(env, data, [{"kind": "mirror", "url": url}])
    with pytest.raises(WeightsUnavailableError, match=reason):
        zoo.load_model(mid, "breastmnist")
    assert files_under(env / "medbench-cache") == []


def test_bundled_file_is_verified(env, tiny):
    model, data = tiny
    src = [{"kind": "bundled", "filename": "Tiny.safetensors"}]
    write_entry(env / "zoo", entry_dict("Baseline_Tiny_ERM", data, src), {"Tiny.safetensors": data})
    zoo.clear_cache()
    assert same_outputs(zoo.load_model("Baseline_Tiny_ERM", "breastmnist"), model)
    (env / "zoo" / "breastmnist" / "Tiny.safetensors").write_bytes(data[:-1] + b"\0")
    with pytest.raises(WeightsHashMismatchError, match="bundled file .* was not used"):
        zoo.load_model("Baseline_Tiny_ERM", "breastmnist")


def test_no_source_reachable_lists_every_attempt(env, hub_server, tiny, monkeypatch):
    _, data = tiny
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    rev = hub_server.add_file(REPO, "other.safetensors", data)
    sources = [hub_source("b" * 40, repo_id="gone/repo"), hub_source(rev),
               {"kind": "mirror", "url": hub_server.endpoint + "/mirror/missing.safetensors"},
               {"kind": "bundled", "filename": "absent.safetensors"}]
    mid = register(env, data, sources)
    with pytest.raises(WeightsUnavailableError) as info:
        zoo.load_model(mid, "breastmnist")
    msg = str(info.value)
    assert not isinstance(info.value, WeightsHashMismatchError)
    assert [a.source.split()[0] for a in info.value.attempts] == ["hub", "hub", "mirror", "bundled"]
    for needle in ("1. hub gone/repo", "repository gone/repo not found", f"{FILE} not found in {REPO}",
                   "3. mirror http://127.0.0.1", "HTTP 404", "4. bundled absent.safetensors", "file missing"):
        assert needle in msg, needle


def test_download_warms_the_cache(env, hub_server, tiny, monkeypatch):
    _, data = tiny
    rev = hub_server.add_file(REPO, FILE, data)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    mid = register(env, data, [hub_source(rev)])
    path = zoo.download(mid, "breastmnist")
    assert path.read_bytes() == data
    hub_server.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert zoo.download(mid, "breastmnist") == path


def test_hub_download_cut_midway_falls_back_to_mirror(env, hub_server, tiny, monkeypatch):
    """The CDN drops the connection half-way on every try: the client gives up, nothing is cached, the mirror serves."""
    model, data = tiny
    rev = hub_server.add_file(REPO, FILE, data, mode="cut")
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    url = hub_server.add_mirror("tiny.safetensors", data)
    mid = register(env, data, [hub_source(rev), {"kind": "mirror", "url": url}])
    assert same_outputs(zoo.load_model(mid, "breastmnist"), model)
    assert hf_blobs_and_snapshots(env) == []
    assert sum(1 for m, p in hub_server.requests if m == "GET" and p.startswith("/cdn/")) > 1  # it did retry
