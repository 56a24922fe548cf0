"""Classifier heads: stage-4 features ``[N, T, C, H, W]`` -> logits ``[N, K]``. One module per kind,
registered in :data:`HEADS`; each is built as ``Head(**options, in_features=C, num_classes=K,
dropout=p)``.

A head is a temporal *encoder* (``encode``: features -> one vector per clip ``[N, D]``) and a
classifier (``classify``: that vector -> logits, an
:class:`~vidcil.core.models.classifier.IncrementalLinear` in ``self.classifier``, which widens for
new classes; :mod:`._base`). ``average`` has no learnt encoder (average consensus); ``lstm`` and ``nextvlad`` do,
and a student can reuse theirs (``student.reuse_encoder``).

Add one: ``vidcil/core/models/heads/<kind>.py`` with a config and ``@HEADS.register(<Config>)``;
``model.head: {kind: <kind>}``.
"""

from __future__ import annotations

from vidcil.core.registry import Registry

HEADS = Registry("classifier head", __name__)
