"""The training loop: AdamW, warmup + cosine, clipping, EMA, mixed precision, DDP, validation, checkpoints.

Launched as a plain process it trains on one device; under `torchrun` it trains with DDP (gloo on CPU, NCCL
on CUDA): the loader deals disjoint chunks to each rank, every rank runs the same number of steps, and
rank 0 validates, calibrates and writes. Checkpoints are written at the end of every epoch (and when
`max_steps` stops a run), and `resume` continues from the last one exactly: weights, optimizer, schedule,
EMA, random state and the epoch's data order.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from crew2.data.idle import IDLE_SECONDS
from crew2.data.loader import ANNOTATED, BATCH_IDX, BBOXES, CLS, IMAGE, KEYS, LoaderConfig, SessionStream, collate
from crew2.detection.metrics import DetectionScore, nms
from crew2.drive.fusion import Rules
from crew2.errors import Crew2Error
from crew2.io.band import Band
from crew2.keys import KeyProfile
from crew2.model import checkpoint
from crew2.model.loss import MultiTaskLoss, as_float, positive_weights
from crew2.model.net import KEY_POOLS, PIXEL_MAX, SCALES, MultiTaskNet, load_pretrained
from crew2.sim.world import CLASSES
from crew2.train import report
from crew2.train.metrics import calibrate, confusion, judge, key_metrics

log = logging.getLogger(__name__)
MIN_STEPS = 3000  # default_epochs: the least training that a small data set gets


@dataclass
class TrainConfig:
    train: list[Path]
    val: list[Path]
    out: Path
    epochs: int | None = None  # None: default_epochs, from the data's size
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.3  # epochs of linear warmup
    clip: float = 10.0  # max gradient norm
    ema: float = 0.999  # EMA decay; 0 turns EMA off
    amp: bool = True  # bf16 on CPU, fp16 on CUDA
    device: str = "auto"
    workers: int = 2
    scale: str = "t"
    frames: int = 1
    key_hidden: int = 128
    key_pool: str = "where"  # what the key head reads of the features (crew2.model.net.KEY_POOLS)
    balance: float = 0.5
    trim_idle: float = IDLE_SECONDS  # leave out stretches this long (s) with no key pressed; 0 keeps them
    label_offset: int | None = None  # None: the drive's latency for real-time sessions (crew2.data.loader)
    augment: bool = True
    key_weight: float = 1.0
    det_weight: float = 1.0
    uncertainty: bool = False
    pretrained: str | None = "auto"  # a .pt to start from; "auto": see starting_weights; None or "none": scratch
    trust_pickle: bool = False  # `pretrained` may be a full pickle (an Ultralytics .pt), which can run code
    resume: bool = False
    seed: int = 0
    max_steps: int | None = None  # stop after this many steps in all (smoke runs, tests)
    channels_last: bool = True

    def __post_init__(self) -> None:
        self.train, self.val, self.out = [Path(p) for p in self.train], [Path(p) for p in self.val], Path(self.out)
        if not self.train or not self.val:
            raise Crew2Error("training needs training sessions and validation sessions")
        if overlap := {p.resolve() for p in self.train} & {p.resolve() for p in self.val}:
            raise Crew2Error(f"{sorted(overlap)[0]} is in both the training and the validation sessions")
        if (self.epochs is not None and self.epochs < 1) or self.batch < 1 or self.workers < 0 or self.frames < 1:
            raise Crew2Error("epochs, batch and frames must be at least 1, workers zero or more")
        if self.lr <= 0 or self.clip <= 0 or not 0 <= self.ema < 1:
            raise Crew2Error("lr and clip must be positive, ema in [0, 1)")
        if self.key_pool not in KEY_POOLS:
            raise Crew2Error(f"unknown key pooling '{self.key_pool}': use one of {', '.join(KEY_POOLS)}")
        if self.scale not in SCALES:
            raise Crew2Error(f"unknown model scale '{self.scale}': use one of {', '.join(SCALES)}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise Crew2Error(f"--device must be auto, cpu or cuda, not {self.device}")


@dataclass
class StepInfo:
    epoch: int
    step: int
    steps_per_epoch: int
    losses: dict[str, float]
    lr: float
    samples_per_s: float


@dataclass
class EpochResult:
    epoch: int
    train: dict[str, float]
    val: dict[str, float]
    thresholds: list[float]
    best: bool
    history: list[dict[str, float]] = field(default_factory=list)
    warning: str | None = None  # set when the model looks useless (see crew2.train.metrics.Verdict)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise Crew2Error("--device cuda asked for, but PyTorch sees no CUDA GPU")
    return torch.device(name)


def _distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, device) — joining the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = torch.distributed.get_rank()
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return rank, world, device


def mixed_precision(device: torch.device, wanted: bool = True) -> tuple[bool, torch.dtype]:
    """(on, dtype) for autocast: fp16 on CUDA, bf16 on a CPU only where it is native. A CPU without it
    (oneDNN wants AVX-512) emulates it: a step took 8x as long as in fp32 on an AVX2 EPYC."""
    if device.type == "cpu":
        return wanted and torch.ops.mkldnn._is_mkldnn_bf16_supported(), torch.bfloat16
    return wanted, torch.float16


def starting_weights(cfg: TrainConfig) -> str | None:
    """What training starts from: `cfg.pretrained`, or for "auto" the shipped driver's weights when they fit
    (scale "t"; every tensor whose name and shape match: the backbone and neck, the Detect head for the same
    classes, the key head for the same keys and pooling), else nothing. Its backbone has learnt roads, cars
    and edges on the simulator. From scratch, on 2.5 minutes of CarRacing play, the key loss sat on its
    starting plateau (each key's base rate) for 300 to over 1,100 steps in 5 runs of 6; from these weights it
    fell in the first epoch (0.65 after 76 steps, against 0.94)."""
    if cfg.pretrained in (None, "", "none"):
        return None
    if cfg.pretrained != "auto":
        return cfg.pretrained
    from crew2.model.engine import DEFAULT_WEIGHTS

    return str(DEFAULT_WEIGHTS) if cfg.scale == "t" and DEFAULT_WEIGHTS.is_file() else None


def default_epochs(steps_per_epoch: int) -> int:
    """10 passes over the data, or more when it is small: at least MIN_STEPS steps. A few minutes of play are
    a hundred steps an epoch; 10 of them left the key head underfit on a third-party game (loss still falling)."""
    return max(10, math.ceil(MIN_STEPS / steps_per_epoch))


def _schedule(optimizer: torch.optim.Optimizer, total: int, warmup: int, lr: float):
    """Linear warmup to `lr` over `warmup` steps, then cosine down to 5% of it at `total`."""
    sched = torch.optim.lr_scheduler
    return sched.SequentialLR(optimizer, [
        sched.LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1),
        sched.CosineAnnealingLR(optimizer, T_max=max(total - warmup, 1), eta_min=0.05 * lr)], milestones=[warmup])


def train(cfg: TrainConfig, on_step: Callable[[StepInfo], None] | None = None,
          on_epoch: Callable[[EpochResult], None] | None = None,
          on_validate: Callable[[int, int], None] | None = None) -> EpochResult | None:
    """Train; returns the last epoch's result (None on ranks other than 0). `on_validate(done, total)` follows
    each epoch's validation, batch by batch."""
    from ultralytics.utils.torch_utils import ModelEMA

    rank, world, device = _distributed(pick_device(cfg.device))
    torch.manual_seed(cfg.seed)
    data_cfg = LoaderConfig(balance=cfg.balance, label_offset=cfg.label_offset, stack=cfg.frames,
                            augment=cfg.augment, trim_idle=cfg.trim_idle, seed=cfg.seed)
    train_ds = SessionStream(cfg.train, data_cfg)
    val_ds = SessionStream(cfg.val, LoaderConfig(balance=0.0, label_offset=cfg.label_offset, stack=cfg.frames,
                                                 augment=False, trim_idle=cfg.trim_idle, chunk=512, buffer=1))
    meta = train_ds.meta
    if (val_ds.meta.keys, val_ds.meta.width, val_ds.meta.height, val_ds.meta.band) != \
            (meta.keys, meta.width, meta.height, meta.band):
        raise Crew2Error("validation sessions record other keys, another frame size or another horizon band than the "
                         "training sessions")
    profile = KeyProfile(meta.profile, tuple(meta.keys), dict(meta.roles))
    class_names = list(meta.class_names) or list(CLASSES)

    net = MultiTaskNet(num_keys=len(meta.keys), num_classes=len(class_names), scale=cfg.scale, frames=cfg.frames,
                       key_hidden=cfg.key_hidden, key_pool=cfg.key_pool)
    if (start := starting_weights(cfg)) and not cfg.resume:
        load_pretrained(net, start, cfg.trust_pickle)
    net.to(device)
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    loss_fn = MultiTaskLoss(net, positive_weights(np.concatenate(train_ds.keys)), cfg.key_weight, cfg.det_weight,
                            cfg.uncertainty).to(device)
    decay = [p for p in [*net.parameters(), *loss_fn.parameters()] if p.ndim > 1]
    no_decay = [p for p in [*net.parameters(), *loss_fn.parameters()] if p.ndim <= 1]  # norms, biases, log-vars
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    steps_per_epoch = max(1, len(train_ds) // (cfg.batch * world))
    epochs = cfg.epochs or default_epochs(steps_per_epoch)
    scheduler = _schedule(optimizer, steps_per_epoch * epochs, max(1, int(cfg.warmup * steps_per_epoch)), cfg.lr)
    ema = ModelEMA(net, decay=cfg.ema) if cfg.ema > 0 else None
    model = nn.parallel.DistributedDataParallel(net) if world > 1 else net

    out = cfg.out
    start_epoch, step, best_fitness, history = 0, 0, -math.inf, []
    annotated = 0  # annotated frames stepped on, over every rank: whether the obstacle head learnt anything
    if cfg.resume:
        start_epoch, step, best_fitness, history, annotated = _resume(out, net, optimizer, scheduler, loss_fn, ema)
    elif rank == 0:
        _new_run(out, cfg, epochs)

    loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.batch, num_workers=cfg.workers,
                                         collate_fn=collate, prefetch_factor=4 if cfg.workers else None)
    amp, amp_dtype = mixed_precision(device, cfg.amp)
    scaler = torch.amp.GradScaler(enabled=amp and amp_dtype == torch.float16)
    result = None
    min_score = Rules.load().min_score  # obstacle recall is counted where the shipped rules act
    for epoch in range(start_epoch, epochs):
        model.train()
        train_ds.set_epoch(epoch)
        sums: dict[str, float] = {}
        t0, seen, seen_annotated = time.perf_counter(), 0, 0
        for batch in _batches(loader, steps_per_epoch):
            images = _images(batch, device, cfg.channels_last)
            parts = _train_step(model, net, loss_fn, optimizer, scheduler, scaler, ema, images, _to(batch, device),
                                amp_dtype if amp else None, cfg.clip)
            step += 1
            seen += len(images)
            seen_annotated += int(batch[ANNOTATED].sum())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            if on_step is not None and rank == 0:
                on_step(StepInfo(epoch, step, steps_per_epoch, parts, scheduler.get_last_lr()[0],
                                 seen * world / (time.perf_counter() - t0)))
            if cfg.max_steps is not None and step >= cfg.max_steps:
                break
        train_means = {k: v / max(1, math.ceil(seen / cfg.batch)) for k, v in sums.items()}  # per-step means
        train_means["samples_per_s"] = seen * world / (time.perf_counter() - t0)
        annotated += _sum_over_ranks(seen_annotated, device, world)
        if rank == 0:
            evaluated = ema.ema if ema is not None else net
            probs, labels, det_score = evaluate(evaluated, val_ds, device, class_names, cfg.batch, min_score,
                                                cfg.channels_last, on_validate)
            thresholds = calibrate(probs, labels)
            val = key_metrics(probs, labels, thresholds, list(meta.keys))
            val.update(det_score.result())
            verdict = judge(val, thresholds, list(meta.keys))
            val.update(verdict.metrics())  # the baseline is val["constant_f1"]
            fitness = val["f1"] if math.isnan(val["map50"]) else 0.5 * val["f1"] + 0.5 * val["map50"]
            val["fitness"] = fitness
            is_best = fitness > best_fitness
            best_fitness = max(best_fitness, fitness)
            history.append({"epoch": epoch, "step": step, "lr": scheduler.get_last_lr()[0],
                            **{f"train_{k}": v for k, v in train_means.items()},
                            **{f"val_{k}": v for k, v in val.items()}})
            state = dict(
                net_cfg=checkpoint.net_config(net, cfg.scale, cfg.key_hidden), profile=profile,
                class_names=class_names, thresholds=thresholds.tolist(), size=(meta.width, meta.height), band=meta.band,
                model=(ema.ema if ema is not None else net).state_dict(), raw_model=net.state_dict(),
                optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), loss=loss_fn.state_dict(),
                ema=ema.ema.state_dict() if ema is not None else net.state_dict(),
                ema_updates=ema.updates if ema is not None else 0, rng=torch.get_rng_state(), epoch=epoch,
                step=step, best_fitness=best_fitness, history=history, metrics=val,
                confusion=confusion(probs, labels, thresholds).tolist(), train_config=_plain(asdict(cfg)),
                detector=_detector(annotated, val["map50"]))
            _save(out, state, is_best)
            report.write(out, history, list(meta.keys), np.array(state["confusion"]))
            result = EpochResult(epoch, train_means, val, thresholds.tolist(), is_best, history, verdict.warning())
            if on_epoch is not None:
                on_epoch(result)
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return result


def _new_run(out: Path, cfg: TrainConfig, epochs: int) -> None:
    """The run folder, refused if a run is there already, with the run's settings in args.yaml: what made these
    weights, readable without torch (as Ultralytics keeps its args.yaml)."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "last.pt").exists():
        raise Crew2Error(f"{out} holds a training run already: --resume it, or choose another --out")
    (out / "args.yaml").write_text(yaml.safe_dump({**_plain(asdict(cfg)), "epochs": epochs}, sort_keys=False))


def _batches(loader, steps: int) -> Iterator:
    """`steps` batches, starting the loader again when this rank's share runs short: every rank must take the same
    steps."""
    batches = iter(loader)
    for _ in range(steps):
        try:
            yield next(batches)
        except StopIteration:
            batches = iter(loader)
            yield next(batches)


def _save(out: Path, state: dict, is_best: bool) -> None:
    """last.pt with everything --resume needs; best.pt, when this epoch is the best, with what driving and
    --pretrained need: no optimizer state, raw weights or RNG (a third the size)."""
    checkpoint.save(out / "last.pt", **state)
    if is_best:
        keep = {*checkpoint.INFERENCE, "net_cfg"}
        checkpoint.save(out / "best.pt", **{k: v for k, v in state.items() if k in keep})


def _resume(out: Path, net: nn.Module, optimizer, scheduler, loss_fn: nn.Module, ema) -> tuple:
    """Put `out`'s last checkpoint back into the run's objects; returns (start epoch, step, best fitness, history,
    annotated frames stepped on)."""
    ckpt = checkpoint.load(out / "last.pt")
    net.load_state_dict(ckpt["raw_model"])  # "model" holds the EMA weights, for inference
    optimizer.load_state_dict(ckpt["optimizer"])
    try:
        scheduler.load_state_dict(ckpt["scheduler"])
    except (KeyError, ValueError):
        raise Crew2Error(f"{out / 'last.pt'}: written by an older crew2 (another learning-rate schedule); "
                         "start a new run") from None
    loss_fn.load_state_dict(ckpt["loss"])
    if ema is not None:
        ema.ema.load_state_dict(ckpt["ema"])
        ema.updates = ckpt["ema_updates"]
    torch.set_rng_state(ckpt["rng"])
    return (ckpt["epoch"] + 1, ckpt["step"], ckpt["best_fitness"], list(ckpt["history"]),
            ckpt.get("detector", {}).get("annotated_frames", 0))


def _train_step(model: nn.Module, net: nn.Module, loss_fn: nn.Module, optimizer, scheduler, scaler, ema,
                images: torch.Tensor, targets: dict, amp_dtype: torch.dtype | None, clip: float) -> dict[str, float]:
    """One optimisation step (autocast to `amp_dtype` unless None); returns the loss's parts."""
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        key_logits, det = model(images)
    loss, parts = loss_fn(key_logits.float(), as_float(det), targets)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    nn.utils.clip_grad_norm_([*net.parameters(), *loss_fn.parameters()], clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    if ema is not None:
        ema.update(net)
    return parts


@torch.no_grad()
def evaluate(net: nn.Module, data: SessionStream, device: torch.device, class_names: list[str], batch: int,
             min_score: float, channels_last: bool = False, on_batch: Callable[[int, int], None] | None = None,
             ) -> tuple[np.ndarray, np.ndarray, DetectionScore]:
    """Key probabilities and labels (N, K) over a whole dataset, and detection scores over its annotated
    frames (boxes decoded by Detect, Ultralytics' NMS, matched at IoU 0.50:0.95)."""
    from ultralytics.utils import ops

    was_training = net.training
    net.eval()
    h, w = data.meta.height, data.meta.width
    band = Band.of(data.meta.band)
    score = DetectionScore(class_names, min_score, band=band, frame_size=band and band.frame_size((w, h)))
    probs, labels = [], []
    loader = torch.utils.data.DataLoader(data, batch_size=batch, collate_fn=collate)
    for n, b in enumerate(loader, 1):
        key_logits, (decoded, _) = net(_images(b, device, channels_last))
        probs.append(torch.sigmoid(key_logits.float()).cpu().numpy())
        labels.append(b[KEYS].numpy())
        if b[ANNOTATED].any():
            preds = nms(decoded.float(), conf=0.001, iou=0.6)
            xyxy = ops.xywhn2xyxy(b[BBOXES], w, h)
            for i in torch.nonzero(b[ANNOTATED]).flatten().tolist():
                mine = b[BATCH_IDX] == i
                score.add(preds[i], xyxy[mine], b[CLS][mine].flatten())
        if on_batch is not None:
            on_batch(n, len(loader))
    net.train(was_training)
    return np.concatenate(probs), np.concatenate(labels), score


def _sum_over_ranks(n: int, device: torch.device, world: int) -> int:
    """`n` summed over every rank (each rank steps on its own share of the data)."""
    if world == 1:
        return n
    total = torch.tensor([n], dtype=torch.int64, device=device)
    torch.distributed.all_reduce(total)
    return int(total.item())


def _detector(annotated: int, map50: float) -> dict:
    """The checkpoint's record of the obstacle head's training (`checkpoint.DetectorTraining`): the annotated
    frames this run stepped on (a --pretrained start's are not counted: they were another game's, or another
    camera's) and these weights' validation mAP50, None without annotated validation frames."""
    return {"annotated_frames": int(annotated), "map50": None if math.isnan(map50) else float(map50)}


def _images(batch: dict, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = batch[IMAGE].to(device, non_blocking=True).float().div_(PIXEL_MAX)  # (B, C, H, W) in [0, 1]
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _plain(d: dict) -> dict:
    """Config values a weights_only checkpoint can hold: paths become strings."""
    return {k: [str(x) for x in v] if isinstance(v, list) else str(v) if isinstance(v, Path) else v
            for k, v in d.items()}
