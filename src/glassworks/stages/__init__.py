"""What each pipeline stage does to an MLflow run, given typed objects (never cfg).

``pipeline/<stage>.py`` reads cfg, builds the objects (:mod:`pipeline.job`) and calls the
function here; ``pipeline.run`` chains the same functions inside one run. One module per stage:
:mod:`.train`, :mod:`.explain`, :mod:`.robustness`, :mod:`.report`.
"""
