"""One label-key module (build/labels.py): writers and readers of a label use the same key."""
from __future__ import annotations

import re
from pathlib import Path

from home_mlops.build import labels
from home_mlops.resolve.resolver import ResolvedModel

PACKAGE = Path(labels.__file__).resolve().parents[1]
# A label key written as a string literal: a second spelling of a key this module owns.
_KEY_LITERAL = re.compile(r"""["'](?:io\.homemlops|org\.opencontainers\.image)\.[a-z-]+["']""")


def test_image_labels_use_the_declared_keys():
    resolved = ResolvedModel.model_construct(
        experiment_id="7", run_id="a" * 32, model_id="m-" + "b" * 32, model_uri="models:/m-" + "b" * 32,
        content_digest="sha256:" + "c" * 64,
    )
    got = labels.image_labels("tabular-iris", "gateway", resolved)
    assert got[labels.LABEL_APP] == "tabular-iris" and got[labels.LABEL_ROLE] == "gateway"
    assert got[labels.LABEL_RUN] == "a" * 32 and got[labels.LABEL_EXPERIMENT] == "7"
    assert got[labels.LABEL_MODEL_DIGEST] == "sha256:" + "c" * 64
    assert got[labels.OCI_TITLE] == "tabular-iris-gateway"
    assert labels.BUILD_TIME_LABELS < set(got)
    declared = {v for k, v in vars(labels).items() if k.startswith(("LABEL_", "OCI_")) and not k.endswith("PREFIX")}
    assert set(got) <= declared


def test_no_other_module_spells_a_label_key():
    spelled = {}
    for path in PACKAGE.rglob("*.py"):
        if path == Path(labels.__file__).resolve() or "templates" in path.parts:
            continue  # templates are rendered into images: they get values, not keys
        found = _KEY_LITERAL.findall(path.read_text(encoding="utf-8"))
        if found:
            spelled[str(path.relative_to(PACKAGE))] = found
    assert spelled == {}
