"""Deployments: inference servers for registered model versions (``manager.py`` composes
the parts; the server process itself is :mod:`services.trainer.model_server`)."""
