"""Reports built from what MLflow holds: one run (HTML + Markdown) or a whole sweep, and the
metric comparison behind ``pipeline.reproduce``. Never imports hydra: the entry points compose
the default config and hand plain values in."""
