"""The hostile model corpus (tests/hostile_models.py) through the real CLI, on a real NAS folder.

Each crafted model must end in a clear error (its exit code, no traceback, the JSON
result written, the error naming the line or MLmodel field) or an inert result. Across
all of them: the canary the crafted code would write never appears, and no marker
planted outside the model folders shows up in any output, result, cache entry, build
context or image file.
"""
from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import cli_env, docker_reason, run_cli
from hostile_models import HOSTILE_COLUMNS, MARKUP_NAME, Corpus, HostileModel, build_corpus, make_sdist

APP = "tabular-iris-multi-classifier"
REGISTRY = "127.0.0.1:5000/hmt-c"  # never contacted: every build here is --no-push
EXIT = {"refused": 2, "not_found": 3, "inert": 0}
CASES = [
    "req-direct-reference", "req-path", "req-vcs", "req-editable", "req-extra-index", "req-find-links",
    "req-index-url", "example-dotdot", "example-absolute", "serving-input-dotdot", "symlink-file-out",
    "symlink-dir-out", "symlink-mlmodel", "flavor-model-path-out", "env-file-out", "model-id-dotdot",
    "model-id-dot", "model-id-of-another-model", "run-id-path", "markup-names", "hostile-columns",
    "wide-10000-columns",
]


@dataclass
class Outcome:
    model: HostileModel
    command: str
    proc: subprocess.CompletedProcess
    result: dict | None


@pytest.fixture(scope="module")
def corpus(trained_run, tmp_path_factory) -> Corpus:
    run = trained_run(APP)
    source = Path(run.artifact_root) / run.experiment_id / "models" / run.model_id / "artifacts"
    return build_corpus(source, tmp_path_factory.mktemp("hostile"), run.model_id)


@pytest.fixture(scope="module")
def hostile_state(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile-state")


@pytest.fixture(scope="module")
def outcomes(corpus, hostile_state, tmp_path_factory) -> dict[str, Outcome]:
    """`home-mlops resolve --nas` on every model of the corpus (a few at a time: each is a CLI start)."""
    results = tmp_path_factory.mktemp("hostile-results")
    env = cli_env(hostile_state, MLFLOW_TRACKING_URI="http://127.0.0.1:9")

    def one(model: HostileModel) -> Outcome:
        out = results / f"resolve-{model.case}.json"
        proc = run_cli(["resolve", "--experiment-id", corpus.experiment_id, "--run-id", model.run_id,
                        "--nas", str(corpus.nas), "--json", str(out)], env=env, timeout=600)
        return Outcome(model, "resolve", proc, json.loads(out.read_text()) if out.is_file() else None)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return {o.model.case: o for o in pool.map(one, corpus.models)}


# the tests that use it are marked docker (conftest.py)
DOCKER_FIXTURES = ("built",)


@pytest.fixture(scope="module")
def built(corpus, outcomes, hostile_state, tmp_path_factory):
    """The real builds (--no-push) of the models that get past resolve; their images are removed after."""
    reason = docker_reason()
    if reason:
        pytest.skip(reason)
    import docker

    results = tmp_path_factory.mktemp("hostile-builds")
    env = cli_env(hostile_state, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    done: list[Outcome] = []
    for model in corpus.models:
        for command in model.builds:
            out = results / f"{command}-{model.case}.json"
            proc = run_cli([command, "--app", f"hmt-c-{model.case}", "--experiment-id", corpus.experiment_id,
                            "--run-id", model.run_id, "--nas", str(corpus.nas), "--registry", REGISTRY,
                            "--no-push", "--json", str(out)], env=env, timeout=1500)
            done.append(Outcome(model, command, proc, json.loads(out.read_text()) if out.is_file() else None))
    yield done
    client = docker.from_env()
    for outcome in done:
        if outcome.result and outcome.result.get("image"):
            try:
                client.images.remove(outcome.result["image"], noprune=False)
            except docker.errors.APIError:
                pass


def test_corpus_is_complete(corpus):
    assert [m.case for m in corpus.models] == CASES
    assert len(CASES) >= 10


def test_the_crafted_sdist_really_runs_code(corpus, tmp_path):
    """Self-check: pip building the crafted package writes its canary (so 'no canary' below means something)."""
    canary = tmp_path / "self-check-canary"
    sdist = make_sdist(tmp_path / "pkgs", canary)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp_path / "wheel"), str(sdist)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(canary.glob("setup-py-ran-*"))


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("case", CASES)
def test_each_model_ends_in_a_clear_error_or_an_inert_result(case, outcomes):
    outcome = outcomes[case]
    model, proc, result = outcome.model, outcome.proc, outcome.result
    assert proc.returncode == EXIT[model.expect], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert result is not None, "the JSON result is always written"
    if model.expect == "inert":
        assert result["ok"] is True
        return
    assert result["ok"] is False and result["exit_code"] == EXIT[model.expect]
    assert model.says in result["error"], result["error"]
    assert "expected:" in result["error"] and "error:" in proc.stderr


def test_markup_and_code_in_values_are_inert(outcomes, corpus):
    markup = outcomes["markup-names"].result
    assert markup["model_name"] == "model"  # a name that is not a valid model name is not used
    assert MARKUP_NAME not in outcomes["markup-names"].proc.stderr
    assert markup["python_version"] == "3.11.7"  # '3.11; [/x]' is not a Python version
    columns = outcomes["hostile-columns"].result
    expected = [c.replace("{canary}", str(corpus.canary)) for c in HOSTILE_COLUMNS]
    assert [c["name"] for c in columns["signature"]["inputs"]] == expected  # kept literally
    assert sorted(columns["input_example"][0]) == sorted(expected)  # the JSON result sorts keys
    wide = outcomes["wide-10000-columns"].result
    assert len(wide["signature"]["inputs"]) == 10_000


@pytest.mark.timeout(3600)
def test_builds_of_inert_models_end_clearly(built):
    assert {(o.model.case, o.command) for o in built} == {
        ("req-direct-reference", "bento-build"), ("hostile-columns", "fastapi-build"),
        ("hostile-columns", "bento-build"), ("wide-10000-columns", "fastapi-build"),
    }
    for outcome in built:
        proc, result = outcome.proc, outcome.result
        assert result is not None, (outcome.command, proc.stderr[-2000:])
        allowed = {EXIT[outcome.model.expect]} if outcome.model.expect == "refused" else {0, 2}
        assert proc.returncode in allowed, (outcome.command, outcome.model.case, proc.stderr[-3000:])
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
        assert result["ok"] is (proc.returncode == 0)
        if proc.returncode == 0:
            assert result["pushed"] is False and result["digest"] is None


def _image_holds(image_ref: str, needles: list[bytes]) -> set[bytes]:
    """Which needles occur anywhere in the image's files (docker save: uncompressed layer tars)."""
    import docker

    found: set[bytes] = set()
    tail = b""
    keep = max(len(n) for n in needles)
    for chunk in docker.from_env(timeout=600).images.get(image_ref).save(named=False):
        window = tail + chunk
        found |= {n for n in needles if n in window}
        tail = window[-keep:]
    return found


def _files_holding(root: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path}: {n.decode()}" for n in needles if n in data]
    return hits


@pytest.mark.timeout(1800)
def test_no_code_ran_and_no_file_outside_a_model_was_read(corpus, outcomes, built, hostile_state):
    """The figures of issue 9: models tried, code runs 0, files read outside 0."""
    needles = [m.encode() for m in corpus.markers]
    everything = list(outcomes.values()) + list(built)
    code_runs = sorted(str(p) for p in corpus.canary.rglob("*")) if corpus.canary.exists() else []

    leaks = []
    for outcome in everything:
        text = outcome.proc.stdout + outcome.proc.stderr + json.dumps(outcome.result)
        leaks += [f"{outcome.command} {outcome.model.case}: {m}" for m in corpus.markers if m in text]
    leaks += _files_holding(hostile_state, needles)  # model cache, BentoML store, build contexts
    for outcome in built:
        if outcome.result and outcome.result.get("image"):
            leaks += [f"image {outcome.result['image']}: {n.decode()}"
                      for n in _image_holds(outcome.result["image"], needles)]
    print(f"\nhostile models tried: {len(corpus.models)}; CLI runs: {len(everything)}; "
          f"code runs: {len(code_runs)}; files read outside the model: {len(leaks)}")
    assert code_runs == []
    assert leaks == []


# --------------------------------------------------------------------------- the checks, in-process (fast)


@pytest.mark.parametrize("relative", ["../x.json", "a/../../x.json", "/etc/hostname", "", "link/x.json", "a\x00b"])
def test_model_file_refuses_paths_out_of_the_model(relative, tmp_path):
    from home_mlops.errors import BadInput
    from home_mlops.resolve.mlmodel import model_file

    model = tmp_path / "model"
    model.mkdir()
    (model / "link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(BadInput, match="MLmodel field some.field"):
        model_file(model, relative, "some.field")


def test_model_file_accepts_paths_inside(tmp_path):
    from home_mlops.resolve.mlmodel import check_model_paths, model_file

    model = tmp_path / "model"
    (model / "data").mkdir(parents=True)
    assert model_file(model, "data/input_example.json", "f") == (model / "data" / "input_example.json").resolve()
    mlmodel = {
        "artifact_path": "file:///elsewhere/entirely",  # provenance only: never read, not checked
        "saved_input_example_info": {"artifact_path": "input_example.json", "serving_input_path": "s.json"},
        "flavors": {"python_function": {"env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                                        "artifacts": {"a": {"path": "artifacts/a.bin", "uri": "/src/a.bin"}},
                                        "data": "data", "code": None}},
    }
    check_model_paths(model, mlmodel)


@pytest.mark.parametrize("field, value", [
    ("flavors.python_function.artifacts.a.path", "../../a.bin"),
    ("flavors.python_function.env.conda", "/etc/conda.yaml"),
    ("flavors.sklearn.pickled_model", "../model.pkl"),
    ("flavors.python_function.code", "../../code"),
])
def test_check_model_paths_names_the_field(field, value, tmp_path):
    from home_mlops.errors import BadInput
    from home_mlops.resolve.mlmodel import check_model_paths

    mlmodel: dict = {}
    parts = field.split(".")
    node = mlmodel
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    with pytest.raises(BadInput, match=f"MLmodel field {field} "):
        check_model_paths(tmp_path, mlmodel)
