import pytest
import torch

from vidcil.core.channel_matching import ChannelMatched, channel_distances, match_channels, select_channels
from vidcil.core.distill import DISTILLERS
from vidcil.core.learner import learn_batch, make_student
from vidcil.core.models.tsm import VideoRecognizer, distillation_site


def _features(channels=12, seed=0):
    return torch.randn(4, 3, channels, 5, 5, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", ["sparse", "hungarian"])
def test_matching_a_permuted_copy_recovers_the_permutation(method):
    teacher = _features()
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    student = teacher[:, :, perm]
    matched = match_channels(channel_distances(student, teacher), method)
    assert torch.equal(matched[:, 0], perm)
    assert torch.equal(select_channels(teacher, matched), student)


@pytest.mark.parametrize("method", ["sparse", "hungarian"])
def test_a_narrower_student_finds_its_teacher_channels(method):
    teacher = _features(12)
    picked = torch.tensor([7, 2, 10, 5])
    student = 3.0 * teacher[:, :, picked] + 1.0  # another scale: channels are compared by shape
    matched = match_channels(channel_distances(student, teacher), method, combine="max")
    assert all(int(c) in row.tolist() for c, row in zip(picked, matched))  # hungarian: among its r = 3


def test_hungarian_gives_each_student_channel_r_distinct_teacher_channels():
    teacher, student = _features(12), _features(4, seed=1)
    matched = match_channels(channel_distances(student, teacher), "hungarian", combine="max")
    assert matched.shape == (4, 3)  # r = 12 // 4
    assert len(set(matched.flatten().tolist())) == 12  # every teacher channel used once
    cut = select_channels(teacher, matched)
    assert cut.shape == (4, 3, 4, 5, 5)
    assert torch.equal(cut[:, :, 0], teacher[:, :, matched[0]].amax(dim=2))  # element-wise max over its r


def test_a_wider_student_is_a_clear_error():
    with pytest.raises(ValueError, match="more channels"):
        match_channels(channel_distances(_features(12), _features(4)), "sparse")


def test_matched_distillation_adds_no_parameter_and_trains():
    """TSD from a MobileNetV3-large teacher (960 channels at layer4) into a ResNet-18 student (512),
    at the architectures' own sites."""
    from vidcil.config import ModelParams, StudentParams, TrainParams

    torch.manual_seed(0)
    teacher = VideoRecognizer("mobilenet_v3_large", 3, num_segments=2)
    student_params = StudentParams(arch="resnet18")
    model = ModelParams(shift_div=8, dropout=0.3)
    student = make_student(teacher, 4, model=model, mean=(0.5,) * 3, std=(0.25,) * 3, seed=0, student=student_params)
    before = sum(p.numel() for p in student.parameters())
    x = torch.rand(8, 2, 3, 32, 32)
    data = _ClipSet(x, torch.tensor([0, 1, 2, 3] * 2))
    distil = {"kind": "tsd", "match": "hungarian", "combine": "max", "site": "architecture", "stages": ["layer4"]}
    train = TrainParams(epochs=2, epochs_first=2, batch_size=4, lr=0.01, weight_decay=0.0)
    result = learn_batch(student, data, teacher=teacher, distil=distil, train_options=train, seed=0)
    assert sum(p.numel() for p in student.parameters()) == before  # no adapter layer
    assert result.history[-1]["temporal"] > 0 and result.epochs == 2


class _ClipSet(torch.utils.data.Dataset):
    """Clips in memory, with the ``labels`` attribute the loaders read."""

    def __init__(self, clips, labels):
        self.clips, self.labels = clips, labels.numpy()

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, item):
        i, _seed = item  # the seeded sampler's (index, seed)
        return self.clips[i], int(self.labels[i])


@pytest.mark.parametrize("arch, kind", [("resnet18", "ReLU"), ("mobilenet_v3_small", "BatchNorm2d"),
                                        ("shufflenet_v2_x0_5", "InvertedResidual"), ("r2plus1d_10", "ReLU")])
def test_distillation_sites_follow_the_architecture(arch, kind):
    model = VideoRecognizer(arch, 2, num_segments=2).eval()
    module, _ = distillation_site(model.stages["layer3"], arch)
    assert type(module).__name__ == kind
    with torch.no_grad():
        _, at_site = model.forward_features(torch.rand(1, 2, 3, 64, 64), ("layer3",), site="architecture")
        _, at_output = model.forward_features(torch.rand(1, 2, 3, 64, 64), ("layer3",))
    if arch in ("resnet18", "r2plus1d_10"):  # before the ReLU: negative values survive; the stage output has none
        assert (at_site["layer3"] < 0).any() and not (at_output["layer3"] < 0).any()
    assert at_site["layer3"].shape[-1] == at_output["layer3"].shape[-1]  # same stride
