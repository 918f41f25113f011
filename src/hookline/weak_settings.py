"""Settings that weaken security, each told as a WARNING line at every start.

None of them stops hookline (each has its use in development and tests), but none belongs
in production unnoticed: webhooks allowed into private networks (the SSRF guard off), an
admin token short enough to guess, and a data directory that other users may read (it holds
the SQLite database, the generated secret key and admin token).
"""

import logging
import stat
from pathlib import Path

from hookline import logs
from hookline.config import Settings

log = logging.getLogger("hookline")

MIN_ADMIN_TOKEN_CHARS = 32
# Permission bits for "others" (neither the owner nor the group): any of them opens the
# directory to every user of the machine.
_OTHERS = stat.S_IRWXO


def find(settings: Settings) -> list[tuple[str, str]]:
    """(setting, why it weakens security) for each weakening setting, in a fixed order."""
    found = []
    if settings.allow_private_networks:
        found.append(
            (
                "HOOKLINE_ALLOW_PRIVATE_NETWORKS",
                "webhooks may go to loopback, private and link-local addresses (the SSRF"
                " guard is off); leave it false in production",
            )
        )
    token = settings.admin_token
    if token is not None and len(token.get_secret_value()) < MIN_ADMIN_TOKEN_CHARS:
        found.append(
            (
                "HOOKLINE_ADMIN_TOKEN",
                f"the admin token is shorter than {MIN_ADMIN_TOKEN_CHARS} characters;"
                " use a long random one (hl_admin_ + secrets.token_urlsafe(32))",
            )
        )
    mode = _mode(settings.data_dir)
    if mode is not None and mode & _OTHERS:
        found.append(
            (
                "HOOKLINE_DATA_DIR",
                f"the data directory {settings.data_dir} is open to other users (mode"
                f" {mode:04o}); it holds the database, the secret key and the admin token:"
                " chmod 700 it",
            )
        )
    return found


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:  # not there (yet): nothing is in it
        return None


def warn(settings: Settings) -> None:
    """Log one WARNING line for each weakening setting."""
    for setting, why in find(settings):
        log.warning("insecure setting: %s", why, extra=logs.fields(setting=setting))
