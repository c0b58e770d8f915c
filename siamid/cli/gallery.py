"""siamid gallery: list, inspect, create and prune template galleries; make keys."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from . import gallery_options as opt
from .common import console, handle_errors

app = typer.Typer(
    help="Manage galleries: list who is enrolled, remove someone, drop adapted signatures, "
    "inspect, create, make keys.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@app.command("list")
@handle_errors
def list_subjects(gallery: Path = opt.GALLERY, key_file: Optional[Path] = opt.KEY_FILE) -> None:
    """List the enrolled subjects: template size (enrolled and adapted signatures), the poses
    recorded at enrollment, model, enrollment and update dates, and when the newest signature
    was added."""
    with opt.open_store(gallery, key_file) as store:
        entries = store.entries()
    if not entries:
        console.print(f"no one is enrolled in {gallery}")
        return
    table = Table("subject", "signatures", "enrolled / adapted", "poses", "model", "enrolled",
                  "updated", "newest signature (UTC)", title=str(gallery))
    for e in entries:
        table.add_row(Text(e.subject), f"{e.count} x {e.dim}", f"{e.n_enrolled} / {e.n_adapted}",
                      Text(", ".join(e.poses) or "-"), e.model_id, _when(e.enrolled),
                      _when(e.updated), (e.newest or "unknown").replace("T", " ").removesuffix("Z"))
    console.print(table)


@app.command("remove")
@handle_errors
def remove(
    subject: str = typer.Argument(..., help="The subject to remove."),
    gallery: Path = opt.GALLERY,
    key_file: Optional[Path] = opt.KEY_FILE,
) -> None:
    """Remove a subject's template; its bytes are overwritten in the file."""
    with opt.open_store(gallery, key_file) as store:
        store.delete(subject)
    console.print(f"removed {subject} from {gallery}")


@app.command("forget-adapted")
@handle_errors
def forget_adapted(
    subject: str = typer.Argument(..., help="Whose adapted signatures to drop."),
    gallery: Path = opt.GALLERY,
    key_file: Optional[Path] = opt.KEY_FILE,
) -> None:
    """Drop a subject's adapted signatures (`verify --adapt`), keeping what enrollment made:
    the way back when someone else may have been let in and joined the template."""
    from ..adaptation import enrolled_only
    from ..errors import TemplateError

    with opt.open_store(gallery, key_file) as store:
        template = store.get(subject)
        if template.n_adapted == 0:
            console.print(f"{subject} has no adapted signatures; nothing changed")
            return
        if not store.replace_if_unchanged(template, enrolled_only(template)):
            raise TemplateError(f"the template of {subject!r} changed while it was being "
                                "rewritten (an adaptation or re-enrollment); run this again")
    console.print(f"dropped {template.n_adapted} adapted signatures of {subject}; the template "
                  f"holds its {template.n_enrolled} enrollment signatures")


@app.command("info")
@handle_errors
def info(gallery: Path = opt.GALLERY, key_file: Optional[Path] = opt.KEY_FILE) -> None:
    """Show a gallery: encryption, schema, how many subjects, which models, integrity."""
    with opt.open_store(gallery, key_file) as store:
        rows = [
            ("path", str(gallery.resolve())),
            ("encrypted", "yes (templates and names)" if store.encrypted else "no"),
            ("schema version", str(store.schema_version)),
            ("templates", _count(len(store), "subject")),
            ("models", ", ".join(store.models()) or "-"),
            ("file mode", oct(gallery.stat().st_mode & 0o777)),
            ("integrity", "; ".join(store.check()) or "ok"),
        ]
    table = Table(show_header=False, title=str(gallery))
    for key, value in rows:
        table.add_row(key, Text(value))
    console.print(table)


@app.command("new")
@handle_errors
def new(
    gallery: Path = typer.Argument(Path("gallery.db"), help="The gallery file to create."),
    key_file: Optional[Path] = opt.KEY_FILE,
) -> None:
    """Create an empty gallery (refuses an existing file); encrypted if a key is given."""
    from ..store import create_gallery

    with create_gallery(gallery, key=opt.read_key(key_file)) as store:
        state = "encrypted" if store.encrypted else "not encrypted"
    console.print(f"created an empty gallery {gallery} ({state}, mode 0600); next: "
                  f"siamid enroll NAME IMAGES... --gallery {gallery}")


@app.command("new-key")
@handle_errors
def new_key(out: Path = typer.Option(..., "--out", help="File to write the key to (must not exist).")) -> None:
    """Write a fresh gallery key to a new file readable only by its owner."""
    from ..store import KEY_ENV, write_key_file

    write_key_file(out)
    console.print(
        f"wrote a new gallery key to {out} (mode 0600). Use it with --key-file {out} on enroll, "
        f"verify, identify and the gallery verbs, or set {KEY_ENV} to its content "
        f"(export {KEY_ENV}=$(cat {out})). Keep a copy somewhere safe: without the key an "
        "encrypted gallery cannot be read."
    )
