"""The ``meshlet`` command: typer application, command registration and error reporting.

Every command raises exceptions for expected failures (:class:`meshlet.cli.errors.CLIError`
and the control plane client's errors); :func:`main` turns each into one red line on stderr
and exit status 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import click
import typer

import meshlet
from meshlet.cli import connect as connect_mod
from meshlet.cli import programs, resources, up
from meshlet.cli.console import err, out, print_error
from meshlet.cli.errors import CLIError, InvalidManifests
from meshlet.cli.failures import describe_failure

__all__ = ["app", "main"]

app = typer.Typer(
    name="meshlet",
    help="meshlet: a service mesh in Python. Start with `meshlet up`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
cp_app = typer.Typer(help="The control plane.", no_args_is_help=True)
agent_app = typer.Typer(help="The node agent.", no_args_is_help=True)
token_app = typer.Typer(help="Control plane tokens.", no_args_is_help=True)
app.add_typer(cp_app, name="cp")
app.add_typer(agent_app, name="agent")
app.add_typer(token_app, name="token")

app.command("up")(up.up_command)
cp_app.command("run")(programs.cp_run)
agent_app.command("run")(programs.agent_run)
app.command("apply")(resources.apply)
app.command("get")(resources.get)
app.command("describe")(resources.describe)
app.command("delete")(resources.delete)
token_app.command("create")(resources.token_create)


@app.command("connect")
def connect(
    service_id: Annotated[str, typer.Argument(help="<service>.<meshlet>.<namespace>")],
    workload_dir: Annotated[
        Path | None,
        typer.Option(
            "--workload-dir",
            "-d",
            help="The client workload's directory (holding client/meshless); "
            "default $MESHLET_DIR, else /meshlet.",
        ),
    ] = None,
    connect_timeout: Annotated[
        float, typer.Option(help="Seconds to reach the node agent's client socket.")
    ] = 5.0,
) -> None:
    """A netcat over the mesh: stdin to the service, the service to stdout.

    End of stdin half-closes the connection; the command ends when the service closes.
    """
    connect_mod.relay_service(
        service_id,
        workload_dir,
        sys.stdin.buffer,
        sys.stdout.buffer,
        connect_timeout=connect_timeout,
    )


@app.command("version")
def version() -> None:
    """Print the meshlet version."""
    out.print(f"meshlet {meshlet.__version__}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``meshlet`` console script."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name="meshlet", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except InvalidManifests as exc:
        for problem in exc.problems:
            err.print(problem, markup=False)
        print_error(exc.message)
        sys.exit(1)
    except CLIError as exc:
        print_error(exc.message)
        sys.exit(1)
    except BrokenPipeError:
        # The reader of our stdout went away (`meshlet get ... | head`): not an error.
        sys.stderr.close()
        sys.exit(0)
    except Exception as exc:
        message = describe_failure(exc)
        if message is None:
            raise
        print_error(message)
        sys.exit(1)
