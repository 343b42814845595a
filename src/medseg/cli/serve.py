"""``medseg serve`` (the web server) and ``medseg users`` (its accounts)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from medseg.cli._common import DEVICE_HELP, check_vote, command_group, console

users_app = command_group("Accounts of the web server (medseg serve).")

HomeOpt = typer.Option(
    None, "--home", metavar="DIR", help="Where the server keeps its database and studies (default $MEDSEG_HOME)."
)
PasswordStdinOpt = typer.Option(False, "--password-stdin", help="Read the password from standard input.")
JobThreadOpt = typer.Option(
    False,
    "--job-thread",
    help="Run segmentation jobs in a thread of the web "
    "process instead of a worker process of their own (slower under load).",
)
WebWorkersOpt = typer.Option(
    1,
    "--web-workers",
    min=1,
    metavar="N",
    help="Web processes answering requests (uvicorn workers); jobs still run in one job worker. Sessions, "
    "sign-in limits and the queue are in SQLite, shared by all. On 2 cores 2 is the most that helps.",
)

WebNiceOpt = typer.Option(
    5,
    "--web-nice",
    min=0,
    max=19,
    metavar="N",
    help="With --web-workers >= 2: the web workers' niceness (0-19), so the job worker (niceness 0) gets the CPU "
    "first when viewers and a job compete (measured: a job under 20 viewers 1.1x its time alone at 5, 1.7x at "
    "0, viewers' p95 unchanged); 0: equal.",
)


def _server_db(home: Path | None):
    """(settings, database) of the server home that the ``users`` commands work on."""
    from medseg.server.db import Database
    from medseg.server.settings import ServerSettings

    settings = ServerSettings(home=home) if home else ServerSettings()
    return settings, Database(settings.db_path)


def _new_password(password_stdin: bool) -> str:
    """One line from stdin (scripts), else prompted twice without echo."""
    import sys

    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="User name (letters, digits, _ . @ -)."),
    admin: bool = typer.Option(False, "--admin", help="May create users through the API."),
    password_stdin: bool = PasswordStdinOpt,
    home: Path | None = HomeOpt,
):
    """Create a user of the web server (the password is prompted for unless --password-stdin)."""
    from medseg.server.auth import create_user

    settings, db = _server_db(home)
    user = create_user(db, name, _new_password(password_stdin), is_admin=admin)  # AuthError: one line, exit 2
    console.print(f"created {'administrator' if user.is_admin else 'user'} {user.username} in {settings.db_path}")


@users_app.command("list")
def users_list(home: Path | None = HomeOpt):
    """List the users of the web server."""
    table = Table("user", "admin", "studies", "created")
    for u in _server_db(home)[1].users():
        table.add_row(u["username"], "yes" if u["is_admin"] else "", str(u["n_studies"]), u["created_at"])
    Console().print(table)


@users_app.command("passwd")
def users_passwd(
    name: str = typer.Argument(..., help="User name."),
    password_stdin: bool = PasswordStdinOpt,
    home: Path | None = HomeOpt,
):
    """Set a user's password (prompted unless --password-stdin); every session of that user ends and the
    account's sign-in back-off is lifted (on a running server too)."""
    from medseg.server.auth import lift_sign_in_backoff, set_password

    _, db = _server_db(home)
    user = set_password(db, name, _new_password(password_stdin))
    lift_sign_in_backoff(db, user.username)
    console.print(f"password of {user.username} changed; their sessions ended")


@users_app.command("remove")
def users_remove(
    name: str = typer.Argument(..., help="User name."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    home: Path | None = HomeOpt,
):
    """Remove a user with their sessions, studies and results, the files on disk included."""
    from medseg.server.auth import user_named
    from medseg.server.storage import remove_user

    settings, db = _server_db(home)
    row = user_named(db, name)
    if not yes:
        typer.confirm(
            f"remove user {row['username']} and their {len(db.studies(row['id']))} studies (files included)?",
            abort=True,
        )
    user, removed = remove_user(db, settings, name)
    studies = f"{removed} stud{'y' if removed == 1 else 'ies'}"
    console.print(f"removed user {user.username} and {studies} from {settings.root}")


def _print_server_start(web, settings, host: str, port: int) -> None:
    """What the server serves: each model (its pair and karyotype models), what is missing, where to open it."""
    registry = web.state.registry
    for entry in registry.entries.values():
        note = "  (demo model trained on synthetic data — not a clinical model)" if entry.demo else ""
        console.print(f"model {entry.id}: {entry.version}, {entry.spatial_dims}D, {entry.path}{note}")
        if entry.instances:
            console.print(
                "  chromosome instances: "
                + (
                    f"pair model {entry.pair.version}, {entry.pair.path}"
                    if entry.pair
                    else "no --pair-model, crossings split by their arms where clear"
                )
            )
            if entry.karyotype:
                console.print(
                    f"  karyotype classes: {entry.karyotype.version} ({entry.karyotype_vote} vote), "
                    f"{entry.karyotype.path}"
                )
    if not registry.entries:
        console.print("no model given (--model RUN_DIR): uploads will be refused", style="yellow")
    if not web.state.db.users():
        console.print("no user yet: create one with 'medseg users add NAME'", style="yellow")
    console.print(f"data in {settings.root}; open http://{host}:{port}/")


def serve(
    model: list[Path] = typer.Option(
        [], "--model", metavar="RUN", help="A trained run or fold directory (repeatable)."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    home: Path | None = HomeOpt,
    max_upload_mb: int = typer.Option(1024, metavar="MIB", help="Largest upload in MiB (413 beyond)."),
    device: str = typer.Option("auto", help=f"{DEVICE_HELP}."),
    trust_code: bool = typer.Option(
        False,
        "--trust-code",
        help="Serve models whose model.json names code outside "
        "medseg's registry (importing it runs it). Off: such models are refused at start.",
    ),
    pair_model: Path | None = typer.Option(
        None,
        "--pair-model",
        metavar="PAIR_RUN",
        help="A 4-class pair model "
        "(background, chromosome A, B, overlap) for every metaphase model "
        "(background / chromosome / overlap): it splits each crossing of two "
        "chromosomes in the results' chromosome instances; without it crossings "
        "are kept whole.",
    ),
    karyotype_model: Path | None = typer.Option(
        None,
        "--karyotype-model",
        metavar="KARYO_RUN",
        help="A "
        "karyotyping model (classes 1-22, X, Y; configs/mfish/"
        "karyotype_unet.yaml) for every metaphase model: it gives each "
        "chromosome instance its class (class, class_name, "
        "class_confidence in instances.json, the page's class column).",
    ),
    karyotype_vote: str = typer.Option(
        "soft",
        "--karyotype-vote",
        metavar="VOTE",
        help="With --karyotype-model: soft (mean probability over the chromosome's pixels) or majority.",
    ),
    login_failures_per_address: int = typer.Option(
        100,
        "--login-failures-per-address",
        metavar="N",
        help="Failed "
        "sign-ins from one address within 15 minutes before it backs off "
        "(429, 15 s doubling); everyone behind one NAT or proxy shares "
        "it. 0: no address limit (the per-account limit, 5, stays).",
    ),
    access_log: str = typer.Option(
        "errors", "--access-log", metavar="LEVEL", help="off, errors (responses >= 400) or all."
    ),
    log_file: Path | None = typer.Option(
        None,
        "--log-file",
        metavar="FILE",
        help="Write the server's log and access log to FILE, rotated at --log-max-mb (default: the console).",
    ),
    log_max_mb: int = typer.Option(10, "--log-max-mb", metavar="MIB", help="Size at which --log-file rotates."),
    log_backups: int = typer.Option(5, "--log-backups", metavar="N", help="Rotated log files kept."),
    job_thread: bool = JobThreadOpt,
    web_workers: int = WebWorkersOpt,
    web_nice: int = WebNiceOpt,
):
    """Run the web server: upload a study, automatic segmentation, slice viewer, downloads."""
    from medseg.server.app import create_app, lock_home
    from medseg.server.settings import MiB, ServerSettings

    check_vote(karyotype_vote)
    try:
        settings = ServerSettings(
            models=list(model),
            max_upload_bytes=max_upload_mb * MiB,
            device=device,
            trust_code=trust_code,
            pair_model=pair_model,
            karyotype_model=karyotype_model,
            karyotype_vote=karyotype_vote,
            login_failures_per_address=login_failures_per_address,
            access_log=access_log,
            log_file=log_file,
            log_max_bytes=log_max_mb * MiB,
            log_backups=log_backups,
            job_process=not job_thread,
            **({"home": home} if home else {}),
        )
    except ValueError as exc:  # a limit or log option out of range
        raise typer.BadParameter(str(exc)) from None
    lock = lock_home(settings)  # noqa: F841 - held until the process ends
    # with several web workers this process runs the one job worker itself (medseg.server.web_workers)
    web = create_app(settings, start_worker=web_workers == 1)
    _print_server_start(web, settings, host, port)
    _run(web, settings, host, port, web_workers, web_nice)


def _run(web, settings, host: str, port: int, web_workers: int, web_nice: int) -> None:
    """uvicorn serving ``web`` in this process, or ``web_workers`` processes beside this one's job worker."""
    if web_workers > 1:
        from medseg.server import web_workers as several

        several.run(web, settings, host, port, web_workers, announce=console.print, nice=web_nice)
        return
    import uvicorn

    # the access log is medseg's (medseg.server.logs: off / errors / all, rotated), not uvicorn's line per request
    # the client address is the socket's: X-Forwarded-For is never trusted (the sign-in limits key on it)
    uvicorn.run(web, host=host, port=port, log_level="info", access_log=False, proxy_headers=False)
