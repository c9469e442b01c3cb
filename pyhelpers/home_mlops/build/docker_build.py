"""Build an image with the Docker Engine's classic builder (no buildx here), with progress.

Shared by the bento and the gateway images. The build context is a folder we
rendered; the result is described by ImageInfo (id, size, layer digests).
"""
from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from home_mlops import console, output
from home_mlops.build.labels import LABEL_INPUTS_DIGEST
from home_mlops.errors import BuildFailed
from home_mlops.platform.host import docker_client

INPUTS_LABEL = LABEL_INPUTS_DIGEST
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")
TAIL_LINES = 20


@dataclass
class ImageInfo:
    ref: str
    id: str
    size_bytes: int
    layers: list[str]
    build_seconds: float
    reused: bool
    labels: dict[str, str] = field(default_factory=dict)


def context_digest(folder: Path, extra: str = "") -> str:
    """What the image is made of: file names and contents, plus e.g. the base image id."""
    h = hashlib.sha256(extra.encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith("wheels/"):
            h.update(rel.encode())  # wheel file names carry name, version and tags already
            continue
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def describe(client, ref: str, seconds: float, reused: bool) -> ImageInfo:
    image = client.images.get(ref)
    return ImageInfo(
        ref=ref,
        id=image.id,
        size_bytes=int(image.attrs.get("Size", 0)),
        layers=list(image.attrs.get("RootFS", {}).get("Layers", [])),
        build_seconds=round(seconds, 2),
        reused=reused,
        labels=dict(image.labels or {}),
    )


def existing_with_inputs(client, ref: str, inputs_digest: str) -> bool:
    import docker.errors

    try:
        return client.images.get(ref).labels.get(INPUTS_LABEL) == inputs_digest
    except docker.errors.ImageNotFound:
        return False


def build_image(context: Path, ref: str, labels: dict[str, str], *, what: str) -> ImageInfo:
    """docker build with the classic builder; reuses an identical image without building."""
    client = docker_client()
    base_id = _base_image_id(client, context / "Dockerfile")
    inputs = context_digest(context, extra=base_id)
    labels = {**labels, INPUTS_LABEL: inputs}
    if existing_with_inputs(client, ref, inputs):
        console.ok(f"{what} image {ref} is up to date (same inputs)")
        return describe(client, ref, 0.0, reused=True)
    started = time.monotonic()
    step_line, log_tail = "", []  # the current step and its last output lines: what a failure shows
    with output.StepProgress(f"building {what} image") as progress:
        try:
            stream = client.api.build(
                path=str(context), tag=ref, labels=labels, network_mode="host",
                rm=True, forcerm=True, decode=True, pull=False,
            )
            for chunk in stream:
                if "error" in chunk:
                    error = chunk["error"].strip()
                    raise BuildFailed(
                        f"docker build of the {what} image failed: {output.clean(error)}",
                        hint=_hint(error) + f" (build context: {context})",
                        log_tail=_tail(step_line, log_tail),
                    )
                for line in output.clean_lines(chunk.get("stream") or ""):
                    output.tool_line("docker", line)
                    step = _STEP.match(line)
                    if step:
                        step_line, log_tail = line, []
                        progress.update(int(step[1]) - 1, int(step[2]), f"{what}: {step[3][:60]}")
                    else:
                        log_tail = (log_tail + [line])[-TAIL_LINES:]
            progress.done()
        except BuildFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - daemon errors, disk full, ...
            raise BuildFailed(f"docker build of the {what} image failed: {output.clean(str(exc))[:400]}",
                              hint=_hint(str(exc)), log_tail=_tail(step_line, log_tail)) from None
    info = describe(client, ref, time.monotonic() - started, reused=False)
    console.ok(f"{what} image {ref} built in {info.build_seconds:.1f} s ({info.size_bytes / 1e6:.0f} MB)")
    return info


def _tail(step_line: str, lines: list[str]) -> list[str]:
    return ([step_line] if step_line else []) + lines[-(TAIL_LINES - 1):]


def _base_image_id(client, dockerfile: Path) -> str:
    import docker.errors

    ids = []
    for line in dockerfile.read_text().splitlines():
        if line.upper().startswith("FROM "):
            name = line.split()[1]
            try:
                ids.append(client.images.get(name).id)
            except docker.errors.ImageNotFound:
                raise BuildFailed(
                    f"base image {name} is not on this Docker host",
                    "a local image (images cannot be pulled here)",
                    "run `home-mlops platform up` to build home-mlops/python-base:3.11, or pass --base-image",
                ) from None
    return ",".join(ids)


def _hint(message: str) -> str:
    lowered = message.lower()
    if "no space left" in lowered:
        return "the disk is full: free space (docker image prune, docker builder prune) and build again"
    if "pull access denied" in lowered or "manifest unknown" in lowered:
        return "the base image must exist locally: run `home-mlops platform up` or pass --base-image"
    return "the failing step and its last output lines are shown with this error"
