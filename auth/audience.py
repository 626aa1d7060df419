"""The channel-audience rule shared by the chat bots.

A reply posted in a channel is read by every member of it, so it may be built only from
documents *every* member may open at the source: a document passes only if each member's
identity admits it (an intersection, never a union). A member the bot cannot identify (no
email, an unknown user, a list it could not read in full) holds nothing, so nothing passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from assistant.answer import Assistant
from auth.identity import Identity
from core.acl import Acl, AclFilter
from retriever.filters import acl_filter
from retriever.hybrid import Passage, Retriever

# "audience": channel answers cite only what every member reads (the default);
# "ephemeral": the answer uses the asker's own access and is shown to the asker alone.
ChannelReplies = Literal["audience", "ephemeral"]


@dataclass(frozen=True)
class Audience:
    """The people a reply is shown to. `complete` is False when some member could not be
    identified (or the list could not be read whole): such an audience admits nothing."""

    members: tuple[Identity, ...]
    complete: bool = True

    @property
    def filters(self) -> tuple[AclFilter, ...]:
        return tuple(acl_filter(m) for m in self.members)

    def admits(self, connector: str, doc_acl: Acl,
               acl_filters: Sequence[AclFilter] | None = None) -> bool:
        """True only if every member's identity admits a document of `connector` under
        `doc_acl` (and the member list is complete and not empty)."""
        if not self.complete or not self.members:
            return False
        return all(f.admits(connector, doc_acl) for f in (acl_filters or self.filters))


class AudienceRetriever(Retriever):
    """A retriever that keeps only passages of documents every audience member may read.

    The asker's own filter still runs inside the store's query; each surviving document's
    stored ACL is then checked against every member's identity (scoped per connector)."""

    def __init__(self, base: Retriever, audience: Audience) -> None:
        super().__init__(base.store, base.embedder, base.params)
        self.audience = audience

    def passages(self, query: str, acl: AclFilter, k: int | None = None) -> list[Passage]:
        if not self.audience.complete or not self.audience.members:
            return []
        found = super().passages(query, acl, k)
        filters = self.audience.filters
        verdict: dict[str, bool] = {}
        kept: list[Passage] = []
        for p in found:
            doc_id = p.chunk.doc_id
            if doc_id not in verdict:
                doc = self.store.document(doc_id)
                verdict[doc_id] = doc is not None and self.audience.admits(
                    doc.connector, doc.acl, filters)
            if verdict[doc_id]:
                kept.append(p)
        return kept


def for_audience(base: Assistant, audience: Audience) -> Assistant:
    """The same assistant (provider, guardrails, audit) retrieving only what `audience` reads."""
    return Assistant(AudienceRetriever(base.retriever, audience), base.provider,
                     max_sources=base.max_sources, audit=base.audit, guard=base.guard,
                     conversations=base.conversations)
