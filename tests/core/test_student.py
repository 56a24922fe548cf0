"""A student that reuses the teacher's frozen temporal encoder (``student.reuse_encoder``)."""

import pytest
import torch

from vidcil.config import ModelParams, StudentParams, TrainParams
from vidcil.core.learner import learn_batch, make_student
from vidcil.core.models.tsm import VideoRecognizer
from tests.core.test_channel_matching import _ClipSet

# The real config sections (a field added later gets its default here too)
MODEL = ModelParams(shift_div=8, dropout=0.3)
TRAIN = TrainParams(epochs=2, epochs_first=2, batch_size=4, lr=0.05, weight_decay=5e-4)


def _student(teacher, arch, **options):
    params = StudentParams(arch=arch, reuse_encoder=True, min_param_ratio=0.1, max_param_ratio=1.0, **options)
    return make_student(teacher, 4, model=MODEL, mean=(0.5,) * 3, std=(0.25,) * 3, seed=0, student=params)


@pytest.mark.parametrize("head", [{"kind": "lstm", "hidden": 16}, {"kind": "nextvlad", "hidden": 16, "clusters": 4}])
def test_the_reused_encoder_is_bit_identical_after_training(head):
    torch.manual_seed(0)
    teacher = VideoRecognizer("resnet34", 3, num_segments=2, head=head)
    student = _student(teacher, "resnet18")
    assert student.head.frame_dim == 512 and student.arch == "resnet18"
    encoder = {k: v.clone() for k, v in teacher.head.encoder.state_dict().items()}  # weights and BN buffers
    assert all(torch.equal(v, student.head.encoder.state_dict()[k]) for k, v in encoder.items())
    backbone = student.stages["layer4"][0].conv2.weight.detach().clone()

    data = _ClipSet(torch.rand(8, 2, 3, 32, 32), torch.tensor([0, 1, 2, 3] * 2))
    result = learn_batch(student, data, teacher=teacher, distil={"kind": "encoder", "distances": {"l2": 1.0, "cosine": 0.5}},
                         train_options=TRAIN, seed=0)
    assert all(torch.equal(v, student.head.encoder.state_dict()[k]) for k, v in encoder.items())
    assert not torch.equal(backbone, student.stages["layer4"][0].conv2.weight)  # the rest trained
    assert {"encoder", "encoder_l2", "encoder_cosine", "ce"} <= set(result.history[-1])
    assert not any(p.requires_grad for p in student.head.encoder.parameters())


def test_the_loss_is_the_encoder_distance_plus_a_tenth_of_the_task_loss():
    torch.manual_seed(0)
    teacher = VideoRecognizer("resnet18", 3, num_segments=2, head={"kind": "lstm", "hidden": 8})
    student = _student(teacher, "resnet18")
    data = _ClipSet(torch.rand(4, 2, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
    train = TRAIN.model_copy(update={"epochs": 1, "lr": 1e-9})
    row = learn_batch(student, data, teacher=teacher, distil={"kind": "encoder"}, train_options=train, seed=0).history[0]
    assert row["loss"] == pytest.approx(row["encoder"] + 0.1 * row["ce"], rel=1e-5)


def test_a_student_outside_the_parameter_ratio_is_refused_at_construction():
    teacher = VideoRecognizer("resnet18", 3, num_segments=2, head={"kind": "lstm", "hidden": 8})
    with pytest.raises(ValueError, match=r"resnet50: .* x the teacher's \(resnet18.*choose another student.arch"):
        _student(teacher, "resnet50")


def test_an_average_head_has_no_encoder_to_reuse():
    teacher = VideoRecognizer("resnet18", 3, num_segments=2)
    with pytest.raises(ValueError, match="no learnt encoder to reuse"):
        _student(teacher, "mobilenet_v3_large")


def test_a_compressed_student_is_saved_and_rebuilt_as_the_next_champion(tmp_path):
    from vidcil.io.mlflow_registry import load_checkpoint, model_config, save_checkpoint

    teacher = VideoRecognizer("resnet34", 3, num_segments=2, head={"kind": "nextvlad", "hidden": 16, "clusters": 4})
    student = _student(teacher, "resnet18").eval()
    save_checkpoint(student, model_config(student, list("abcd"), 0.3, 8), tmp_path)
    rebuilt, config = load_checkpoint(tmp_path)
    assert config["arch"] == "resnet18" and config["head"]["frame_dim"] == 512
    x = torch.rand(1, 2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), student(x))


def test_a_motion_model_is_saved_and_rebuilt_with_its_input(tmp_path):
    from vidcil.io.mlflow_registry import load_checkpoint, model_config, save_checkpoint

    teacher = VideoRecognizer("r2plus1d_10", 3, num_segments=4, input="diff")
    student = make_student(teacher, 4, model=MODEL, mean=(0.5,) * 3, std=(0.25,) * 3, seed=0,
                           student=StudentParams(arch="resnet18")).eval()
    assert student.input == "diff"  # another backbone, the teacher's input
    save_checkpoint(student, model_config(student, list("abcd"), 0.3, 8), tmp_path)
    rebuilt, config = load_checkpoint(tmp_path)
    assert config["input"] == "diff" and rebuilt.input == "diff"
    x = torch.rand(1, 4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), student(x))
