"""summary(model, input_shape): d2l's layer-by-layer shape walk."""
import torch


def summary(model, input_shape, print_fn=print):
    """Run a zero input of `input_shape` through `model` and print each top-level layer's output shape
    (the children of a Sequential; the model itself otherwise), like d2l's
    `for layer in net: X = layer(X); print(layer.__class__.__name__, 'output shape:', X.shape)`.

    Runs in eval mode under no_grad (restoring the mode after) on the model's device and dtype.
    Returns the list of (name, class name, output shape as a tuple).
    """
    p = next(model.parameters(), None)
    X = torch.zeros(input_shape, device=p.device if p is not None else None,
                    dtype=p.dtype if p is not None else None)
    children = list(model.named_children()) if isinstance(model, torch.nn.Sequential) else [("", model)]
    was_training = model.training
    rows = []
    model.eval()
    try:
        with torch.no_grad():
            for name, layer in children:
                X = layer(X)
                rows.append((name, layer.__class__.__name__, tuple(X.shape)))
                if print_fn is not None:
                    print_fn(f"{layer.__class__.__name__ + ' output shape:':<34}{tuple(X.shape)}")
    finally:
        model.train(was_training)
    return rows
