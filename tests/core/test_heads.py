import pytest
import torch

from vidcil.core.models.heads import HEADS
from vidcil.core.models.tsm import VideoRecognizer


def _head(kind, **options):
    torch.manual_seed(0)
    return HEADS.build({"kind": kind, **options}, in_features=32, num_classes=5, dropout=0.5).eval()


@pytest.mark.parametrize("t", [1, 3, 8, 16])
def test_nextvlad_takes_any_number_of_frames(t):
    head = _head("nextvlad", groups=4, clusters=8, hidden=16, gating_reduction=4)
    features = torch.rand(2, t, 32, 3, 3)
    assert head.encode(features).shape == (2, 16)
    assert head(features).shape == (2, 5)


def test_nextvlad_ignores_the_order_of_the_frames():
    head = _head("nextvlad", groups=4, clusters=8, hidden=16, gating_reduction=4)
    features = torch.rand(3, 8, 32, 2, 2)
    shuffled = features[:, torch.randperm(8, generator=torch.Generator().manual_seed(1))]
    assert torch.allclose(head(features), head(shuffled), atol=1e-5)  # a sum over frames and groups
    other = features.clone()
    other[:, 0] = torch.rand(3, 32, 2, 2)  # a different frame is a different clip
    assert not torch.allclose(head(features), head(other), atol=1e-4)


def test_lstm_sees_the_order_of_the_frames():
    head = _head("lstm", hidden=8)
    features = torch.rand(2, 6, 32, 2, 2)
    assert head.encode(features).shape == (2, 16)  # both directions' last hidden state
    assert not torch.allclose(head(features), head(features.flip(1)), atol=1e-4)


def test_nextvlad_groups_must_divide_the_expanded_frame():
    with pytest.raises(ValueError, match="divide into 5 groups"):
        _head("nextvlad", expansion=1, groups=5, hidden=16)


@pytest.mark.parametrize("t", [1, 3])
def test_a_recognizer_with_a_nextvlad_head_trains_on_any_clip_length(t):
    model = VideoRecognizer("resnet18", 4, num_segments=t, head={"kind": "nextvlad", "hidden": 32})
    logits, feats = model.forward_features(torch.rand(2, t, 3, 32, 32), ("encoder",))
    assert logits.shape == (2, 4) and feats["encoder"].shape == (2, 32)
    logits.sum().backward()
    assert model.head.encoder.centres.grad is not None
