"""Where the configuration file lives, reading it, and ``blocktui config path|show``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import platformdirs

from blocktui.core.config import Config, ConfigError, parse_config
from blocktui.core.scheduler import HostPolicy

#: Names another configuration file (tests; several setups side by side).
CONFIG_ENV = "BLOCKTUI_CONFIG"


def config_path() -> Path:
    """``$BLOCKTUI_CONFIG``, else ``config.toml`` in the user's config folder (XDG)."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        return Path(named)
    return Path(platformdirs.user_config_dir("blocktui")) / "config.toml"


def load_config() -> Config:
    """The configuration file's settings; all defaults when there is no file.

    Raises:
        ConfigError: the file cannot be read or says something blocktui cannot use.
    """
    path = config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    return parse_config(text, str(path))


def add_config_command(commands: Any) -> None:
    """The ``config`` subcommand."""
    config = commands.add_parser("config", help="where the configuration file is, and what it says")
    config.add_argument("action", choices=("path", "show"))


def cmd_config(args: argparse.Namespace) -> int:
    """``config path``: the file's path; ``config show``: its settings as blocktui reads them."""
    path = config_path()
    if args.action == "path":
        print(path)
        return 0
    config = load_config()
    if not path.exists():
        print(f"no configuration file at {path}; every setting has its default", file=sys.stderr)
    for name, host in config.hosts.items():
        place = host.uri or host.qmp or host.qmp_dir or "the demo lab"
        policy = "" if host.policy is None else f"  ({_policy(host.policy)})"
        default = "  [default]" if name in config.default_hosts else ""
        print(f"host {name}: {place}{policy}{default}")
    for key in ("bandwidth", "chunk", "gap", "theme", "bell", "desktop"):
        value = getattr(config, key)
        if value not in (None, False):
            print(f"{key}: {value}")
    for binding, keys in config.keys.items():
        print(f"key {binding}: {keys}")
    return 0


def _policy(policy: HostPolicy) -> str:
    parts = []
    if policy.max_active is not None:
        parts.append(f"max-active {policy.max_active}")
    if policy.budget:
        parts.append(f"budget {policy.budget} B/s")
    return ", ".join(parts) or "no limits"
