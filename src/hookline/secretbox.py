"""Endpoint secrets at rest: sealed with Fernet (AES-128-CBC + HMAC-SHA256, `cryptography`).

The key comes from HOOKLINE_SECRET_KEY, or is generated once into `<data dir>/secret-key`
(mode 0600). Several comma-separated keys rotate it: the first seals, any of them opens, and
`hookline rotate-secret-key` re-seals every stored secret with the first.
"""

import base64
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hookline.config import Settings
from hookline.errors import AppError

SEALED_PREFIX = "fernet:"
SECRET_KEY_FILE = "secret-key"
_CACHE_LIMIT = 4096
_WRONG_KEY = (
    "a stored endpoint secret does not open with HOOKLINE_SECRET_KEY (or the key in the data"
    ' dir); set HOOKLINE_SECRET_KEY to the key that sealed them (to change keys, "<new>,<old>"'
    " and then `hookline rotate-secret-key`)"
)


class SecretKeyError(AppError):
    """The secret key is malformed, or does not open a stored secret (a 500 naming the key)."""


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretKeyError("no secret key given")
        try:
            self._fernet = MultiFernet([Fernet(key.strip().encode()) for key in keys])
            self._material = [base64.urlsafe_b64decode(key.strip()) for key in keys]
        except ValueError as exc:
            raise SecretKeyError(
                "HOOKLINE_SECRET_KEY must be Fernet keys (32 url-safe base64-encoded bytes),"
                " comma-separated; make one with `hookline secret-key`"
            ) from exc
        # The worker opens the same few secrets over and over: Fernet costs tens of µs.
        self._opened: dict[str, str] = {}

    def derived_keys(self, purpose: bytes) -> list[bytes]:
        """32-byte keys for another use (HKDF-SHA256 of each key, `purpose` as its info), in the
        keys' order: the first is the one to sign with, the others still verify."""
        return [
            HKDF(algorithm=SHA256(), length=32, salt=None, info=purpose).derive(key)
            for key in self._material
        ]

    def seal(self, plaintext: str) -> str:
        return SEALED_PREFIX + self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def open(self, stored: str) -> str:
        """The plaintext of a sealed secret (a secret stored before sealing is returned as is)."""
        if not stored.startswith(SEALED_PREFIX):
            return stored
        opened = self._opened.get(stored)
        if opened is None:
            try:
                token = stored.removeprefix(SEALED_PREFIX).encode("ascii")
                opened = self._fernet.decrypt(token).decode()
            except InvalidToken as exc:
                raise SecretKeyError(_WRONG_KEY) from exc
            if len(self._opened) >= _CACHE_LIMIT:
                self._opened.clear()
            self._opened[stored] = opened
        return opened

    def reseal(self, stored: str) -> str:
        """The secret sealed with the first key (for key rotation and for unsealed ones)."""
        if not stored.startswith(SEALED_PREFIX):
            return self.seal(stored)
        token = stored.removeprefix(SEALED_PREFIX).encode("ascii")
        try:
            return SEALED_PREFIX + self._fernet.rotate(token).decode("ascii")
        except InvalidToken as exc:
            raise SecretKeyError(_WRONG_KEY) from exc


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def load(settings: Settings) -> SecretBox:
    """The box for HOOKLINE_SECRET_KEY, or for the key in the data dir (made on first use)."""
    if settings.secret_key is not None:
        return SecretBox(settings.secret_key.get_secret_value().split(","))
    path = settings.data_dir / SECRET_KEY_FILE
    if not path.exists():
        _write_new_key(path)
    return SecretBox(path.read_text().strip().split(","))


def _write_new_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    draft = Path(name)
    with os.fdopen(fd, "w") as file:
        file.write(generate_key() + "\n")
    try:
        # A link appears whole and fails if the file exists: of two processes starting at
        # once, one key wins and both use it.
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
