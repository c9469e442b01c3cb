"""build/wheels.py: wheel file names and lock lines through packaging; the wheel cache with real pip (a local find-links folder, no network)."""
from __future__ import annotations

import pytest
from packaging.tags import sys_tags
from packaging.version import Version

from home_mlops.build.wheels import LockedWheel, find_wheels, requirements_text, wheel_key

HEX = "ab" * 32


@pytest.mark.parametrize("filename, key", [
    ("numpy-2.1.3-cp311-cp311-manylinux_2_17_x86_64.whl", ("numpy", Version("2.1.3"))),
    ("zope.interface-7.1-py3-none-any.whl", ("zope-interface", Version("7.1"))),
    ("Foo_Bar-1.0.post1-1build-py3-none-any.whl", ("foo-bar", Version("1.0.post1"))),
    ("torch-2.5.1+cpu-cp311-cp311-linux_x86_64.whl", ("torch", Version("2.5.1+cpu"))),
    ("not-a-wheel.whl", None),
    ("numpy-2.1.3.tar.gz", None),
])
def test_wheel_key(filename, key):
    assert wheel_key(filename) == key


def test_a_lock_line_matches_its_wheel_by_canonical_name_and_version():
    locked = LockedWheel.parse(f"Zope.Interface==7.1 --hash=sha256:{HEX}")
    assert locked.line == f"Zope.Interface==7.1 --hash=sha256:{HEX}"
    assert locked.key == wheel_key("zope_interface-7.1-cp311-cp311-manylinux_2_17_x86_64.whl")
    assert locked.key != wheel_key("zope_interface-7.10-py3-none-any.whl")  # not a prefix match


@pytest.mark.parametrize("line", [
    f"numpy --hash=sha256:{HEX}",  # no version
    "numpy==2.1 --hash=sha256:abc",  # short digest
    f"numpy==not.a.version! --hash=sha256:{HEX}",
    f"-e git+https://x/y==1 --hash=sha256:{HEX}",
    f"numpy==2.1; os_name=='nt' --hash=sha256:{HEX}",
])
def test_lines_that_are_not_lock_lines(line):
    with pytest.raises(ValueError):
        LockedWheel.parse(line)


def test_find_wheels_picks_the_best_tag_and_the_pinned_version(tmp_path):
    best_tag = next(iter(sys_tags()))
    names = [
        "orjson-3.10.0-py3-none-any.whl",  # compatible, lower priority
        f"orjson-3.10.0-{best_tag.interpreter}-{best_tag.abi}-{best_tag.platform}.whl",  # this host's best
        "orjson-3.9.0-py3-none-any.whl",  # another version
        "orjson-3.10.0-cp27-cp27mu-win32.whl",  # not for this host
        "httpx-0.27.0-py3-none-any.whl",
        "garbage.whl",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    found, missing = find_wheels(tmp_path, {"ORJSON": "3.10.0", "httpx": "0.27.0", "uvloop": "0.21.0"})
    assert found["orjson"].name == names[1]
    assert found["httpx"].name == "httpx-0.27.0-py3-none-any.whl"
    assert missing == ["uvloop"]


def test_requirements_text_pins_every_package_sorted():
    text = requirements_text({"uvicorn": "0.30.0", "fastapi": "0.115.0"})
    assert text.splitlines()[1:] == ["fastapi==0.115.0", "uvicorn==0.30.0"]


def test_two_builds_fill_the_wheel_cache_one_after_the_other(tmp_path):
    """Apps build at once on one agent and share the wheel cache: a second build waits while the
    first one downloads (pip writes in place: a half-written wheel would be hashed and refused)."""
    import subprocess
    import sys

    from home_mlops.build.wheels import filling

    child = (
        "import sys\nfrom pathlib import Path\nfrom home_mlops.build.wheels import filling\n"
        "print('waiting', flush=True)\n"
        "with filling(Path(sys.argv[1])):\n"
        "    Path(sys.argv[1], 'second').write_text('in')\n"
    )
    with filling(tmp_path):
        proc = subprocess.Popen([sys.executable, "-c", child, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "waiting"
        try:
            proc.wait(timeout=1.5)
        except subprocess.TimeoutExpired:
            pass
        assert not (tmp_path / "second").exists(), "the second build filled the cache while the first held it"
    assert proc.wait(timeout=60) == 0
    assert (tmp_path / "second").read_text() == "in"


def _wheel(folder, name: str, version: str, body: str) -> str:
    """A minimal real wheel (pip reads its metadata); returns its lock line."""
    import hashlib
    import zipfile

    dist = f"{name}-{version}.dist-info"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(f"{name}/__init__.py", body)
        whl.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        whl.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{dist}/RECORD", "")
    return f"{name}=={version} --hash=sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


def test_fetch_wheels_asks_pip_only_for_what_the_cache_lacks(tmp_path, monkeypatch):
    """Real pip on a local find-links folder. A build whose locked wheels are all cached runs with
    no index at all; a cached file whose bytes differ from the lock is never linked."""
    from home_mlops.build.wheels import fetch_wheels, wheel_cache
    from home_mlops.errors import BuildFailed

    index = tmp_path / "index"
    index.mkdir()
    pinned = [_wheel(index, "hmt_alpha", "1.0", "A = 1\n"), _wheel(index, "hmt_beta", "2.0", "B = 2\n")]
    monkeypatch.setenv("HOME_MLOPS_PLATFORM_DIR", str(tmp_path / "platform"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))

    first = fetch_wheels(pinned, tmp_path / "one")
    assert sorted(p.name for p in first) == ["hmt_alpha-1.0-py3-none-any.whl", "hmt_beta-2.0-py3-none-any.whl"]
    assert sorted(p.name for p in wheel_cache().glob("*.whl")) == sorted(p.name for p in first)
    locked_bytes = [p.read_bytes() for p in first]

    away = index.rename(tmp_path / "away")  # no index any more: only the cache can serve the second build
    second = fetch_wheels(pinned, tmp_path / "two")
    assert [p.read_bytes() for p in second] == locked_bytes

    beta = wheel_cache() / "hmt_beta-2.0-py3-none-any.whl"
    beta.unlink()
    beta.write_bytes(locked_bytes[1] + b"tampered")  # the right name, other bytes
    with pytest.raises(BuildFailed, match="wheels"):
        fetch_wheels(pinned, tmp_path / "three")  # pip is asked for hmt_beta, and nothing can serve it
    assert not (tmp_path / "three" / beta.name).exists()

    away.rename(index)
    fourth = fetch_wheels(pinned, tmp_path / "four")  # pip replaces the tampered file with the locked one
    assert [p.read_bytes() for p in fourth] == locked_bytes
