"""The local model cache: hits download nothing, and a killed download never leaves an entry."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CLI, cli_env
from home_mlops.resolve.cache import MANIFEST, ModelCache, content_digest, file_digests, source_key
from test_resolve_nas import UNREACHABLE, resolve


@pytest.fixture(scope="module")
def store(local_sqlite_store):
    return local_sqlite_store  # logged once per session (conftest.py)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def assert_entry_matches_manifest(entry: Path):
    manifest = json.loads((entry / MANIFEST).read_text())
    on_disk = {p.relative_to(entry).as_posix() for p in entry.rglob("*") if p.is_file() and p.name != MANIFEST}
    assert on_disk == set(manifest["files"])
    for rel, digest in manifest["files"].items():
        assert sha256(entry / rel) == digest, rel
    assert manifest["content_digest"] == content_digest(manifest["files"])
    return manifest


@pytest.mark.timeout(900)
def test_second_resolve_is_a_hit_without_download_tracking(store, state, tmp_path):
    env = cli_env(state, MLFLOW_TRACKING_URI=store.tracking_uri)
    proc, first = resolve(env, store.exp_a, store.run3, tmp_path / "1.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert first["cache_hit"] is False
    entry = Path(first["local_path"])
    assert_entry_matches_manifest(entry)

    # Take the model's files away from the artifact store: a download would now fail.
    source = store.artifact_root / store.exp_a / "models" / store.model3 / "artifacts"
    moved = tmp_path / "moved"
    source.rename(moved)
    try:
        proc, second = resolve(env, store.exp_a, store.run3, tmp_path / "2.json")
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert second["cache_hit"] is True
        assert second["local_path"] == first["local_path"]
        assert second["content_digest"] == first["content_digest"]
        assert second["requirements"] == first["requirements"]
        assert "downloading" not in proc.stderr
        assert_entry_matches_manifest(entry)
    finally:
        moved.rename(source)


@pytest.mark.timeout(900)
def test_second_resolve_is_a_hit_without_download_nas(store, state, tmp_path):
    env = cli_env(state, MLFLOW_TRACKING_URI=UNREACHABLE)
    nas = str(store.artifact_root)
    proc, first = resolve(env, store.exp_a, store.run_two, tmp_path / "1.json", "--nas", nas)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert first["cache_hit"] is False
    # NAS mode must still read MLmodel to find the model: keep it, remove everything else.
    source = store.artifact_root / store.exp_a / "models" / first["model_id"] / "artifacts"
    kept = {}
    for f in source.iterdir():
        if f.name != "MLmodel":
            kept[f.name] = f.read_bytes()
            f.unlink()
    try:
        proc, second = resolve(env, store.exp_a, store.run_two, tmp_path / "2.json", "--nas", nas)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert second["cache_hit"] is True and second["model_id"] == first["model_id"]
        entry = Path(second["local_path"])
        assert {"model.skops", "requirements.txt"} <= {p.name for p in entry.iterdir()}
        assert_entry_matches_manifest(entry)
    finally:
        for name, data in kept.items():
            (source / name).write_bytes(data)


@pytest.mark.timeout(1200)
def test_killed_download_leaves_no_entry(store, state, tmp_path):
    """SIGKILL mid-download: no entry; the next resolve cleans up and publishes a complete one."""
    big = store.artifact_root / store.exp_a / store.run2 / "artifacts" / "model" / "big.bin"
    with big.open("wb") as f:
        for _ in range(300):
            f.write(os.urandom(1 << 20))
    try:
        env = cli_env(state, MLFLOW_TRACKING_URI=store.tracking_uri)
        cache_root = state / "cache" / "models"
        key = source_key(store.tracking_uri, f"run-{store.run2}-model")
        proc = subprocess.Popen(
            [CLI, "resolve", "--experiment-id", store.exp_a, "--run-id", store.run2],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        deadline = time.monotonic() + 300
        killed = False
        while time.monotonic() < deadline and proc.poll() is None:
            if cache_root.is_dir() and any(p.name.startswith(".tmp-") for p in cache_root.iterdir()):
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.005)
        proc.wait(timeout=60)
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        assert killed, f"no .tmp-* folder seen before the process ended (rc={proc.returncode}): {stderr[-2000:]}"
        assert proc.returncode == -signal.SIGKILL
        assert not (cache_root / key).exists()
        stale = [p for p in cache_root.iterdir() if p.name.startswith(".tmp-")]
        assert stale and all(p.name.startswith(f".tmp-{proc.pid}-") for p in stale)

        proc2, data = resolve(env, store.exp_a, store.run2, tmp_path / "r.json")
        assert proc2.returncode == 0, proc2.stderr[-3000:]
        assert data["cache_hit"] is False
        entry = Path(data["local_path"])
        assert entry == cache_root / key
        assert not any(p.exists() for p in stale)
        assert not any(p.name.startswith(".tmp-") for p in cache_root.iterdir())
        manifest = assert_entry_matches_manifest(entry)
        assert manifest["files"]["big.bin"] == sha256(big)
        assert data["content_digest"] == manifest["content_digest"]
    finally:
        big.unlink(missing_ok=True)


# --------------------------------------------------------------------------- ModelCache in-process


def _fake_model(dst: Path) -> Path:
    dst.mkdir(parents=True)
    (dst / "MLmodel").write_text("flavors: {}\n")
    (dst / "sub").mkdir()
    (dst / "sub" / "w.bin").write_bytes(b"\x00" * 10)
    return dst


def test_fill_publishes_complete_entry(tmp_path):
    cache = ModelCache(tmp_path / "c")
    manifest = cache.fill("m-abc", _fake_model, {"model_uri": "models:/m-abc"})
    entry = cache.entry("m-abc")
    assert manifest["model_uri"] == "models:/m-abc"
    assert set(manifest["files"]) == {"MLmodel", "sub/w.bin"}
    assert cache.lookup("m-abc") == manifest
    assert manifest["files"] == file_digests(entry)
    assert [p.name for p in cache.root.iterdir()] == ["m-abc"]


def test_failed_download_leaves_nothing(tmp_path):
    cache = ModelCache(tmp_path / "c")

    def broken(dst: Path) -> Path:
        _fake_model(dst)
        raise ConnectionError("network went away")

    with pytest.raises(ConnectionError):
        cache.fill("m-abc", broken, {})
    assert list(cache.root.iterdir()) == []
    assert cache.lookup("m-abc") is None


def test_damaged_entry_is_dropped(tmp_path):
    cache = ModelCache(tmp_path / "c")
    cache.fill("m-abc", _fake_model, {})
    (cache.entry("m-abc") / "sub" / "w.bin").unlink()
    assert cache.lookup("m-abc") is None
    assert not cache.entry("m-abc").exists()
    # An entry without a manifest (e.g. copied by hand) is not trusted either.
    _fake_model(cache.entry("m-def"))
    assert cache.lookup("m-def") is None and not cache.entry("m-def").exists()


def test_clean_stale_keeps_live_processes(tmp_path):
    cache = ModelCache(tmp_path / "c")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = cache.root / f".tmp-{dead.pid}-x"
    live = cache.root / f".tmp-{os.getpid()}-y"
    stale.mkdir()
    live.mkdir()
    cache.clean_stale()
    assert not stale.exists() and live.exists()


def test_keys_are_made_safe(tmp_path):
    cache = ModelCache(tmp_path / "c")
    assert cache.entry("../../etc/passwd").parent == cache.root
    assert cache.entry("run-x-a/b").name == "run-x-a_b"


@pytest.mark.parametrize("content", ['{"files": ', "[]", '{"no_files": 1}'])
def test_corrupt_manifest_is_a_damaged_entry(content, tmp_path):
    cache = ModelCache(tmp_path / "c")
    cache.fill("m-abc", _fake_model, {})
    (cache.entry("m-abc") / MANIFEST).write_text(content)
    assert cache.lookup("m-abc") is None
    assert not cache.entry("m-abc").exists()


def test_tampered_entry_is_dropped_on_hit(tmp_path):
    """A hit hashes the files again: same names and sizes, other bytes -> not used, removed."""
    cache = ModelCache(tmp_path / "c")
    cache.fill("m-abc", _fake_model, {})
    (cache.entry("m-abc") / "sub" / "w.bin").write_bytes(b"\x01" * 10)
    assert cache.lookup("m-abc") is None
    assert not cache.entry("m-abc").exists()


def test_extra_file_or_symlink_in_entry_is_dropped(tmp_path):
    cache = ModelCache(tmp_path / "c")
    outside = tmp_path / "secret.txt"
    outside.write_text("MARKER-outside")
    cache.fill("m-abc", _fake_model, {})
    (cache.entry("m-abc") / "planted.py").write_text("print('x')")
    assert cache.lookup("m-abc") is None
    cache.fill("m-def", _fake_model, {})
    (cache.entry("m-def") / "sub" / "w.bin").unlink()
    (cache.entry("m-def") / "sub" / "w.bin").symlink_to(outside)
    assert cache.lookup("m-def") is None
    assert outside.read_text() == "MARKER-outside"  # dropping the entry never follows the link


@pytest.mark.parametrize("key", ["..", ".", "", "/", ".tmp-1-x", "-rf"])
def test_no_key_names_the_root_or_a_temp_folder(key, tmp_path):
    cache = ModelCache(tmp_path / "c")
    entry = cache.entry(key)
    assert entry.parent == cache.root and entry != cache.root
    assert not entry.name.startswith((".", "-"))


def test_source_key_separates_sources():
    a = source_key("file:///nas", "m-" + "0" * 32)
    b = source_key("http://mlflow:8001", "m-" + "0" * 32)
    assert a != b and a.endswith("m-" + "0" * 32) and b.endswith("m-" + "0" * 32)
