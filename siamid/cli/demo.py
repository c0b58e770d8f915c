"""siamid demo: the whole pipeline on synthetic fingerprints, no external data, a few minutes."""

from pathlib import Path

import typer
from rich.table import Table

from .common import console, line, percent, progress_bar, styled
from .gallery_options import describe


def command(
    out: Path = typer.Option(Path("demo-output"), help="Folder for the data, run, models and gallery."),
    identities: int = typer.Option(300, help="Synthetic fingers to generate."),
    impressions: int = typer.Option(6, help="Impressions per finger."),
    epochs: int = typer.Option(15, help="Training epochs (each ~5-10 s on 2 cores)."),
    seed: int = typer.Option(0, help="Seed of everything."),
    faces: bool = typer.Option(False, "--faces", help="Instead: the shipped RGB-D face tower on "
                               "RAP3DF persons it never saw (enroll, unlock, photo attacks)."),
    data: Path = typer.Option(Path("../shared/data/rap3df"), help="With --faces: the RAP3DF "
                              "folder (<person>/<pose>_<k>_rgb_registered.png and _depth.png)."),
) -> None:
    """Synthesise fingerprints, train a small tower, evaluate, export, enroll and authenticate;
    with --faces, enroll and unlock faces with the shipped RGB-D tower."""
    if faces:
        from .demo_faces import run

        run(out, data)
        return
    from ..config import Config, DataConfig, TrainConfig
    from ..dataset import load_image, load_splits
    from ..errors import QualityError
    from ..exporting import export_run
    from ..runtime import Embedder, Gallery
    from ..store import TemplateStore
    from ..synth import generate_dataset
    from ..training import load_data, train

    out.mkdir(parents=True, exist_ok=True)
    data_dir, run_dir, model_dir = out / "data", out / "run", out / "models"
    console.rule("1. synthesise fingerprints")
    with progress_bar() as progress:
        generate_dataset(data_dir, identities, impressions, sensor="r503", seed=seed,
                         progress=lambda d, t: progress("synth", d, t))
    console.print(f"{identities} synthetic fingers x {impressions} impressions in {data_dir}")

    console.rule("2. train a small tower")
    config = Config(data=DataConfig(root=str(data_dir), seed=seed),
                    train=TrainConfig(tower="small_pool", embedding_size=32, epochs=epochs,
                                      steps_per_epoch=40, patience=5, seed=seed))
    resume = (run_dir / "checkpoint.pt").exists()
    if resume:
        console.print(f"resuming the run in {run_dir}")
    with progress_bar() as progress:
        result = train(config, run_dir, resume=resume, progress=progress)
    console.print(f"best epoch {result.best_epoch}, validation EER {percent(result.best_val_eer)}")

    console.rule("3. export (ONNX fp32 + int8, ModelCard inside)")
    exported = export_run(run_dir, model_dir)
    console.print(f"{exported.fp32_path} ({exported.fp32_path.stat().st_size / 1024:.0f} kB), "
                  f"validation EER fp32 {percent(exported.card.metrics['val_eer_fvc'])}")
    if exported.int8_path:
        console.print(f"{exported.int8_path} ({exported.int8_path.stat().st_size / 1024:.0f} kB), "
                      f"validation EER int8 {percent(exported.int8_card.metrics['val_eer_fvc'])}")

    console.rule("4. test split (subjects never seen in training)")
    if result.test_report:
        table = Table("protocol", "genuine", "impostor", "EER", "FMR100", "acc@thr", "match",
                      "no-match", "AUC")
        for name, rep in result.test_report.items():
            s, v = rep["summary"], rep["classifier"]
            table.add_row(name, str(s["n_genuine"]), str(s["n_impostor"]), percent(s["eer"]),
                          percent(s["fmr100"]), percent(v["accuracy"]), percent(v["match_accuracy"]),
                          percent(v["nomatch_accuracy"]), f"{s['roc_auc']:.4f}")
        console.print(table)

    console.rule("5. enroll and authenticate (int8 model, onnxruntime, no torch)")
    model_path = exported.int8_path or exported.fp32_path
    gallery_path = out / "gallery.db"
    gallery_path.unlink(missing_ok=True)
    gallery = Gallery(Embedder(model_path), TemplateStore(gallery_path, create=True))
    test = load_splits(run_dir / "splits.json", load_data(config)).test.by_identity()
    # Enroll the first test fingers until three are in: a refused enrollment (the images do not
    # agree closely enough to be one finger) is part of what a user meets, so it is shown.
    fingers = sorted(test)
    people: list[str] = []
    for person in fingers:
        if len(people) == 3:
            break
        takes = test[person]
        try:
            enrolled = gallery.enroll(person, [load_image(e.path) for e in takes[:3]],
                                      dpi=takes[0].dpi, min_images=2)
        except QualityError as exc:
            console.print(line(styled("refused", "yellow"), f" {person}: {exc.reason}"))
            continue
        people.append(person)
        console.print(f"enrolled {person} from {len(takes[:3])} images "
                      f"({len(enrolled.rejected)} rejected for quality, spread "
                      f"{enrolled.spread:.4f}, enrollment threshold {enrolled.threshold:.4f})")
    for person in people:
        # The impostor is the next test finger, enrolled or not: never the person themself.
        other = fingers[(fingers.index(person) + 1) % len(fingers)]
        for label, entry in (("genuine", test[person][-1]), ("impostor", test[other][-1])):
            r = gallery.verify(person, load_image(entry.path), dpi=entry.dpi)
            console.print(line(f"{label} probe {entry.id}: ", describe(r)))
    console.rule("where things went")
    console.print(f"plots: {run_dir}/test_fvc/*.png, {run_dir}/training.png\n"
                  f"report: {run_dir}/report.json\nmodels: {model_dir}/\ngallery: {gallery_path}\n"
                  f"try: siamid info {model_path}")
