"""A resolved run -> the ClusterRelease render.py turns into objects: each role's image by digest.

The image names are the build commands' own (build.stages.image_ref). Each digest comes from a
build result file (`--from`: the JSON of bento-build, fastapi-build or pipeline) when one names
that image, else from the registry (build.registry: the trusted-registry access, exit 2 for an
untrusted host before any connection, exit 3 when the image is not there).
"""
from __future__ import annotations

import json
from pathlib import Path

from home_mlops import console
# Set when an image is built, not by what it holds: left out so the same run renders the same bytes.
from home_mlops.build.labels import BUILD_TIME_LABELS, image_labels
from home_mlops.build.stages import image_ref
from home_mlops.deploy.specs import validate_image_ref
from home_mlops.errors import BadInput, NotFound
from home_mlops.k8s.render import DIGEST, SERVING_ROLES, ClusterRelease, RoleImage
from home_mlops.params import JobParams
from home_mlops.resolve.resolver import ResolvedModel

MAX_RESULT_BYTES = 4 * 1024 * 1024
RESULT_PARTS = ("bento", "gateway", "server")  # pipeline's result holds each build's result under its role


def identity_labels(app: str, role: str, resolved: ResolvedModel) -> dict[str, str]:
    """The image's labels (build/labels.py) that the run decides."""
    return {k: v for k, v in image_labels(app, role, resolved).items() if k not in BUILD_TIME_LABELS}


def _bad_result(path: Path, what: str) -> BadInput:
    return BadInput(f"build result {path}: {what}",
                    "the --json result of bento-build, fastapi-build or pipeline (image and digest)",
                    "give the file the build wrote (--json PATH), or leave --from out to ask the registry")


def digests_from_results(paths: list[Path]) -> dict[str, str]:
    """image reference -> digest, from build result files. A file that is not such a result is exit 2."""
    found: dict[str, str] = {}
    for path in paths:
        try:
            if path.stat().st_size > MAX_RESULT_BYTES:
                raise _bad_result(path, f"larger than {MAX_RESULT_BYTES} bytes")
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise _bad_result(path, f"cannot be read as JSON ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise _bad_result(path, "is not a JSON object")
        parts = [data] + [data[k] for k in RESULT_PARTS if isinstance(data.get(k), dict)]
        named = 0
        for part in parts:
            image, digest = part.get("image"), part.get("digest")
            if image is None and digest is None:
                continue
            if not (isinstance(image, str) and isinstance(digest, str) and DIGEST.fullmatch(digest)):
                raise _bad_result(path, f"image {str(image)[:120]!r} has no sha256 digest ({str(digest)[:80]!r}): "
                                        "was it pushed?")
            found[validate_image_ref(image)] = digest
            named += 1
        if not named:
            raise _bad_result(path, "names no image")
    return found


def registry_digest(ref: str) -> str:
    from home_mlops.build.registry import auth_for, remote_digest

    digest = remote_digest(ref, auth_for(ref))
    if not digest:
        raise NotFound(f"image {ref} is not in the registry",
                       "the run's images pushed by bento-build / fastapi-build",
                       "build and push them first (or give their results with --from)")
    return digest


def cluster_release(params: JobParams, resolved: ResolvedModel, serving: str,
                    results: dict[str, str] | None = None) -> ClusterRelease:
    """The run's release in ``serving`` mode: its images (digests from ``results``, else the registry)."""
    results = results or {}
    images = []
    for role in SERVING_ROLES[serving]:
        ref = image_ref(params, role, resolved)
        digest = results.get(ref)
        if digest:
            console.info(f"{role} image {ref} @ {digest} (build result)")
        else:
            digest = registry_digest(ref)
            console.info(f"{role} image {ref} @ {digest} (registry)")
        images.append(RoleImage(role, ref, digest, identity_labels(params.app, role, resolved)))
    unused = sorted(set(results) - {image.ref for image in images})
    if unused:
        console.warn(f"build results not used (not this run's {'/'.join(SERVING_ROLES[serving])} images): {', '.join(unused)}")
    smoke = {"dataframe_records": resolved.input_example} if resolved.input_example else None
    return ClusterRelease(params.app, resolved.experiment_id, resolved.run_id, resolved.model_id or "", serving,
                          tuple(images), smoke)
