"""One GPU machine loan of the real-finger work: the medium tower pretrained at scale, then the
shipped fine-tune on real fingers from it, leave one database out.

A lent GPU machine gives minutes, not hours, and has neither ``../shared/data`` nor fast
synthesis, so this script does in one go, each step under a wall-clock cap so that a slow step
leaves time for the next (a capped training keeps its best epoch so far, ``best.pt``):

1. real prints: restores ``../shared/data`` (the eight real databases) from a lossless PNG
   mirror carried with the working tree (``--real-png``; made here with ``--make-mirror``),
   back under their own names (FVC ``.tif``), unless ``../shared/data`` is already there;
2. synthetic prints: ``siamid synth`` of whole 500 dpi fingers at harshness 1 (the skin-calibrated
   generator), as many of ``--fingers`` as ``--synth-seconds`` allow;
3. pretraining: ``--pretrain-config`` (default configs/pretrained_medium.toml, the shipped
   model's) on them, in runs/<its name>;
4. fine-tuning: ``--finetune-config`` (default configs/finetune_all_real.toml, the shipped
   recipe) once per real database, on the other seven, from that pretraining, ``--folds`` of the
   eight at once (runs/lodo_<pretraining's name>/<database>/run, e.g.
   runs/lodo_pretrained_medium: the layout bench/leave_one_out.py reuses, and where it trains
   the folds left out);
5. packing: the run folders (without resumable checkpoints) and each step's output as tar
   parts of at most 15 MiB in ``--out``, beside the script's own log (the device tool returns at
   most 8 files).

Back on a CPU machine, unpack the parts in the repo root and score, exporting on the way:
``cat gpu_scale.tar.part* | tar -x`` then
``.venv/bin/python bench/leave_one_out.py --pretrained runs/pretrained_medium
--work runs/lodo_pretrained_medium --json leave_one_out_medium_gpu``. The run that made the
shipped model: ``python3 scripts/gpu_scale.py --out $OUT --real-png ../real --synth-seconds 80
--pretrain-seconds 190 --fold-seconds 125`` from a snapshot of the repo in gpu_carry/src (one H100,
344 s; docs/experiments.md).

    python3 scripts/gpu_scale.py --out $OUT [--fingers 2400] [--smoke]
    .venv/bin/python scripts/gpu_scale.py --make-mirror gpu_carry/real   # on the CPU machine
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import REAL, SHARED, fold_folder  # noqa: E402
from bench.pretraining_gain import fold_config  # noqa: E402
from siamid.config import Config, dumps_config, from_dict  # noqa: E402

PRETRAIN = "configs/pretrained_medium.toml"
FINETUNE = "configs/finetune_all_real.toml"
DATA = "data/gpu500"
STEPS = "runs/gpu_scale_logs"  # each step's own output, packed with the runs
PART = 15 * 2 ** 20  # bytes per returned file (the device tool returns files of <= 16 MiB)
_START = time.monotonic()


class Log:
    """Timestamped lines to stderr and to ``<out>/gpu_scale.log``."""

    def __init__(self, out: Path) -> None:
        self.path = out / "gpu_scale.log"

    def __call__(self, message: str) -> None:
        line = f"[{time.monotonic() - _START:6.0f} s] {message}"
        print(line, file=sys.stderr, flush=True)
        with self.path.open("a") as fh:
            fh.write(line + "\n")


def siamid_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "siamid.cli.main", *args]


def start(cmd: list[str], log_file: Path) -> subprocess.Popen:
    """A child in its own process group (its worker pools die with it), output to a file."""
    fh = log_file.open("ab")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_capped(procs: dict[str, subprocess.Popen], seconds: float, log: Log) -> dict[str, int]:
    """Wait for every child until ``seconds`` have passed, then kill the rest's groups;
    {name: return code (-9 when killed)}."""
    deadline = time.monotonic() + seconds
    codes: dict[str, int] = {}
    while len(codes) < len(procs) and time.monotonic() < deadline:
        for name, proc in procs.items():
            if name not in codes and proc.poll() is not None:
                codes[name] = proc.returncode
                log(f"{name}: exit {proc.returncode}")
        time.sleep(1)
    for name, proc in procs.items():
        if name not in codes:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            codes[name] = -9
            log(f"{name}: stopped at its {seconds:.0f} s cap")
    return codes


def make_mirror(out: Path) -> None:
    """The real databases as lossless PNG under ``out`` (about 46 MB instead of 94)."""
    import numpy as np
    from PIL import Image

    for name in REAL:
        for src in sorted((SHARED / name).iterdir()):
            if src.suffix.lower() not in (".tif", ".png"):
                continue
            dst = out / name / (src.stem + ".png")
            dst.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(Image.open(src))).save(dst, optimize=True)


def restore_real(mirror: Path, log: Log) -> None:
    """``../shared/data`` from the mirror, each file under its original name and format."""
    import numpy as np
    from PIL import Image

    if SHARED.is_dir():
        log(f"{SHARED} exists: using it")
        return
    count = 0
    for name in REAL:
        suffix = ".png" if name == "upek" else ".tif"
        for src in sorted((mirror / name).glob("*.png")):
            dst = SHARED / name / (src.stem + suffix)
            dst.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(Image.open(src))).save(dst)
            count += 1
    log(f"restored {count} real prints under {SHARED}")


def fold_configs(run: str, work: str, finetune: Path, smoke: bool) -> dict[str, Path]:
    """Each fold's config (the recipe with the other seven databases, roots relative to the
    repo root so that the run folder works on any machine); {held-out database: path}."""
    paths = {}
    for held in REAL:
        folder = fold_folder(ROOT / work, held)
        folder.mkdir(parents=True, exist_ok=True)
        path = fold_config([n for n in REAL if n != held], run, folder / "config.toml", finetune)
        raw = tomllib.loads(path.read_text())
        raw["data"]["root"] = [os.path.relpath(r, ROOT) for r in raw["data"]["root"]]
        if smoke:
            raw["train"].update(epochs=1, steps_per_epoch=2)
        path.write_text(dumps_config(from_dict(Config, raw, str(path))))
        paths[held] = path
    return paths


def pack(out: Path, run: str, work: str, log: Log) -> None:
    """The run folders (best.pt, config, splits, metrics, report, plots; not checkpoint.pt) as
    ``gpu_scale.tar.partNN`` files in ``out``."""
    tar_path = out / "gpu_scale.tar"
    with tarfile.open(tar_path, "w") as tar:
        for folder in (ROOT / run, ROOT / work, ROOT / STEPS):
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path.name != "checkpoint.pt":
                    tar.add(path, arcname=str(path.relative_to(ROOT)))
        synth_json = ROOT / DATA / "synth.json"
        if synth_json.is_file():
            tar.add(synth_json, arcname=f"{run}/synth.json")
    data = tar_path.read_bytes()
    tar_path.unlink()
    for k in range(0, len(data), PART):
        (out / f"gpu_scale.tar.part{k // PART:02d}").write_bytes(data[k:k + PART])
    log(f"packed {len(data) / 2 ** 20:.1f} MiB in {max(1, -(-len(data) // PART))} part(s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for the tar parts and the log")
    parser.add_argument("--real-png", type=Path, default=ROOT / "gpu_carry/real",
                        help="the PNG mirror of the real databases (--make-mirror writes it)")
    parser.add_argument("--make-mirror", type=Path, default=None,
                        help="write the PNG mirror of ../shared/data's real databases and stop")
    parser.add_argument("--fingers", type=int, default=2400, help="synthetic fingers to ask for")
    parser.add_argument("--seed", type=int, default=300, help="synthesis seed")
    parser.add_argument("--synth-seconds", type=float, default=95)
    parser.add_argument("--pretrain-seconds", type=float, default=220)
    parser.add_argument("--fold-seconds", type=float, default=150)
    parser.add_argument("--pretrain-config", default=PRETRAIN,
                        help="the pretraining recipe; its run is runs/<its name>")
    parser.add_argument("--finetune-config", default=FINETUNE,
                        help="the real fine-tune recipe, run once per held-out database")
    parser.add_argument("--folds", type=int, default=len(REAL),
                        help="how many of the eight folds to train here (0: none; the rest "
                             "train where bench/leave_one_out.py runs)")
    parser.add_argument("--smoke", action="store_true",
                        help="a minutes-long check of every step on a CPU: 1-2 epochs of 2 steps, "
                        "two folds")
    args = parser.parse_args(argv)
    if args.make_mirror:
        make_mirror(args.make_mirror)
        return 0
    if args.out is None:
        parser.error("--out is required")
    args.out.mkdir(parents=True, exist_ok=True)
    log = Log(args.out)
    try:
        import torch
        log(f"torch {torch.__version__}, CUDA: "
            f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}, "
            f"{os.cpu_count()} CPUs")
    except Exception as exc:  # report and go on: the steps below say what fails
        log(f"torch: {exc!r}")
    logs = ROOT / STEPS
    logs.mkdir(parents=True, exist_ok=True)
    restore_real(args.real_png, log)

    synth = start(siamid_cmd("synth", DATA, "--identities", str(args.fingers), "--impressions",
                             "8", "--seed", str(args.seed), "--sensor", "500dpi",
                             "--harshness", "1"), logs / "synth.log")
    wait_capped({"synth": synth}, args.synth_seconds, log)
    fingers = sum(1 for p in (ROOT / DATA).glob("*/*/*") if p.is_dir())
    log(f"synthetic fingers on disk: {fingers}")

    pretrain = ROOT / args.pretrain_config
    run = f"runs/{pretrain.stem}"
    work = f"runs/lodo_{pretrain.stem}"
    pretrain_args = ["train", "--config", str(pretrain), "--data", DATA, "--run", run]
    if args.smoke:
        smoke_cfg = logs / "pretrain_smoke.toml"
        raw = tomllib.loads(pretrain.read_text())
        raw["train"].update(epochs=2, steps_per_epoch=2, identities_per_batch=4)
        smoke_cfg.write_text(dumps_config(from_dict(Config, raw, str(smoke_cfg))))
        pretrain_args[2] = str(smoke_cfg)
    wait_capped({"pretrain": start(siamid_cmd(*pretrain_args), logs / "pretrain.log")},
                args.pretrain_seconds, log)
    if not (ROOT / run / "best.pt").is_file():
        log("pretraining left no best.pt: stopping")
        pack(args.out, run, work, log)
        return 1

    try:
        configs = fold_configs(run, work, ROOT / args.finetune_config, args.smoke)
        folds = {held: start(siamid_cmd("train", "--config", str(path), "--run",
                                        str(fold_folder(work, held) / "run")),
                             logs / f"fold_{fold_folder('', held).name}.log")
                 for held, path in list(configs.items())[:args.folds]}
        if folds:
            wait_capped(folds, args.fold_seconds, log)
    except Exception as exc:  # keep what the pretraining made: pack it whatever happened here
        log(f"fine-tuning failed: {exc!r}")
    pack(args.out, run, work, log)
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
