"""Settings resolution, as the W&B SDK does it.

Order: explicit arguments, then `WANDB_API_KEY` / `WANDB_BASE_URL` / `WANDB_ENTITY` / `WANDB_PROJECT`,
then the wandb settings file (`$WANDB_CONFIG_DIR/settings` or `~/.config/wandb/settings`, section
``[default]``), then `~/.netrc` (or `$NETRC`) for the API key of the base URL's host.
The default base URL is ``https://api.wandb.ai``.

>>> s = Settings.resolve(api_key="k" * 40, base_url="http://127.0.0.1:8080/")
>>> s.base_url, "k" in repr(s)
('http://127.0.0.1:8080', False)
"""

from __future__ import annotations

import configparser
import netrc
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_BASE_URL = "https://api.wandb.ai"


def _settings_file() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    config_dir = os.environ.get("WANDB_CONFIG_DIR") or str(Path.home() / ".config" / "wandb")
    try:
        parser.read(Path(config_dir) / "settings")
    except (OSError, configparser.Error):
        pass
    return parser


def _netrc_key(base_url: str) -> str | None:
    host = urlparse(base_url).hostname
    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    if not host or not Path(path).exists():
        return None
    try:
        auth = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None
    return auth[2] if auth else None


@dataclass(frozen=True)
class Settings:
    """Resolved connection settings. The API key is kept out of `repr`."""

    base_url: str
    api_key: str | None = field(repr=False)
    entity: str | None = None
    project: str | None = None

    @classmethod
    def resolve(
        cls,
        api_key: str | None = None,
        base_url: str | None = None,
        entity: str | None = None,
        project: str | None = None,
    ) -> Settings:
        env = os.environ
        file = _settings_file()

        def from_file(name: str) -> str | None:
            return file.get("default", name, fallback=None) or None

        url = base_url or env.get("WANDB_BASE_URL") or from_file("base_url") or DEFAULT_BASE_URL
        url = url.rstrip("/")
        key = api_key or env.get("WANDB_API_KEY") or _netrc_key(url)
        return cls(
            base_url=url,
            api_key=key,
            entity=entity or env.get("WANDB_ENTITY") or from_file("entity"),
            project=project or env.get("WANDB_PROJECT") or from_file("project"),
        )
