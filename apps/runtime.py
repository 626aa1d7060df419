"""Wiring: builds the store, embedder, connectors, pipeline and assistant from Settings.

The one place that maps configuration to implementations; surfaces (CLI, web, bots) call it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from assistant.answer import Assistant
from assistant.audit import AuditLog
from assistant.llm.base import LlmProvider
from assistant.llm.extractive import ExtractiveAnswerer
from auth.identity import CachedResolver, Identity
from connectors.base import Connector, ConnectorFactory, parse_options
from connectors.extract import preload as preload_parsers
from core.errors import ConfigError
from core.settings import ConnectorSettings, Settings
from indexer.embedding import Embedder, load_embedder
from indexer.store.sqlite import SqliteStore
from indexer.sync import Pipeline, Progress
from retriever.hybrid import RetrievalParams, Retriever

if TYPE_CHECKING:
    from celery import Celery

    from assistant.conversations import Conversations
    from assistant.guardrails import Guardrails
    from indexer.store.opensearch import OpenSearchStore

CONNECTOR_GROUP = "clearance.connectors"
T = TypeVar("T")


def connector_class(kind: str) -> ConnectorFactory:
    """The factory a `clearance.connectors` entry point names: a new kind is one folder plus
    one entry point (pip install -e . writes them; nothing here names a kind)."""
    for ep in entry_points(group=CONNECTOR_GROUP):
        if ep.name == kind:
            factory = ep.load()
            if not (hasattr(factory, "options_model") and hasattr(factory, "from_options")):
                raise ConfigError(f"connector kind {kind!r}: entry point {ep.value} is not a "
                                  "connector factory (no options_model/from_options)")
            typed: ConnectorFactory = factory
            return typed
    known = sorted({ep.name for ep in entry_points(group=CONNECTOR_GROUP)})
    raise ConfigError(f"unknown connector kind {kind!r} (known: {', '.join(known) or 'none'})")


def build_connector(cfg: ConnectorSettings, base_dir: Path) -> Connector:
    factory = connector_class(cfg.kind)
    options = parse_options(factory, cfg.name, cfg.kind, cfg.options)
    return factory.from_options(cfg.name, options, base_dir)


class Runtime:
    """Lazily built components for one command invocation."""

    def __init__(self, settings: Settings, *, read_only: bool = False) -> None:
        self.settings = settings
        # Read commands (search, ask, explain, status) never create a store's indices: a lost
        # identities index re-created empty would make every deny group deny nobody.
        self.read_only = read_only
        # cached_property is not locked: servers build shared components from many threads.
        self._build_lock = threading.RLock()
        self._lanes: LanePool | None = None

    @cached_property
    def store(self) -> SqliteStore | OpenSearchStore:
        with self._build_lock:
            return self.open_store()

    def open_store(self) -> SqliteStore | OpenSearchStore:
        """A new store handle (its own connection and caches): one per serving thread."""
        cfg = self.settings.file.store
        if cfg.kind == "opensearch":
            import os

            from indexer.store.opensearch import open_store

            # The environment is read here, once: [store] password_env names a variable in it.
            return open_store(cfg, os.environ, dimension=self.embedder.dim,
                              create=not self.read_only)
        return SqliteStore(self.settings.store_path, dense_search=cfg.dense_search,
                           nprobe=cfg.ivf_nprobe)

    @cached_property
    def embedder(self) -> Embedder:
        """The configured embedder: what sync embeds new content with."""
        cfg = self.settings.file.embedder
        return load_embedder(cfg.name, batch_size=cfg.batch_size, cache_dir=self.models_dir)

    @cached_property
    def query_embedder(self) -> Embedder:
        """Questions are embedded by the model the index was built with, so that searching
        keeps working after the configured embedder changes and before the next sync."""
        built_with = self.store.embedder_names()
        if not built_with or built_with[0] == self.embedder.name:
            return self.embedder
        return load_embedder(built_with[0], batch_size=self.settings.file.embedder.batch_size,
                             cache_dir=self.models_dir)

    @property
    def models_dir(self) -> Path:
        """Where the ONNX embedders keep the graphs they build from the shipped weights."""
        return self.settings.home / "models"

    def connectors(self, names: list[str] | None = None) -> list[Connector]:
        return [self.build(c) for c in self.connector_configs(names)]

    def connector_configs(self, names: list[str] | None = None) -> list[ConnectorSettings]:
        """The configured connectors named (all by default), in config order, not built yet."""
        configured = self.settings.file.connectors
        if not configured:
            where = self.settings.config_path or "no config file found"
            raise ConfigError(f"no [[connectors]] configured ({where})")
        wanted = set(names or [c.name for c in configured])
        unknown = wanted - {c.name for c in configured}
        if unknown:
            raise ConfigError(f"no connector named {sorted(unknown)[0]!r} in the config")
        return [c for c in configured if c.name in wanted]

    def build(self, config: ConnectorSettings) -> Connector:
        """One connector, its secrets read from the environment (ConfigError if unset)."""
        return build_connector(config, self.settings.config_dir)

    def pipeline(self, progress: Progress | None = None) -> Pipeline:
        preload_parsers()  # imported beside the walk, not when the first PDF waits for them
        return Pipeline(self.store, self.embedder, progress=progress)

    @property
    def connector_names(self) -> list[str]:
        """The configured connectors: the only ones anybody's searches cover."""
        return [c.name for c in self.settings.file.connectors]

    @cached_property
    def resolver(self) -> CachedResolver:
        with self._build_lock:
            return CachedResolver(self.store, self.connector_names)

    def identity(self, email: str) -> Identity:
        if "@" not in email or email.strip() != email or " " in email:
            raise ConfigError(f"--as needs an email address, got {email!r}")
        return self.resolver(email)

    @cached_property
    def retriever(self) -> Retriever:
        with self._build_lock:
            return self.retriever_for(self.store)

    def retriever_for(self, store: SqliteStore | OpenSearchStore) -> Retriever:
        r = self.settings.file.retrieval
        params = RetrievalParams(k=r.k, candidates=r.candidates, fusion=r.fusion, rrf_k=r.rrf_k,
                                 dense_weight=r.dense_weight,
                                 passages_per_document=r.passages_per_document)
        with self._build_lock:
            embedder = self.query_embedder
        return Retriever(store, embedder, params)

    @cached_property
    def provider(self) -> LlmProvider:
        llm = self.settings.file.llm
        if llm.provider == "bedrock":
            from assistant.llm.bedrock import bedrock_provider

            return bedrock_provider(llm, self.settings.config_dir)
        if llm.provider == "openai":
            import os

            from assistant.llm.openai_compat import openai_provider

            return openai_provider(llm, self.settings.config_dir, os.environ)
        if llm.provider != "extractive":
            raise ConfigError(f"llm provider {llm.provider!r} is not available in this build yet")
        return ExtractiveAnswerer(self.query_embedder, min_evidence=llm.min_evidence)

    @cached_property
    def jobs(self) -> Celery:
        """The Celery app of this deployment (ConfigError without a broker or with a bad
        schedule)."""
        from indexer.jobs.app import create_app

        return create_app(self.settings)

    @cached_property
    def audit(self) -> AuditLog:
        cfg = self.settings.file.audit
        if cfg.backend == "opensearch":
            import os

            from assistant.audit_opensearch import OpenSearchAudit
            from indexer.store.opensearch_client import Cluster, make_client

            store = self.settings.file.store
            if not store.url:
                raise ConfigError('[audit] backend = "opensearch" writes through the [store] '
                                  "connection: set [store] url")
            index = cfg.index or f"{store.index_prefix}-audit"
            cluster = Cluster(make_client(store, os.environ))
            return AuditLog(None, principals=cfg.principals,
                            backend=OpenSearchAudit(cluster, index))
        return AuditLog(self.settings.home / "audit.jsonl", principals=cfg.principals)

    @cached_property
    def guard(self) -> Guardrails | None:
        from assistant.guardrails import from_settings
        from assistant.llm.bedrock_guardrail import bedrock_guardrail

        with self._build_lock:
            remote = bedrock_guardrail(self.settings.file.llm, self.settings.config_dir)
            return from_settings(self.settings.file.guardrails, self.query_embedder, remote)

    @cached_property
    def conversations(self) -> Conversations:
        import os

        from assistant.conversations_remote import from_settings

        file = self.settings.file
        return from_settings(file.conversations, home=self.settings.home,
                             window=file.llm.history_turns, broker_url=file.jobs.broker_url,
                             base_dir=self.settings.config_dir, environ=os.environ)

    def assistant_for(self, retriever: Retriever) -> Assistant:
        with self._build_lock:
            guard, provider, audit = self.guard, self.provider, self.audit
        return Assistant(retriever, provider, audit=audit, guard=guard,
                         conversations=self.conversations,
                         exclude_overshared=self.settings.file.guardrails.oversharing
                         == "exclude")

    @cached_property
    def assistant(self) -> Assistant:
        with self._build_lock:
            return self.assistant_for(self.retriever)

    def leak_audit(self, trigger: str = "schedule") -> dict[str, Any]:
        """The leak audit on `[eval] questions`, recorded for `clearance status` (the task of
        `[eval] leak_audit_schedule`)."""
        from apps.evaluation import run_scheduled_audit

        return run_scheduled_audit(self, trigger)

    def lanes(self, size: int = 4) -> LanePool:
        """The serving threads of a long-running surface (web, bots): each has its own store
        connection, retriever and identity cache; everything else is shared."""
        with self._build_lock:
            if self._lanes is None:
                self._lanes = LanePool(self, size)
            return self._lanes


@dataclass
class Lane:
    """What one serving thread asks with: its own store handle and the caches on it."""

    store: SqliteStore | OpenSearchStore
    resolver: CachedResolver
    assistant: Assistant

    def identity(self, email: str) -> Identity:
        return self.resolver(email)


class LanePool:
    """A fixed number of worker threads, each with one lane built on first use (a store
    connection per thread: SQLite connections and the store's caches are not shared)."""

    def __init__(self, runtime: Runtime, size: int) -> None:
        self.runtime = runtime
        self.size = max(1, size)
        self._local = threading.local()
        self._executor = ThreadPoolExecutor(max_workers=self.size,
                                            thread_name_prefix="clearance-lane")
        self._built: list[Lane] = []
        self._lock = threading.Lock()

    def _lane(self) -> Lane:
        lane: Lane | None = getattr(self._local, "lane", None)
        if lane is None:
            rt = self.runtime
            store = rt.open_store()
            lane = Lane(store, CachedResolver(store, rt.connector_names),
                        rt.assistant_for(rt.retriever_for(store)))
            self._local.lane = lane
            with self._lock:
                self._built.append(lane)
        return lane

    def submit(self, work: Callable[[Lane], T]) -> Future[T]:
        return self._executor.submit(lambda: work(self._lane()))

    def run(self, work: Callable[[Lane], T]) -> T:
        return self.submit(work).result()

    def stream(self, work: Callable[[Lane], Iterator[T]],
               put: Callable[[object], None] | None = None) -> queue.Queue[object]:
        """Runs `work` on a lane, each item handed to `put` as it comes (default: onto the
        returned queue), then FINISHED (or the exception it raised)."""
        out: queue.Queue[object] = queue.Queue()
        emit = put or out.put

        def pump(lane: Lane) -> None:
            try:
                for item in work(lane):
                    emit(item)
            except Exception as exc:  # handed to the consumer, which reports it
                emit(exc)
                return
            emit(FINISHED)

        self.submit(pump)
        return out

    @property
    def built(self) -> int:
        with self._lock:
            return len(self._built)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            for lane in self._built:
                lane.store.close()
            self._built.clear()


FINISHED = object()
