"""Options shared by the verbs that use a gallery, and the store and Gallery they open."""

import contextlib
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from ..errors import SiamidError
from .common import line, styled

GALLERY = typer.Option(Path("gallery.db"), help="Template store (SQLite; encrypted with a key from --key-file or SIAMID_GALLERY_KEY).")
KEY_FILE = typer.Option(None, "--key-file", help="File holding the gallery's key (make one with `siamid gallery new-key`); default: SIAMID_GALLERY_KEY, else no encryption.")
MODEL = typer.Option(None, help="Exported .onnx model (default: the shipped one).")
DPI = typer.Option(500, help="Resolution of the images in dots per inch.")
THRESHOLD = typer.Option(None, help="Decision threshold (default: the model's).")
RULE = typer.Option("min", help="min: closest enrolled signature (the tutorial's rule); mean: distance to their mean.")


def read_key(key_file: Optional[Path]) -> Optional[bytes]:
    """The key in ``key_file`` (surrounding whitespace dropped); None without a file."""
    from ..errors import TemplateError

    if key_file is None:
        return None
    try:
        key = key_file.read_bytes().strip()
    except OSError as exc:
        raise TemplateError(
            f"cannot read the key file {key_file}: {exc.strerror}; give the file written by "
            "`siamid gallery new-key`"
        ) from exc
    if not key:
        raise TemplateError(f"key file {key_file} is empty; make one with `siamid gallery new-key`")
    return key


def open_store(gallery: Path, key_file: Optional[Path], create: bool = False):
    """The TemplateStore at ``gallery``; only enrollment and `gallery new` may create it."""
    from ..store import TemplateStore

    return TemplateStore(gallery, key=read_key(key_file), create=create)


def open_gallery(gallery: Path, model: Optional[Path], threshold: Optional[float] = None,
                 key_file: Optional[Path] = None, create: bool = False):
    """An Embedder on ``model`` and a Gallery over the store at ``gallery``."""
    from ..runtime import Embedder, Gallery

    embedder = Embedder(model)  # a bad model is reported before a gallery file is made
    return Gallery(embedder, open_store(gallery, key_file, create), threshold=threshold)


def describe(result) -> Text:
    """One line for a MatchResult; the subject's name is printed exactly as stored."""
    verdict = styled("ACCEPTED", "green") if result.accepted else styled("REJECTED", "red")
    if result.fmr_estimate is None:
        fmr = ""
    elif result.fmr_estimate == 0.0:
        fmr = ", closer than every calibration impostor comparison"
    else:
        fmr = f", a stranger scores this close {result.fmr_estimate:.3%} of the time"
    return line(verdict, f" {result.subject}: distance {result.distance:.4f} "
                f"{'<' if result.accepted else '>='} threshold {result.threshold:.4f}{fmr}")


def describe_update(update, template) -> Text:
    """One line for a TemplateUpdate: updated or not, why, and the template's make-up now."""
    head = styled("template updated", "green") if update.updated else "template not updated"
    counts = (f" (now {template.n_enrolled} enrolled + {template.n_adapted} adapted)"
              if template is not None else "")
    return line(head, f": {update.detail}{counts}")


def provenance(gallery, size: int, rule: str) -> str:
    """Where a decision's threshold and FMR estimate for a ``size``-signature template come
    from: the model's calibration set (synthetic prints, or the user's own set), or the
    threshold the user gave."""
    claim = gallery.embedder.calibration.describe(size, rule)
    if gallery.threshold_for(size, rule) != gallery.embedder.calibration.threshold_for(size, rule):
        return f"threshold given on the command line; FMR estimate from the model's {claim}"
    return f"calibration: {claim}"


@contextlib.contextmanager
def removed_if_refused(gallery: Path, g, created: bool):
    """Around an enrollment with the Gallery ``g``: if it ``created`` the file ``gallery`` and
    the enrollment is refused or interrupted while the file holds no one, remove it; it would
    answer "nobody matches" where "no such gallery" is the truth. Closes the store either way."""
    try:
        yield
    except (SiamidError, KeyboardInterrupt):
        if created and len(g.store) == 0:
            g.store.close()
            gallery.unlink(missing_ok=True)
        raise
    finally:
        g.store.close()


def enrolled_lines(subject: str, result, gallery: Path, images: str = "images") -> list[str]:
    """What an enrollment says once stored: the template (size, model, poses) and its spread."""
    template = result.template
    recorded = [o.pose for o in template.origins if o.pose is not None]
    lines = [f"enrolled {subject} with {template.signatures.shape[0]} signatures (model "
             f"{template.model_id}{'; poses ' + ', '.join(recorded) if recorded else ''}) in "
             f"{gallery}"]
    if len(result.accepted) > 1:
        lines.append(f"spread {result.spread:.4f} (largest distance between the enrollment "
                     f"{images}; each matched another below the enrollment threshold "
                     f"{result.threshold:.4f})")
    return lines

