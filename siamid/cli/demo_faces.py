"""siamid demo --faces: the shipped RGB-D face tower on RAP3DF persons it never saw.

Enrolls each held-out person (the ``test`` persons of the shipped model's split,
``siamid/models/face_rgbd.splits.json``) from three poses, then unlocks: their other poses
(genuine), another held-out person's face (impostor) and a photo of them (their real colour
over flat depth), which the depth check refuses. No training; about a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from .common import console, line, styled
from .gallery_options import describe

ENROLL_POSES = ("front_1", "left_1", "right_1")
PROBE_POSES = ("up_1", "down_1", "burned_1")


def held_out_persons(model: Path) -> list[str]:
    """The RAP3DF folders of the persons the shipped face model neither trained nor calibrated on."""
    split = json.loads(model.with_name(model.name.split(".")[0] + ".splits.json").read_text())
    return [subject.removeprefix("rap3df-") for subject in split["test"]]


def run(out: Path, data: Path) -> None:
    from ..errors import DatasetError, QualityError
    from ..faces.attacks import photo_attack
    from ..runtime import Embedder, Gallery, default_model_path
    from ..store import TemplateStore

    if not data.is_dir():
        raise DatasetError(f"RAP3DF not found at {data}: give its folder with --data (the face "
                           "demo needs colour and depth captures; see docs/faces.md)")
    model = default_model_path().with_name("face_rgbd.onnx")
    embedder = Embedder(model)
    persons = [p for p in held_out_persons(model) if (data / p).is_dir()]
    if len(persons) < 2:
        raise DatasetError(f"{data} holds fewer than 2 of the persons the shipped face model "
                           "never saw; is it RAP3DF (rap3df_data_02)?")
    out.mkdir(parents=True, exist_ok=True)
    gallery_path = out / "face-gallery.db"
    gallery_path.unlink(missing_ok=True)
    gallery = Gallery(embedder, TemplateStore(gallery_path, create=True))

    def load(person: str, take: str):
        return embedder.preprocessor.load(data / person / f"{take}_rgb_registered.png")

    console.rule(f"1. enroll {len(persons)} persons the model never saw, from three poses")
    enrolled = []
    for person in persons:
        try:
            gallery.enroll(person, [load(person, take) for take in ENROLL_POSES],
                           poses=[take.split("_")[0] for take in ENROLL_POSES])
        except (QualityError, DatasetError) as exc:
            console.print(line(styled("refused", "yellow"), f" {person}: {exc}"))
            continue
        enrolled.append(person)
    console.print(f"enrolled {len(enrolled)} of {len(persons)} ({', '.join(ENROLL_POSES)}) in "
                  f"{gallery_path}")

    console.rule("2. unlock: own other poses, another person, a photo")
    counts = {"genuine": [0, 0], "impostor": [0, 0], "photo": [0, 0]}
    for k, person in enumerate(enrolled):
        other = enrolled[(k + 1) % len(enrolled)]
        attempts = [("genuine", person, take) for take in PROBE_POSES]
        attempts += [("impostor", other, PROBE_POSES[0]), ("photo", person, PROBE_POSES[0])]
        for kind, who, take in attempts:
            try:
                image = load(who, take)
            except DatasetError as exc:
                console.print(line(styled("skipped", "yellow"), f" {who}/{take}: {exc}"))
                continue
            if kind == "photo":
                image = photo_attack(image, "flat", embedder.preprocessor.config)
            counts[kind][1] += 1
            try:
                result = gallery.verify(person, image)
            except QualityError as exc:
                console.print(line(f"{kind} {who}/{take} as {person}: ",
                                   styled("REFUSED", "green" if kind != "genuine" else "red"),
                                   f" ({exc.reason})"))
                continue
            counts[kind][0] += result.accepted
            console.print(line(f"{kind} {who}/{take}: ", describe(result)))

    table = Table("attempt", "accepted", "of")
    for kind, (accepted, total) in counts.items():
        table.add_row(kind, str(accepted), str(total))
    console.print(table)
    console.print(f"model: {model} (try `siamid info {model}`); numbers with counts and "
                  "anchors: docs/faces.md")
