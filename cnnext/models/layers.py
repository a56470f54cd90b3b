"""The layer namespace a model builder draws from: torch.nn's layers or cnnext's drop-ins.

Every builder in cnnext.models takes `layers="cnnext"|"torch"` and builds the same module tree from
`layer_namespace(layers)`, so the two variants have the same state_dict keys and can be compared
weight for weight. Only the layers cnnext implements differ; Linear, ReLU, Sigmoid, Dropout and
Flatten are torch.nn's in both, except that a BatchNorm2d followed directly by a ReLU is cnnext's
fused BatchNormReLU2d followed by a FusedReLU placeholder (`bn_relu`).
"""
from types import SimpleNamespace

import torch
from torch import nn

NAMES = ("Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm1d", "BatchNorm2d")


def layer_namespace(layers="cnnext"):
    """SimpleNamespace(Conv2d, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, BatchNorm1d, BatchNorm2d, cat,
    bn_relu): bn_relu(c) is the pair (BatchNorm2d(c), ReLU()) for torch, and for cnnext the fused
    (BatchNormReLU2d(c), FusedReLU()) -- one pass over memory, the same state_dict keys."""
    if layers == "torch":
        return SimpleNamespace(**{n: getattr(nn, n) for n in NAMES}, cat=torch.cat,
                               bn_relu=lambda c: (nn.BatchNorm2d(c), nn.ReLU()))
    if layers == "cnnext":
        import cnnext.functional as cf
        import cnnext.nn as cnn

        return SimpleNamespace(**{n: getattr(cnn, n) for n in NAMES}, cat=cf.cat,
                               bn_relu=lambda c: (cnn.BatchNormReLU2d(c), cnn.FusedReLU()))
    raise ValueError(f"layers must be 'cnnext' or 'torch', got {layers!r}")
