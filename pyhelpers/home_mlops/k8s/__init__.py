"""The Kubernetes target: manifests rendered from the release (render.py, kserve.py), applied with
server-side apply, watched to a finished rollout, smoke-tested and rolled back (apply.py), through
one thin adapter over the `kubernetes` client (cluster.py) so the decisions (rollout.py) are plain
functions over the client's model objects."""
