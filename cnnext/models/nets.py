"""The CNNs of d2l ch. 6-7, as in the book's PyTorch code (d2l.ai, chapters 6-7), built from
cnnext's layers (`layers="cnnext"`) or torch.nn's (`layers="torch"`): same module tree either way.

| builder | d2l | input |
|---|---|---|
| lenet | 6.6 LeNet: sigmoid, average pooling | 28x28 |
| lenet_bn | 7.5 LeNet with batch norm (BatchNorm2d/1d before each sigmoid, max pooling) | 28x28 |
| alexnet | 7.1 AlexNet (Linear(6400) fixes the input at 224x224) | 224x224 |
| vgg11 | 7.2 VGG-11, `ratio` divides every conv width (d2l's small_conv_arch uses 4) | 224x224 |
| nin | 7.3 NiN: nin blocks, global average pooling, no Linear | 224x224 (any >= 67) |
| googlenet | 7.4 GoogLeNet: 9 Inception blocks | 96x96 (any >= 28) |
| resnet18 | 7.6 ResNet-18: Residual blocks | 96x96 (any >= 28) |
| densenet | 7.7 DenseNet: 4 dense blocks of 4 convs, growth 32, transition blocks | 96x96 (any >= 32) |
"""
import torch.nn.functional as F
from torch import nn

from .layers import layer_namespace


def lenet(in_channels=1, num_classes=10, layers="cnnext"):
    """LeNet-5 (d2l 6.6): conv5(pad 2)-sigmoid-avgpool2, conv5-sigmoid-avgpool2, 120-84-classes."""
    L = layer_namespace(layers)
    return nn.Sequential(
        L.Conv2d(in_channels, 6, kernel_size=5, padding=2), nn.Sigmoid(),
        L.AvgPool2d(kernel_size=2, stride=2),
        L.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(),
        L.AvgPool2d(kernel_size=2, stride=2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
        nn.Linear(120, 84), nn.Sigmoid(),
        nn.Linear(84, num_classes))


def lenet_bn(in_channels=1, num_classes=10, layers="cnnext"):
    """LeNet with batch norm before every sigmoid (seed notes 002, d2l 7.5's concise version)."""
    L = layer_namespace(layers)
    return nn.Sequential(
        L.Conv2d(in_channels, 6, 5), L.BatchNorm2d(6), nn.Sigmoid(),
        L.MaxPool2d(2, 2),
        L.Conv2d(6, 16, 5), L.BatchNorm2d(16), nn.Sigmoid(),
        L.MaxPool2d(2, 2), nn.Flatten(),
        nn.Linear(16 * 4 * 4, 120), L.BatchNorm1d(120), nn.Sigmoid(),
        nn.Linear(120, 84), L.BatchNorm1d(84), nn.Sigmoid(),
        nn.Linear(84, num_classes))


def alexnet(in_channels=1, num_classes=10, layers="cnnext"):
    """AlexNet (d2l 7.1) for 224x224 inputs: 96x54x54 after the first conv, 6400 after Flatten."""
    L = layer_namespace(layers)
    return nn.Sequential(
        L.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
        L.MaxPool2d(kernel_size=3, stride=2),
        L.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
        L.MaxPool2d(kernel_size=3, stride=2),
        L.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        L.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        L.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        L.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(),
        nn.Linear(6400, 4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(4096, num_classes))


def vgg_block(num_convs, in_channels, out_channels, L):
    """num_convs 3x3 convs (pad 1) with ReLU, then a 2x2 max pool (stride 2)."""
    blk = []
    for _ in range(num_convs):
        blk += [L.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
        in_channels = out_channels
    blk.append(L.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*blk)


VGG11_ARCH = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))


def vgg11(in_channels=1, num_classes=10, layers="cnnext", ratio=1, conv_arch=VGG11_ARCH):
    """VGG-11 (d2l 7.2) for 224x224 inputs; `ratio` divides every block's channels (d2l trains ratio=4)."""
    L = layer_namespace(layers)
    blks = []
    for num_convs, out_channels in conv_arch:
        out_channels //= ratio
        blks.append(vgg_block(num_convs, in_channels, out_channels, L))
        in_channels = out_channels
    return nn.Sequential(
        *blks, nn.Flatten(),
        nn.Linear(in_channels * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, num_classes))


def nin_block(in_channels, out_channels, kernel_size, strides, padding, L):
    """A conv followed by two 1x1 convs (per-pixel fully connected layers), each with ReLU."""
    return nn.Sequential(
        L.Conv2d(in_channels, out_channels, kernel_size, strides, padding), nn.ReLU(),
        L.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        L.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU())


def nin(in_channels=1, num_classes=10, layers="cnnext"):
    """NiN (d2l 7.3): four NiN blocks, the last with num_classes channels, then global average pooling."""
    L = layer_namespace(layers)
    return nn.Sequential(
        nin_block(in_channels, 96, kernel_size=11, strides=4, padding=0, L=L),
        L.MaxPool2d(3, stride=2),
        nin_block(96, 256, kernel_size=5, strides=1, padding=2, L=L),
        L.MaxPool2d(3, stride=2),
        nin_block(256, 384, kernel_size=3, strides=1, padding=1, L=L),
        L.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        nin_block(384, num_classes, kernel_size=3, strides=1, padding=1, L=L),
        L.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten())


class Inception(nn.Module):
    """Four parallel paths (1x1; 1x1-3x3; 1x1-5x5; maxpool3-1x1) concatenated on channels: c1+c2[1]+c3[1]+c4."""

    def __init__(self, in_channels, c1, c2, c3, c4, layers="cnnext"):
        super().__init__()
        L = layer_namespace(layers)
        self.p1_1 = L.Conv2d(in_channels, c1, kernel_size=1)
        self.p2_1 = L.Conv2d(in_channels, c2[0], kernel_size=1)
        self.p2_2 = L.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        self.p3_1 = L.Conv2d(in_channels, c3[0], kernel_size=1)
        self.p3_2 = L.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        self.p4_1 = L.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.p4_2 = L.Conv2d(in_channels, c4, kernel_size=1)
        self._cat = L.cat

    def forward(self, x):
        p1 = F.relu(self.p1_1(x))
        p2 = F.relu(self.p2_2(F.relu(self.p2_1(x))))
        p3 = F.relu(self.p3_2(F.relu(self.p3_1(x))))
        p4 = F.relu(self.p4_2(self.p4_1(x)))
        return self._cat((p1, p2, p3, p4), dim=1)


def googlenet(in_channels=1, num_classes=10, layers="cnnext"):
    """GoogLeNet (d2l 7.4): stem b1, b2, then 2 + 5 + 2 Inception blocks, global average pooling."""
    L = layer_namespace(layers)

    def I(*a):  # noqa: E743
        return Inception(*a, layers=layers)

    b1 = nn.Sequential(L.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3), nn.ReLU(),
                       L.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(L.Conv2d(64, 64, kernel_size=1), nn.ReLU(),
                       L.Conv2d(64, 192, kernel_size=3, padding=1), nn.ReLU(),
                       L.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b3 = nn.Sequential(I(192, 64, (96, 128), (16, 32), 32),
                       I(256, 128, (128, 192), (32, 96), 64),
                       L.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b4 = nn.Sequential(I(480, 192, (96, 208), (16, 48), 64),
                       I(512, 160, (112, 224), (24, 64), 64),
                       I(512, 128, (128, 256), (24, 64), 64),
                       I(512, 112, (144, 288), (32, 64), 64),
                       I(528, 256, (160, 320), (32, 128), 128),
                       L.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b5 = nn.Sequential(I(832, 256, (160, 320), (32, 128), 128),
                       I(832, 384, (192, 384), (48, 128), 128),
                       L.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
    return nn.Sequential(b1, b2, b3, b4, b5, nn.Linear(1024, num_classes))


class Residual(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); the shortcut is a strided 1x1 conv if use_1x1conv."""

    def __init__(self, input_channels, num_channels, use_1x1conv=False, strides=1, layers="cnnext"):
        super().__init__()
        L = layer_namespace(layers)
        self.conv1 = L.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = L.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = L.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1, self.relu1 = L.bn_relu(num_channels)  # fused in the cnnext variant
        self.bn2 = L.BatchNorm2d(num_channels)

    def forward(self, X):
        Y = self.relu1(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        return F.relu(Y + X)


def resnet_block(input_channels, num_channels, num_residuals, first_block=False, layers="cnnext"):
    """num_residuals Residual blocks; all but the first stage halve H and W in their first block."""
    blk = []
    for i in range(num_residuals):
        if i == 0 and not first_block:
            blk.append(Residual(input_channels, num_channels, use_1x1conv=True, strides=2, layers=layers))
        else:
            blk.append(Residual(num_channels, num_channels, layers=layers))
    return nn.Sequential(*blk)


def resnet18(in_channels=1, num_classes=10, layers="cnnext"):
    """ResNet-18 (d2l 7.6): 7x7 stem, 4 stages of 2 Residual blocks (64, 128, 256, 512), GAP, Linear."""
    L = layer_namespace(layers)
    b1 = nn.Sequential(L.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3),
                       *L.bn_relu(64),
                       L.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = resnet_block(64, 64, 2, first_block=True, layers=layers)
    b3 = resnet_block(64, 128, 2, layers=layers)
    b4 = resnet_block(128, 256, 2, layers=layers)
    b5 = resnet_block(256, 512, 2, layers=layers)
    return nn.Sequential(b1, b2, b3, b4, b5, L.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                         nn.Linear(512, num_classes))


def conv_block(input_channels, num_channels, L):
    """DenseNet's BN-ReLU-conv3x3 (pad 1)."""
    return nn.Sequential(*L.bn_relu(input_channels),
                         L.Conv2d(input_channels, num_channels, kernel_size=3, padding=1))


class DenseBlock(nn.Module):
    """num_convs conv_blocks; each one's output is concatenated on channels to its input."""

    def __init__(self, num_convs, input_channels, num_channels, layers="cnnext"):
        super().__init__()
        L = layer_namespace(layers)
        self.net = nn.Sequential(*[conv_block(num_channels * i + input_channels, num_channels, L)
                                   for i in range(num_convs)])
        self._cat = L.cat

    def forward(self, X):
        for blk in self.net:
            Y = blk(X)
            X = self._cat((X, Y), dim=1)
        return X


def transition_block(input_channels, num_channels, L):
    """BN-ReLU-conv1x1 then 2x2 average pooling: fewer channels, half the H and W."""
    return nn.Sequential(*L.bn_relu(input_channels),
                         L.Conv2d(input_channels, num_channels, kernel_size=1),
                         L.AvgPool2d(kernel_size=2, stride=2))


def densenet(in_channels=1, num_classes=10, layers="cnnext", growth_rate=32,
             num_convs_in_dense_blocks=(4, 4, 4, 4)):
    """DenseNet (d2l 7.7): ResNet's stem, dense blocks joined by channel-halving transition blocks."""
    L = layer_namespace(layers)
    b1 = nn.Sequential(L.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3),
                       *L.bn_relu(64),
                       L.MaxPool2d(kernel_size=3, stride=2, padding=1))
    num_channels, blks = 64, []
    for i, num_convs in enumerate(num_convs_in_dense_blocks):
        blks.append(DenseBlock(num_convs, num_channels, growth_rate, layers=layers))
        num_channels += num_convs * growth_rate
        if i != len(num_convs_in_dense_blocks) - 1:
            blks.append(transition_block(num_channels, num_channels // 2, L))
            num_channels = num_channels // 2
    return nn.Sequential(b1, *blks, *L.bn_relu(num_channels),
                         L.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(num_channels, num_classes))
