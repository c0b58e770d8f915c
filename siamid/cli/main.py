"""The ``siamid`` command: maps SiamidError to a message and exit code 3.

Exit codes: 0 accepted / success, 1 rejected, 2 usage error, 3 siamid error (bad data, model,
template...). Verbs live one per file in this package; ``siamid gallery`` is a group of verbs.
"""

from __future__ import annotations

import sys

import typer

from ..errors import SiamidError
from . import common

app = typer.Typer(
    name="siamid",
    help="Biometric authentication with learned signatures: synthesise, prepare, train, "
    "evaluate, export, enroll, verify, identify, manage galleries.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Help texts are shown as written: "[preprocess]" names a config section, not markup.
    rich_markup_mode=None,
)


def _show_version(value: bool) -> None:
    if value:
        from .. import __version__

        common.console.print(f"siamid {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Options that come before any verb (the app's help text describes the command)."""


def _register() -> None:
    from . import (calibrate, camera, capture, demo, embed_plot, enroll, evaluate, export,
                   gallery, identify, info, prep, profile, reader, split, synth, train, verify)

    for module in (synth, capture, prep, split, train, evaluate, embed_plot, export, calibrate,
                   info, profile, enroll, verify, identify, reader, demo):
        name = module.__name__.rsplit(".", 1)[1].replace("_", "-")  # embed_plot -> embed-plot
        app.command(name=name, help=module.command.__doc__)(common.handle_errors(module.command))
    app.add_typer(gallery.app, name="gallery")
    app.add_typer(camera.app, name="camera")


_register()


def run() -> None:
    """Console-script entry point (click's standalone mode gives usage errors exit code 2)."""
    try:
        app()
    except SiamidError as exc:  # raised outside a verb, e.g. while parsing a config option
        common.print_error(exc)
        sys.exit(common.EXIT_ERROR)


if __name__ == "__main__":
    run()
