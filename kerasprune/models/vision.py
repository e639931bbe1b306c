"""Image classifiers: LeNets and a wider CNN for MNIST, CIFAR-style ResNets and MobileNetV2.

All are flat tf_keras functional graphs (no nested models, no Lambda layers), so every
layer is visible to the metrics, the dependency analysis and the TFLite converter.
``width`` scales every channel count, which is how the ``cpu`` budgets stay small.
"""
from __future__ import annotations

from ..backend import keras

layers = keras.layers


def _scaled(channels: int, width: float, divisor: int = 1) -> int:
    """Channels times ``width``, rounded to a multiple of ``divisor`` (at least one)."""
    return max(divisor, round(channels * width / divisor) * divisor)


def lenet5(input_shape, num_classes: int, width: float = 1.0) -> keras.Model:
    """LeCun et al. 1998: conv(6) - pool - conv(16) - pool - 120 - 84, ReLU instead of tanh."""
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(_scaled(6, width), 5, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(_scaled(16, width), 5, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(_scaled(120, width), activation="relu", name="fc1")(x)
    x = layers.Dense(_scaled(84, width), activation="relu", name="fc2")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name="lenet5")


def mnist_cnn(input_shape, num_classes: int, width: float = 1.0) -> keras.Model:
    """Two strided convolutions (16, 32 filters) and a VGG-style classifier (1024 - 512).

    About 2.9M MACs a digit, three quarters of them in the fully connected head: the
    units that go quiet when traffic narrows to a few classes are there (convolution
    filters stay generic), so the inference-time pruner's saving is real compute.
    """
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(_scaled(16, width), 5, strides=2, padding="same", activation="relu",
                      name="conv1")(inputs)
    x = layers.Conv2D(_scaled(32, width), 5, strides=2, padding="same", activation="relu",
                      name="conv2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(_scaled(1024, width), activation="relu", name="fc1")(x)
    x = layers.Dropout(0.3, name="dropout1")(x)
    x = layers.Dense(_scaled(512, width), activation="relu", name="fc2")(x)
    x = layers.Dropout(0.3, name="dropout2")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name="mnist_cnn")


def lenet_300_100(input_shape, num_classes: int, width: float = 1.0) -> keras.Model:
    """The fully connected LeNet-300-100 of Han et al. 2015's pruning experiments."""
    inputs = keras.Input(input_shape)
    x = layers.Flatten(name="flatten")(inputs)
    x = layers.Dense(_scaled(300, width), activation="relu", name="fc1")(x)
    x = layers.Dense(_scaled(100, width), activation="relu", name="fc2")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name="lenet_300_100")


def _conv_bn(x, filters: int, kernel: int, strides: int, name: str, relu: bool = True,
             relu_max: float | None = None):
    """Conv (no bias) -> BatchNorm -> ReLU (ReLU6 with ``relu_max=6``)."""
    x = layers.Conv2D(
        filters, kernel, strides=strides, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(relu_max, name=f"{name}_relu")(x) if relu else x


def _shortcut(x, filters: int, strides: int, name: str):
    """Identity, or a 1x1 projection where the shape changes (He et al.'s option B)."""
    if strides == 1 and x.shape[-1] == filters:
        return x
    return _conv_bn(x, filters, 1, strides, f"{name}_proj", relu=False)


def _basic_block(x, filters: int, strides: int, name: str):
    shortcut = _shortcut(x, filters, strides, name)
    y = _conv_bn(x, filters, 3, strides, f"{name}_a")
    y = _conv_bn(y, filters, 3, 1, f"{name}_b", relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def _bottleneck_block(x, filters: int, strides: int, name: str):
    shortcut = _shortcut(x, 4 * filters, strides, name)
    y = _conv_bn(x, filters, 1, 1, f"{name}_a")
    y = _conv_bn(y, filters, 3, strides, f"{name}_b")
    y = _conv_bn(y, 4 * filters, 1, 1, f"{name}_c", relu=False)
    return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([shortcut, y]))


def _resnet(input_shape, num_classes, stem: int, stages, block, name: str, width: float):
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, _scaled(stem, width), 3, 1, "stem")
    for s, (filters, blocks) in enumerate(stages):
        for b in range(blocks):
            strides = 2 if s > 0 and b == 0 else 1
            x = block(x, _scaled(filters, width), strides, f"stage{s + 1}_block{b + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def resnet_cifar(depth: int):
    """He et al. 2016's CIFAR ResNet (6n+2 layers, 16/32/64 filters)."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6

    def build(input_shape, num_classes: int, width: float = 1.0) -> keras.Model:
        stages = [(16, n), (32, n), (64, n)]
        return _resnet(input_shape, num_classes, 16, stages, _basic_block, f"resnet{depth}", width)

    build.__doc__ = f"ResNet-{depth} for 32x32 inputs (He et al. 2016, section 4.2)."
    return build


def resnet18(input_shape, num_classes: int, width: float = 1.0) -> keras.Model:
    """ResNet-18 with a CIFAR stem (3x3 stride-1 conv, no max-pool)."""
    stages = [(64, 2), (128, 2), (256, 2), (512, 2)]
    return _resnet(input_shape, num_classes, 64, stages, _basic_block, "resnet18", width)


def resnet50(input_shape, num_classes: int, width: float = 1.0) -> keras.Model:
    """ResNet-50 (bottleneck blocks) with a CIFAR stem."""
    stages = [(64, 3), (128, 4), (256, 6), (512, 3)]
    return _resnet(input_shape, num_classes, 64, stages, _bottleneck_block, "resnet50", width)


# (expansion t, output channels c, repeats n, first stride s); strides of the first two
# stages are 1 instead of 2 for 32x32 inputs, as in the usual CIFAR adaptation.
_MOBILENETV2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenetv2(input_shape, num_classes: int, width: float = 1.0) -> keras.Model:
    """MobileNetV2 (Sandler et al. 2018) with a stride-1 stem for 32x32 inputs."""
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, _scaled(32, width, 8), 3, 1, "stem", relu_max=6.0)
    block = 0
    for t, c, n, s in _MOBILENETV2_STAGES:
        for i in range(n):
            block += 1
            x = _inverted_residual(x, t, _scaled(c, width, 8), s if i == 0 else 1, f"block{block}")
    x = _conv_bn(x, _scaled(1280, max(width, 1.0), 8), 1, 1, "head", relu_max=6.0)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name="mobilenetv2")


def _inverted_residual(x, expansion: int, filters: int, strides: int, name: str):
    inputs = x
    if expansion != 1:
        x = _conv_bn(x, expansion * x.shape[-1], 1, 1, f"{name}_expand", relu_max=6.0)
    x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = _conv_bn(x, filters, 1, 1, f"{name}_project", relu=False)
    if strides == 1 and inputs.shape[-1] == filters:
        x = layers.Add(name=f"{name}_add")([inputs, x])
    return x
