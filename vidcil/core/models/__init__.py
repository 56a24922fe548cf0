"""Video models: TSM backbones (:mod:`.tsm`: ResNet, MobileNetV3, ShuffleNetV2), a light (2+1)D ResNet (:mod:`.r2plus1d`) and the classifier heads (:mod:`.heads`, a registry)."""

STAGES = ("layer1", "layer2", "layer3", "layer4")  # distillable backbone stages, output stride 4..32
ARCHS = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large",
         "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "r2plus1d_10")
