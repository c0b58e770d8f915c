"""How real do our synthetic fingerprints look? Contact sheet, ridge period, minutiae, matcher EER.

Compares our generator (``siamid.synth``, r503 sensor: 192 x 192 at 500 dpi) with real prints
(every FVC set B real database and UPEK) and with SFinGe (fvc2000/DB4_B, fvc2004/DB4_B):

1. ``docs/synth_contact.png``: real prints (192 x 192 crops centred on the finger), SFinGe
   crops, and two of our fingers (four impressions each), all at their native 500 dpi scale.
2. Ridge period in pixels per image. Method: the 128 x 128 window centred on the finger
   (centroid of the blocks whose gray-level standard deviation is high, so background is
   avoided), mean removed, Hann-windowed, 2-D FFT; the radially summed power spectrum's peak in
   the band of periods 4-20 px, refined by a parabola through the peak and its neighbours,
   gives ``period = 128 / radius``. Global over the window, so it is a dominant period, not a
   local field. FVC2004 DB2/DB3 are 512 dpi (periods about 2 % larger at equal finger); the
   others are (about) 500 dpi.
3. Optional, with the PyPI package ``afis`` (a benchmark-only dependency, not in pyproject;
   ``.venv/bin/pip install afis``): minutiae per print with its pure-Python MINDTCT extractor,
   and its Bozorth3 matcher's genuine/impostor scores under the FVC protocol (280 genuine, 45
   impostor pairs per 10 x 8 set), scored as distances (negated similarities) by
   ``siamid.evaluation.evaluate_scores``. Every source is measured on the same 192 x 192 window
   centred on the finger (the R503's image; ours are that size already): whole FVC images
   cover 2-4 times the area, so whole-image counts and EERs would not compare. The pure-Python
   extractor takes about a second per window, so ``--afis-count`` and ``--afis-match`` bound
   the work.

Prints one table per measurement and writes ``bench/results/synth_realism.json``; exits 0 with
a message when ../shared/data is absent.

    .venv/bin/python bench/synth_realism.py [--fingers 10] [--impressions 8] [--workers 1]
        [--afis-count 16] [--afis-match ours,fvc2000/DB4_B,fvc2004/DB4_B,fvc2000/DB1_B]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    REAL,
    ROOT,
    SHARED,
    SYNTHETIC,
    image_grid,
    machine,
    print_table,
    write_json,
)
from siamid.synth import GENERATOR_VERSION, generate_finger

CONTACT = ROOT / "docs" / "synth_contact.png"
CONTACT_REAL = ["fvc2000/DB1_B", "fvc2002/DB1_B", "fvc2004/DB1_B", "upek"]
OURS = "ours (r503)"
WINDOW = 128
CROP = 192
MIN_PERIOD, MAX_PERIOD = 4.0, 20.0
DEFAULT_MATCH = ["ours", "fvc2000/DB4_B", "fvc2004/DB4_B", "fvc2000/DB1_B"]


def load_gray(path: Path) -> np.ndarray:
    """A file as a uint8 gray image (UPEK is palette PNG, SOCOFing 32-bit BMP)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)


def source_files(name: str) -> list[Path]:
    """Images of one shared-data source in natural (finger, impression) order."""
    folder = SHARED / name
    files = [p for p in folder.iterdir() if p.suffix.lower() in {".tif", ".png", ".bmp"}]

    def key(p: Path) -> tuple[int, int]:
        finger, take = p.stem.split("_")
        return int(finger), int(take)

    return sorted(files, key=key)


def finger_centre(image: np.ndarray, block: int = 16) -> tuple[int, int]:
    """(row, col) of the finger: centroid of the blocks with high gray-level spread.

    Background (blank glass, the synthetic sensors' white margin) is flat, ridges are not, so
    the blocks above half the largest standard deviation mark the finger.
    """
    h, w = image.shape
    hb, wb = h // block, w // block
    blocks = image[: hb * block, : wb * block].astype(np.float64)
    std = blocks.reshape(hb, block, wb, block).std(axis=(1, 3))
    rows, cols = np.nonzero(std > 0.5 * std.max())
    if rows.size == 0:
        return h // 2, w // 2
    return int((rows.mean() + 0.5) * block), int((cols.mean() + 0.5) * block)


def crop_at(image: np.ndarray, size: int) -> np.ndarray:
    """A ``size`` x ``size`` window centred on the finger, kept inside the image (padded white)."""
    h, w = image.shape
    if h < size or w < size:
        padded = np.full((max(h, size), max(w, size)), 255, dtype=image.dtype)
        padded[:h, :w] = image
        image, (h, w) = padded, padded.shape
    r, c = finger_centre(image)
    top = int(np.clip(r - size // 2, 0, h - size))
    left = int(np.clip(c - size // 2, 0, w - size))
    return image[top : top + size, left : left + size]


def ridge_period(image: np.ndarray) -> float:
    """Dominant ridge period (pixels) of the 128 x 128 window on the finger; NaN if none."""
    window = crop_at(image, WINDOW).astype(np.float64)
    window -= window.mean()
    hann = np.hanning(WINDOW)
    power = np.abs(np.fft.fftshift(np.fft.fft2(window * np.outer(hann, hann)))) ** 2
    yy, xx = np.indices(power.shape) - WINDOW // 2
    radius = np.rint(np.hypot(yy, xx)).astype(int)
    radial = np.bincount(radius.ravel(), weights=power.ravel())
    lo, hi = int(np.ceil(WINDOW / MAX_PERIOD)), int(np.floor(WINDOW / MIN_PERIOD))
    band = radial[lo : hi + 1]
    if not np.isfinite(band).all() or band.max() <= 0:
        return float("nan")
    k = lo + int(np.argmax(band))
    # Parabolic refinement: the peak rarely falls on an integer radius.
    a, b, c = radial[k - 1], radial[k], radial[k + 1]
    denom = a - 2 * b + c
    offset = 0.5 * (a - c) / denom if denom < 0 else 0.0
    return float(WINDOW / (k + float(np.clip(offset, -0.5, 0.5))))


def ours_dataset(fingers: int, impressions: int, seed: int) -> list[tuple[str, str, np.ndarray]]:
    """Our synthetic set as (finger, take, image), fingers ``index`` 0.. of ``seed``."""
    out = []
    for index in range(fingers):
        _, images = generate_finger(seed, impressions, "r503", index=index)
        out += [(str(index + 1), str(t + 1), im) for t, im in enumerate(images)]
    return out


def real_dataset(name: str) -> list[tuple[str, str, np.ndarray]]:
    """A shared-data source as (finger, take, image)."""
    return [(*p.stem.split("_"), load_gray(p)) for p in source_files(name)]


def quartiles(values: list[float]) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"n": 0, "median": None, "q1": None, "q3": None}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"n": int(v.size), "median": float(med), "q1": float(q1), "q3": float(q3)}


def contact_sheet(ours: list[tuple[str, str, np.ndarray]], impressions: int) -> Path:
    """Draw docs/synth_contact.png: real, SFinGe, ours x 2, labelled, 4 columns."""
    rows: list[list[tuple[str, np.ndarray]]] = []
    rows.append([(name, crop_at(load_gray(source_files(name)[0]), CROP)) for name in CONTACT_REAL])
    sfinge = []
    for name in SYNTHETIC:
        for path in source_files(name)[:16:8]:  # first impression of the first two fingers
            sfinge.append((f"SFinGe {name} {path.stem}", crop_at(load_gray(path), CROP)))
    rows.append(sfinge)
    for finger in ("1", "2"):
        takes = [im for f, t, im in ours if f == finger][:4]
        rows.append([(f"ours finger {finger} imp {k + 1}", im) for k, im in enumerate(takes)])
    return image_grid(
        rows, "Real (row 1), SFinGe (row 2), siamid.synth r503 (rows 3-4); 192x192 px at ~500 dpi",
        CONTACT)


_EXTRACTOR = None


def _minutiae(image: np.ndarray) -> tuple[np.ndarray, int, int]:
    """afis MINDTCT minutiae (N, 5) and the image size; one extractor per worker process."""
    global _EXTRACTOR
    if _EXTRACTOR is None:
        import afis

        _EXTRACTOR = afis.MindtctExtractor(quality_mode="off")
    template = _EXTRACTOR.extract_minutiae(image)
    return template.minutiae, image.shape[0], image.shape[1]


def afis_section(data: dict, args) -> dict:
    """Minutiae counts and Bozorth3 FVC-protocol EER with afis; a reason string if unavailable."""
    try:
        import afis
        from afis.algorithms.matcher import match_templates
    except ImportError as exc:
        msg = f"afis not installed ({exc}); run `.venv/bin/pip install afis` to measure minutiae/EER"
        print(f"\nafis: skipped: {msg}")
        return {"skipped": msg}
    from siamid.evaluation import evaluate_scores
    from siamid.pairs import fvc_pairs
    from siamid.types import SampleId

    match_sets = [s for s in args.afis_match.split(",") if s] if args.afis_match else []
    # Which images to extract: all of a matched set, the first --afis-count of the others.
    jobs: list[tuple[str, int]] = []
    for name, items in data.items():
        count = len(items) if name in match_sets else min(args.afis_count, len(items))
        # Spread count-only picks over fingers: every 8th-ish image rather than finger 1 only.
        step = max(1, len(items) // count) if count else 1
        chosen = range(0, len(items), 1 if name in match_sets else step)
        jobs += [(name, i) for i in list(chosen)[:count]]
    print(f"\nafis {afis.__version__}: extracting minutiae from {len(jobs)} images "
          f"on {args.workers} process(es) (pure-Python MINDTCT; seconds per image)...")
    start = time.perf_counter()
    images = [crop_at(data[name][i][2], CROP) for name, i in jobs]
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            results = list(pool.map(_minutiae, images, chunksize=4))
    else:
        results = [_minutiae(im) for im in images]
    elapsed = time.perf_counter() - start
    templates: dict[str, dict[int, tuple[np.ndarray, int, int]]] = {}
    for (name, i), result in zip(jobs, results):
        templates.setdefault(name, {})[i] = result

    counts = {name: quartiles([float(t[0].shape[0]) for t in ts.values()])
              for name, ts in templates.items()}
    print(f"minutiae in the {CROP}x{CROP} window centred on the finger")
    print_table(["source", "prints", "minutiae median", "IQR"],
                [[n, str(c["n"]), f"{c['median']:.0f}", f"{c['q1']:.0f}-{c['q3']:.0f}"]
                 for n, c in counts.items()])

    eer = {}
    for name in match_sets:
        if name not in data:
            continue
        items = data[name]
        index = {SampleId(f, "finger", t): i for i, (f, t, _) in enumerate(items)}
        pairs = fvc_pairs(list(index))
        gen, imp = [], []
        for pair in pairs:
            (ma, ha, wa), (mb, hb, wb) = templates[name][index[pair.a]], templates[name][index[pair.b]]
            score = match_templates(ma, mb, method="bozorth3", height_a=ha, height_b=hb,
                                    width_a=wa, width_b=wb).score
            (gen if pair.is_match else imp).append(-score)  # similarity -> distance
        report = evaluate_scores(gen, imp)
        eer[name] = {"eer": report.eer, "n_genuine": report.n_genuine,
                     "n_impostor": report.n_impostor, "roc_auc": report.roc_auc,
                     "genuine_score_median": float(-np.median(gen)),
                     "impostor_score_median": float(-np.median(imp))}
    if eer:
        print(f"Bozorth3 on the {CROP}x{CROP} windows, FVC protocol")
        print_table(["set", "EER", "genuine", "impostor", "AUC", "gen score med", "imp score med"],
                    [[n, f"{e['eer']:.3f}", str(e["n_genuine"]), str(e["n_impostor"]),
                      f"{e['roc_auc']:.3f}", f"{e['genuine_score_median']:.3f}",
                      f"{e['impostor_score_median']:.3f}"] for n, e in eer.items()])
    return {"afis_version": afis.__version__, "extractor": "afis.MindtctExtractor (pure Python)",
            "window": f"{CROP}x{CROP} centred on the finger",
            "matcher": "bozorth3 (afis, pure Python), FVC protocol, similarity negated",
            "extract_seconds": elapsed, "minutiae": counts, "eer": eer}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fingers", type=int, default=10, help="our synthetic fingers")
    parser.add_argument("--impressions", type=int, default=8, help="impressions per finger")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes for afis extraction")
    parser.add_argument("--afis-count", type=int, default=16,
                        help="prints per source for minutiae counts (matched sets: all)")
    parser.add_argument("--afis-match", default=",".join(DEFAULT_MATCH),
                        help="comma-separated sets for the Bozorth3 EER ('ours' = our set); '' = none")
    parser.add_argument("--no-afis", action="store_true", help="skip the afis measurements")
    args = parser.parse_args()

    if not SHARED.is_dir():
        print(f"synth_realism: skipped: shared data not found at {SHARED}")
        return 0

    start = time.perf_counter()
    data: dict[str, list[tuple[str, str, np.ndarray]]] = {
        "ours": ours_dataset(args.fingers, args.impressions, args.seed)}
    gen_seconds = time.perf_counter() - start
    for name in REAL + SYNTHETIC:
        if (SHARED / name).is_dir():
            data[name] = real_dataset(name)

    sheet = contact_sheet(data["ours"], args.impressions)
    print(f"contact sheet: {sheet.relative_to(ROOT)} ({sheet.stat().st_size // 1024} kB)")

    periods = {name: quartiles([ridge_period(im) for _, _, im in items])
               for name, items in data.items()}
    kind = {name: "ours" if name == "ours" else "SFinGe" if name in SYNTHETIC else "real"
            for name in data}
    print("\nRidge period (px), dominant FFT peak of the 128x128 window on the finger")
    print_table(["source", "kind", "images", "median", "IQR"],
                [[n, kind[n], str(p["n"]), f"{p['median']:.2f}", f"{p['q1']:.2f}-{p['q3']:.2f}"]
                 for n, p in periods.items()])
    real_all = quartiles([ridge_period(im) for n in REAL if n in data for _, _, im in data[n]])
    print(f"all real pooled: median {real_all['median']:.2f} px, "
          f"IQR {real_all['q1']:.2f}-{real_all['q3']:.2f} ({real_all['n']} images)")

    afis_result = {"skipped": "--no-afis"} if args.no_afis else afis_section(data, args)

    result = {
        "machine": machine(),
        "generator_version": GENERATOR_VERSION,
        "ours": {"sensor": "r503", "fingers": args.fingers, "impressions": args.impressions,
                 "seed": args.seed, "generate_seconds": gen_seconds},
        "contact_sheet": str(sheet.relative_to(ROOT)),
        "ridge_period_method": ("dominant radial FFT peak (periods 4-20 px, parabolic refinement) "
                                "of the Hann-windowed 128x128 window centred on the finger"),
        "ridge_period_px": periods,
        "ridge_period_px_real_pooled": real_all,
        "afis": afis_result,
    }
    path = write_json("synth_realism", result)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
