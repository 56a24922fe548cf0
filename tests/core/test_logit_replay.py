"""DER++'s logit replay: the logits stored with a memory clip pull the student's logits on it."""

import pytest
import torch

from vidcil.config import ModelParams, TrainParams
from vidcil.core.learner import learn_batch, make_student
from vidcil.core.losses import stored_logit_mse

NAN = float("nan")


def test_the_distance_counts_only_the_stored_logits_of_the_clips_that_have_them():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0]], requires_grad=True)
    stored = torch.tensor([[1.0, 4.0, NAN], [NAN, NAN, NAN], [2.0, NAN, NAN]])  # clip 1: a new clip, none stored
    loss = stored_logit_mse(logits, stored)
    assert float(loss.detach()) == pytest.approx(((0 + 4) / 2 + 9 / 1) / 2)  # per clip over its stored logits, then clips
    loss.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0, 2] == 0 and logits.grad[2, 1:].abs().sum() == 0
    assert float(stored_logit_mse(logits, torch.full((3, 2), NAN))) == 0.0  # a batch without memory clips
    assert float(stored_logit_mse(logits[:, :2], stored[:, :2])) == pytest.approx((4 / 2 + 9) / 2)


class _StoredSet(torch.utils.data.Dataset):
    """Clips in memory; the first ``memory`` of them carry stored logits (as a memory's ClipDataset gives them)."""

    def __init__(self, clips, labels, stored):
        self.clips, self.labels, self.stored = clips, labels.numpy(), stored
        self.logit_width = stored.shape[1]

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, item):
        i, _seed = item
        return self.clips[i], int(self.labels[i]), self.stored[i]


def _distance_after_training(weight: float) -> tuple[float, list[dict]]:
    torch.manual_seed(0)
    clips, labels = torch.rand(16, 2, 3, 32, 32), torch.tensor([0, 1] * 8)
    stored = torch.full((16, 2), NAN)
    stored[:8] = torch.tensor([-2.0, 2.0])  # the memory's clips: what the old model said (not their label's answer)
    model = ModelParams(arch="mobilenet_v3_small", num_segments=2, shift_div=8, dropout=0.0, input="rgb")
    student = make_student(None, 2, model=model, mean=(0.5,) * 3, std=(0.25,) * 3, seed=0)
    options = TrainParams(epochs=6, epochs_first=6, batch_size=4, lr=0.01, weight_decay=0.0, logit_replay=weight,
                          convergence={"validation_fraction": 0})
    result = learn_batch(student, _StoredSet(clips, labels, stored), teacher=None, distil=None,
                         train_options=options, seed=0)
    with torch.no_grad():  # batch-norm statistics of these clips (a few random clips: eval-mode stats mislead)
        distance = float(stored_logit_mse(student.train()(clips[:8]), stored[:8]))
    return distance, result.history


def test_training_pulls_the_memory_clips_logits_to_the_stored_ones():
    without, history_without = _distance_after_training(0.0)
    with_replay, history = _distance_after_training(1.0)
    assert with_replay < 0.5 * without
    assert "logit_replay" in history[0] and "logit_replay" not in history_without[0]
    assert history[-1]["logit_replay"] < history[0]["logit_replay"]
