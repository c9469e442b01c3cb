"""The thin adapter between home-mlops and a Kubernetes API server (the `kubernetes` client).

Everything apply.py needs from a cluster, as a few methods that take and return the client's
own model objects. ``KubeCluster`` talks to a real API server (kubeconfig or in-cluster service
account); tests give apply.py an object with the same methods that holds model objects.
Errors come back as home-mlops errors: the API server unreachable is exit 7, refused is exit 6.
"""
from __future__ import annotations

from typing import Any, Protocol

from kubernetes.client import V1Deployment, V1Pod, V1ReplicaSet

from home_mlops.errors import DeployFailed, HomeMlopsError, Unavailable
from home_mlops.k8s.render import FIELD_MANAGER, PORT_NAME

# The kinds render.py makes: apiVersion and plural (the REST path); no discovery round trips needed.
KINDS = {
    "Namespace": ("v1", "namespaces"),
    "Service": ("v1", "services"),
    "Deployment": ("apps/v1", "deployments"),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers"),
    "Ingress": ("networking.k8s.io/v1", "ingresses"),
}
# What undeploy removes, front to back (an Ingress first, so nothing routes to a Service being removed).
APP_KINDS = ("Ingress", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "Deployment")


def object_path(kind: str, namespace: str | None, name: str | None = None) -> str:
    """/api/v1/namespaces/<ns>/services/<name>, /apis/apps/v1/... (names are checked DNS names)."""
    api_version, plural = KINDS[kind]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    return f"{path}/{name}" if name else path


class Cluster(Protocol):
    def apply(self, obj: dict[str, Any]) -> None: ...
    def namespace_exists(self, name: str) -> bool: ...
    def deployment(self, namespace: str, name: str) -> V1Deployment | None: ...
    def deployments(self, namespace: str, selector: str) -> list[V1Deployment]: ...
    def replica_sets(self, namespace: str, selector: str) -> list[V1ReplicaSet]: ...
    def pods(self, namespace: str, selector: str) -> list[V1Pod]: ...
    def patch_deployment(self, namespace: str, name: str, patch: list[dict[str, Any]]) -> None: ...
    def delete_replica_set(self, namespace: str, name: str) -> None: ...
    def proxy(self, namespace: str, service: str, path: str, payload: dict | None) -> tuple[int, str]: ...
    def pod_log(self, namespace: str, pod: str, lines: int) -> list[str]: ...
    def ingress_hosts(self, namespace: str, selector: str) -> list[str]: ...
    def delete_app(self, namespace: str, selector: str) -> list[str]: ...


def connect() -> "KubeCluster":
    """The cluster of the kubeconfig (KUBECONFIG, else ~/.kube/config), else of the pod's service account."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    from home_mlops import env

    try:
        # Read now, not when the client was imported (its default is fixed at import time).
        config.load_kube_config(config_file=env.KUBECONFIG.get() or None)
    except (ConfigException, OSError, TypeError) as kube_error:
        try:
            config.load_incluster_config()
        except ConfigException:
            raise Unavailable(f"no Kubernetes cluster is configured ({str(kube_error)[:200]})",
                              "a kubeconfig (KUBECONFIG or ~/.kube/config) or a pod's service account",
                              "point KUBECONFIG at the cluster's kubeconfig (docs/kubernetes.md)") from None
    cluster = KubeCluster()
    cluster.check()
    return cluster


class KubeCluster:
    """Cluster over the `kubernetes` client (server-side apply through its dynamic client)."""

    def __init__(self) -> None:
        from kubernetes import client

        self.api = client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)

    def _call(self, what: str, fn, *args, missing_ok: bool = False, **kwargs):
        """One API call; its failure as a home-mlops error that says what was being done
        (with ``missing_ok``, a 404 is None)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, **kwargs)
        except HomeMlopsError:
            raise
        except ApiException as exc:
            if missing_ok and exc.status == 404:
                return None
            hint = ("give the deploying account rights in the namespace (docs/kubernetes.md, RBAC)"
                    if exc.status in (401, 403) else "see the API server's message above")
            raise DeployFailed(f"Kubernetes API refused to {what}: {exc.status} {exc.reason}: "
                               f"{(exc.body or '')[:400] if isinstance(exc.body, str) else ''}", hint=hint) from None
        except (HTTPError, OSError) as exc:
            raise Unavailable(f"the Kubernetes API server did not answer ({what}): {type(exc).__name__}",
                              f"the API server of the kubeconfig at {self.api.configuration.host}",
                              "check the cluster is up and KUBECONFIG points at it") from None

    def check(self) -> str:
        """The API server's version; Unavailable (exit 7) when it does not answer, before anything is done."""
        info = self._call("tell its version", self.api.call_api, "/version", "GET", response_type="object",
                          header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
                          _return_http_data_only=True, _request_timeout=10)
        return str((info or {}).get("gitVersion", "")) if isinstance(info, dict) else ""

    def _request(self, what: str, method: str, path: str, *, query: list | None = None, body: Any = None,
                 content_type: str = "application/json", missing_ok: bool = False) -> Any:
        """One REST call through the client's ApiClient (its auth, TLS and proxy settings); the JSON answer."""
        return self._call(what, self.api.call_api, path, method, query_params=query or [],
                          header_params={"Content-Type": content_type, "Accept": "application/json"},
                          body=body, auth_settings=["BearerToken"], response_type="object",
                          _return_http_data_only=True, missing_ok=missing_ok)

    def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply: a PATCH of the whole object as application/apply-patch+yaml (JSON is YAML),
        field manager home-mlops, conflicts forced (the manifests are the source of truth)."""
        kind, meta = obj["kind"], obj["metadata"]
        if KINDS[kind][0] != obj["apiVersion"]:
            raise ValueError(f"{kind} has apiVersion {obj['apiVersion']}, expected {KINDS[kind][0]}")
        self._request(f"apply {kind} {meta['name']}", "PATCH", object_path(kind, meta.get("namespace"), meta["name"]),
                      query=[("fieldManager", FIELD_MANAGER), ("force", "true")], body=obj,
                      content_type="application/apply-patch+yaml")

    def namespace_exists(self, name: str) -> bool:
        return self._call(f"read namespace {name}", self.core.read_namespace, name, missing_ok=True) is not None

    def deployment(self, namespace: str, name: str) -> V1Deployment | None:
        return self._call(f"read deployment {name}", self.apps.read_namespaced_deployment, name, namespace,
                          missing_ok=True)

    def deployments(self, namespace: str, selector: str) -> list[V1Deployment]:
        return self._call("list deployments", self.apps.list_namespaced_deployment, namespace,
                          label_selector=selector).items

    def replica_sets(self, namespace: str, selector: str) -> list[V1ReplicaSet]:
        return self._call("list replica sets", self.apps.list_namespaced_replica_set, namespace,
                          label_selector=selector).items

    def pods(self, namespace: str, selector: str) -> list[V1Pod]:
        return self._call("list pods", self.core.list_namespaced_pod, namespace, label_selector=selector).items

    def patch_deployment(self, namespace: str, name: str, patch: list[dict[str, Any]]) -> None:
        self._call(f"roll back deployment {name}", self.apps.patch_namespaced_deployment, name, namespace, patch,
                   field_manager=FIELD_MANAGER)

    def delete_replica_set(self, namespace: str, name: str) -> None:
        self._call(f"delete replica set {name}", self.apps.delete_namespaced_replica_set, name, namespace,
                   propagation_policy="Background", missing_ok=True)

    def proxy(self, namespace: str, service: str, path: str, payload: dict | None) -> tuple[int, str]:
        """One request to the Service through the API server's service proxy: (status, body)."""
        from kubernetes.client.exceptions import ApiException

        # namespace and service are checked DNS labels and path is ours: nothing here needs quoting.
        url = f"/api/v1/namespaces/{namespace}/services/{service}:{PORT_NAME}/proxy/{path.lstrip('/')}"
        method = "POST" if payload is not None else "GET"
        try:
            response = self.api.call_api(url, method, header_params={"Content-Type": "application/json",
                                                                     "Accept": "application/json"},
                                         body=payload, auth_settings=["BearerToken"], _preload_content=False,
                                         _return_http_data_only=True, _request_timeout=30)
            return response.status, response.data.decode("utf-8", "replace")
        except ApiException as exc:
            return exc.status or 0, exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or "")

    def pod_log(self, namespace: str, pod: str, lines: int) -> list[str]:
        try:
            text = self.core.read_namespaced_pod_log(pod, namespace, tail_lines=lines)
        except Exception:  # noqa: BLE001 - best effort: the pod may be gone or not started
            return []
        return (text or "").splitlines()[-lines:]

    def ingress_hosts(self, namespace: str, selector: str) -> list[str]:
        from kubernetes import client

        items = self._call("list ingresses", client.NetworkingV1Api(self.api).list_namespaced_ingress, namespace,
                           label_selector=selector).items
        return sorted({rule.host for item in items for rule in (item.spec.rules or []) if rule.host})

    def delete_app(self, namespace: str, selector: str) -> list[str]:
        removed = []
        for kind in APP_KINDS:
            found = self._request(f"list {kind}", "GET", object_path(kind, namespace),
                                  query=[("labelSelector", selector)])
            for item in sorted((found or {}).get("items") or [], key=lambda i: i["metadata"]["name"]):
                name = item["metadata"]["name"]
                self._request(f"delete {kind} {name}", "DELETE", object_path(kind, namespace, name),
                              body={"propagationPolicy": "Background"}, missing_ok=True)
                removed.append(f"{kind.lower()}/{name}")
        return removed
