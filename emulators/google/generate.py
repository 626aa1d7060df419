"""Google Workspace tenants for tests, benchmarks and `clearance emulate google`.

`ServiceAccount.new()` makes an RSA key pair: the tenant holds the public key, the key file a
connector reads (`service_account_file`) holds the private key and the emulator's `token_uri`.
`example_tenant(account)` is small and hand-made (every grant kind once);
`generate_tenant(account, seed)` is large, random and reproducible: users, nested groups (with
CUSTOMER and EXTERNAL members), shared drives with user and group members, My Drive folders and
files shared to users, groups, the domain and anyone (with and without `allowFileDiscovery`),
expired and deleted permissions, trashed files, shortcuts and Google-native documents.

    python -m emulators.google.generate OUT_DIR [--seed N] [--base-url URL]

writes `OUT_DIR/tenant.json` (for `clearance emulate google --tenant`) and
`OUT_DIR/service_account.json` (mode 0600; its `token_uri` is `<base URL>/token`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulators.google import DOC, FOLDER, SHEET, SHORTCUT, SLIDES

JsonObject = dict[str, Any]
DOMAIN = "acme.example"
SA_EMAIL = "clearance-sync@clearance-emu.iam.gserviceaccount.com"
SCOPES = ("https://www.googleapis.com/auth/drive.readonly",
          "https://www.googleapis.com/auth/admin.directory.group.readonly",
          "https://www.googleapis.com/auth/admin.directory.user.readonly")
MARK = "zephyrmarker"
PAST = "2020-01-01T00:00:00.000Z"
FUTURE = "2099-01-01T00:00:00.000Z"


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    client_id: str
    private_key_pem: str
    public_key_pem: str

    @classmethod
    def new(cls, client_email: str = SA_EMAIL, client_id: str = "1000000000000000001"
            ) -> ServiceAccount:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        return cls(client_email, client_id, private, public)

    def tenant_entry(self, scopes: tuple[str, ...] = SCOPES) -> JsonObject:
        return {"client_email": self.client_email, "client_id": self.client_id,
                "public_key_pem": self.public_key_pem, "scopes": list(scopes)}

    def key_file(self, base_url: str) -> JsonObject:
        """The JSON key file as Google's console downloads it, pointed at the emulator."""
        return {"type": "service_account", "project_id": "clearance-emu",
                "private_key_id": "0" * 40, "private_key": self.private_key_pem,
                "client_email": self.client_email, "client_id": self.client_id,
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": f"{base_url.rstrip('/')}/token"}

    def write_key_file(self, path: Path, base_url: str) -> Path:
        path.write_text(json.dumps(self.key_file(base_url), indent=1), encoding="utf-8")
        path.chmod(0o600)
        return path


def user(name: str, *, admin: bool = False, **extra: Any) -> JsonObject:
    return {"id": f"u-{name}", "primaryEmail": f"{name}@{DOMAIN}", "name": name.title(),
            "isAdmin": admin, **extra}


def member(email: str, kind: str = "USER") -> JsonObject:
    return {"email": email, "type": kind, "role": "MEMBER"}


def to_user(email: str, role: str = "reader", **extra: Any) -> JsonObject:
    return {"type": "user", "role": role, "emailAddress": email, **extra}


def to_group(email: str, role: str = "reader") -> JsonObject:
    return {"type": "group", "role": role, "emailAddress": email}


def to_domain(discoverable: bool, domain: str = DOMAIN) -> JsonObject:
    return {"type": "domain", "role": "reader", "domain": domain,
            "allowFileDiscovery": discoverable}


def to_anyone(discoverable: bool) -> JsonObject:
    return {"type": "anyone", "role": "reader", "allowFileDiscovery": discoverable}


def file(fid: str, name: str, *, owner: str | None = None, drive: str | None = None,
         parents: list[str] | None = None, mime: str = "text/plain",
         perms: list[JsonObject] | None = None, text: str | None = None,
         **extra: Any) -> JsonObject:
    out: JsonObject = {"id": fid, "name": name, "mimeType": mime,
                       "permissions": list(perms or []), "version": "1",
                       "modifiedTime": "2025-05-01T10:00:00.000Z"}
    if drive is not None:
        out["driveId"] = drive
        out["parents"] = parents if parents is not None else [drive]
    else:
        out["owners"] = [owner or f"ann@{DOMAIN}"]
        out["parents"] = parents or []
    if mime != FOLDER and mime != SHORTCUT:
        out["content"] = text if text is not None else f"{name} mentions {MARK} here."
    out.update(extra)
    return out


def example_tenant(account: ServiceAccount) -> JsonObject:
    """Every kind of grant once. Readers are spelled out in the contract test's evaluator."""
    a, b, c, d, e = (f"{n}@{DOMAIN}" for n in ("ann", "bob", "carl", "dana", "eve"))
    eng, leads, staff, partners = (f"{n}@{DOMAIN}" for n in ("eng", "leads", "staff",
                                                            "partners"))
    return {
        "domain": DOMAIN, "customer_id": "C0acme", "page_size": 100, "token_lifetime": 3599,
        "service_accounts": [account.tenant_entry()],
        "users": [user("ann", admin=True), user("bob"), user("carl"), user("dana"),
                  user("eve"), user("frank"), user("sam", suspended=True)],
        "groups": [
            {"id": "g-eng", "email": eng, "name": "Engineering",
             "members": [member(a), member(leads, "GROUP")]},
            {"id": "g-leads", "email": leads, "name": "Leads", "members": [member(c)]},
            {"id": "g-staff", "email": staff, "name": "All staff",
             "members": [{"type": "CUSTOMER", "role": "MEMBER"}]},
            {"id": "g-partners", "email": partners, "name": "Partners",
             "members": [member("ext@partner.example", "EXTERNAL"), member(e)]},
        ],
        "drives": [
            {"id": "0AEng", "name": "Engineering",
             "members": [to_user(a, "organizer"), to_group(eng, "writer")]},
            {"id": "0AFin", "name": "Finance",
             "members": [to_user(d, "organizer"), to_user(b, "reader")]},
        ],
        "files": [
            # ann's My Drive
            file("f-plans", "Plans", owner=a, mime=FOLDER, perms=[to_group(eng)]),
            file("d-plan", "Plan", owner=a, parents=["f-plans"], mime=DOC,
                 text=f"Roadmap\nThe plan for Q3 holds {MARK}."),
            file("s-budget", "Budget", owner=a, mime=SHEET, perms=[to_user(b)],
                 text=f"item,cost\nservers,100\n{MARK},1\n"),
            file("p-deck", "Deck", owner=a, mime=SLIDES, perms=[to_domain(True)],
                 text=f"Slide one: {MARK}"),
            file("t-link", "link-only.txt", owner=a, perms=[to_domain(False)]),
            # sam is suspended: delegation cannot impersonate him, his files are not read
            file("t-public", "public.md", owner="sam@acme.example", perms=[to_anyone(True)],
                 mime="text/markdown"),
            file("t-anylink", "anyone-link.txt", owner=a, perms=[to_anyone(False)]),
            file("t-trash", "trashed.txt", owner=a, perms=[to_user(b)], trashed=True),
            file("t-expired", "expired.txt", owner=a,
                 perms=[to_user(b, expirationTime=PAST), to_user(d, expirationTime=FUTURE)]),
            file("t-deleted", "deleted-grant.txt", owner=a,
                 perms=[{"type": "user", "role": "reader", "deleted": True}]),
            file("k-short", "Shortcut to plan", owner=a, mime=SHORTCUT,
                 shortcutDetails={"targetId": "d-plan", "targetMimeType": DOC}),
            file("b-image", "photo.png", owner=a, mime="image/png", perms=[to_user(b)]),
            # bob's My Drive
            file("t-bob", "notes.txt", owner=b, perms=[to_group(staff, "commenter")]),
            file("t-partners", "partners.html", owner=b, mime="text/html",
                 perms=[to_group(partners)],
                 text=f"<html><body><h1>Partners</h1><p>{MARK}</p></body></html>"),
            # carl's My Drive: shared with no one
            file("t-carl", "private.txt", owner=c),
            # shared drives
            file("f-specs", "Specs", drive="0AEng", mime=FOLDER, perms=[to_user(d)]),
            file("d-spec", "Spec", drive="0AEng", parents=["f-specs"], mime=DOC),
            file("t-eng", "eng.md", drive="0AEng", mime="text/markdown"),
            file("t-fin", "ledger.txt", drive="0AFin", perms=[to_user(e, "commenter")]),
            file("s-fin", "Forecast", drive="0AFin", mime=SHEET,
                 text=f"q,amount\nq1,{MARK}\n"),
        ],
    }


def generate_tenant(account: ServiceAccount, seed: int = 11, *, users: int = 30,
                    files_per_user: int = 8, drives: int = 4,
                    files_per_drive: int = 25) -> JsonObject:
    """A random but reproducible domain (see the module docstring for what it contains)."""
    rng = random.Random(seed)
    names = [f"user{i:03d}" for i in range(users)]
    emails = [f"{n}@{DOMAIN}" for n in names]
    people = [user(n, admin=(i == 0), suspended=(i == users - 1)) for i, n in enumerate(names)]
    active = emails[:-1]
    groups: list[JsonObject] = []
    group_emails = [f"team{i:02d}@{DOMAIN}" for i in range(max(3, users // 5))]
    for i, gmail in enumerate(group_emails):
        members = [member(m) for m in rng.sample(active, k=min(len(active), rng.randint(1, 5)))]
        if i > 0 and rng.random() < 0.6:  # nested: a group may hold an earlier one
            members.append(member(group_emails[rng.randrange(i)], "GROUP"))
        if rng.random() < 0.2:
            members.append(member(f"guest{i}@partner.example", "EXTERNAL"))
        groups.append({"id": f"g-{i}", "email": gmail, "name": f"Team {i}", "members": members})
    groups.append({"id": "g-all", "email": f"everyone@{DOMAIN}", "name": "Everyone",
                   "members": [{"type": "CUSTOMER", "role": "MEMBER"}]})
    group_emails.append(f"everyone@{DOMAIN}")
    roles = ["reader", "commenter", "writer"]

    def grant() -> JsonObject:
        roll = rng.random()
        if roll < 0.35:
            return to_user(rng.choice([*emails, "outsider@partner.example"]), rng.choice(roles))
        if roll < 0.6:
            return to_group(rng.choice(group_emails), rng.choice(roles))
        if roll < 0.72:
            return to_domain(rng.random() < 0.5)
        if roll < 0.8:
            return to_anyone(rng.random() < 0.4)
        if roll < 0.88:
            return to_user(rng.choice(emails), expirationTime=rng.choice([PAST, FUTURE]))
        if roll < 0.93:
            return {"type": "user", "role": "reader", "deleted": True}
        return to_domain(True, "partner.example")

    def grants(n: int) -> list[JsonObject]:
        """Drive holds one permission per grantee: the first drawn for each wins."""
        out: dict[str, JsonObject] = {}
        for _ in range(n):
            perm = grant()
            key = f"{perm['type']}:{perm.get('emailAddress') or perm.get('domain') or ''}"
            if perm.get("deleted"):
                key += f":{len(out)}"
            out.setdefault(key, perm)
        return list(out.values())

    def kind() -> tuple[str, str]:
        return rng.choice([("text/plain", ".txt"), ("text/markdown", ".md"),
                           ("text/html", ".html"), (DOC, ""), (SHEET, ""), (SLIDES, "")])

    def content(mime: str, label: str) -> str:
        if mime == SHEET:
            return f"name,value\n{label},{MARK}\n"
        if mime == "text/html":
            return f"<html><body><h1>{label}</h1><p>{MARK}</p></body></html>"
        return f"{label}\nThis is about {MARK} and {rng.choice(['cats', 'tax', 'plans'])}."

    tenant_files: list[JsonObject] = []
    for u, owner in enumerate(emails):
        folder = f"fo-{u}"
        tenant_files.append(file(folder, f"Folder {u}", owner=owner, mime=FOLDER,
                                 perms=grants(1) if rng.random() < 0.5 else []))
        for j in range(files_per_user):
            mime, suffix = kind()
            fid = f"my-{u}-{j}"
            extra: JsonObject = {}
            if rng.random() < 0.08:
                extra["trashed"] = True
            perms = grants(rng.randint(0, 3))
            tenant_files.append(file(fid, f"file {u}-{j}{suffix}", owner=owner, mime=mime,
                                     parents=[folder] if rng.random() < 0.4 else [],
                                     perms=perms, text=content(mime, fid), **extra))
        if rng.random() < 0.3:
            tenant_files.append(file(f"sc-{u}", f"shortcut {u}", owner=owner, mime=SHORTCUT,
                                     shortcutDetails={"targetId": f"my-{u}-0",
                                                      "targetMimeType": "text/plain"}))
    shared: list[JsonObject] = []
    for k in range(drives):
        did = f"0ADrive{k}"
        members = [to_user(emails[0], "organizer")] if k % 2 == 0 else \
            [to_user(rng.choice(active[1:]), "organizer")]
        members += [to_user(m, rng.choice(roles)) for m in rng.sample(active, k=3)
                    if m not in [x["emailAddress"] for x in members]]
        members.append(to_group(rng.choice(group_emails[:-1]), rng.choice(roles)))
        shared.append({"id": did, "name": f"Shared {k}", "members": members})
        folder = f"sf-{k}"
        tenant_files.append(file(folder, f"Drive folder {k}", drive=did, mime=FOLDER,
                                 perms=grants(1)))
        for j in range(files_per_drive):
            mime, suffix = kind()
            fid = f"sd-{k}-{j}"
            extra = {"trashed": True} if rng.random() < 0.05 else {}
            tenant_files.append(file(fid, f"drive file {k}-{j}{suffix}", drive=did, mime=mime,
                                     parents=[folder] if rng.random() < 0.5 else [did],
                                     perms=grants(rng.randint(0, 2)),
                                     text=content(mime, fid), **extra))
    return {"domain": DOMAIN, "customer_id": "C0acme", "page_size": 100,
            "service_accounts": [account.tenant_entry()], "users": people, "groups": groups,
            "drives": shared, "files": tenant_files}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators.google.generate")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=None, help="a generated domain (default: "
                        "the small example tenant)")
    parser.add_argument("--base-url", default="https://127.0.0.1:8443",
                        help="the emulator's base URL, for the key file's token_uri")
    args = parser.parse_args(argv)
    account = ServiceAccount.new()
    tenant = example_tenant(account) if args.seed is None else \
        generate_tenant(account, args.seed)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "tenant.json").write_text(json.dumps(tenant, indent=1), encoding="utf-8")
        key = args.out / "service_account.json"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(account.key_file(args.base_url), handle, indent=1)
    except OSError as exc:
        print(f"cannot write to {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"{args.out / 'tenant.json'}\n{key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
