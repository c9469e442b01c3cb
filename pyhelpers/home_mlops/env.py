"""Every environment variable home-mlops reads, declared once: name, type, default, doc.

As MLflow's ``environment_variables.py`` does: a module that wants a setting from the
environment imports its declaration here and calls ``.get()``; nothing else in the
package reads ``os.environ`` for a ``HOME_MLOPS_*`` name (a test checks this), and
``docs/settings.md`` is generated from this file. Reading is lazy: importing this module
changes nothing and reads nothing.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _text(value: str) -> str:
    return value


def _flag(value: str) -> bool:
    """A switch: 1/true/yes/on (any case) is on, anything else off (typer reads its own flags the same way)."""
    return value.strip().lower() in ("1", "true", "yes", "on", "y", "t")


@dataclass(frozen=True)
class EnvVar(Generic[T]):
    """One environment variable: ``parse`` turns its text into the typed value."""

    name: str
    parse: Callable[[str], T]
    default: T | None
    doc: str

    def is_set(self) -> bool:
        return bool(os.environ.get(self.name, ""))

    def raw(self) -> str | None:
        """The text as set (None when unset or empty), for callers that validate it themselves."""
        return os.environ.get(self.name) or None

    def get(self) -> T | None:
        value = self.raw()
        return self.default if value is None else self.parse(value)


def declared() -> list[EnvVar[Any]]:
    """Every declaration in this module, in source order (for the docs table and tests)."""
    return [v for v in globals().values() if isinstance(v, EnvVar)]


# --- declarations (grouped by stage; keep one line of doc each) ---------------------------

HOME = EnvVar("HOME_MLOPS_HOME", _text, None,
              "State folder (MLflow store, model cache, BentoML home, builds); default: "
              "<checkout>/home-mlops-state or ~/.local/share/home-mlops.")
PLATFORM_DIR = EnvVar("HOME_MLOPS_PLATFORM_DIR", _text, None,
                      "The platform's folder (registry data and password, base image recipe); default: "
                      "/var/lib/home-mlops as root, else ~/.local/share/home-mlops-platform.")
ARTIFACT_ROOT = EnvVar("HOME_MLOPS_ARTIFACT_ROOT", _text, None,
                       "Where `home-mlops train` logs artifacts when it creates an experiment; default: "
                       "<state>/mlruns.")
DEBUG = EnvVar("HOME_MLOPS_DEBUG", _flag, False,
               "Set to 1 to let an unexpected error (a bug) raise with its traceback.")

# Output of every command (typer options read these too)
QUIET = EnvVar("HOME_MLOPS_QUIET", _flag, False, "`--quiet`: only warnings, errors and the summary.")
VERBOSE = EnvVar("HOME_MLOPS_VERBOSE", _flag, False, "`--verbose`: every tool's output as it runs.")
LOG_FORMAT = EnvVar("HOME_MLOPS_LOG_FORMAT", _text, None,
                    "`--log-format`: plain (timestamped lines), json (one JSON object per line) or rich; "
                    "default: rich on a terminal, plain without one.")
JSON = EnvVar("HOME_MLOPS_JSON", _text, None, "`--json`: write the command's result as JSON here (- for stdout).")

# The job parameters (the Jenkins job passes them through withEnv; typer options read them)
APP_NAME = EnvVar("APP_NAME", _text, None, "`--app`: the app name (job parameter).")
EXPERIMENT_ID = EnvVar("EXPERIMENT_ID", _text, None, "`--experiment-id`: the MLflow experiment id (job parameter).")
RUN_ID = EnvVar("RUN_ID", _text, None, "`--run-id`: the MLflow run id (job parameter).")
NAS = EnvVar("NAS", _text, None,
             "`--nas`: an artifact root read without a tracking server: /path, file://, gs:// or s3:// (job parameter).")
AR_NAME = EnvVar("AR_NAME", _text, None, "`--registry`: the image repository prefix, e.g. 127.0.0.1:5000/ml (job parameter).")
MLFLOW_TRACKING_URI = EnvVar("MLFLOW_TRACKING_URI", _text, None,
                             "`--tracking-uri`: the MLflow tracking server or store; default: sqlite in the state folder.")
FROM = EnvVar("HOME_MLOPS_FROM", _text, None,
              "`--from`: an earlier resolve/bento-build/fastapi-build result file to start from (no second resolve).")

# Build
BASE_IMAGE = EnvVar("HOME_MLOPS_BASE_IMAGE", _text, None,
                    "`--base-image`: the local base image with python3 + venv; default: home-mlops/python-base:3.11.")
BENTOML_HOME = EnvVar("BENTOML_HOME", _text, None, "BentoML's store (models, bentos); default: <state>/bentoml.")
PROMOTE_ALIAS = EnvVar("HOME_MLOPS_PROMOTE_ALIAS", _text, None,
                       "`--promote-alias`: the registered-model alias moved to the deployed version.")

# Registry (credentials only ever go to a trusted registry)
TRUSTED_REGISTRIES = EnvVar("HOME_MLOPS_TRUSTED_REGISTRIES", _text, None,
                            "Comma-separated host[:port] that may receive credentials; default: the platform "
                            "registry and the 'auths' hosts of the Docker config.")
DOCKER_CONFIG = EnvVar("DOCKER_CONFIG", _text, None, "The Docker CLI's config folder; default: ~/.docker.")
REGISTRY_USER = EnvVar("REGISTRY_USER", _text, None, "The registry user (with REGISTRY_PASSWORD) for push and pull.")
REGISTRY_PASSWORD = EnvVar("REGISTRY_PASSWORD", _text, None,
                           "That user's password (never printed; scrubbed from every log).")

# Deploy (option > environment > the app's entry in jobs/projects.yaml > jobs/defaults.yaml > default)
TARGET = EnvVar("HOME_MLOPS_TARGET", _text, None, "`--target`: where to deploy, docker or k8s; default: docker.")
SERVING = EnvVar("HOME_MLOPS_SERVING", _text, None,
                 "`--serving`: the serving mode (bento+gateway, bento, fastapi); default: bento+gateway.")
PORT = EnvVar("HOME_MLOPS_PORT", _text, None, "`--port`: the app's public port; default: 8000.")
BIND = EnvVar("HOME_MLOPS_BIND", _text, None, "`--bind`: the address the public port binds; default: 0.0.0.0 (every address).")
CPUS = EnvVar("HOME_MLOPS_CPUS", _text, None, "`--cpus`: CPUs of the model server; default: 1.")
MEMORY = EnvVar("HOME_MLOPS_MEMORY", _text, None, "`--memory`: memory of the model server; default: 2g.")
READY_TIMEOUT = EnvVar("HOME_MLOPS_READY_TIMEOUT", _text, None,
                       "`--ready-timeout`: seconds a new deployment may take to become ready (default 180). Inside the "
                       "gateway: seconds its /readyz waits for the model server (default 2).")

# Kubernetes target (home-mlops k8s ...)
NAMESPACE = EnvVar("HOME_MLOPS_NAMESPACE", _text, None, "`--namespace`: the cluster namespace.")
REPLICAS = EnvVar("HOME_MLOPS_REPLICAS", _text, None, "`--replicas`: replicas of each role.")
MAX_REPLICAS = EnvVar("HOME_MLOPS_MAX_REPLICAS", _text, None, "`--max-replicas`: the autoscaler's upper bound.")
CPU_TARGET_PERCENT = EnvVar("HOME_MLOPS_CPU_TARGET_PERCENT", _text, None,
                            "`--cpu-target-percent`: the autoscaler's CPU target.")
INGRESS_HOST = EnvVar("HOME_MLOPS_INGRESS_HOST", _text, None, "`--ingress-host`: the Ingress host name (none: no Ingress).")
INGRESS_CLASS = EnvVar("HOME_MLOPS_INGRESS_CLASS", _text, None, "`--ingress-class`: the Ingress class.")
IMAGE_PULL_SECRET = EnvVar("HOME_MLOPS_IMAGE_PULL_SECRET", _text, None,
                           "`--image-pull-secret`: the Secret the nodes pull images with.")
CANARY_TRAFFIC_PERCENT = EnvVar("HOME_MLOPS_CANARY_TRAFFIC_PERCENT", _text, None,
                                "`--canary-traffic-percent`: KServe's share of traffic for the new revision.")

# Jenkins (home-mlops jenkins ...; docker/jenkins/start.sh writes them to $HOME_MLOPS_HOME/jenkins/jenkins.env)
JENKINS_URL = EnvVar("HOME_MLOPS_JENKINS_URL", _text, None,
                     "Jenkins for `home-mlops jenkins`, e.g. http://127.0.0.1:8080/.")
JENKINS_USER = EnvVar("HOME_MLOPS_JENKINS_USER", _text, None, "The Jenkins user `home-mlops jenkins` acts as.")
JENKINS_TOKEN = EnvVar("HOME_MLOPS_JENKINS_TOKEN", _text, None,
                       "That user's API token (never a password; only ever read from the environment).")

# The front door (read inside the gateway / standalone server image by gateway/settings.py, which
# cannot import this module: declared here for the docs table)
MAX_IN_FLIGHT = EnvVar("HOME_MLOPS_MAX_IN_FLIGHT", int, 32,
                       "Predictions a front door runs at once; more wait in its queue.")
MAX_QUEUE = EnvVar("HOME_MLOPS_MAX_QUEUE", int, 128,
                   "Requests that may wait for a prediction slot; past that a quick 503 with Retry-After.")
QUEUE_TIMEOUT = EnvVar("HOME_MLOPS_QUEUE_TIMEOUT", float, 1.0,
                       "Seconds a request may wait for a prediction slot before a 503 with Retry-After.")

# The rest of the front door (gateway/settings.py, gateway/__main__.py, gateway/inprocess.py read these inside
# the image; the deployer sets them on each container)
UPSTREAM_URL = EnvVar("HOME_MLOPS_UPSTREAM_URL", _text, "http://127.0.0.1:3000", "The model server the gateway calls.")
UPSTREAM_TIMEOUT = EnvVar("HOME_MLOPS_UPSTREAM_TIMEOUT", float, 10.0, "Seconds the gateway waits for a prediction.")
UPSTREAM_CONNECT_TIMEOUT = EnvVar("HOME_MLOPS_UPSTREAM_CONNECT_TIMEOUT", float, 2.0,
                                  "Seconds the gateway waits to connect to the model server.")
UPSTREAM_MAX_CONNECTIONS = EnvVar("HOME_MLOPS_UPSTREAM_MAX_CONNECTIONS", int, 100,
                                  "Connections the gateway keeps to the model server.")
UPSTREAM_KEEPALIVE_SECONDS = EnvVar("HOME_MLOPS_UPSTREAM_KEEPALIVE_SECONDS", float, 4.0,
                                    "Seconds an idle upstream connection is kept (below uvicorn's 5).")
MAX_BODY_BYTES = EnvVar("HOME_MLOPS_MAX_BODY_BYTES", int, 1024 * 1024,
                        "Largest request body accepted (gateway and BentoML service); larger is 413.")
MAX_ROWS = EnvVar("HOME_MLOPS_MAX_ROWS", int, 10_000, "Most rows in one request; more is 413.")
MAX_DEPTH = EnvVar("HOME_MLOPS_MAX_DEPTH", int, 32, "Deepest JSON nesting accepted; deeper is 400.")
DEPLOY_ID = EnvVar("HOME_MLOPS_DEPLOY_ID", _text, None,
                   "Set by the deployer on each container; answered in the X-Home-Mlops-Deploy-Id header.")
MODEL_TAG = EnvVar("HOME_MLOPS_MODEL_TAG", _text, None,
                   "The BentoML model tag the service loads (set by `bento-build` while it builds; baked in after).")
MODEL_DIR = EnvVar("HOME_MLOPS_MODEL_DIR", _text, None,
                   "The standalone server (fastapi mode): the model folder loaded in process.")
MAX_BATCH_ROWS = EnvVar("HOME_MLOPS_MAX_BATCH_ROWS", float, 256,
                        "fastapi mode: most rows merged into one model call (1-100000).")
BATCH_WAIT_MS = EnvVar("HOME_MLOPS_BATCH_WAIT_MS", float, 0,
                       "fastapi mode: milliseconds a call waits for more requests to batch (0-100).")
MAX_QUEUE_SECONDS = EnvVar("HOME_MLOPS_MAX_QUEUE_SECONDS", float, 1.0,
                           "fastapi mode: seconds a request may wait for the model before a 503.")
MODEL_THREADS = EnvVar("HOME_MLOPS_MODEL_THREADS", float, 1,
                       "fastapi mode: threads one model call uses (the workers are the parallelism).")
GATEWAY_SPEC = EnvVar("HOME_MLOPS_GATEWAY_SPEC", _text, None,
                      "The gateway-spec.json to serve; default: the one beside the package.")
GATEWAY_HOST = EnvVar("HOME_MLOPS_GATEWAY_HOST", _text, "0.0.0.0", "The address the front door binds in its container.")
GATEWAY_PORT = EnvVar("HOME_MLOPS_GATEWAY_PORT", int, 8000, "The port the front door binds in its container.")
GATEWAY_WORKERS = EnvVar("HOME_MLOPS_GATEWAY_WORKERS", int, 1, "Front-door worker processes (sized from the app's CPUs).")
GATEWAY_EXTRA = EnvVar("HOME_MLOPS_GATEWAY_EXTRA", _text, None,
                       "A per-app module whose extend(app, spec) adds routes to the front door.")
GATEWAY_GRACEFUL_TIMEOUT = EnvVar("HOME_MLOPS_GATEWAY_GRACEFUL_TIMEOUT", int, 30,
                                  "Seconds the front door drains requests on stop.")
GATEWAY_LOG_LEVEL = EnvVar("HOME_MLOPS_GATEWAY_LOG_LEVEL", _text, "info", "The front door's uvicorn log level.")
GATEWAY_ACCESS_LOG = EnvVar("HOME_MLOPS_GATEWAY_ACCESS_LOG", _flag, False, "1: the front door logs every request.")
PROMETHEUS_MULTIPROC_DIR = EnvVar("PROMETHEUS_MULTIPROC_DIR", _text, None,
                                  "prometheus_client's multiprocess folder; the front door makes one when workers > 1.")

# Kubernetes target (k8s/)
KUBECONFIG = EnvVar("KUBECONFIG", _text, None,
                    "The kubeconfig(s) of the k8s target's cluster (os.pathsep-separated); default ~/.kube/config, "
                    "else the pod's service account.")

# Set by the deployer on every container (docker and k8s) for the app's own code; home-mlops never reads them
CONTAINER_APP = EnvVar("HOME_MLOPS_APP", _text, None, "Set on each container: the app it serves.")
CONTAINER_EXPERIMENT_ID = EnvVar("HOME_MLOPS_EXPERIMENT_ID", _text, None,
                                 "Set on each container: the MLflow experiment of the served run.")
CONTAINER_RUN_ID = EnvVar("HOME_MLOPS_RUN_ID", _text, None, "Set on each container: the served MLflow run.")
CONTAINER_MODEL_ID = EnvVar("HOME_MLOPS_MODEL_ID", _text, None,
                            "Set on each container: the served MLflow logged model (m-...), empty for a run's model.")

# The dockerized Jenkins (docker/jenkins/start.sh, its JCasC), not the package
REF = EnvVar("HOME_MLOPS_REF", _text, None,
             "The git ref Jenkins loads the shared library at by default (JCasC ${HOME_MLOPS_REF}).")
