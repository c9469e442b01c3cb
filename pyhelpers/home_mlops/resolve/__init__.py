"""Resolve: experiment id + run id (or models:/ URI) -> the model's files in the local cache, described.

The first stage of the flow (job -> step -> CLI -> resolve -> build -> deploy)."""
