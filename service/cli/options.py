"""Command-line options generated from the parameter table, and their conversion to a request.

Every option that sets a request field is generated from ``kernel.defaults.PARAMETERS``: field
``foo_bar`` is ``--foo-bar``. Only the options the user gave reach the request (argparse
``SUPPRESS``), so ``GenerateRequest`` applies the defaults and does all validation.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from heimdall_synth.kernel.config import ConfigError
from heimdall_synth.kernel.defaults import PARAMETERS

_INT = re.compile(r"[+-]?[0-9]+")
_JSON_KINDS = ("receivers", "dist")
_SCOPE_TITLES = {"request": "request", "data": "data (define the dataset; an expansion may not "
                 "change them without --allow-parameter-override)", "filter": "filters",
                 "job": "job execution"}


# ----------------------------------------------------------------------------- options

def _option_help(p) -> str:
    if p.kind == "receivers":
        default = f"the {len(p.default)} default stations"
    elif p.kind == "dist":
        default = json.dumps(p.default)
    else:
        default = "automatic" if p.default is None else p.default
    extra = " JSON text, or @FILE." if p.kind in _JSON_KINDS else ""
    extra += " 'null' unsets it." if p.nullable and p.kind != "bool" else ""
    if p.lo is not None and p.kind in ("int", "float"):
        extra += f" Range {'(' if p.lo_open else '['}{p.lo:g}, {p.hi:g}]."
    return f"{p.doc} (default: {default}).{extra}".replace("%", "%%")


def add_parameter_options(parser, exclude=()) -> None:
    """One option per table field (none hand-written); values stay text until _convert."""
    groups = {}
    for p in PARAMETERS:
        if p.name in exclude:
            continue
        group = groups.get(p.scope) or groups.setdefault(
            p.scope, parser.add_argument_group(_SCOPE_TITLES[p.scope]))
        flag = "--" + p.name.replace("_", "-")
        kw = {"dest": p.name, "default": argparse.SUPPRESS, "help": _option_help(p)}
        if p.kind == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            metavar = "{" + ",".join(p.choices) + "}" if p.kind == "choice" else p.kind.upper()
            group.add_argument(flag, metavar=metavar, **kw)


def _convert(p, text):
    """Command-line text to the JSON value of field ``p``; errors name the field."""
    if isinstance(text, bool):
        return text
    if p.nullable and text.strip().lower() in ("null", "none"):
        return None
    if p.kind == "int":
        if not _INT.fullmatch(text.strip()):
            raise ConfigError(p.name, f"must be an integer, got {text!r}")
        return int(text)
    if p.kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(p.name, f"must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise ConfigError(p.name, f"must be a finite number, got {text!r}")
        return value
    if p.kind in _JSON_KINDS:
        try:
            text = Path(text[1:]).read_text() if text.startswith("@") else text
            return json.loads(text)
        except OSError as exc:
            raise ConfigError(p.name, f"cannot read {text[1:]}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(p.name, f"must be JSON text: {exc}") from None
    return text


def request_dict(args) -> dict:
    """The fields of --request FILE, overridden by the options actually given."""
    given = {}
    if getattr(args, "request", None):
        try:
            text = sys.stdin.read() if args.request == "-" else Path(args.request).read_text()
            given = json.loads(text)
        except OSError as exc:
            raise ConfigError("request", f"cannot read {args.request}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError("request", f"{args.request} is not JSON: {exc}") from None
        if not isinstance(given, dict):
            raise ConfigError("request", f"{args.request} must hold a JSON object")
    for p in PARAMETERS:
        if p.name in vars(args):
            given[p.name] = _convert(p, getattr(args, p.name))
    return given


def seed_value(text) -> int:
    """A --seed option: an integer in the parameter table's range for ``seed``."""
    from heimdall_synth.kernel.config import check_value
    if not _INT.fullmatch(str(text).strip()):
        raise ConfigError("seed", f"must be an integer, got {text!r}")
    return check_value("seed", int(text))


def positive_int(name, text) -> int:
    if not _INT.fullmatch(text.strip()) or int(text) < 1:
        raise ConfigError(name, f"must be a positive integer, got {text!r}")
    return int(text)
