"""The ``subpixel`` command line. Sub-commands living in other packages are imported lazily."""

from __future__ import annotations

import importlib
import json
import logging
import sys
import warnings

import click

from subpixel.errors import Interrupted, SubpixelError

# name -> "module:attribute" of a click command, imported only when used
LAZY_COMMANDS = {
    "upscale": "subpixel.commands.upscale:upscale",
    "eval": "subpixel.commands.evaluate:evaluate_cmd",
    "models": "subpixel.commands.models:models",
    "train": "subpixel.train.command:train",
    "video": "subpixel.video.command:video",
    "export": "subpixel.engine.command:export",
    "bench": "subpixel.bench.command:bench",
}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported on first use (keeps ``--help`` and startup fast)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(LAZY_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="subpixel")
def cli() -> None:
    """Image and video super-resolution."""


def _json_error(message: str) -> None:
    """With ``--json``, scripts reading stdout get the error too."""
    if "--json" in sys.argv[1:]:
        click.echo(json.dumps({"error": message}))


def _one_line_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    return f"warning: {message}\n"


def main() -> None:
    """Console entry point: user errors become one line on stderr (and ``{"error": ...}`` on stdout
    with ``--json``) and exit status 1; warnings are one line, without the source line that raised them."""
    warnings.formatwarning = _one_line_warning
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")  # the library's log warnings
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort as err:  # click turns a Ctrl-C inside a command into Abort
        if not isinstance(err.__cause__, Interrupted):
            click.echo("interrupted" if isinstance(err.__cause__, KeyboardInterrupt) else "aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        _json_error(err.format_message())
        sys.exit(err.exit_code)
    except SubpixelError as err:
        click.echo(f"error: {err}", err=True)
        _json_error(str(err))
        sys.exit(1)
    except KeyboardInterrupt as err:
        if not isinstance(err, Interrupted):
            click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
