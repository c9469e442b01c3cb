"""The model-server image's build context: locked wheels, the bento's source, the model."""
from __future__ import annotations

import json
import shutil
from importlib import metadata, resources
from pathlib import Path

from home_mlops.build.bento import SERVICE_CONFIG, BentoSource
from home_mlops.build.dockerfiles import render
from home_mlops.build.wheels import fetch_wheels, image_requirements, lock


def render_dockerfile(app: str, base_image: str, model_tag: str) -> str:
    from home_mlops.build.gateway_context import RUNTIME_UID  # the front doors' uid (see the template)

    return render("bento.Dockerfile.j2", dict(app=app, base_image=base_image, model_tag=model_tag, uid=RUNTIME_UID))


def lock_text(requirements: list[str], pinned: list[str]) -> str:
    """The lock file: hash-pinned lines (the image's pip runs in hash-checking mode), headed by
    the model requirements that had no version of their own (pinned here by the resolver)."""
    unpinned = [r for r in requirements if "==" not in r]
    header = f"# unpinned in the model, pinned by this lock: {', '.join(unpinned)}\n" if unpinned else ""
    return header + "\n".join(pinned) + "\n"


def render_context(context: Path, app: str, source: BentoSource, bento, model, base_image: str, requirements: list[str]) -> Path:
    """Write the folder `docker build` reads. Replaced whole on every build."""
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    pinned = lock(image_requirements(requirements, [f"bentoml=={metadata.version('bentoml')}"]))
    (context / "requirements.lock").write_text(lock_text(requirements, pinned))
    fetch_wheels(pinned, context / "wheels")
    # The service source from the built Bento, minus the model tag (it is an ENV in the
    # Dockerfile), so this layer stays identical across runs of one app.
    src = context / "src"
    shutil.copytree(Path(bento.path) / "src", src)
    (src / "bentofile.yaml").unlink(missing_ok=True)
    config = json.loads((src / SERVICE_CONFIG).read_text())
    config["model_tag"] = ""
    (src / SERVICE_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    name, version = str(model.tag).split(":")
    shutil.copytree(Path(model.path), context / "models" / name / version)
    # the launcher that gives BentoML's socket SO_REUSEPORT (the bento as front door, mode bento)
    shutil.copy2(Path(str(resources.files("home_mlops.build") / "templates" / "bento_serve.py")),
                 context / "bento_serve.py")
    (context / "Dockerfile").write_text(render_dockerfile(app, base_image, source.model_tag))
    return context
