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


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small", "r2plus1d_10"])
def test_backbone_features_are_n_t_c_h_w(arch):
    model = VideoRecognizer(arch, num_classes=5, num_segments=4)
    logits, feats = model.forward_features(torch.rand(2, 4, 3, 64, 64), ("layer3", "layer4"))
    assert logits.shape == (2, 5)
    assert feats["layer3"].shape[:2] == (2, 4) and feats["layer3"].shape[-1] == 4  # stride 16
    assert feats["layer4"].shape[:2] == (2, 4) and feats["layer4"].shape[-1] == 2  # stride 32


@pytest.mark.parametrize("arch", ["resnet18", "r2plus1d_10"])  # through the shift; the temporal convolutions
def test_frames_interact_through_the_shift(arch):
    torch.manual_seed(0)
    model = VideoRecognizer(arch, 3, num_segments=4).eval()
    x = torch.rand(1, 4, 3, 32, 32)
    y = x.clone()
    y[:, 3] = torch.rand(3, 32, 32)  # change the last frame only
    _, fx = model.forward_features(x, ("layer4",))
    _, fy = model.forward_features(y, ("layer4",))
    assert not torch.allclose(fx["layer4"][:, 2], fy["layer4"][:, 2])  # frame 2 sees frame 3


@pytest.mark.parametrize("arch", ["resnet18", "r2plus1d_10"])
def test_clips_do_not_see_each_other(arch):
    torch.manual_seed(0)
    model = VideoRecognizer(arch, 3, num_segments=4).eval()
    x = torch.rand(2, 4, 3, 32, 32)
    y = x.clone()
    y[1] = torch.rand(4, 3, 32, 32)  # another second clip: the first clip's features stay
    with torch.no_grad():
        _, fx = model.forward_features(x, ("layer4",))
        _, fy = model.forward_features(y, ("layer4",))
    assert torch.allclose(fx["layer4"][0], fy["layer4"][0], atol=1e-5)
    assert not torch.allclose(fx["layer4"][1], fy["layer4"][1])


@pytest.mark.parametrize("arch", ["resnet18", "r2plus1d_10"])
def test_a_difference_input_sees_only_what_moves(arch):
    torch.manual_seed(0)
    model = VideoRecognizer(arch, 3, num_segments=4, input="diff").eval()
    still_a = torch.rand(1, 1, 3, 32, 32).expand(1, 4, 3, 32, 32)
    still_b = torch.rand(1, 1, 3, 32, 32).expand(1, 4, 3, 32, 32)
    moving = torch.rand(1, 4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(still_a), model(still_b))  # two still scenes: nothing to tell apart
        assert not torch.allclose(model(still_a), model(moving))
        brighter = model(moving + 0.1)  # a brightness offset on every frame is not motion
    assert torch.allclose(model(moving), brighter, atol=1e-4)
    rgb = VideoRecognizer(arch, 3, num_segments=4).eval()
    with torch.no_grad():
        assert not torch.allclose(rgb(still_a), rgb(still_b))


def test_a_difference_input_needs_two_frames():
    with pytest.raises(ValueError, match="at least 2 frames"):
        VideoRecognizer("resnet18", 2, num_segments=1, input="diff")
    with pytest.raises(ValueError, match="unknown model input"):
        VideoRecognizer("resnet18", 2, num_segments=4, input="flow")


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
