"""Classifier heads: stage-4 features ``[N, T, C, H, W]`` -> logits ``[N, K]``. One module per kind,
registered in :data:`HEADS`; each is built as ``Head(**options, in_features=C, num_classes=K,
dropout=p)`` and ends in ``self.classifier`` (an :class:`~vidcil.core.models.classifier.IncrementalLinear`,
which widens for new classes).

Add one: ``vidcil/core/models/heads/<kind>.py`` with a config and ``@HEADS.register(<Config>)``;
``model.head: {kind: <kind>}``.
"""

from vidcil.core.registry import Registry

HEADS = Registry("classifier head", __name__)
