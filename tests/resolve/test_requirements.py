"""clean_requirements: keep what the flavor needs, drop training-only and foreign packages, pin."""
from __future__ import annotations

from importlib import metadata

import pytest

from home_mlops.errors import BadInput, ExitCode
from home_mlops.resolve.requirements import FLAVOR_PACKAGES, TRAINING_ONLY, clean_requirements

CAPTURED = [
    "mlflow==3.17.2",
    "cloudpickle==3.1.1",
    "numpy==2.4.6",
    "pandas==2.3.3",
    "scikit-learn==1.9.1",
    "scipy==1.17.1",
    "skops==0.16.0",
    "pytest==9.2.0",
    "rich==15.0.0",
    "psutil==7.2.2",
    "nvidia-ml-py==13.615.71",
    "torch==2.13.0+cpu",
]


def names(reqs):
    return {r.split("==")[0].split(">")[0].split("<")[0].lower() for r in reqs}


def test_sklearn_drops_training_only_and_foreign():
    kept, dropped, _ = clean_requirements(CAPTURED, ["python_function", "sklearn"])
    assert names(kept) == {"mlflow", "cloudpickle", "numpy", "pandas", "scikit-learn", "scipy", "skops"}
    assert {"pytest", "rich", "psutil", "nvidia-ml-py", "torch"} <= names(dropped)
    assert all("==" in k for k in kept)
    assert "scikit-learn==1.9.1" in kept
    assert kept == sorted(kept, key=str.lower)


def test_pytorch_keeps_torch_and_strips_local_version():
    kept, dropped, _ = clean_requirements(CAPTURED, ["python_function", "pytorch"])
    assert "torch==2.13.0" in kept  # "+cpu" local label removed
    assert "scikit-learn" not in names(kept)
    assert "skops" not in names(kept)
    assert "pytest" in names(dropped)


@pytest.mark.parametrize("flavor", ["lightgbm", "xgboost"])
def test_tree_flavors(flavor):
    lines = CAPTURED + [f"{flavor}==4.0.0"]
    kept, dropped, _ = clean_requirements(lines, ["python_function", flavor])
    assert flavor in names(kept)
    assert "scikit-learn" in names(kept)
    assert "torch" in names(dropped)


def test_unpinned_pinned_to_installed_version():
    installed = {n: metadata.version(n) for n in ("numpy", "pandas", "mlflow")}
    kept, *_ = clean_requirements(["numpy", "pandas>=1.0", "mlflow<99"], ["python_function", "sklearn"])
    for name, version in installed.items():
        assert f"{name}=={version.split('+')[0]}" in kept


def test_unpinned_incompatible_range_kept_as_written():
    kept, *_ = clean_requirements(["numpy<0.1"], ["python_function", "sklearn"])
    assert kept == ["numpy<0.1"]


def test_unpinned_not_installed_kept_as_written():
    kept, *_ = clean_requirements(["catboost"], ["python_function", "catboost"])
    # catboost is not installed here: it cannot be pinned but must stay.
    try:
        metadata.version("catboost")
    except metadata.PackageNotFoundError:
        assert kept == ["catboost"]


def test_unknown_flavor_keeps_everything_but_training_only():
    lines = ["some-custom-lib==1.2.3", "torch==2.13.0", "pytest==9.2.0", "rich==15.0.0", "tqdm==4.0.0", "numpy==2.0.0"]
    kept, dropped, _ = clean_requirements(lines, ["python_function", "my_custom_flavor"])
    assert set(kept) == {"some-custom-lib==1.2.3", "torch==2.13.0", "numpy==2.0.0"}
    assert names(dropped) == {"pytest", "rich", "tqdm"}


def test_python_function_only_is_base():
    kept, dropped, _ = clean_requirements(["numpy==2.0.0", "torch==2.13.0", "mlflow==3.17.2"], ["python_function"])
    assert set(kept) == {"numpy==2.0.0", "mlflow==3.17.2"}
    assert dropped == ["torch==2.13.0"]


def test_comments_and_duplicates():
    lines = [
        "# a comment",
        "",
        "numpy==2.0.0  # trailing comment",
        "NumPy==1.0.0",  # duplicate (canonical name): first wins
        "scikit_learn==1.9.1",  # non-canonical spelling still matches scikit-learn
        "\t# indented comment",
    ]
    kept, dropped, unpinned = clean_requirements(lines, ["python_function", "sklearn"])
    assert kept == ["numpy==2.0.0", "scikit_learn==1.9.1"]
    assert dropped == [] and unpinned == []


def test_unpinned_names_are_reported():
    result = clean_requirements(["numpy", "pandas>=1.0", "scipy==1.0", "catboost"], ["python_function", "catboost"])
    assert result.unpinned == ["catboost", "numpy", "pandas"]


# Each of these makes pip fetch or run something other than a published wheel from the index.
HOSTILE_LINES = [
    ("somepkg @ file:///nas/somepkg-1.0.tar.gz", "direct reference"),
    ("somepkg@https://example.invalid/somepkg-1.0.tar.gz", "direct reference"),
    ("somepkg @ git+https://example.invalid/x.git", "direct reference"),
    ("git+https://example.invalid/x.git#egg=x", "VCS URL"),
    ("./somepkg", "path or URL"),
    ("/nas/somepkg-1.0.tar.gz", "path or URL"),
    ("somepkg-1.0.tar.gz", "file name"),
    ("somepkg-1.0-py3-none-any.whl", "file name"),
    ("https://example.invalid/somepkg-1.0.tar.gz", "path or URL"),
    ("-e ./somepkg", "editable"),
    ("--editable=git+https://example.invalid/x.git", "editable"),
    ("-i https://evil.invalid/simple", "pip option"),
    ("--index-url https://evil.invalid/simple", "pip option"),
    ("--extra-index-url https://evil.invalid/simple", "pip option"),
    ("-f /nas/wheels", "pip option"),
    ("--find-links=/nas/wheels", "pip option"),
    ("--trusted-host evil.invalid", "pip option"),
    ("-r other.txt", "pip option"),
    ("-c constraints.txt", "pip option"),
    ("--pre", "pip option"),
    ("--no-binary :all:", "pip option"),
    ("numpy==${REGISTRY_PASSWORD}", "not plain text"),
    ("numpy==1.0 \\", "not plain text"),
    ("numpy==1.0 --hash=sha256:abc", "not a valid requirement"),
    ("this is not a requirement!!", "not a valid requirement"),
    ("numpy#egg", "not a valid requirement"),
    ("num\u00e9py==1.0", "not plain text"),
]


@pytest.mark.parametrize("line, kind", HOSTILE_LINES)
def test_lines_that_could_run_code_are_refused(line, kind):
    with pytest.raises(BadInput) as caught:
        clean_requirements(["numpy==2.0.0", line], ["python_function", "sklearn"], "/nas/m/requirements.txt")
    message = str(caught.value)
    assert caught.value.code == ExitCode.BAD_INPUT
    assert "/nas/m/requirements.txt line 2" in message
    assert repr(line) in message
    assert kind in message


def test_environment_markers_and_extras_pinned():
    kept, *_ = clean_requirements(["mlflow[extras]==3.17.2; python_version >= '3.9'"], ["python_function"])
    assert kept == ["mlflow==3.17.2"]


def test_every_training_only_package_dropped_for_every_known_flavor():
    lines = [f"{p}==1.0" for p in sorted(TRAINING_ONLY)]
    for flavor in FLAVOR_PACKAGES:
        kept, dropped, _ = clean_requirements(lines, ["python_function", flavor])
        assert kept == [], flavor
        assert len(dropped) == len(TRAINING_ONLY)


@pytest.mark.parametrize(
    "flavor, frameworks",
    [
        ("sklearn", {"scikit-learn"}),
        ("lightgbm", {"lightgbm", "scikit-learn"}),
        ("xgboost", {"xgboost", "scikit-learn"}),
        ("pytorch", {"torch"}),
    ],
)
def test_frameworks_foreign_to_the_flavor_are_dropped(flavor, frameworks):
    lines = ["torch==2.13.0", "lightgbm==4.5.0", "xgboost==2.1.0", "scikit-learn==1.9.1", "tensorflow==2.17.0"]
    kept, dropped, _ = clean_requirements(["mlflow==3.17.2", *lines], ["python_function", flavor])
    assert names(kept) == {"mlflow", *frameworks}
    assert names(dropped) == {n.split("==")[0] for n in lines} - frameworks


# --------------------------------------------------------------------------- pip runs clean and hash-locked

SECRETS = {
    "REGISTRY_PASSWORD": "s1", "REGISTRY_USER": "s2", "HOME_MLOPS_REGISTRY_PASSWORD": "s3", "GITHUB_TOKEN": "s4",
    "MY_CLIENT_SECRET": "s5", "GOOGLE_APPLICATION_CREDENTIALS": "/k.json", "AWS_ACCESS_KEY_ID": "s6",
    "AWS_SECRET_ACCESS_KEY": "s7", "JENKINS_URL": "http://j", "BUILD_URL": "http://j/1", "JOB_NAME": "x",
    "HUDSON_HOME": "/h", "WORKSPACE": "/w", "JENKINS_ADMIN_PASSWORD": "s8", "PIP_NO_BINARY": ":all:",
}
KEPT = {
    "PATH": "/usr/bin", "HOME": "/root", "PIP_INDEX_URL": "https://idx.invalid/simple", "SSL_CERT_FILE": "/ca.pem",
    "HTTPS_PROXY": "http://proxy:3128", "no_proxy": "localhost", "LANG": "C.UTF-8",
}


def test_clean_env_drops_credentials_and_jenkins_variables():
    from home_mlops.build.pip import clean_env

    env = clean_env({**SECRETS, **KEPT})
    assert not set(SECRETS) & set(env)
    assert {k: env[k] for k in KEPT} == KEPT
    assert env["PIP_ONLY_BINARY"] == ":all:"


def test_pip_subprocess_sees_no_credentials(monkeypatch):
    """The real runner: a pip subprocess started by home-mlops inherits none of the secrets."""
    import subprocess
    import sys

    from home_mlops.build import pip

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    seen = []
    real_run = subprocess.run

    def spy(argv, **kw):  # run pip's own interpreter on a script that reports its environment
        seen.append(real_run([sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
                             capture_output=True, text=True, env=kw["env"]).stdout)
        return real_run(argv, **kw)

    monkeypatch.setattr(pip.subprocess, "run", spy)
    proc = pip.run_pip("--version")
    assert proc.returncode == 0 and "pip" in proc.stdout
    import json

    child_env = json.loads(seen[0])
    assert not set(SECRETS) & set(child_env)
    assert child_env["PATH"]


@pytest.fixture
def platform_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME_MLOPS_PLATFORM_DIR", str(tmp_path / "platform"))
    return tmp_path / "platform"


def test_lock_records_hashes_and_fetch_checks_them(platform_tmp, tmp_path):
    """A real pip resolve: the lock pins an unpinned name with pip's sha256, and the download is
    hash-checked (a forged hash fails instead of fetching another file)."""
    import hashlib

    from home_mlops.errors import BuildFailed
    from home_mlops.build.wheels import LockedWheel, fetch_wheels, lock

    pinned = lock(["six"])
    assert len(pinned) == 1
    wheel = LockedWheel.parse(pinned[0])
    assert wheel.name.lower() == "six" and wheel.version
    assert pinned[0] == f"{wheel.name}=={wheel.version} --hash=sha256:{wheel.sha256}"
    files = fetch_wheels(pinned, tmp_path / "ctx")
    assert [f.suffix for f in files] == [".whl"]
    assert hashlib.sha256(files[0].read_bytes()).hexdigest() == wheel.sha256
    assert lock(["six"]) == pinned  # cached: same lines

    forged = LockedWheel(wheel.name, wheel.version, "0" * 64).line
    with pytest.raises(BuildFailed):
        fetch_wheels([forged], tmp_path / "ctx2")
    assert not list((tmp_path / "ctx2").glob("*.whl"))


def test_lock_refuses_a_direct_reference_before_running_pip(platform_tmp, tmp_path):
    """Defence in depth: even a list that skipped resolve never reaches pip with a direct reference."""
    from home_mlops.build.wheels import lock

    with pytest.raises(BadInput, match="direct reference"):
        lock(["six", f"somepkg @ file://{tmp_path}/somepkg-1.0.tar.gz"])
    assert not list(platform_tmp.glob("locks/*"))
