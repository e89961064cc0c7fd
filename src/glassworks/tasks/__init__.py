"""Tasks: what a model is trained to do and what its explanations explain (``task=<name>``).

A task is the seam between the stages and everything that depends on the kind of model: see
:mod:`glassworks.tasks.base` for the protocol and ``docs/architecture.md`` for the recipe.
"""
