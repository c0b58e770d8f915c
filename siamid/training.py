"""train(config) -> a run folder: config.toml, splits.json, checkpoint.pt (last), best.pt,
metrics.jsonl, report.json and plots.

The loop samples batches of m impressions per identity, augments them as a sensor would vary
them, and optimises the contrastive, triplet, CosFace or ArcFace loss (the last two train a
per-identity proxy head beside the tower, kept in checkpoint.pt for resuming, never exported).
After every epoch the validation split is
embedded and its EER measured on FVC-protocol pairs; the best epoch is kept (MLTK keeps the last)
and training stops when it has not improved for ``patience`` epochs. At the end the test split is
evaluated, and its report shows the tutorial's view at the threshold ``siamid.calibration`` picks
on the validation split: a figure for this report only. The thresholds a model decides with are
calibrated by the exporter on each exported file's own outputs.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from . import __version__
from .config import AugmentConfig, Config, PreprocessConfig, dumps_config, load_config
from .dataset import Dataset, Entry, merge_datasets, scan_dataset, split_dataset
from .calibration import calibrate
from .errors import ConfigError, DatasetError, QualityError, TrainingError
from .faces.attacks import check_attacks, photo_attack
from .evaluation import evaluate_protocol, report_to_dict
from .losses import PROXY_LOSSES, MarginSoftmax, check_loss, compute_loss
from .nets import count_parameters, create_tower
from .owner import OwnerSplit, owner_report, split_owner
from .pairs import Protocol, batch_indices
from .parallel import available_cores, limit_numeric_threads, single_threaded_numerics
from .preprocess import Preprocessor
from .scoring import VIEWS
from .types import SampleId

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): stage is 'preprocess', 'epoch N' or 'evaluate'."""


@dataclass(frozen=True)
class ImageSet:
    """Preprocessed images of one split: uint8 (N, C, S, S) to save memory, ids, integer labels."""

    images: np.ndarray
    ids: tuple[SampleId, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class TrainResult:
    """Where the run went and what it reached."""

    run_dir: Path
    best_epoch: int
    best_val_eer: float
    threshold: float
    test_report: dict | None
    owner_report: dict | None = None


_ATTACK = "attack:"  # prepare_images view prefix: a photo attack of the image, not a sensor
_PHOTO = "/photo"  # trait suffix of the identity that photo attacks of a person train as


def _prep_one(args: tuple[str, int, PreprocessConfig, str]) -> np.ndarray:
    """One network input; ``view`` is a sensor view's name or ``attack:<kind>``."""
    path, dpi, cfg, view = args
    try:
        pre = Preprocessor(cfg)
        image = pre.load(path)
        if view.startswith(_ATTACK):
            image = photo_attack(image, view[len(_ATTACK):], cfg)
        elif view:
            image, dpi = VIEWS[view](image, dpi)
        return pre.network_input(image, dpi)
    except QualityError as exc:  # outside the size limits: name the file
        raise DatasetError(f"cannot train on {path}: {exc}") from exc


def sensor_views(names: str) -> list[str]:
    """``[train] sensor_views`` as a list; ConfigError naming an unknown view."""
    views = [v.strip() for v in names.split(",") if v.strip()]
    for view in views:
        if VIEWS.get(view) is None:
            known = ", ".join(k for k, fn in VIEWS.items() if fn is not None)
            raise ConfigError(f"[train] sensor_views: unknown view {view!r}; use {known}")
    return views


def prepare_images(entries: Sequence[Entry], cfg: PreprocessConfig, workers: int = 0,
                   progress: Progress | None = None, view: str = "") -> np.ndarray:
    """Preprocess every entry's image (in parallel) -> uint8 (N, C, S, S), the network inputs.

    Exactly what the runtime feeds an exported model (``Preprocessor.network_input``), through
    the sensor ``view`` when one is named; no quality check: training learns from poor images
    too.
    """
    Preprocessor(cfg)  # a bad config fails here, once, not in every worker
    if not entries:
        return np.zeros((0, cfg.channels, cfg.size, cfg.size), np.uint8)
    jobs = [(str(e.path), e.dpi, cfg, view) for e in entries]
    workers = workers or available_cores()
    out: list[np.ndarray] = []
    if workers == 1 or len(jobs) < 64:
        for i, job in enumerate(jobs):
            out.append(_prep_one(job))
            if progress:
                progress("preprocess", i + 1, len(jobs))
    else:
        with single_threaded_numerics(), ProcessPoolExecutor(
                workers, initializer=limit_numeric_threads) as pool:
            for i, arr in enumerate(pool.map(_prep_one, jobs, chunksize=16)):
                out.append(arr)
                if progress:
                    progress("preprocess", i + 1, len(jobs))
    return np.stack(out)


def image_set(ds: Dataset, cfg: PreprocessConfig, workers: int = 0,
              progress: Progress | None = None, views: Sequence[str] = (),
              attacks: Sequence[str] = ()) -> ImageSet:
    """Preprocess a dataset split into an ImageSet with labels indexing its sorted identities.

    Each of ``views`` (``siamid.scoring.VIEWS`` names) adds one more copy of every image as that
    sensor would deliver it, with the same id and label. Each of ``attacks``
    (``siamid.faces.attacks`` kinds) adds a photo attack of every image; a person's attacks
    share one new identity (``<trait>/photo``, labels after the real ones).
    """
    entries = sorted(ds.entries, key=lambda e: e.id)
    index = {name: i for i, name in enumerate(sorted({e.id.identity for e in entries}))}
    labels = np.array([index[e.id.identity] for e in entries], np.int64)
    images = [prepare_images(entries, cfg, workers, progress, view) for view in ("", *views)]
    ids = [e.id for e in entries] * (1 + len(views))
    all_labels = [labels] * (1 + len(views))
    for kind in attacks:
        images.append(prepare_images(entries, cfg, workers, progress, _ATTACK + kind))
        ids += [SampleId(e.id.subject, f"{e.id.trait}{_PHOTO}", f"{e.id.take}/{kind}")
                for e in entries]
        all_labels.append(labels + len(index))
    return ImageSet(np.concatenate(images), tuple(ids), np.concatenate(all_labels))


def augment(batch: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator,
            noise_gen: torch.Generator | None = None) -> torch.Tensor:
    """Vary a batch (N, C, H, W) in [0, 1] as impressions of one finger vary.

    Rotation and translation (placement on the sensor), scale (a face nearer or farther than
    the detector framed it), partial contact (a band of the window shows background),
    contrast/brightness (pressure, skin moisture) and noise. The batch may live on a GPU: the
    per-image draws come from ``gen`` (CPU) either way, and the pixel noise from ``noise_gen``,
    a generator on the batch's device, when one is given (drawing a batch of noise on the CPU
    and copying it over would cost more than the network's step).
    """
    n = batch.shape[0]
    dev = batch.device

    def uniform(lo: float, hi: float, size: int = n) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(size, generator=gen).to(dev)

    angle = uniform(-1.0, 1.0) * math.radians(cfg.rotation_deg)
    tx, ty = uniform(-1.0, 1.0) * 2 * cfg.translate, uniform(-1.0, 1.0) * 2 * cfg.translate
    cos, sin = torch.cos(angle), torch.sin(angle)
    if cfg.scale > 0:  # drawn only when asked, so recipes without it keep their random stream
        zoom = torch.exp(uniform(-1.0, 1.0) * math.log1p(cfg.scale))
        cos, sin = cos / zoom, sin / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    # Pad with the background level by warping the image shifted so that it is zero.
    out = cfg.pad + F.grid_sample(batch - cfg.pad, grid, padding_mode="zeros",
                                  align_corners=False)
    if cfg.flip > 0:
        mirrored = torch.rand(n, generator=gen) < cfg.flip
        out[mirrored] = out[mirrored].flip(-1)
    if cfg.partial_contact > 0:
        h, w = batch.shape[2:]
        hit = torch.rand(n, generator=gen) < cfg.partial_contact
        side = torch.randint(0, 4, (n,), generator=gen)
        depth = (0.15 + 0.25 * torch.rand(n, generator=gen))
        for i in torch.nonzero(hit).flatten().tolist():
            d = int(depth[i] * (h if side[i] < 2 else w))
            if side[i] == 0:
                out[i, :, :d] = 1.0
            elif side[i] == 1:
                out[i, :, h - d:] = 1.0
            elif side[i] == 2:
                out[i, :, :, :d] = 1.0
            else:
                out[i, :, :, w - d:] = 1.0
    if cfg.contrast > 0:
        gain = uniform(1 - cfg.contrast, 1 + cfg.contrast).view(n, 1, 1, 1)
        bias = uniform(-cfg.contrast / 2, cfg.contrast / 2).view(n, 1, 1, 1)
        out = (out - 0.5) * gain + 0.5 + bias
    if cfg.noise > 0:
        noise = (torch.randn(out.shape, generator=gen) if noise_gen is None else
                 torch.randn(out.shape, generator=noise_gen, device=dev))
        out = out + cfg.noise * noise.to(dev)
    return out.clamp(0.0, 1.0)


def to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, C, S, S) -> float32 tensor ``k / 255``.

    The same values, bit for bit, as ``preprocess.input_to_float`` gives the runtime (an IEEE
    float32 division by 255 in both), so the network is trained on what it is fed in use.
    """
    return torch.from_numpy(images).to(device).float().div_(255.0)


@torch.no_grad()
def embed_images(tower: torch.nn.Module, images: np.ndarray, batch_size: int = 256,
                 device: torch.device | str = "cpu") -> np.ndarray:
    """Signatures (N, D) of preprocessed uint8 images, in eval mode."""
    was_training = tower.training
    tower.eval()
    out = [tower(to_tensor(images[i:i + batch_size], device)).cpu().numpy()
           for i in range(0, len(images), batch_size)]
    tower.train(was_training)
    if not out:
        return np.zeros((0, tower.embedding_size), np.float32)
    return np.concatenate(out).astype(np.float32)


def evaluate_split(tower: torch.nn.Module, data: ImageSet, protocol: Protocol = Protocol("fvc"),
                   device: torch.device | str = "cpu"):
    """EvalReport of the tower on one split under ``protocol``."""
    return evaluate_protocol(embed_images(tower, data.images, device=device), data.ids, protocol)


def load_data(config: Config) -> Dataset:
    """Scan ``config.data.root`` (one folder or a list of folders, merged)."""
    roots = config.data.root if isinstance(config.data.root, list) else [config.data.root]
    if not roots or not all(roots):
        raise DatasetError("no training data: set [data] root in the config or pass --data")
    datasets = [scan_dataset(r, config.data.format, config.data.dpi) for r in roots]
    return datasets[0] if len(datasets) == 1 else merge_datasets(datasets)


def _save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _device(config: Config) -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_tower(config: Config) -> torch.nn.Module:
    """The tower the config asks for, sized to the preprocessing output."""
    return create_tower(config.train.tower, config.train.embedding_size,
                        config.preprocess.channels, config.preprocess.size)


def load_weights(tower: torch.nn.Module, source: str | Path) -> None:
    """Initialise ``tower`` from a run folder's best.pt or a checkpoint file (fine-tuning)."""
    path = Path(source)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise TrainingError(f"[train] init: {path} not found; give a run folder or a .pt checkpoint")
    state = torch.load(path, map_location="cpu", weights_only=False)
    try:
        tower.load_state_dict(state["model"] if "model" in state else state)
    except RuntimeError as exc:
        raise TrainingError(f"[train] init: {path} holds another architecture or size: {exc}") from exc


@torch.no_grad()
def init_proxies(head: MarginSoftmax, tower: torch.nn.Module, data: ImageSet,
                 device: torch.device | str = "cpu") -> None:
    """Start each identity's proxy at the mean direction of its signatures under ``tower``.

    Random proxies pull every signature of a pretrained tower towards arbitrary directions;
    starting from the class means keeps what it already separates. It does not rescue training
    from scratch: with 64-image batches a margin softmax still collapses a fresh tower onto one
    direction (docs/experiments.md).
    """
    emb = torch.from_numpy(embed_images(tower, data.images, device=device)).double()
    sums = torch.zeros(head.proxies.shape, dtype=torch.float64).index_add_(
        0, torch.from_numpy(data.labels), emb)
    head.proxies.copy_(F.normalize(sums, dim=1).to(head.proxies.dtype))


def train(config: Config, run_dir: str | Path, resume: bool = False,
          progress: Progress | None = None) -> TrainResult:
    """Train a tower as ``config`` says; everything lands in ``run_dir``.

    ``resume=True`` continues from ``run_dir/checkpoint.pt`` with the config saved there.
    An existing run folder is never overwritten without ``resume``.
    """
    run_dir = Path(run_dir)
    ckpt_path = run_dir / "checkpoint.pt"
    if resume:
        if not ckpt_path.exists():
            raise TrainingError(f"nothing to resume: {ckpt_path} does not exist")
        config = load_config(run_dir / "config.toml")
    elif ckpt_path.exists():
        raise TrainingError(f"run folder {run_dir} already holds a run; pass --resume or choose another name")
    tc = config.train
    check_loss(tc.loss, tc.mining)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(dumps_config(config))

    views = sensor_views(config.train.sensor_views)  # a typo fails before any data is read
    val_protocol = Protocol.parse(config.train.val_protocol)
    attacks = check_attacks(config.train.face_attacks, config.preprocess)
    ds = full = load_data(config)
    owned = None
    if tc.owner:
        if tc.loss != "triplet":
            raise ConfigError(f"owner-vs-others training uses the triplet loss, not {tc.loss!r}")
        owned = split_owner(ds, tc.owner, tc.owner_holdout, config.data.seed)
        ds = owned.others
    splits = split_dataset(ds, config.data.val_fraction, config.data.test_fraction, config.data.seed)
    if owned is not None:
        splits = replace(splits, train=merge_datasets([splits.train, owned.train], splits.train.name))
        (run_dir / "owner.json").write_text(json.dumps(
            {"owner": tc.owner, "holdout": [e.manifest_path for e in owned.holdout.entries]},
            indent=1))
    splits.save(run_dir / "splits.json")
    if len(splits.train.identities) < 2:
        raise TrainingError(f"the training split has {len(splits.train.identities)} identities; need >= 2")
    train_set = image_set(splits.train, config.preprocess, progress=progress, views=views,
                          attacks=attacks)
    val_set = image_set(splits.val, config.preprocess, progress=progress)

    device = _device(config)
    tower = build_tower(config).to(device)
    if tc.init and not resume:
        load_weights(tower, tc.init)
    head = None
    if tc.loss in PROXY_LOSSES:
        head = MarginSoftmax(int(train_set.labels.max()) + 1, tc.embedding_size, tc.loss,
                             tc.margin, tc.scale).to(device)
        if not resume:
            init_proxies(head, tower, train_set, device)
    params = list(tower.parameters()) + (list(head.parameters()) if head is not None else [])
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    total_steps = tc.epochs * tc.steps_per_epoch
    # Warm up for a tenth of the steps. OneCycleLR divides by (warm-up fraction x steps - 1),
    # zero for a run of exactly 10 steps: that one warms up for two.
    warmup = 0.2 if total_steps == 10 else 0.1
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc.lr, total_steps=total_steps,
                                                pct_start=warmup)
    gen = torch.Generator().manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    # On a GPU the pixel noise is drawn there, from its own stream (reseeded on resume); on the
    # CPU from ``gen``, so CPU runs keep their random stream.
    noise_gen = (torch.Generator(device).manual_seed(tc.seed) if device.type != "cpu" else None)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its kernels
    start_epoch, best_eer, best_epoch, stale = 0, math.inf, -1, 0
    if resume:
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        tower.load_state_dict(state["model"])
        if head is not None:
            head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["torch_rng"])
        rng.bit_generator.state = state["numpy_rng"]
        start_epoch, best_eer = state["epoch"] + 1, state["best_eer"]
        best_epoch, stale = state["best_epoch"], state["stale"]

    labels_str = [str(lbl) for lbl in train_set.labels]
    owner_labels = _owner_labels(train_set, tc.owner)
    owner_label = str(int(owner_labels.max())) if tc.owner else None
    metrics_path = run_dir / "metrics.jsonl"
    for epoch in range(start_epoch, tc.epochs):
        if stale >= tc.patience:
            break
        tower.train()
        t0, losses, seen = time.perf_counter(), [], 0
        for step in range(tc.steps_per_epoch):
            idx = batch_indices(labels_str, tc.identities_per_batch, tc.samples_per_identity, rng,
                                include=owner_label)
            x = augment(to_tensor(train_set.images[idx], device), tc.augment, gen, noise_gen)
            y = torch.from_numpy(train_set.labels[idx]).to(device)
            anchors = torch.from_numpy(np.isin(train_set.labels[idx], owner_labels)).to(device) \
                if tc.owner else None
            loss = compute_loss(tc.loss, tower(x), y, tc.margin, tc.mining, head, anchors)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            seen += len(idx)
            if progress:
                progress(f"epoch {epoch + 1}/{tc.epochs}", step + 1, tc.steps_per_epoch)
        train_time = time.perf_counter() - t0
        val = evaluate_split(tower, val_set, val_protocol, device)
        improved = val.eer < best_eer
        if improved:
            best_eer, best_epoch, stale = val.eer, epoch, 0
            _save_atomic({"model": tower.state_dict(), "epoch": epoch, "val_eer": val.eer},
                         run_dir / "best.pt")
        else:
            stale += 1
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_eer": val.eer,
               "val_n_genuine": val.n_genuine, "val_n_impostor": val.n_impostor,
               "images_per_s": seen / train_time, "lr": sched.get_last_lr()[0],
               "best": improved}
        with metrics_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        _save_atomic({"model": tower.state_dict(), "optimizer": opt.state_dict(),
                      "head": head.state_dict() if head is not None else None,
                      "scheduler": sched.state_dict(), "torch_rng": gen.get_state(),
                      "numpy_rng": rng.bit_generator.state, "epoch": epoch,
                      "best_eer": best_eer, "best_epoch": best_epoch, "stale": stale}, ckpt_path)

    if best_epoch < 0:
        raise TrainingError("no epoch completed; raise epochs or patience")
    best = torch.load(run_dir / "best.pt", map_location=device, weights_only=False)
    tower.load_state_dict(best["model"])
    report = finish_run(tower, config, run_dir, val_set, splits, full.manifest_hash(), device,
                        progress, owned)
    return TrainResult(run_dir, best_epoch + 1, best_eer, report["threshold"], report.get("test"),
                       report.get("owner"))


def _owner_labels(data: ImageSet, owner: str) -> np.ndarray:
    """The training labels of the owner's identities, not of photos of them (empty without an
    owner)."""
    if not owner:
        return np.empty(0, np.int64)
    return np.unique([lbl for lbl, sid in zip(data.labels, data.ids)
                      if sid.subject == owner and not sid.trait.endswith(_PHOTO)])


def finish_run(tower, config: Config, run_dir: Path, val_set: ImageSet, splits, manifest_hash: str,
               device, progress: Progress | None = None, owned: OwnerSplit | None = None) -> dict:
    """Evaluate the test split, write report.json and plots; with an owner, the ``owner``
    section (``siamid.owner.owner_report``: their held-out photos and the test persons against
    a template of their training photos).

    The threshold in the report (and behind its accuracy columns) is what the calibration picks
    on this tower's validation signatures at ``target_fmr``; the exported files are calibrated
    again on their own outputs, which is what a model decides with.
    """
    from .plots import plot_report, plot_training

    val_emb = embed_images(tower, val_set.images, device=device)
    threshold = calibrate(val_emb, val_set.ids, config.train.target_fmr, sizes=(1,)).threshold
    report: dict = {
        "threshold": threshold,
        "target_fmr": config.train.target_fmr,
        "tower": config.train.tower,
        "parameters": count_parameters(tower),
        "embedding_size": config.train.embedding_size,
        "manifest_hash": manifest_hash,
        "splits_hash": splits.manifest_hash,
        "siamid_version": __version__,
        "val_all_pairs": report_to_dict(evaluate_protocol(val_emb, val_set.ids, Protocol("all")),
                                        threshold),
    }
    if splits.test.entries:
        test_set = image_set(splits.test, config.preprocess, progress=progress)
        for protocol in (Protocol("fvc"), Protocol("all")):
            rep = evaluate_split(tower, test_set, protocol, device)
            report.setdefault("test", {})[str(protocol)] = report_to_dict(rep, threshold)
            plot_report(rep, run_dir / f"test_{protocol}", threshold,
                        title=f"test split, {protocol} protocol")
    if owned is not None:
        others = test_set if splits.test.entries else val_set
        template, held_out = (embed_images(tower, image_set(part, config.preprocess).images,
                                           device=device) for part in (owned.train, owned.holdout))
        report["owner"] = owner_report(owned.owner, template, held_out, embed_images(tower, others.images,
                                                                        device=device),
                                       threshold, len({sid.subject for sid in others.ids}))
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    plot_training(metrics, run_dir / "training.png")
    (run_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report
