"""The gateway image's build context: Dockerfile, pinned requirements, wheels.

No docker build here (the integration tests build the image).
"""
from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from home_mlops.errors import HomeMlopsError
from home_mlops.build.gateway_context import render_dockerfile, render_gateway_context, runtime_requirements
from home_mlops.gateway.spec import Column, GatewaySpec

BASE = "127.0.0.1:5000/home-mlops/debian-bookworm-python:3.11"
LABELS = {
    "org.opencontainers.image.title": "tabular-iris-gateway",
    "org.opencontainers.image.revision": "abc123",
    "io.homemlops.run-id": "0123456789abcdef0123456789abcdef",
    "io.homemlops.model-uri": 'models:/m-abc "quoted" $HOME',
}


def spec(run_id: str = "0123456789abcdef0123456789abcdef") -> GatewaySpec:
    return GatewaySpec(app="tabular-iris", experiment_id="1", run_id=run_id, model_id="m-abc",
                       inputs=[Column(name="sepal length (cm)", type="double")],
                       input_example=[{"sepal length (cm)": 5.1}])


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wheel-cache")


@pytest.fixture(scope="module")
def context(tmp_path_factory, wheel_cache) -> Path:
    return render_gateway_context(tmp_path_factory.mktemp("ctx") / "build", spec(), BASE, wheel_cache,
                                  LABELS, override_dir=None)


def _instructions(dockerfile: str) -> list[str]:
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_context_layout(context):
    files = sorted(str(p.relative_to(context)) for p in context.rglob("*") if p.is_file() and "wheels" not in p.parts)
    src = Path(__file__).resolve().parents[2] / "pyhelpers" / "home_mlops" / "gateway"
    package = sorted(f"gateway/{p.name}" for p in src.glob("*.py") if p.name != "inprocess.py")
    assert files == sorted([".dockerignore", "Dockerfile", "gateway-spec.json", "requirements.txt", *package])
    assert "gateway/inprocess.py" not in files  # the in-process backend ships in the standalone image only
    assert GatewaySpec.load(context / "gateway-spec.json") == spec()
    # the package in the image is the package here, byte for byte
    src = Path(__file__).resolve().parents[2] / "pyhelpers" / "home_mlops" / "gateway"
    for name in ("app.py", "spec.py", "__main__.py"):
        assert (context / "gateway" / name).read_bytes() == (src / name).read_bytes()


def test_gateway_package_imports_only_runtime_packages(context):
    allowed = {"fastapi", "starlette", "pydantic", "pydantic_core", "httpx", "httpcore", "httptools", "uvicorn",
               "prometheus_client", "orjson"}
    import sys

    stdlib = set(sys.stdlib_module_names)
    for path in (context / "gateway").glob("*.py"):
        text = path.read_text()
        for match in re.finditer(r"^\s*(?:from|import)\s+([A-Za-z_][\w]*)", text, re.M):
            top = match.group(1)
            assert top in allowed | stdlib | {"__future__"}, f"{path.name} imports {top}"
        # a module the package imports relatively is in the image too (rawbody.py once was not)
        for sibling in re.findall(r"^\s*from \.([A-Za-z_]\w*) import", text, re.M):
            assert (context / "gateway" / f"{sibling}.py").is_file(), f"{path.name} imports .{sibling}, not in the image"
    pins = (context / "requirements.txt").read_text()
    assert "orjson==" in pins and "fastapi-offline==" in pins and "httpcore==" in pins


def test_dockerfile(context):
    text = (context / "Dockerfile").read_text()
    lines = _instructions(text)
    assert lines[0] == f"FROM {BASE} AS deps"
    assert f"FROM {BASE}" in lines

    def index(prefix: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(prefix))

    # the pip layer comes first, the code and the spec last
    order = [
        index("RUN python3 -m venv /opt/venv"),
        index("COPY requirements.txt"),
        index("COPY wheels/"),
        index("RUN /opt/venv/bin/pip install --no-index --find-links /wheels -r"),
        index("COPY --from=deps /opt/venv /opt/venv"),
        index("COPY gateway/"),
        index("COPY gateway-spec.json"),
        index("LABEL"),
        index("CMD"),
    ]
    assert order == sorted(order)
    assert 'CMD ["/opt/venv/bin/python", "-m", "gateway"]' in lines
    assert "EXPOSE 8000" in lines
    user = lines[index("USER")]
    assert user.split()[1].split(":")[0] not in ("0", "root")
    health = lines[index("HEALTHCHECK")]
    assert "/healthz" in health and "curl" not in health
    exec_form = json.loads(health.split(" CMD ", 1)[1])
    assert exec_form[:2] == ["/opt/venv/bin/python", "-c"]
    compile(exec_form[2], "healthcheck", "exec")  # valid python

    labels = [line for line in lines if line.startswith("LABEL ")]
    assert 'LABEL "io.homemlops.run-id"="0123456789abcdef0123456789abcdef"' in labels
    assert 'LABEL "io.homemlops.model-uri"="models:/m-abc \\"quoted\\" \\$HOME"' in labels
    assert len(labels) == len(LABELS)

    # no secrets, no host pip configuration, no network at build time
    lowered = text.lower()
    for word in ("password", "token", "secret", "pip.conf", "index-url", "pip_cert", "ca-certificates", "curl"):
        assert word not in lowered, word
    assert "--no-index" in text


def test_requirements_pin_host_versions(context):
    pins = {}
    for line in (context / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name] = version
    for name in ("fastapi", "starlette", "pydantic", "pydantic-core", "httpx", "httpcore", "anyio", "h11",
                 "idna", "certifi", "uvicorn", "click", "prometheus-client", "typing-extensions",
                 "annotated-types", "uvloop", "httptools"):
        assert name in pins, name
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version, name
    # no other extras leaked in (fastapi[standard], uvicorn[standard]); uvloop and
    # httptools are wanted on purpose (the fast event loop and HTTP parser)
    assert not {"jinja2", "python-multipart", "watchfiles"} & set(pins)
    assert pins == runtime_requirements()


def test_wheels_hold_one_wheel_per_requirement(context, wheel_cache):
    pins = {canonicalize_name(n): Version(v) for n, v in runtime_requirements().items()}
    wheels = {}
    for path in (context / "wheels").iterdir():
        name, version, _build, _tags = parse_wheel_filename(path.name)
        assert name not in wheels, f"two wheels for {name}"
        wheels[name] = version
        assert (wheel_cache / path.name).is_file()  # came from the shared cache
    assert wheels == pins


def test_second_render_downloads_nothing(tmp_path, wheel_cache, context, monkeypatch):
    import subprocess

    def no_pip(*args, **kwargs):
        raise AssertionError(f"pip ran again: {args}")

    monkeypatch.setattr(subprocess, "run", no_pip)
    before = sorted(p.name for p in wheel_cache.iterdir())
    other = render_gateway_context(tmp_path / "b", spec("f" * 32), BASE, wheel_cache, LABELS, None)
    assert sorted(p.name for p in wheel_cache.iterdir()) == before
    # same requirements and wheels: the pip layer is reused; only the spec differs
    assert (other / "requirements.txt").read_bytes() == (context / "requirements.txt").read_bytes()
    assert sorted(p.name for p in (other / "wheels").iterdir()) == sorted(p.name for p in (context / "wheels").iterdir())
    assert (other / "gateway-spec.json").read_bytes() != (context / "gateway-spec.json").read_bytes()


def test_overrides(tmp_path, wheel_cache, context):
    override = tmp_path / "serving" / "tabular-iris" / "fast-api"
    override.mkdir(parents=True)
    (override / "extra.py").write_text("def extend(app, spec):\n    pass\n")
    (override / "app.py").write_text("# a full replacement\ndef create_app(spec, upstream_url=None):\n    ...\n")
    ctx = render_gateway_context(tmp_path / "b", spec(), BASE, wheel_cache, LABELS, override)
    assert (ctx / "extra.py").read_text() == (override / "extra.py").read_text()
    assert (ctx / "gateway" / "app.py").read_text() == (override / "app.py").read_text()
    lines = _instructions((ctx / "Dockerfile").read_text())
    assert "COPY extra.py /app/extra.py" in lines and "ENV HOME_MLOPS_GATEWAY_EXTRA=extra" in lines
    # an override folder that does not exist changes nothing
    plain = render_gateway_context(tmp_path / "c", spec(), BASE, wheel_cache, LABELS, tmp_path / "missing")
    assert not (plain / "extra.py").exists()
    assert "HOME_MLOPS_GATEWAY_EXTRA" not in (plain / "Dockerfile").read_text()


@pytest.mark.parametrize("base,labels", [
    ("debian:bookworm\nRUN rm -rf /", {}),
    (BASE, {"bad key with spaces": "x"}),
    (BASE, {"ok": "line one\nRUN evil"}),
])
def test_injection_is_refused(base, labels):
    with pytest.raises(HomeMlopsError):
        render_dockerfile(base, labels)
