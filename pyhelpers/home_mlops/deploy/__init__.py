"""Deploy: images -> a running app on its port, health-gated, switched with no dropped request, or rolled back."""
