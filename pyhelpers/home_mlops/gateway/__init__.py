"""The FastAPI front door: the gateway in front of the BentoML model server, and the standalone server.

The package is copied into the gateway image (and the standalone server image) as a
top-level ``gateway`` package and started with ``python -m gateway``: its modules import
only the standard library and the front door's runtime packages, and each other
relatively. What renders the images' build contexts lives in ``home_mlops.build``.
This file imports nothing, so importing one module stays cheap.
"""
