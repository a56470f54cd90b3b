"""cnnext.models: the CNNs of d2l ch. 6-7 built from cnnext's layers.

    from cnnext.models import resnet18, summary
    net = resnet18(in_channels=1, num_classes=10)              # cnnext layers
    twin = resnet18(layers="torch")                            # same module tree, torch.nn layers
    twin.load_state_dict(net.state_dict())
    summary(net, (1, 1, 96, 96))                               # each block's output shape
"""
from .layers import layer_namespace
from .nets import (DenseBlock, Inception, Residual, alexnet, conv_block, densenet, googlenet, lenet, lenet_bn,
                   nin, nin_block, resnet18, resnet_block, transition_block, vgg11, vgg_block)
from .summary import summary

# name -> (builder, the input size the book trains it on)
MODELS = {
    "lenet": (lenet, 28), "lenet_bn": (lenet_bn, 28), "alexnet": (alexnet, 224), "vgg11": (vgg11, 224),
    "nin": (nin, 224), "googlenet": (googlenet, 96), "resnet18": (resnet18, 96), "densenet": (densenet, 96),
}


def get_model(name, **kwargs):
    """Build a model by name (a key of MODELS)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name][0](**kwargs)


__all__ = ["MODELS", "get_model", "summary", "layer_namespace", "lenet", "lenet_bn", "alexnet", "vgg11", "nin",
           "googlenet", "resnet18", "densenet", "vgg_block", "nin_block", "Inception", "Residual", "resnet_block",
           "conv_block", "DenseBlock", "transition_block"]
