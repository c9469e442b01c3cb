"""The `home-mlops` command line: one module per command group, each adding its commands to the app."""
