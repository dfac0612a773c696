"""The ``churnml`` command line (Typer + Rich).

Each command lives in ``churnml.commands.<name>`` as a function with a Typer signature; this
module only registers them and maps errors to exit codes: 0 ok, 2 bad input or usage (any
``UsageError`` or other ``ChurnMLError`` with ``exit_code == 2``), 1 unexpected failure.
Heavy libraries (MLflow, BentoML, LightGBM) are imported inside the commands, so ``--help``
stays fast.
"""

from __future__ import annotations

import importlib
import sys

from churnml.config import disable_telemetry

disable_telemetry()  # before anything can import MLflow or BentoML

import typer  # noqa: E402
from rich.text import Text  # noqa: E402

from churnml.console import console  # noqa: E402
from churnml.errors import ChurnMLError  # noqa: E402

app = typer.Typer(
    name="churnml",
    help="Churn and expansion prediction for customer-success teams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (command name, "module:function"); order is the order of --help.
COMMANDS: list[tuple[str, str]] = [
    ("simulate", "churnml.commands.simulate:simulate"),
    ("validate", "churnml.commands.validate:validate"),
    ("features", "churnml.commands.features:features"),
    ("health", "churnml.commands.health:health"),
    ("train", "churnml.commands.train:train"),
    ("promote", "churnml.commands.promote:promote"),
    ("score", "churnml.commands.score:score"),
    ("calibrate-health", "churnml.commands.calibrate_health:calibrate_health"),
    ("monitor", "churnml.commands.monitor:monitor"),
    ("effects", "churnml.commands.effects:effects"),
    ("serve", "churnml.commands.serve:serve"),
    ("demo", "churnml.commands.demo:demo"),
    # the web workspace lives in churnml.ui, a layer beside the commands (docs/ui.md)
    ("ui", "churnml.ui.command:ui"),
]

# command groups (name, "module:Typer sub-app"), each with its own sub-commands, listed in
# --help after the commands: `churnml convert snapshot ...`
GROUPS: list[tuple[str, str]] = [
    ("convert", "churnml.commands.convert:app"),
]



@app.callback()
def _root() -> None:
    """Churn and expansion prediction for customer-success teams."""


for _name, _target in COMMANDS:
    _module, _func = _target.split(":")
    app.command(_name)(getattr(importlib.import_module(_module), _func))

for _name, _target in GROUPS:
    _module, _attr = _target.split(":")
    app.add_typer(getattr(importlib.import_module(_module), _attr), name=_name)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turn churnml errors into messages and exit codes.

    Typer's standalone mode handles usage errors itself (message, exit 2) and ends with
    ``SystemExit``; churnml's own errors propagate out of it and are mapped here.
    """
    try:
        app(args=argv, prog_name="churnml", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except ChurnMLError as exc:
        # the message quotes user text (paths, cell values, --as-of): printed literally, never
        # parsed as Rich markup ("[/x]" in a folder name must not crash the error path)
        console.print(Text.assemble(("error:", "red"), " ", str(exc)), highlight=False,
                      soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        console.print("aborted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
