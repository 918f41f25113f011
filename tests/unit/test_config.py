import pytest
from pydantic import ValidationError

from hookline.config import DEFAULT_RETRY_SCHEDULE, Settings


def test_defaults_follow_the_contract(tmp_path):
    settings = Settings(_env_file=None)
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.retry_schedule == DEFAULT_RETRY_SCHEDULE
    assert settings.retry_jitter == 0.2
    assert settings.delivery_timeout == 15
    assert settings.disable_after == 432000
    assert settings.retention_days == 30
    assert settings.allow_private_networks is False
    assert settings.resolved_database_url == "sqlite+aiosqlite:///data/hookline.db"


def test_retry_schedule_is_read_from_a_comma_separated_variable(monkeypatch):
    monkeypatch.setenv("HOOKLINE_RETRY_SCHEDULE", "1, 2.5,60")
    assert Settings(_env_file=None).retry_schedule == (1.0, 2.5, 60.0)


def test_a_negative_retry_step_is_refused(monkeypatch):
    monkeypatch.setenv("HOOKLINE_RETRY_SCHEDULE", "1,-2")
    with pytest.raises(ValidationError, match="retry schedule"):
        Settings(_env_file=None)


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        ("postgresql://u@h:5432/db", "postgresql+asyncpg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_urls_get_an_async_driver(given, resolved):
    assert Settings(_env_file=None, database_url=given).resolved_database_url == resolved


def test_data_dir_places_the_default_sqlite_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HOOKLINE_DATA_DIR", str(tmp_path / "d"))
    url = Settings(_env_file=None).resolved_database_url
    assert url == f"sqlite+aiosqlite:///{tmp_path / 'd' / 'hookline.db'}"


def test_a_lease_shorter_than_an_attempt_is_refused():
    with pytest.raises(ValidationError, match="LEASE_SECONDS"):
        Settings(_env_file=None, delivery_timeout=30, lease_seconds=10)


def test_settings_are_read_from_a_dotenv_file(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("HOOKLINE_PORT=9999\nHOOKLINE_RETRY_JITTER=0\n")
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert (settings.port, settings.retry_jitter) == (9999, 0)


@pytest.mark.parametrize("url", ["mysql://h/db", "redis://h", "file:///x"])
def test_a_database_other_than_sqlite_or_postgresql_is_refused(url):
    with pytest.raises(ValidationError, match="sqlite:// or postgresql://"):
        Settings(_env_file=None, database_url=url)
