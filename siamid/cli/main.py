"""The ``siamid`` command: maps SiamidError to a message and exit code 3.

Exit codes: 0 accepted / success, 1 rejected, 2 usage error, 3 siamid error (bad data, model,
template...). Verbs live one per file in this package.
"""

from __future__ import annotations

import sys

import typer

from ..errors import SiamidError
from . import common

app = typer.Typer(
    name="siamid",
    help="Biometric authentication with learned signatures: synthesise, prepare, train, "
    "evaluate, export, enroll, verify, identify.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from . import demo, enroll, evaluate, export, identify, info, prep, split, synth, train, verify

    for module in (synth, prep, split, train, evaluate, export, info, enroll, verify, identify, demo):
        name = module.__name__.rsplit(".", 1)[1]
        app.command(name=name, help=module.command.__doc__)(common.handle_errors(module.command))


_register()


def run() -> None:
    """Console-script entry point (click's standalone mode gives usage errors exit code 2)."""
    try:
        app()
    except SiamidError as exc:  # raised outside a verb, e.g. while parsing a config option
        common.err_console.print(f"[red]error:[/red] {exc}")
        sys.exit(common.EXIT_ERROR)


if __name__ == "__main__":
    run()
