"""The FastAPI gateway that fronts the BentoML model server.

The package is copied into the gateway image as a top-level ``gateway``
package and started with ``python -m gateway``. ``spec``, ``app`` and
``__main__`` import only the standard library and the gateway's runtime
packages; ``context`` (which renders the image's build context) runs on the
build host only. This file imports nothing, so importing ``context`` stays cheap.
"""
