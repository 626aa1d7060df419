"""The Confluence Cloud emulator (see README.md here for the routes and the tenant format).

`emulators.confluence` keeps its public names: `ConfluenceEmulator` (server.py), the CQL
helpers (cql.py), `validate_tenant` (tenant.py) and `generate_tenant` (generate.py).
"""

from emulators.confluence.cql import (
    CONTENT_TYPES,
    STATUSES,
    CqlError,
    cql_date,
    iso,
    parse_cql,
    parse_when,
    tz_of,
)
from emulators.confluence.generate import generate_tenant
from emulators.confluence.server import ConfluenceEmulator
from emulators.confluence.tenant import TenantError, validate_tenant

__all__ = ["CONTENT_TYPES", "STATUSES", "ConfluenceEmulator", "CqlError", "TenantError",
           "cql_date", "generate_tenant", "iso", "parse_cql", "parse_when", "tz_of",
           "validate_tenant"]
