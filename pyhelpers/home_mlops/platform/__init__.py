"""The local platform on this host: dockerd, the registry, the base image, an MLflow server."""
