"""Configuration: one pydantic-settings model, loaded once and passed down.

Precedence: command-line flags > environment (CLEARANCE_*) > config file > defaults.
Every file section is optional except `[[connectors]]` (needed only to sync); unknown keys
are a config error.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError

CONFIG_NAME = "clearance.toml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSettings(Section):
    kind: Literal["sqlite", "opensearch"] = "sqlite"
    url: str | None = None
    index_prefix: str = "clearance"
    username: str | None = None
    password_env: str | None = None
    aws_region: str | None = None
    ca_bundle: str | None = None
    # The embedded store's dense search: "exact" (int8 first pass + float32 rescoring, recall
    # ~1.0) or "ivf" (from 50k chunks, only the `ivf_nprobe` nearest clusters are read: faster
    # for broad callers, recall@10 ~0.91 at 100k on real embeddings, bench/ivf_recall.py).
    dense_search: Literal["exact", "ivf"] = "exact"
    ivf_nprobe: StrictInt = Field(default=24, ge=1, le=65536)  # `true` is not 1 clusters

    @model_validator(mode="after")
    def _embedded_only(self) -> StoreSettings:
        if self.kind != "sqlite" and (self.dense_search != "exact"
                                      or "ivf_nprobe" in self.model_fields_set):
            raise ValueError("dense_search and ivf_nprobe apply to the embedded store "
                             "(kind = \"sqlite\"); OpenSearch runs its own k-NN")
        return self


class JobsSettings(Section):
    broker_url: str | None = None
    # Celery queue of this deployment: two deployments sharing one Redis need different names.
    queue: str = Field(default="clearance", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    # The per-connector Redis lock expires this long after its worker stops renewing it.
    lock_lease_seconds: float = Field(default=60.0, ge=1.0, le=3600.0)
    # Redis redelivers an unacknowledged task (its worker died) after this long.
    visibility_timeout: int = Field(default=7200, ge=1)
    # Transient source errors (SourceUnavailable): retries with doubling delays, capped.
    max_retries: int = Field(default=5, ge=0, le=100)
    retry_backoff_seconds: float = Field(default=30.0, gt=0.0)
    retry_backoff_max_seconds: float = Field(default=900.0, gt=0.0)
    # `clearance status` flags a connector whose oldest ACL confirmation is older than this.
    permission_freshness_target: float = Field(default=900.0, gt=0.0)


class LlmSettings(Section):
    provider: Literal["extractive", "bedrock", "openai"] = "extractive"
    model_id: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    guardrail_id: str | None = None
    guardrail_version: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    # Extractive answerer: below this evidence score the answer is a refusal.
    min_evidence: float = 0.3
    # Bedrock: an inference profile id or ARN, when set, is what Converse is called with.
    inference_profile: str | None = None
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    max_tokens: int = Field(default=1024, ge=1, le=200_000)
    ca_bundle: str | None = None  # a PEM file to trust for endpoint_url (a private CA)
    stream: bool = True  # ConverseStream; false: Converse
    # Throttling/unavailable: retries with doubling delays from retry_base_seconds, capped.
    max_retries: int = Field(default=4, ge=0, le=20)
    retry_base_seconds: float = Field(default=0.5, ge=0.0, le=60.0)
    retry_max_seconds: float = Field(default=8.0, ge=0.0, le=300.0)
    timeout_seconds: float = Field(default=60.0, gt=0.0, le=900.0)
    # Conversations: how many recent turns (a question or an answer each) a follow-up sees.
    history_turns: int = Field(default=6, ge=0, le=100)

    @model_validator(mode="after")
    def _openai_needs_an_endpoint(self) -> LlmSettings:
        if self.provider == "openai":
            from urllib.parse import urlsplit

            if not self.base_url or not self.model_id:
                raise ValueError("provider 'openai' needs base_url and model_id")
            parts = urlsplit(self.base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("base_url must be an http:// or https:// URL")
            if parts.username or parts.password or parts.query or parts.fragment:
                raise ValueError("base_url must not carry credentials, a query or a fragment")
        return self


EmbedderName = Literal["minilm", "minilm-onnx-int8", "minilm-onnx-fp32", "static", "hashing"]


class EmbedderSettings(Section):
    # Default "minilm-onnx-int8": the model on ONNX Runtime, int8, within 0.01 recall@5 of numpy
    # "minilm" on every labelled set (bench/RESULTS.md, issue 12); numpy "minilm" (the reference)
    # where onnxruntime is not installed; "static" is fast and clearly worse at recall.
    name: EmbedderName = "minilm-onnx-int8"
    batch_size: int = Field(default=32, ge=1, le=1024)


class RetrievalSettings(Section):
    k: int = Field(default=10, ge=1, le=200)
    candidates: int = Field(default=100, ge=1, le=5000)  # per retriever, before fusion
    # Measured in bench/quality (bench/RESULTS.md): "ceiling" (BM25 over the question's highest
    # reachable score + min-max dense, weight 0.55) is within one question of the best single
    # retriever on every held-out set; convex 0.5 fell 0.100 below dense retrieval on one.
    fusion: Literal["ceiling", "convex", "weighted_rrf", "rrf", "bm25", "dense"] = "ceiling"
    rrf_k: int = Field(default=60, ge=1)
    # None: the fusion's measured weight (ceiling 0.55, the others 0.5)
    dense_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    passages_per_document: int = Field(default=3, ge=1, le=20)


class DeniedTopicSettings(Section):
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    examples: list[str] = []
    # cosine similarity of the question to the description or an example that denies it
    threshold: float = Field(default=0.75, gt=0.0, le=1.0)


class GuardrailSettings(Section):
    denied_topics: list[DeniedTopicSettings] = []
    blocked_words: list[str] = []
    pii: dict[Literal["email", "phone", "credit_card", "iban", "us_ssn", "aws_access_key"],
              Literal["redact", "block"]] = {}
    # Documents with sensitive data shared with everyone or a whole domain: kept out of
    # answers ("exclude", the default) or answered from like any other ("allow").
    oversharing: Literal["exclude", "allow"] = "exclude"


class WebSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = None  # for OIDC redirects; default http://host:port
    oidc_issuer: str | None = None
    client_id: str | None = None
    client_secret_env: str | None = None
    admin_group: str | None = None
    # A local sign-in by typed email, for development only: refused unless on loopback.
    dev_login: bool = False
    session_minutes: int = Field(default=480, ge=1, le=7 * 24 * 60)
    asks_per_minute: int = Field(default=20, ge=1, le=10_000)  # per person
    max_request_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    workers: int = Field(default=4, ge=1, le=64)  # serving threads, one store connection each

    @field_validator("oidc_issuer", "public_url")
    @classmethod
    def _https_unless_loopback(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an https:// URL")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("must be https (plain http only for a loopback host)")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("must not carry credentials, a query or a fragment")
        return value.rstrip("/")


class SlackSettings(Section):
    bot_token_env: str | None = None
    signing_secret_env: str | None = None
    app_token_env: str | None = None
    api_url: str | None = None
    # "audience": a channel answer cites only what every member reads; "ephemeral": the asker's
    # own answer, shown to the asker alone (README.md, `[slack]`)
    channel_replies: Literal["audience", "ephemeral"] = "audience"


class TeamsSettings(Section):
    app_id: str | None = None
    app_password_env: str | None = None
    app_tenant_id: str | None = None
    openid_metadata_url: str | None = None
    oauth_endpoint: str | None = None

    @field_validator("openid_metadata_url", "oauth_endpoint")
    @classmethod
    def _https_unless_loopback(cls, value: str | None) -> str | None:
        return WebSettings._https_unless_loopback(value)


class AuditSettings(Section):
    backend: Literal["jsonl", "opensearch"] = "jsonl"  # opensearch: the [store] connection
    principals: Literal["plain", "hash"] = "plain"  # hash: only their SHA-256 is kept
    index: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]*$")  # <prefix>-audit


class ConversationSettings(Section):
    backend: Literal["sqlite", "dynamodb", "redis"] = "sqlite"
    table: str = Field(default="clearance-conversations", pattern=r"^[A-Za-z0-9_.-]{3,255}$")
    region: str | None = None
    endpoint_url: str | None = None  # DynamoDB: a VPC endpoint, or a local one in tests
    ca_bundle: str | None = None
    redis_url: str | None = None  # default: [jobs] broker_url
    key_prefix: str = Field(default="clearance:conv", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    ttl_days: float = Field(default=30.0, gt=0.0, le=3650.0)  # a conversation expires after


class EvalSettings(Section):
    # The question file of `clearance eval` (JSONL), relative to the config file's folder.
    questions: str | None = None
    # The scheduled leak audit on `questions`: cron, "@every 1h" or "off" (beat runs it).
    leak_audit_schedule: str = "off"


class ConnectorSettings(BaseModel):
    """Keys shared by every connector; each kind validates its own extra keys."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    kind: str
    # Cron (5 fields, UTC), "@every 30s|10m|2h", or "off"; unset = indexer.jobs.schedules defaults.
    schedule: str | None = None  # full sync
    permission_schedule: str | None = None  # permission sync (ACLs + group memberships)
    incremental_schedule: str | None = None  # incremental sync (no deletion pass)
    prune_schedule: str | None = None  # permission pass that also deletes vanished documents
    group_schedule: str | None = None  # identity pass (groups, members, aliases of the source)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class FileConfig(Section):
    store: StoreSettings = StoreSettings()
    jobs: JobsSettings = JobsSettings()
    llm: LlmSettings = LlmSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    guardrails: GuardrailSettings = GuardrailSettings()
    web: WebSettings = WebSettings()
    slack: SlackSettings = SlackSettings()
    teams: TeamsSettings = TeamsSettings()
    audit: AuditSettings = AuditSettings()
    conversations: ConversationSettings = ConversationSettings()
    eval: EvalSettings = EvalSettings()
    connectors: list[ConnectorSettings] = []

    @field_validator("connectors")
    @classmethod
    def _unique_names(cls, value: list[ConnectorSettings]) -> list[ConnectorSettings]:
        names = [c.name for c in value]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"connector names must be unique: {sorted(dup)}")
        return value


class Environment(BaseSettings):
    """The environment variables Clearance reads (nothing else reads os.environ)."""

    model_config = SettingsConfigDict(env_prefix="CLEARANCE_", extra="ignore")

    home: Path | None = None
    config: Path | None = None
    broker_url: str | None = None
    embedder: EmbedderName | None = None


class Settings(BaseModel):
    """Everything a command needs: where state lives, and the parsed config file."""

    model_config = ConfigDict(frozen=True)

    home: Path
    config_path: Path | None
    file: FileConfig

    @property
    def config_dir(self) -> Path:
        return self.config_path.parent if self.config_path else Path.cwd()

    @property
    def store_path(self) -> Path:
        return self.home / "index.sqlite3"

    def connector(self, name: str) -> ConnectorSettings:
        for c in self.file.connectors:
            if c.name == name:
                return c
        raise ConfigError(f"no connector named {name!r} in {self.config_path}")


def _describe(err: ValidationError, path: Path) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{path}: {where}: {msg}"


# Sections that parse but whose features are not built yet: a setting that silently does
# nothing would mislead an administrator, so each is refused until its feature exists.
UNSUPPORTED_SECTIONS: tuple[str, ...] = ()  # [slack]: apps/slack, [teams]: apps/teams
SUPPORTED_PROVIDERS = ("extractive", "bedrock", "openai")


def _refuse_unbuilt(raw: dict[str, Any], path: Path) -> None:
    for name in UNSUPPORTED_SECTIONS:
        if name in raw:
            raise ConfigError(f"{path}: [{name}] is not supported yet (this build has no "
                              f"{name} feature to apply it to); remove the section")
    llm = raw.get("llm")
    provider = llm.get("provider", "extractive") if isinstance(llm, dict) else "extractive"
    if provider not in SUPPORTED_PROVIDERS:
        raise ConfigError(f"{path}: [llm] provider {provider!r} is not supported yet "
                          f"(available: {', '.join(SUPPORTED_PROVIDERS)})")


def read_config_file(path: Path) -> FileConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8") from None
    _refuse_unbuilt(raw, path)
    try:
        return FileConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None


def find_config(flag: Path | None, env: Environment, home: Path) -> Path | None:
    """--config, then CLEARANCE_CONFIG, then ./clearance.toml, then $CLEARANCE_HOME's."""
    explicit = flag or env.config
    if explicit is not None:
        return explicit.expanduser().resolve()
    for candidate in (Path.cwd() / CONFIG_NAME, home / CONFIG_NAME):
        if candidate.is_file():
            return candidate.resolve()
    return None


def load_settings(home: Path | None = None, config: Path | None = None) -> Settings:
    try:
        env = Environment()
    except ValidationError as exc:
        raise ConfigError(_describe(exc, Path("environment"))) from None
    home_dir = (home or env.home or Path("~/.clearance")).expanduser().resolve()
    config_path = find_config(config, env, home_dir)
    file = read_config_file(config_path) if config_path else FileConfig()
    overrides: dict[str, Any] = {}
    if env.broker_url:
        overrides["jobs"] = file.jobs.model_copy(update={"broker_url": env.broker_url})
    if env.embedder:
        overrides["embedder"] = file.embedder.model_copy(update={"name": env.embedder})
    if overrides:
        file = file.model_copy(update=overrides)
    return Settings(home=home_dir, config_path=config_path, file=file)
