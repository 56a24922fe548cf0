import pytest
import torch

from vidcil.core.models.tsm import VideoRecognizer, temporal_shift


def test_temporal_shift_moves_a_slice_of_channels_one_frame_each_way():
    n, t, c = 1, 3, 8
    x = torch.arange(t, dtype=torch.float).view(1, t, 1, 1, 1).expand(n, t, c, 1, 1).reshape(n * t, c, 1, 1)
    out = temporal_shift(x, num_segments=t, fold_div=8).view(n, t, c)
    assert out[0, :, 0].tolist() == [1, 2, 0]  # channel 0 sees the next frame (zero past the end)
    assert out[0, :, 1].tolist() == [0, 0, 1]  # channel 1 sees the previous frame
    assert out[0, :, 2:].equal(x.view(n, t, c)[0, :, 2:])  # the rest stays


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_backbone_features_are_n_t_c_h_w(arch):
    model = VideoRecognizer(arch, num_classes=5, num_segments=4)
    logits, feats = model.forward_features(torch.rand(2, 4, 3, 64, 64), ("layer3", "layer4"))
    assert logits.shape == (2, 5)
    assert feats["layer3"].shape[:2] == (2, 4) and feats["layer3"].shape[-1] == 4  # stride 16
    assert feats["layer4"].shape[:2] == (2, 4) and feats["layer4"].shape[-1] == 2  # stride 32


def test_frames_interact_through_the_shift():
    torch.manual_seed(0)
    model = VideoRecognizer("resnet18", 3, num_segments=4).eval()
    x = torch.rand(1, 4, 3, 32, 32)
    y = x.clone()
    y[:, 3] = torch.rand(3, 32, 32)  # change the last frame only
    _, fx = model.forward_features(x, ("layer4",))
    _, fy = model.forward_features(y, ("layer4",))
    assert not torch.allclose(fx["layer4"][:, 2], fy["layer4"][:, 2])  # frame 2 sees frame 3


def test_widening_keeps_old_class_weights():
    model = VideoRecognizer("resnet18", 4, num_segments=2)
    before = model.head.classifier.fc.weight.detach().clone()
    model.widen(6)
    assert model.num_classes == 6
    assert torch.equal(model.head.classifier.fc.weight[:4], before)
    with pytest.raises(ValueError, match="shrink"):
        model.widen(3)


def test_wrong_frame_count_is_a_clear_error():
    with pytest.raises(ValueError, match="expected 4 frames"):
        VideoRecognizer("resnet18", 2, num_segments=4)(torch.rand(1, 3, 3, 32, 32))


def test_initial_weights_come_from_a_local_file(tmp_path):
    import torchvision

    source = torchvision.models.resnet18(weights=None)
    torch.save(source.state_dict(), tmp_path / "r18.pt")
    model = VideoRecognizer("resnet18", 3, num_segments=2, weights=tmp_path / "r18.pt")
    assert torch.equal(model.stages["layer1"][0][0].weight, source.conv1.weight)
