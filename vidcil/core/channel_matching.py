"""Channel matching without adapter layers: a student with ``n`` channels at a distillation site is
compared with ``n`` of the teacher's ``m >= n`` channels, picked, not projected (no parameter added).

The distance between student channel ``i`` and teacher channel ``j`` is the L2 distance between their
activations over a batch (every clip, frame and position), each standardised (zero mean, unit
variance), so it measures shape, not scale: ``D [n, m]``.

- ``sparse``: ``D`` padded to ``m x m`` with rows above every real distance (they can never be a
  row's minimum), and each student channel takes the teacher channel at its row's minimum (several
  may take the same one; many teacher channels go unused).
- ``hungarian``: ``r = m // n`` teacher channels per student channel: the ``s = r n`` teacher channels
  nearest to any student channel are kept, ``D`` restricted to them is replicated ``r`` times into
  ``s x s`` and solved by the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``), so each
  student channel gets ``r`` distinct teacher channels; ``combine`` then makes one teacher channel
  of them: ``random`` (one of the r, drawn once) or ``max`` (their element-wise maximum).

The matching is computed once per training run, from the first batch (:class:`ChannelMatched`), and
kept in the training checkpoint, so a resumed run uses the same channels.
"""

from __future__ import annotations

import numpy as np
import torch

MATCHES = ("sparse", "hungarian")


def _channel_vectors(x: torch.Tensor) -> torch.Tensor:
    """``[N, T, C, H, W]`` -> ``[C, N*T*H*W]``, each channel standardised."""
    v = x.detach().float().transpose(0, 2).flatten(1)
    v = v - v.mean(dim=1, keepdim=True)
    return v / v.std(dim=1, keepdim=True).clamp(min=1e-6)


def channel_distances(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``D [n, m]`` between the channels of ``student [N, T, n, H, W]`` and ``teacher [N, T, m, H, W]``."""
    if student.shape[:2] != teacher.shape[:2] or student.shape[-2:] != teacher.shape[-2:]:
        raise ValueError(f"student features {tuple(student.shape)} and teacher features {tuple(teacher.shape)} "
                         "differ in more than their channels; distil at a stage of the same output stride")
    return torch.cdist(_channel_vectors(student), _channel_vectors(teacher))


def match_channels(distances: torch.Tensor, method: str, combine: str = "max", seed: int = 0) -> torch.Tensor:
    """The teacher channels of each student channel, ``[n, r]`` (``r = 1`` but for hungarian + max)."""
    n, m = distances.shape
    if n > m:
        raise ValueError(f"the student has more channels ({n}) than the teacher ({m}) here; "
                         "channel matching picks teacher channels for a narrower student")
    d = distances.detach().cpu().double()
    if method == "sparse":
        padded = torch.cat([d, torch.full((m - n, m), float(d.max()) + 1.0, dtype=d.dtype)])  # m x m
        return padded.argmin(dim=1)[:n].unsqueeze(1)
    if method != "hungarian":
        raise ValueError(f"unknown channel matching {method!r}; choose from {', '.join(MATCHES)}")
    from scipy.optimize import linear_sum_assignment

    r = m // n
    kept = torch.argsort(d.min(dim=0).values)[: r * n].sort().values  # the s teacher channels nearest to any student one
    square = d[:, kept].repeat(r, 1).numpy()  # row q is student channel q % n
    rows, cols = linear_sum_assignment(square)
    matched = np.empty((n, r), dtype=np.int64)
    filled = np.zeros(n, dtype=np.int64)
    for q, c in zip(rows, cols):
        i = q % n
        matched[i, filled[i]] = int(kept[c])
        filled[i] += 1
    matched = torch.from_numpy(matched)
    if combine == "max":
        return matched
    if combine != "random":
        raise ValueError(f"unknown combine {combine!r}; choose random or max")
    pick = torch.randint(r, (n,), generator=torch.Generator().manual_seed(seed))
    return matched.gather(1, pick.unsqueeze(1))


def select_channels(teacher: torch.Tensor, matched: torch.Tensor) -> torch.Tensor:
    """``teacher [N, T, m, H, W]`` -> ``[N, T, n, H, W]``: each student channel's teacher channel(s), max over r."""
    picked = teacher[:, :, matched.to(teacher.device).flatten()]  # [N, T, n*r, H, W]
    n, r = matched.shape
    return picked.view(*teacher.shape[:2], n, r, *teacher.shape[3:]).amax(dim=3)


class ChannelMatched:
    """A feature distiller whose teacher features are first cut to the student's channels, stage by stage.

    Stages where the channels agree are passed as they are. ``state_dict()`` / ``load_state_dict()``
    carry the matching through a checkpoint.
    """

    def __init__(self, distiller, method: str, combine: str = "max", seed: int = 0):
        self.distiller, self.method, self.combine, self.seed = distiller, method, combine, seed
        self.uses_features = distiller.uses_features
        self.parts = getattr(distiller, "parts", {"distil": 1.0})
        self.matched: dict[str, torch.Tensor] = {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.matched)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.matched = {k: v.long() for k, v in state.items()}

    def match(self, student: dict, teacher: dict) -> None:
        from vidcil.core import distributed

        for stage, s in student.items():
            t = teacher[stage]
            if stage in self.matched or s.dim() != 5 or s.shape[2] == t.shape[2]:
                continue
            matched = match_channels(channel_distances(s, t), self.method, self.combine, self.seed)
            self.matched[stage] = distributed.broadcast_from_main(matched, s.device)  # every process the same

    def __call__(self, student: dict, teacher: dict, student_logits=None, teacher_logits=None, mask=None):
        self.match(student, teacher)
        cut = {k: select_channels(v, self.matched[k]) if k in self.matched else v for k, v in teacher.items()}
        return self.distiller(student, cut, student_logits, teacher_logits, mask=mask)
