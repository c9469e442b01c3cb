"""clean_requirements: keep what the flavor needs, drop training-only and foreign packages, pin."""
from __future__ import annotations

from importlib import metadata

import pytest

from home_mlops.requirements import FLAVOR_PACKAGES, TRAINING_ONLY, clean_requirements

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
    kept, dropped = clean_requirements(CAPTURED, ["python_function", "sklearn"])
    assert names(kept) == {"mlflow", "cloudpickle", "numpy", "pandas", "scikit-learn", "scipy", "skops"}
    assert {"pytest", "rich", "psutil", "nvidia-ml-py", "torch"} <= names(dropped)
    assert all("==" in k for k in kept)
    assert "scikit-learn==1.9.1" in kept
    assert kept == sorted(kept, key=str.lower)


def test_pytorch_keeps_torch_and_strips_local_version():
    kept, dropped = clean_requirements(CAPTURED, ["python_function", "pytorch"])
    assert "torch==2.13.0" in kept  # "+cpu" local label removed
    assert "scikit-learn" not in names(kept)
    assert "skops" not in names(kept)
    assert "pytest" in names(dropped)


@pytest.mark.parametrize("flavor", ["lightgbm", "xgboost"])
def test_tree_flavors(flavor):
    lines = CAPTURED + [f"{flavor}==4.0.0"]
    kept, dropped = clean_requirements(lines, ["python_function", flavor])
    assert flavor in names(kept)
    assert "scikit-learn" in names(kept)
    assert "torch" in names(dropped)


def test_unpinned_pinned_to_installed_version():
    installed = {n: metadata.version(n) for n in ("numpy", "pandas", "mlflow")}
    kept, _ = clean_requirements(["numpy", "pandas>=1.0", "mlflow<99"], ["python_function", "sklearn"])
    for name, version in installed.items():
        assert f"{name}=={version.split('+')[0]}" in kept


def test_unpinned_incompatible_range_kept_as_written():
    kept, _ = clean_requirements(["numpy<0.1"], ["python_function", "sklearn"])
    assert kept == ["numpy<0.1"]


def test_unpinned_not_installed_kept_as_written():
    kept, _ = clean_requirements(["catboost"], ["python_function", "catboost"])
    # catboost is not installed here: it cannot be pinned but must stay.
    try:
        metadata.version("catboost")
    except metadata.PackageNotFoundError:
        assert kept == ["catboost"]


def test_unknown_flavor_keeps_everything_but_training_only():
    lines = ["some-custom-lib==1.2.3", "torch==2.13.0", "pytest==9.2.0", "rich==15.0.0", "tqdm==4.0.0", "numpy==2.0.0"]
    kept, dropped = clean_requirements(lines, ["python_function", "my_custom_flavor"])
    assert set(kept) == {"some-custom-lib==1.2.3", "torch==2.13.0", "numpy==2.0.0"}
    assert names(dropped) == {"pytest", "rich", "tqdm"}


def test_python_function_only_is_base():
    kept, dropped = clean_requirements(["numpy==2.0.0", "torch==2.13.0", "mlflow==3.17.2"], ["python_function"])
    assert set(kept) == {"numpy==2.0.0", "mlflow==3.17.2"}
    assert dropped == ["torch==2.13.0"]


def test_comments_options_duplicates_and_garbage():
    lines = [
        "# a comment",
        "",
        "-r other.txt",
        "--extra-index-url http://x",
        "numpy==2.0.0  # trailing comment",
        "NumPy==1.0.0",  # duplicate (canonical name): first wins
        "scikit_learn==1.9.1",  # non-canonical spelling still matches scikit-learn
        "this is not a requirement!!",
    ]
    kept, dropped = clean_requirements(lines, ["python_function", "sklearn"])
    assert kept == ["numpy==2.0.0", "scikit_learn==1.9.1"]
    assert "-r other.txt" in dropped
    assert "this is not a requirement!!" in dropped
    assert not any(d.lower().startswith("numpy") for d in dropped)


def test_environment_markers_and_extras_pinned():
    kept, _ = clean_requirements(["mlflow[extras]==3.17.2; python_version >= '3.9'"], ["python_function"])
    assert kept == ["mlflow==3.17.2"]


def test_every_training_only_package_dropped_for_every_known_flavor():
    lines = [f"{p}==1.0" for p in sorted(TRAINING_ONLY)]
    for flavor in FLAVOR_PACKAGES:
        kept, dropped = clean_requirements(lines, ["python_function", flavor])
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
    kept, dropped = clean_requirements(["mlflow==3.17.2", *lines], ["python_function", flavor])
    assert names(kept) == {"mlflow", *frameworks}
    assert names(dropped) == {n.split("==")[0] for n in lines} - frameworks
