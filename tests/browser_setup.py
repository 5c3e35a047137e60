"""Chromium for the dashboard's browser tests: found, or installed when this process may.

The tests drive Debian's ``chromium`` through Playwright (``executable_path``: Playwright never
downloads a browser of its own). ``ensure_chromium`` is what the session fixture ``chromium``
(tests/conftest.py) calls, so that the README's one test command sets up what the tests need:

* Chromium found (``chromium`` on PATH, or in /usr/bin): its path.
* Missing, and this process runs as root on Debian or Ubuntu with apt-get: installed with
  ``apt-get update`` then ``DEBIAN_FRONTEND=noninteractive apt-get install -y
  --no-install-recommends chromium``, saying so; then its path.
* Missing and not installable from here (not root, no apt-get, not Debian or Ubuntu, or apt-get
  failed): ``ChromiumMissing``, whose message gives the one command that installs it. The tests
  then fail with that message; they never skip.

No test lives here; tests/test_browser_setup.py holds the decisions to account with a fake
``which``, user id and package manager.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

EXECUTABLE = "chromium"
PACKAGE = "chromium"
#: Where Debian's package puts it, searched also when PATH lacks it.
FALLBACK_DIRS = ("/usr/bin",)
APT_UPDATE = ["apt-get", "update"]
APT_INSTALL = ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]
OS_RELEASE = Path("/etc/os-release")


class ChromiumMissing(Exception):
    """Chromium is not there and this process cannot install it; the message says how to."""


def install_command(root: bool) -> str:
    """The one shell command that installs Chromium on Debian or Ubuntu."""
    install = f"DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {PACKAGE}"
    if root:
        return f"apt-get update && {install}"
    return f"sudo apt-get update && sudo env {install}"


def find_chromium(which: Callable = shutil.which) -> str | None:
    """The path of the ``chromium`` executable, on PATH or in /usr/bin; None when missing."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *FALLBACK_DIRS])
    return which(EXECUTABLE, path=search)


def read_os_release(path: Path = OS_RELEASE) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def is_debian_like(os_release: str) -> bool:
    """Whether /etc/os-release (its text) describes Debian, Ubuntu or a derivative of them."""
    ids: set[str] = set()
    for line in os_release.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("ID", "ID_LIKE"):
            ids.update(value.strip().strip("\"'").lower().split())
    return bool(ids & {"debian", "ubuntu"})


def why_not_install(*, root: bool, has_apt_get: bool, os_release: str) -> str | None:
    """None when this process may install Chromium with apt-get, else the reason why not."""
    if not (has_apt_get and is_debian_like(os_release)):
        return "this is not a Debian or Ubuntu system with apt-get"
    if not root:
        return "installing it needs root, and the tests do not run as root"
    return None


def ensure_chromium(*, which: Callable = shutil.which,
                    geteuid: Callable[[], int] = getattr(os, "geteuid", lambda: -1),
                    os_release: Callable[[], str] = read_os_release,
                    run: Callable = subprocess.run,
                    say: Callable[[str], None] = print) -> str:
    """The path of Chromium, installing it first when it is missing and this process may (see
    the module docstring); ``ChromiumMissing`` when it is missing and cannot be installed."""
    found = find_chromium(which)
    if found:
        return found
    root = geteuid() == 0
    reason = why_not_install(root=root, has_apt_get=which("apt-get") is not None,
                             os_release=os_release())
    if reason is not None:
        raise ChromiumMissing(
            f"Chromium is missing (no `{EXECUTABLE}` on PATH or in /usr/bin): the dashboard's "
            f"browser tests drive it through Playwright, and {reason}. Install it with:\n\n"
            f"    {install_command(root)}\n\n(on another system, install Chromium so that "
            f"`{EXECUTABLE}` is on PATH), then run the tests again.")
    say(f"Chromium is missing (no `{EXECUTABLE}` on PATH or in /usr/bin); the dashboard's "
        f"browser tests need it: installing it with apt-get ({install_command(root)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (APT_UPDATE, APT_INSTALL):
        say("$ " + " ".join(cmd))
        done = run(cmd, env=env, check=False)
        if done.returncode != 0:
            raise ChromiumMissing(
                f"Chromium is missing and installing it failed: `{' '.join(cmd)}` exited with "
                f"{done.returncode} (its output is above). Install it with:\n\n"
                f"    {install_command(root)}\n\nthen run the tests again.")
    found = find_chromium(which)
    if not found:
        raise ChromiumMissing(
            f"apt-get installed the package {PACKAGE}, but there is still no `{EXECUTABLE}` on "
            f"PATH or in /usr/bin. Install Chromium so that `{EXECUTABLE}` is on PATH, then run "
            "the tests again.")
    say(f"Chromium installed: {found}")
    return found
