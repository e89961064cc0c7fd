"""Token attributions for Transformer text classifiers (SHAP, attention, gradients) and their scoring."""
