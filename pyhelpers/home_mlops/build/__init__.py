"""Build: a resolved model -> images (BentoML model server, FastAPI gateway), labelled and pushed.

Also where registry trust, pip, wheels and the Docker builder live: everything a build touches."""
