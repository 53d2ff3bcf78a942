"""The model registry: model packages, their versions and which devices each scores (``registry``)."""
