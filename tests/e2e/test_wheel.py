"""The wheel is the whole product: built from the source, installed with requirements.lock alone
into a new virtualenv away from the checkout, it migrates and serves (its migrations and the
docs' assets inside it), and stops cleanly on SIGTERM.

Slow (tens of seconds: a build and ~50 packages installed, from pip's cache when it has them),
hence the `e2e` mark; every step is bounded in time.
"""

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.process import ServeProcess, clean_environ, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 120
INSTALL_TIMEOUT = 300  # a cold pip cache downloads the packages
# Only in requirements-dev.lock: none may be in the installed product.
DEV_ONLY = ("pytest", "mypy", "schemathesis", "matplotlib", "playwright", "ruff", "httpx")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def hookline(self) -> Path:
        return self.venv / "bin" / "hookline"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _run(command: list[str | Path], *, timeout: float, cwd: Path | None = None) -> str:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr}"
    return str(result.stdout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel, built from a copy of the source (no build/ or egg-info left in the checkout),
    and a new venv with requirements.lock and that wheel installed."""
    here = tmp_path_factory.mktemp("wheel")
    source = here / "source"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copytree(
        ROOT / "src",
        source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    dist = here / "dist"
    pip = [sys.executable, "-m", "pip"]
    _run(
        [*pip, "wheel", "--quiet", "--no-deps", "--wheel-dir", dist, source], timeout=BUILD_TIMEOUT
    )
    [wheel] = dist.glob("hookline-*.whl")

    venv = here / "venv"
    # No pip of its own: this pip installs into it (--python), which saves seeding one.
    _run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=60)
    lock = ["--requirement", ROOT / "requirements.lock"]
    python = venv / "bin" / "python"
    _run([*pip, "--python", python, "install", "--quiet", *lock, wheel], timeout=INSTALL_TIMEOUT)
    return Installed(wheel, venv)


def test_the_wheel_carries_the_migrations_and_the_docs_assets(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    migrations = {n for n in names if n.startswith("hookline/migrations/versions/")}
    in_source = ROOT / "src" / "hookline" / "migrations" / "versions"

    assert {"hookline/migrations/env.py", "hookline/migrations/script.py.mako"} <= names
    assert migrations == {f"hookline/migrations/versions/{p.name}" for p in in_source.glob("*.py")}
    assert {
        "hookline/py.typed",
        "hookline/api/static/swagger_ui/swagger-ui-bundle.js",
        "hookline/api/static/swagger_ui/swagger-ui.css",
        "hookline/api/static/swagger_ui/LICENSE",
        "hookline/api/static/redoc/redoc.standalone.js",
        "hookline/api/static/redoc/LICENSE",
    } <= names


def test_the_venv_runs_the_wheel_with_no_development_tool(
    installed: Installed, tmp_path: Path
) -> None:
    probe = (
        "import importlib.util as u, sys; from hookline import migrate;"
        " print(migrate.MIGRATIONS_DIR); print([m for m in sys.argv[1:] if u.find_spec(m)])"
    )

    output = _run([installed.python, "-c", probe, *DEV_ONLY], timeout=30, cwd=tmp_path)

    migrations, dev_tools = output.splitlines()
    assert Path(migrations).is_relative_to(installed.venv)  # not the checkout's
    assert dev_tools == "[]"


async def test_the_installed_hookline_migrates_serves_and_stops(
    installed: Installed, tmp_path: Path
) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    # Away from the checkout: nothing may come from it. No HOOKLINE_PORT: --port says it.
    env = clean_environ(HOOKLINE_DATA_DIR=str(data_dir))
    env.pop("PYTHONPATH", None)
    migrate = await asyncio.to_thread(
        subprocess.run,
        [installed.hookline, "migrate"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert migrate.stdout.strip() == "database is up to date"
    assert "migrated the database from empty to revision" in migrate.stderr

    with ServeProcess(
        tmp_path,
        env=env,
        port=port,
        program=[str(installed.hookline)],
        args=["--host", "127.0.0.1", "--port", str(port)],
    ) as serve:
        await serve.start(timeout=30)
        async with httpx.AsyncClient(base_url=serve.base_url, timeout=10) as client:
            ready = await client.get("/ready")
            docs = await client.get("/docs")
            script = await client.get("/static/swagger_ui/swagger-ui-bundle.js")
        code = await serve.terminate(timeout=15)

    assert ready.status_code == 200, ready.text
    assert docs.status_code == 200
    assert script.status_code == 200
    assert code == 0, serve.log_text()
