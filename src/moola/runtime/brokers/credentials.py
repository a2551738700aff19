"""A Coinbase CDP API key (key name + EC private key), kept out of every log and message.

The key signs each request as a short-lived JWT (ES256), the scheme Coinbase's Advanced
Trade API takes for CDP keys: header ``{"alg": "ES256", "kid": <key name>, "nonce":
<random>}``, claims ``{"sub": <key name>, "iss": "cdp", "nbf": now, "exp": now + 120,
"uri": "<METHOD> <host><path>"}``, sent as ``Authorization: Bearer <jwt>``.

Where the key comes from: the environment (``COINBASE_API_KEY_NAME`` and
``COINBASE_API_PRIVATE_KEY``, the PEM with real or ``\\n``-escaped newlines), or the JSON
file Coinbase hands out (``{"name": ..., "privateKey": ...}``). The file is refused when it
lies inside a git repository (one ``git add`` from being published) or when anyone but its
owner may read or write it (``chmod 600 FILE``). The PEM text is parsed once and not
kept: the object holds the key only, and its ``repr`` shows no more than the key name's
last characters. Errors name the variable or file, never the secret.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import time
from collections.abc import Mapping
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from moola.core.errors import ConfigError

ENV_KEY_NAME = "COINBASE_API_KEY_NAME"
ENV_PRIVATE_KEY = "COINBASE_API_PRIVATE_KEY"
JWT_LIFETIME_S = 120


def _load_key(pem: str, where: str) -> ec.EllipticCurvePrivateKey:
    """The EC private key in ``pem``; ConfigError naming ``where`` (never the text)."""
    text = pem.strip().replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(
            f"{where} is not an unencrypted EC private key in PEM form (-----BEGIN EC "
            "PRIVATE KEY-----); use the privateKey of a Coinbase CDP API key (ECDSA)."
        )
    return key


class Credentials:
    """A CDP API key: ``key_name`` (``organizations/<org>/apiKeys/<id>``) and its EC
    private key. Build with :meth:`from_env` or :meth:`from_file`; sign with :meth:`jwt`."""

    __slots__ = ("_key", "key_name")

    def __init__(self, key_name: str, private_key: str, *, _where: str = "private_key") -> None:
        if not isinstance(key_name, str) or not key_name.strip():
            raise ConfigError("key_name must be the CDP API key's name (a non-empty string).")
        if not isinstance(private_key, str):
            raise ConfigError(f"{_where} must be the PEM text of the key (a string).")
        self.key_name = key_name.strip()
        self._key = _load_key(private_key, _where)

    def __repr__(self) -> str:
        return f"Credentials(key_name='...{self.key_name[-4:]}', private_key=<hidden>)"

    __str__ = __repr__

    def __reduce__(self):  # never pickled into a manifest, a cache or a worker
        raise TypeError("Credentials cannot be pickled (they hold a private key).")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        """From ``COINBASE_API_KEY_NAME`` and ``COINBASE_API_PRIVATE_KEY`` in ``env``
        (default ``os.environ``)."""
        env = os.environ if env is None else env
        name, pem = env.get(ENV_KEY_NAME, ""), env.get(ENV_PRIVATE_KEY, "")
        missing = [k for k, v in ((ENV_KEY_NAME, name), (ENV_PRIVATE_KEY, pem)) if not v]
        if missing:
            raise ConfigError(
                f"Coinbase credentials need the environment variable(s) {', '.join(missing)} "
                "(the CDP API key's name and its EC private key PEM)."
            )
        return cls(name, pem, _where=f"the environment variable {ENV_PRIVATE_KEY}")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Credentials:
        """From a CDP key file (JSON ``{"name": ..., "privateKey": ...}``), refused inside a
        git repository or when readable or writable by anyone but its owner."""
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise ConfigError(f"Coinbase key file {file} does not exist (or is not a file).")
        repo = _git_root(file.parent)
        if repo is not None:
            raise ConfigError(
                f"Coinbase key file {file} lies inside the git repository {repo}; move it "
                "outside any repository (e.g. ~/.config/moola/) so it cannot be committed."
            )
        mode = file.stat().st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"Coinbase key file {file} is open to other users (mode "
                f"{stat.filemode(mode)}); run chmod 600 {file}."
            )
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"Coinbase key file {file} is not readable JSON ({type(exc).__name__})."
            ) from None
        if not isinstance(data, dict) or not data.get("name") or not data.get("privateKey"):
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ConfigError(
                f"Coinbase key file {file} must hold an object with 'name' and 'privateKey'; "
                f"found {keys}."
            )
        return cls(str(data["name"]), str(data["privateKey"]), _where=f"privateKey in {file}")

    def jwt(self, method: str, host: str, path: str, *, now: float | None = None) -> str:
        """A JWT for one request: ``uri`` ``"<METHOD> <host><path>"`` (no query string),
        valid from ``now`` for 120 s."""
        issued = int(time.time() if now is None else now)
        claims = {
            "sub": self.key_name,
            "iss": "cdp",
            "nbf": issued,
            "exp": issued + JWT_LIFETIME_S,
            "uri": f"{method.upper()} {host}{path}",
        }
        headers = {"kid": self.key_name, "nonce": secrets.token_hex(16)}
        return jwt.encode(claims, self._key, algorithm="ES256", headers=headers)


def _git_root(folder: Path) -> Path | None:
    """The nearest folder at or above ``folder`` holding ``.git``; None when none does."""
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return None
