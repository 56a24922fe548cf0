"""Video models: TSM backbones (:mod:`.tsm`: ResNet, MobileNetV3, ShuffleNetV2) and the classifier heads (:mod:`.heads`, a registry)."""

STAGES = ("layer1", "layer2", "layer3", "layer4")  # distillable backbone stages, output stride 4..32
ARCHS = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large",
         "shufflenet_v2_x0_5", "shufflenet_v2_x1_0")
