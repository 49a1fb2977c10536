"""Training jobs: claim a run, stage it, launch it, monitor it, decide its outcome
(``runner.py`` composes the parts; see the trainer's README for the module map)."""
