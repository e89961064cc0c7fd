"""MLflow tracking: store set-up, run lifecycle, batched metric logging, the pyfunc model."""
