"""The ``subpixel`` command line. Sub-commands living in other packages are imported lazily."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import select
import signal
import sys
import warnings
from typing import NoReturn

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
# name -> the first sentence of its command's help, for ``subpixel --help`` without importing every command
SUMMARIES = {
    "upscale": "Upscale images (files, folders, globs) by --scale.",
    "eval": "Score a model with the field's protocol (Y of BT.601, scale pixels shaved, MATLAB bicubic LR).",
    "models": "List models: scales, parameters and measured metrics (Y-PSNR, from their cards).",
    "train": "Train a model from RECIPE (YAML).",
    "video": "Upscale a video: audio and subtitles are copied, timestamps and colour tags kept.",
    "export": "Export MODEL (a name or a .safetensors file) for ONNX Runtime and other runtimes.",
    "bench": "Measure throughput, latency, memory and complexity of models and peers at ~4K-output jobs.",
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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's list of commands, each summed up from :data:`SUMMARIES` (a command without one is imported)."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        commands = [click.Command(name, help=SUMMARIES[name]) if name in SUMMARIES else self.get_command(ctx, name)
                    for name in names]
        rows = [(name, command.get_short_help_str(limit)) for name, command in zip(names, commands)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as err:  # past click, which would make it a silent exit status 1
            if _stdout_gone():
                raise _ReaderGone from None
            raise SubpixelError(f"broken pipe: {err}") from err  # a worker's or a socket's, not our reader's


class _ReaderGone(Exception):
    """The program reading our output stopped (``subpixel models | head -1``)."""


def _stdout_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLERR)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout is not a real file
        return False


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="subpixel")
def cli() -> None:
    """Image and video super-resolution."""


def rank0() -> bool:
    """Whether this process prints ``--json`` output (rank 0 under ``torchrun``, or the only process)."""
    return os.environ.get("RANK", "0") == "0"


def _json_error(message: str, details: dict | None = None) -> None:
    """With ``--json``, scripts reading stdout get the error too, in one object with the ``details`` an error
    carries (what the command did before it stopped), written as the command's own ``--json`` output
    (by rank 0 only under ``torchrun``, as ``train``'s summary)."""
    if "--json" not in sys.argv[1:] or not rank0():
        return
    if details:
        from subpixel.commands.options import json_text  # loaded already: the command that raised uses it

        click.echo(json_text({"error": message, **details}), nl=False)
    else:
        click.echo(json.dumps({"error": message}))


def _interrupted(err: KeyboardInterrupt) -> None:
    """Say "interrupted" on stderr, unless the command already said what was kept and how to continue
    (:class:`Interrupted`); with ``--json``, stdout gets the error with that hint where there is one.
    Further Ctrl-Cs are ignored from here on: one landing in the interpreter's shutdown (which restores the
    default handler) would kill the process with SIGINT, or abort it with SIGABRT in torch's teardown."""
    with contextlib.suppress(ValueError):  # off the main thread (an embedding program's) signals stay as they are
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if not isinstance(err, Interrupted):
        click.echo("interrupted", err=True)
    _json_error(str(err) if isinstance(err, Interrupted) and str(err) else "interrupted", getattr(err, "details", None))


def _exit_quietly_on_a_closed_pipe() -> NoReturn:
    """Exit without a word, with status 141 (128 + SIGPIPE) as a program killed by SIGPIPE (git, coreutils)
    shows in the shell; stdout goes to /dev/null first, so Python's final flush of what is still buffered
    cannot fail again (the recipe of the Python docs' "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError):
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(141)


def _one_line_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    return f"warning: {message}\n"


def main() -> None:
    """Console entry point: user errors become one line on stderr (and ``{"error": ...}`` on stdout
    with ``--json``) and exit status 1; warnings are one line, without the source line that raised them."""
    warnings.formatwarning = _one_line_warning
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")  # the library's log warnings
    try:
        code = cli.main(standalone_mode=False)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
    except (_ReaderGone, BrokenPipeError):
        _exit_quietly_on_a_closed_pipe()
    except click.exceptions.Abort as err:  # click turns a Ctrl-C inside a command into Abort
        if isinstance(err.__cause__, KeyboardInterrupt):
            _interrupted(err.__cause__)
        else:  # end of input at a prompt
            click.echo("aborted", err=True)
            _json_error("aborted")
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        _json_error(err.format_message())
        sys.exit(err.exit_code)
    except (SubpixelError, OSError) as err:  # OSError: a file system's refusal (a name too long, a full disk)
        click.echo(f"error: {err}", err=True)
        _json_error(str(err), getattr(err, "details", None))
        sys.exit(1)
    except KeyboardInterrupt as err:
        _interrupted(err)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
