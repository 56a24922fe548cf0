"""Temporal Shift Module (Lin et al., 2019) on torchvision 2D backbones.

A :class:`VideoRecognizer` takes clips ``[N, T, 3, H, W]`` in [0, 1] and returns class logits
``[N, K]``. Its backbone is cut into four stages named ``layer1`` .. ``layer4`` (output stride 4,
8, 16, 32, whatever the architecture), and :meth:`VideoRecognizer.forward_features` exposes any of
them as ``[N, T, C, H, W]`` for distillation. The classifier widens for new classes and keeps the
old classes' weights.

No weights are downloaded: optional initial backbone weights come from a local file.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from vidcil.core.models import ARCHS, STAGES
from vidcil.core.models.heads import HEADS
from vidcil.core.models.classifier import CLASSIFIERS
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
INPUTS = ("rgb", "diff")  # what the backbone sees of a clip: the frames, or their differences


def frame_differences(x: torch.Tensor) -> torch.Tensor:
    """``[N, T, ...]`` -> each frame minus the one before it, the first frame given the first
    difference (T frames in, T out, so features stay frame-aligned for distillation)."""
    d = x[:, 1:] - x[:, :-1]
    return torch.cat([d[:, :1], d], dim=1)


def temporal_shift(x: torch.Tensor, num_segments: int, fold_div: int = 8) -> torch.Tensor:
    """Shift 1/fold_div of the channels one step back in time and 1/fold_div one step forward.

    ``x``: ``[N*T, C, H, W]``; zero-padded at the clip boundaries, so no frame sees another clip.
    """
    nt, c, h, w = x.shape
    x = x.view(nt // num_segments, num_segments, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]  # each frame sees the next frame's features
    out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]  # ... and the previous one's
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out.view(nt, c, h, w)


class TemporalShift(nn.Module):
    """Wraps a layer so its input is temporally shifted first (residual-branch shift)."""

    def __init__(self, net: nn.Module, num_segments: int, fold_div: int = 8):
        super().__init__()
        self.net, self.num_segments, self.fold_div = net, num_segments, fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(temporal_shift(x, self.num_segments, self.fold_div))


def _load_local_weights(model: nn.Module, path: str | Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"{path}: no tensor matches the {type(model).__name__} backbone")
    model.load_state_dict(usable, strict=False)


def _resnet_stages(arch: str, num_segments: int, fold_div: int, weights: str | Path | None):
    net = getattr(torchvision.models, arch)(weights=None)
    if weights:
        _load_local_weights(net, weights)
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        for block in layer:
            block.conv1 = TemporalShift(block.conv1, num_segments, fold_div)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    stages = [nn.Sequential(stem, net.layer1), net.layer2, net.layer3, net.layer4]
    return stages, net.fc.in_features


def _mobilenet_stages(arch: str, num_segments: int, fold_div: int, weights: str | Path | None):
    from torchvision.models.mobilenetv3 import InvertedResidual

    net = getattr(torchvision.models, arch)(weights=None)
    # torchvision builds MobileNetV3 with BatchNorm momentum 0.01 (for long ImageNet runs): after a
    # few hundred steps the running statistics are still near their initial values and evaluation
    # collapses to chance (measured: 98 % train, 25 % test accuracy). PyTorch's default 0.1 fits.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    if weights:
        _load_local_weights(net, weights)
    # Cut the feature list where the output stride reaches 4, 8, 16 and 32 (probed before the
    # shifts go in: a shift needs whole clips).
    with torch.no_grad():
        x, strides = torch.zeros(1, 3, 64, 64), []
        for module in net.features:
            x = module(x)
            strides.append(64 // x.shape[-1])
    for block in net.features:
        if isinstance(block, InvertedResidual) and block.use_res_connect:
            block.block[0] = TemporalShift(block.block[0], num_segments, fold_div)
    ends = [max(i for i, s in enumerate(strides) if s == target) for target in (4, 8, 16)]
    ends.append(len(net.features) - 1)
    bounds = [0] + [e + 1 for e in ends]
    stages = [net.features[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return stages, net.features[-1].out_channels


def _shufflenet_stages(arch: str, num_segments: int, fold_div: int, weights: str | Path | None):
    from torchvision.models.shufflenetv2 import InvertedResidual

    net = getattr(torchvision.models, arch)(weights=None)
    if weights:
        _load_local_weights(net, weights)
    for stage in (net.stage2, net.stage3, net.stage4):
        for block in stage:
            if isinstance(block, InvertedResidual) and block.stride == 1:  # the half that is convolved
                block.branch2[0] = TemporalShift(block.branch2[0], num_segments, fold_div)
    stages = [nn.Sequential(net.conv1, net.maxpool), net.stage2, net.stage3, nn.Sequential(net.stage4, net.conv5)]
    return stages, net.conv5[0].out_channels


def build_backbone(
    arch: str, num_segments: int, fold_div: int = 8, weights: str | Path | None = None
) -> tuple[nn.ModuleDict, int]:
    """The four stages of a backbone (TSM, or (2+1)D: ``fold_div`` unused) and the channel count of the last one."""
    if arch.startswith("resnet"):
        stages, dim = _resnet_stages(arch, num_segments, fold_div, weights)
    elif arch.startswith("mobilenet_v3"):
        stages, dim = _mobilenet_stages(arch, num_segments, fold_div, weights)
    elif arch.startswith("shufflenet_v2"):
        stages, dim = _shufflenet_stages(arch, num_segments, fold_div, weights)
    elif arch.startswith("r2plus1d"):  # temporal convolutions in every layer instead of shifts
        from vidcil.core.models.r2plus1d import r2plus1d_stages

        stages, dim = r2plus1d_stages(arch, num_segments)
        if weights:
            _load_local_weights(nn.ModuleList(stages), weights)
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return nn.ModuleDict(dict(zip(STAGES, stages))), dim


def distillation_site(stage: nn.Module, arch: str) -> tuple[nn.Module, str] | None:
    """Where a stage's features are taken for distillation at the architecture's own site:

    - ResNet: after the last block's residual addition, before its ReLU (the ReLU's input, whose
      last call in the block is the sum);
    - MobileNetV3: after the stage's last batch norm, before its activation;
    - ShuffleNetV2: after the last block's channel shuffle (the block's output);
    - (2+1)D ResNet: as ResNet, the last block's sum before its ReLU.

    ``(module, "input" | "output")``, or None: the stage's output is the site.
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck
    from torchvision.models.shufflenetv2 import InvertedResidual as ShuffleBlock

    from vidcil.core.models.r2plus1d import Block as R2Plus1dBlock

    modules = list(stage.modules())
    if arch.startswith("r2plus1d"):
        blocks = [m for m in modules if isinstance(m, R2Plus1dBlock)]
        return (blocks[-1].relu, "input") if blocks else None
    if arch.startswith("resnet"):
        blocks = [m for m in modules if isinstance(m, (BasicBlock, Bottleneck))]
        return (blocks[-1].relu, "input") if blocks else None
    if arch.startswith("shufflenet"):
        shuffles = [m for m in modules if isinstance(m, ShuffleBlock)]
        return (shuffles[-1], "output") if shuffles else None  # the stem has no shuffle
    norms = [m for m in modules if isinstance(m, nn.BatchNorm2d)]
    return (norms[-1], "output") if norms else None


class VideoRecognizer(nn.Module):
    """TSM backbone + a classifier head (average consensus by default). Input ``[N, T, 3, H, W]`` in [0, 1], output logits."""

    def __init__(
        self,
        arch: str = "resnet18",
        num_classes: int = 2,
        num_segments: int = 8,
        shift_div: int = 8,
        dropout: float = 0.5,
        weights: str | Path | None = None,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        head: dict | None = None,
        input: str = "rgb",
        classifier: str = "linear",
    ):
        super().__init__()
        if input not in INPUTS:
            raise ValueError(f"unknown model input {input!r}; choose one of {', '.join(INPUTS)}")
        if input == "diff" and num_segments < 2:
            raise ValueError(f"model input 'diff' needs at least 2 frames per clip, got num_segments {num_segments}")
        self.arch, self.num_segments, self.input = arch, num_segments, input
        self.stages, dim = build_backbone(arch, num_segments, shift_div, weights)
        # The head (``model.head`` in params: a kind of :data:`HEADS`): [N, T, C, H, W] -> logits [N, K].
        self.head_config = HEADS.config(head or {"kind": "average"})
        self.head = HEADS.build(self.head_config, in_features=dim, num_classes=num_classes, dropout=dropout)
        # The classifier the head ends in (``model.classifier``): linear, or cosine-normalised.
        if classifier not in CLASSIFIERS:
            raise ValueError(f"unknown model classifier {classifier!r}; choose one of {', '.join(CLASSIFIERS)}")
        self.classifier_kind = classifier
        if classifier != "linear":
            self.head.classifier = CLASSIFIERS[classifier](self.head.classifier.in_features, num_classes)
        # Normalization is the model's first step (data.mean / data.std; ImageNet's by default, what
        # local initial weights expect), so a served model takes clips in [0, 1] as they are.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1))
        self.channels_last = False
        self.frozen_encoder = False

    def feature_extractor_parameters(self) -> int:
        """Parameters before the temporal encoder: the backbone and the head's frame projection."""
        project = getattr(self.head, "project", None)
        return sum(p.numel() for p in self.stages.parameters()) + (
            sum(p.numel() for p in project.parameters()) if project is not None else 0)

    def freeze_encoder(self) -> None:
        """Keep the head's temporal encoder as it is: no gradient, and in eval mode even while training."""
        if self.head.encoder is None:
            raise ValueError(f"model.head {self.head_config.kind!r} has no learnt encoder to reuse; "
                             "use model.head kind lstm or nextvlad, or set student.reuse_encoder: false")
        self.head.encoder.requires_grad_(False)
        self.frozen_encoder = True
        self.head.encoder.eval()

    def train(self, mode: bool = True) -> "VideoRecognizer":
        super().train(mode)
        if self.frozen_encoder:  # its batch-norm statistics and dropout stay as the teacher had them
            self.head.encoder.eval()
        return self

    def use_channels_last(self) -> None:
        """NHWC weights and activations (faster convolutions on GPUs with tensor cores)."""
        self.to(memory_format=torch.channels_last)
        self.channels_last = True

    @property
    def num_classes(self) -> int:
        return self.head.classifier.num_classes

    def widen(self, num_classes: int) -> None:
        self.head.classifier.widen(num_classes)

    def forward_features(
        self, x: torch.Tensor, stages: tuple[str, ...] = (), site: str = "output"
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits ``[N, K]`` and the requested features: stages, each ``[N, T, C, H, W]``, and
        ``"encoder"``, the head's encoding ``[N, D]``.

        ``site``: ``"output"`` takes a stage's features at its output; ``"architecture"`` at the
        architecture's distillation site in the stage (:func:`distillation_site`).
        """
        n, t = x.shape[:2]
        if t != self.num_segments:
            raise ValueError(f"expected {self.num_segments} frames per clip, got {t}")
        if site not in ("output", "architecture"):
            raise ValueError(f"site must be 'output' or 'architecture', got {site!r}")
        h = (x - self.mean) / self.std
        if self.input == "diff":
            h = frame_differences(h)
        h = h.flatten(0, 1)
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        features = {}
        for name, stage in self.stages.items():
            found = distillation_site(stage, self.arch) if site == "architecture" and name in stages else None
            if found is None:
                h = stage(h)
                site_h = h
            else:  # hooks only for this call: a deep copy of the model must not share them
                captured: list[torch.Tensor] = []
                module, where = found
                hook = (module.register_forward_pre_hook(lambda m, args: captured.append(args[0].clone()))
                        if where == "input" else
                        module.register_forward_hook(lambda m, args, out: captured.append(out)))
                try:
                    h = stage(h)
                finally:
                    hook.remove()
                site_h = captured[-1]
            if name in stages:
                features[name] = site_h.view(n, t, *site_h.shape[1:])
        encoded = self.head.encode(h.view(n, t, *h.shape[1:]))
        if "encoder" in stages:
            features["encoder"] = encoded
        return self.head.classify(encoded), features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]
