"""Settings: one typed object built from HOOKLINE_* variables (and .env), passed in."""

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HOOKLINE_", env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Path("./data")
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    admin_token: SecretStr | None = None
    secret_key: SecretStr | None = None
    allow_private_networks: bool = False

    retry_schedule: Annotated[tuple[float, ...], NoDecode] = DEFAULT_RETRY_SCHEDULE
    retry_jitter: float = Field(default=0.2, ge=0, lt=1)
    delivery_timeout: float = Field(default=15.0, gt=0)
    disable_after: int = Field(default=432000, gt=0)
    retention_days: int = Field(default=30, gt=0)
    # Send a `ping` event to an endpoint when it is created (GitHub does; one attempt).
    ping_on_create: bool = True
    # How many endpoints one user may own.
    max_endpoints_per_user: int = Field(default=10, ge=0)

    worker_concurrency: int = Field(default=64, ge=1)
    # Attempts in flight to one endpoint from one worker: a slow endpoint holds no more.
    worker_per_endpoint: int = Field(default=4, ge=1)
    # A claimed delivery whose worker died is due again after this long.
    lease_seconds: float = Field(default=30.0, gt=0)
    poll_interval: float = Field(default=1.0, gt=0)
    # Finished attempts are recorded together: up to this many, or after this many seconds.
    result_batch_size: int = Field(default=100, ge=1)
    result_flush_interval: float = Field(default=0.05, gt=0)
    db_pool_size: int = Field(default=10, ge=1)
    # Seconds a client has to send a request's head (from connecting, or from the last answer).
    header_timeout: float = Field(default=10.0, gt=0)
    # Per caller (a token, else an address): `burst` requests at once, refilled at this rate.
    rate_limit_per_second: float = Field(default=100.0, ge=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    # Log lines as `time LEVEL logger message key=value …`, or one JSON object a line.
    log_format: Literal["text", "json"] = "text"
    # `hookline worker` serves its attempt counters for Prometheus on HOOKLINE_HOST:this port
    # (GET /metrics, no token); unset, it serves none. `serve` shows them in its own /metrics.
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            return tuple(float(p) for p in parts)
        return value

    @field_validator("retry_schedule")
    @classmethod
    def _check_schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(step < 0 for step in value):
            raise ValueError("retry schedule steps must be >= 0 seconds")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        schemes = ("sqlite", "postgresql", "postgres")
        if value.strip() and value.split(":", 1)[0].split("+", 1)[0] not in schemes:
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _lease_outlives_attempt(self) -> "Settings":
        if self.lease_seconds <= self.delivery_timeout:
            raise ValueError("HOOKLINE_LEASE_SECONDS must be longer than HOOKLINE_DELIVERY_TIMEOUT")
        return self

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy async URL: the SQLite default, or the given URL with an async driver."""
        url = self.database_url.strip()
        if not url:
            return f"sqlite+aiosqlite:///{self.data_dir / 'hookline.db'}"
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url[len(plain) :]
        if url.startswith("sqlite://"):
            return "sqlite+aiosqlite://" + url[len("sqlite://") :]
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")
