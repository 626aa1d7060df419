"""The one function that turns an identity into the ACL filter every store query carries."""

from __future__ import annotations

from auth.identity import Identity
from core.acl import AclFilter


def acl_filter(identity: Identity) -> AclFilter:
    return AclFilter(principals=identity.principals)
