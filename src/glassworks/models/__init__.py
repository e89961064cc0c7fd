"""Models: the Transformer classifier, its spec registry, LR schedules and the LightningModule.

``TextClassifier`` lives in :mod:`glassworks.models.lightning` and is not re-exported here, so
explain/serving code can import the network without importing Lightning.
"""

from glassworks.models.outputs import ClassifierOutput
from glassworks.models.registry import build_from_spec
from glassworks.models.transformer import TransformerClassifier, TransformerConfig

__all__ = ["ClassifierOutput", "TransformerClassifier", "TransformerConfig", "build_from_spec"]
