"""The one function that turns an identity into the ACL filter every store query carries."""

from __future__ import annotations

from collections.abc import Iterable

from auth.identity import Identity
from core.acl import AclFilter


def acl_filter(identity: Identity, connectors: Iterable[str] | None = None) -> AclFilter:
    """What `identity` holds for each connector's documents (identity facts scoped to the source
    that asserted them). Connectors: the configured ones (`identity.connectors` when resolved
    with them); a connector left out admits nothing."""
    if connectors is None:
        connectors = identity.connectors
    if connectors is None:
        raise ValueError("acl_filter: no connectors to search (resolve the identity with them)")
    return AclFilter({c: identity.at(c).principals for c in connectors})
