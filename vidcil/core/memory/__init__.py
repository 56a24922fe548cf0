"""The exemplar memory's policies (pure): which videos to keep (:mod:`.selection`, a registry),
which of their frames (:mod:`.frames`, a registry), and how a byte budget is shared (:mod:`.ranking`).
The memory on disk is :mod:`vidcil.io.memory_store`."""
