"""Shared fixtures: a headless Chromium from Debian's packages for the HTML tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers import HAVE_CXX, NO_CXX_REASON

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                  "--enable-logging=stderr", "--v=0"]


def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path to a headless-capable Chromium; installs Debian's package when missing (we may be root on CI)."""
    path = _find_chromium()
    if path is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]
        if subprocess.run(cmd, capture_output=True, env=env, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=300)
            subprocess.run(cmd, capture_output=True, env=env, timeout=900)
        path = _find_chromium()
    if path is None:
        pytest.skip("Chromium is not installed and could not be installed with apt-get (Debian package 'chromium')")
    return path


def run_chromium(chromium: str, url: str, *extra: str, timeout: int = 90) -> subprocess.CompletedProcess:
    """Run headless Chromium on ``url`` with a fresh profile; stdout has the DOM when --dump-dom is given."""
    # Chromium's helper processes can outlive the browser by a moment and still write into the profile: a left
    # temporary folder is harmless, a teardown error on it is not
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        return subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
                              capture_output=True, text=True, timeout=timeout)


def console_errors(stderr: str) -> list[str]:
    """The page's console errors and uncaught exceptions in Chromium's stderr log."""
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line and ("Uncaught" in line or "Error" in line or ":ERROR:" in line)]


@pytest.fixture
def browser(chromium):
    """A helper object: ``browser.dom(path)`` and ``browser.screenshot(path, png)`` return (output, errors)."""

    class Browser:
        def dom(self, page: Path) -> tuple[str, list[str]]:
            done = run_chromium(chromium, page.resolve().as_uri(), "--virtual-time-budget=3000", "--dump-dom")
            return done.stdout, console_errors(done.stderr)

        def screenshot(self, page: Path, png: Path) -> list[str]:
            done = run_chromium(chromium, page.resolve().as_uri(), "--virtual-time-budget=3000",
                                "--window-size=1200,1400", f"--screenshot={png}")
            return console_errors(done.stderr)

    return Browser()


@pytest.fixture(params=["python", "native"])
def gatherer(request, monkeypatch):
    """Run a test of the CPU fused path once with each gatherer (descentlab.fused.cpu_step.GATHER): the Python
    loop and the C++ module. The C++ one is built on first use (≈ 10–15 s once per machine); a machine without a
    C++ compiler skips it, a build that fails where a compiler exists fails the test."""
    from descentlab.fused import cpu_build, cpu_step

    if request.param == "native":
        if not HAVE_CXX:
            pytest.skip(NO_CXX_REASON)
        if cpu_build.gather_module(wait=True) is None:
            pytest.fail(f"the native gatherer did not build: {cpu_build.gather_unavailable_reason()}")
    monkeypatch.setattr(cpu_step, "GATHER", request.param)
    return request.param
