"""The trainer service: Staging, training, progress relay, checkpoints, model registry, serving."""
