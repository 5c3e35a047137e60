"""Chromium for the browser tests (tests/browser_setup.py, the session fixture ``chromium``):
found, installed with apt-get when the tests run as root on Debian or Ubuntu, otherwise a
failure (never a skip) giving the command that installs it. Chromium is installed on the
machines that run this suite, so the decisions are taken here with a fake ``which``, user id,
/etc/os-release and apt-get; nothing is installed or removed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from tests import browser_setup
from tests.browser_setup import ChromiumMissing, ensure_chromium, is_debian_like
from tests.helpers import ROOT

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nID=debian\n'
UBUNTU = "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n"
MINT = "NAME=\"Linux Mint\"\nID=linuxmint\nID_LIKE=\"ubuntu debian\"\n"
FEDORA = "NAME=\"Fedora Linux\"\nID=fedora\n"
INSTALL_AS_ROOT = ("apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
                   "--no-install-recommends chromium")
INSTALL_WITH_SUDO = ("sudo apt-get update && sudo env DEBIAN_FRONTEND=noninteractive apt-get "
                     "install -y --no-install-recommends chromium")


class Machine:
    """A fake machine: which programs exist (apt-get installs chromium), who we are, what
    /etc/os-release says, and what was run and said."""

    def __init__(self, *, chromium=False, apt_get=True, euid=0, os_release=DEBIAN,
                 fail=None, install_puts_chromium=True):
        self.programs = {"apt-get": "/usr/bin/apt-get"} if apt_get else {}
        if chromium:
            self.programs["chromium"] = "/usr/bin/chromium"
        self.euid, self.release, self.fail = euid, os_release, fail
        self.install_puts_chromium = install_puts_chromium
        self.ran: list[tuple[list, dict]] = []
        self.said: list[str] = []

    def which(self, name, path=None):
        return self.programs.get(name)

    def run(self, cmd, env=None, check=False):
        self.ran.append((cmd, env))
        if cmd == self.fail:
            return SimpleNamespace(returncode=100)
        if cmd[:2] == ["apt-get", "install"] and self.install_puts_chromium:
            self.programs["chromium"] = "/usr/bin/chromium"
        return SimpleNamespace(returncode=0)

    def ensure(self):
        return ensure_chromium(which=self.which, geteuid=lambda: self.euid,
                               os_release=lambda: self.release, run=self.run,
                               say=self.said.append)


def test_found_it_is_used_and_nothing_runs():
    machine = Machine(chromium=True, euid=1000)
    assert machine.ensure() == "/usr/bin/chromium"
    assert machine.ran == [] and machine.said == []


@pytest.mark.parametrize("release", [DEBIAN, UBUNTU, MINT])
def test_missing_as_root_on_debian_or_ubuntu_it_is_installed_saying_so(release):
    machine = Machine(os_release=release)
    assert machine.ensure() == "/usr/bin/chromium"
    assert [cmd for cmd, _ in machine.ran] == [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]]
    assert all(env["DEBIAN_FRONTEND"] == "noninteractive" for _, env in machine.ran)
    said = "\n".join(machine.said)
    assert "Chromium is missing" in said and INSTALL_AS_ROOT in said
    assert "$ apt-get update" in said and "Chromium installed: /usr/bin/chromium" in said


@pytest.mark.parametrize("machine, reason, command", [
    (Machine(euid=1000), "needs root", INSTALL_WITH_SUDO),
    (Machine(apt_get=False), "not a Debian or Ubuntu system with apt-get", INSTALL_AS_ROOT),
    (Machine(os_release=FEDORA), "not a Debian or Ubuntu system with apt-get", INSTALL_AS_ROOT),
    (Machine(os_release=""), "not a Debian or Ubuntu system with apt-get", INSTALL_AS_ROOT),
], ids=["not-root", "no-apt-get", "fedora", "no-os-release"])
def test_missing_and_not_installable_from_here_it_fails_with_the_command(machine, reason,
                                                                          command):
    with pytest.raises(ChromiumMissing) as err:
        machine.ensure()
    message = str(err.value)
    assert reason in message and f"\n    {command}\n" in message, message
    assert machine.ran == [] and machine.said == []  # nothing was tried


def test_a_failed_apt_get_is_a_failure_with_the_command():
    machine = Machine(fail=["apt-get", "update"])
    with pytest.raises(ChromiumMissing) as err:
        machine.ensure()
    assert "`apt-get update` exited with 100" in str(err.value)
    assert INSTALL_AS_ROOT in str(err.value)
    assert [cmd for cmd, _ in machine.ran] == [["apt-get", "update"]]  # not the install


def test_installed_but_still_not_found_is_a_failure():
    machine = Machine(install_puts_chromium=False)
    with pytest.raises(ChromiumMissing, match="still no `chromium`"):
        machine.ensure()


def test_os_release_is_read_by_id_and_id_like():
    assert is_debian_like(DEBIAN) and is_debian_like(UBUNTU) and is_debian_like(MINT)
    assert not is_debian_like(FEDORA) and not is_debian_like("")
    assert not is_debian_like("ID=arch\nPRETTY_NAME=\"not debian\"\n")


def test_the_real_lookup_searches_path_and_usr_bin(monkeypatch):
    seen = []
    monkeypatch.setenv("PATH", "/nowhere")
    assert browser_setup.find_chromium(lambda name, path=None: seen.append(path)) is None
    assert seen == ["/nowhere:/usr/bin"]


CHILD = """
    import tests.conftest
    from tests import browser_setup
    from tests.conftest import chromium  # noqa: F401 - the fixture under test

    FOUND = []

    def which(name, path=None):
        return {"apt-get": "/usr/bin/apt-get", **dict(FOUND)}.get(name)

    def apt_get(cmd, **kw):  # stands for the fixture's runner: records, installs nothing
        print("RAN", " ".join(cmd))
        if cmd[1] == "install":
            FOUND.append(("chromium", "/opt/fake/chromium"))
        return type("Done", (), {"returncode": 0})()

    def ensure(**kw):
        kw["run"] = apt_get
        return browser_setup.ensure_chromium(which=which, geteuid=lambda: EUID,
                                             os_release=lambda: "ID=debian\\n", **kw)

    tests.conftest.ensure_chromium = ensure

    def test_needs_the_browser(chromium):
        assert chromium == "/opt/fake/chromium"
"""


@pytest.mark.parametrize("euid", [1000, 0])
def test_the_fixture_fails_never_skips_or_installs_in_view(euid, tmp_path):
    """The fixture in a real pytest run: not root, the test fails (an error at setup, not a
    skip) with the command; root, what the install does is shown past pytest's capture."""
    child = tmp_path / "test_child.py"
    child.write_text(textwrap.dedent(CHILD).replace("EUID", str(euid)))
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                          "--rootdir", str(tmp_path), "-c", "/dev/null", str(child)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert "skipped" not in out, out
    if euid:
        assert run.returncode == 1 and "1 error" in out, out
        assert "Chromium is missing" in out and INSTALL_WITH_SUDO in out, out
        assert "RAN" not in out
    else:
        assert run.returncode == 0 and "1 passed" in out, out
        assert INSTALL_AS_ROOT in out and "$ apt-get update" in out, out
        assert "Chromium installed: /opt/fake/chromium" in out, out
