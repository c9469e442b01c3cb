"""What resolve made of each cache entry, kept beside the cache: a later stage's --from uses it.

Describing a model (resolver.describe) reads its MLmodel through MLflow, and importing MLflow
is most of what a resolve costs in a new process (seconds). ``remember`` keeps the ``Resolved``
record next to the cache (``<state>/cache/described/<entry>.json``, the same trust as the cache:
this machine's state folder, never the workspace), and ``recall`` gives it back for an entry
whose files were just hashed again, when it describes that very content.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from home_mlops.records import Resolved
from home_mlops.resolve.cache import ModelCache


def _memo(cache: ModelCache, entry: str) -> Path:
    return cache.root.parent / "described" / f"{entry}.json"


def remember(resolved: Resolved, cache: ModelCache | None = None) -> Resolved:
    """Keep the record of a resolved model (atomically: a reader never sees half a file)."""
    cache = cache or ModelCache()
    path = _memo(cache, Path(resolved.local_path).name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".described-", dir=path.parent)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(resolved.model_dump(mode="json"), sort_keys=True))
        os.replace(tmp, path)
    except OSError:  # only a shortcut for later stages: they describe the model again without it
        pass
    return resolved


def recall(entry: str, content_digest: str, cache: ModelCache | None = None) -> Resolved | None:
    """The kept record of cache entry ``entry`` when it describes ``content_digest``, else None."""
    cache = cache or ModelCache()
    try:
        kept = Resolved.model_validate_json(_memo(cache, entry).read_text(encoding="utf-8"))
    except (OSError, ValueError, ValidationError):
        return None
    if kept.content_digest != content_digest or Path(kept.local_path).name != entry:
        return None
    return kept
