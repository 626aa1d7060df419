"""Graph tenants for tests, benchmarks and `emulators/tenants/graph.json`.

`example_tenant()` is small and hand-made (every grant kind once); `generate_tenant(seed)` is
large and random but reproducible: sites with document libraries, OneDrives, folders with
broken inheritance, files shared by each link type (users, organization, anonymous, expired),
Limited Access grants, site groups, "Everyone except external users", invitations, nested Entra
groups, guests with `#EXT#` UPNs and no usable address, and deleted items.
"""

from __future__ import annotations

import random
from typing import Any

JsonObject = dict[str, Any]
TENANT_ID = "8d2f0c1e-0000-4000-8000-00000000c0de"
DOMAIN = "contoso.example"
CLIENT_ID = "app-clearance"
CLIENT_SECRET = "emulator-client-secret"
ALL_USERS = f"c:0-.f|rolemanager|spo-grid-all-users/{TENANT_ID}"
PAST = "2020-01-01T00:00:00Z"
NEVER = "0001-01-01T00:00:00Z"


def user(uid: str, name: str, *, mail: str | None = "", upn: str | None = None,
         guest: bool = False) -> JsonObject:
    address = f"{name}@{DOMAIN}" if mail == "" else mail
    return {"id": uid, "displayName": name.title(),
            "userPrincipalName": upn or f"{name}@{DOMAIN}", "mail": address,
            "userType": "Guest" if guest else "Member"}


def grant_user(uid: str, role: str = "read") -> JsonObject:
    return {"roles": [role], "grantedToV2": {"user": {"id": uid}}}


def grant_group(gid: str, role: str = "read") -> JsonObject:
    return {"roles": [role], "grantedToV2": {"group": {"id": gid}}}


def link(scope: str, users: list[str] = (), expires: str = NEVER) -> JsonObject:  # type: ignore[assignment]
    out: JsonObject = {"roles": ["read"], "link": {"scope": scope, "type": "view"},
                       "expirationDateTime": expires}
    if scope == "users":
        out["grantedToIdentitiesV2"] = [{"user": {"id": u}} for u in users]
    return out


def item(iid: str, name: str, parent: str = "root", *, folder: bool = False,
         perms: list[JsonObject] | None = None, broken: bool = False,
         text: str = "") -> JsonObject:
    out: JsonObject = {"id": iid, "name": name, "parent": parent,
                       "permissions": perms or []}
    if folder:
        out["folder"] = True
    else:
        out["content"] = text or f"{name} says zephyrmarker here."
    if broken:
        out["inheritanceBroken"] = True
    return out


def root(perms: list[JsonObject]) -> JsonObject:
    return {"id": "root", "folder": True, "inheritanceBroken": True, "permissions": perms}


def example_tenant() -> JsonObject:
    users = [
        user("u-ann", "ann"), user("u-bob", "bob"), user("u-carl", "carl"),
        user("u-dana", "dana", upn="dana.upn@contoso.onmicrosoft.example"),
        user("u-eve", "eve"),
        user("u-gus", "gus", mail="gus@gmail.example",
             upn="gus_gmail.example#EXT#@contoso.onmicrosoft.example", guest=True),
        user("u-ghost", "ghost", mail=None,
             upn="ghost_mail.example#EXT#@contoso.onmicrosoft.example", guest=True),
    ]
    groups = [
        {"id": "g-staff", "displayName": "Staff", "members": ["g-eng", "u-bob", "u-dana"]},
        {"id": "g-eng", "displayName": "Engineering", "members": ["u-ann", "u-carl"]},
        {"id": "g-ops", "displayName": "Operations", "members": ["u-bob", "u-gus", "u-ghost"]},
    ]
    eng = [
        root([grant_group("g-eng"), {"roles": ["read"], "grantedToV2": {
            "siteGroup": {"id": "4", "displayName": "Eng Visitors"}}}]),
        item("f-plans", "Plans", folder=True),
        item("i-plan", "plan.md", "f-plans"),
        item("i-budget", "budget.txt", "f-plans", perms=[link("users", ["u-bob"])]),
        item("f-secret", "Secret", folder=True, broken=True,
             perms=[grant_user("u-carl", "owner")]),
        item("i-keys", "keys.txt", "f-secret"),
        item("i-limited", "limited.txt", "f-secret",
             perms=[{"roles": ["Limited Access"], "grantedToV2": {"user": {"id": "u-bob"}}}]),
        item("i-org", "org.md", perms=[link("organization")]),
        item("i-anon", "anon.md", broken=True, perms=[link("anonymous")]),
        item("i-exp", "expired.md", broken=True, perms=[link("users", ["u-dana"], PAST)]),
        item("i-all", "all.md", broken=True, perms=[{"roles": ["read"], "grantedToV2": {
            "siteUser": {"id": "9", "loginName": ALL_USERS}}}]),
        item("i-inv", "invite.md", broken=True, perms=[{"roles": ["read"], "invitation": {
            "email": "ext@partner.example", "signInRequired": True}}]),
        item("i-sg", "visitors.md", broken=True, perms=[{"roles": ["read"], "grantedToV2": {
            "siteGroup": {"id": "3", "displayName": "Eng Members"}}}]),
        item("i-img", "photo.png"),
        {**item("i-gone", "gone.md"), "deleted": True},
    ]
    hr = [
        root([grant_user("u-dana", "write"), grant_group("g-ops")]),
        item("i-hb", "handbook.md"),
        item("i-guest", "guest.md", broken=True, perms=[grant_user("u-gus")]),
    ]
    return {
        "tenant_id": TENANT_ID, "domains": [DOMAIN], "page_size": 2, "token_lifetime": 3599,
        "apps": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                  "roles": ["Sites.Read.All", "Files.Read.All", "GroupMember.Read.All",
                            "User.Read.All"]}],
        "users": users, "groups": groups,
        "sites": [
            {"id": "site-eng", "name": "eng", "displayName": "Engineering",
             "webUrl": "https://contoso.sharepoint.example/sites/eng", "admins": ["u-eve"],
             "siteGroups": [{"id": "3", "displayName": "Eng Members", "members": ["u-ann"]},
                            {"id": "4", "displayName": "Eng Visitors", "members": ["u-bob"]}],
             "drives": [{"id": "d-eng", "name": "Documents", "driveType": "documentLibrary",
                         "items": eng}]},
            {"id": "site-hr", "name": "hr", "displayName": "People",
             "webUrl": "https://contoso.sharepoint.example/sites/hr",
             "drives": [{"id": "d-hr", "name": "Documents", "driveType": "documentLibrary",
                         "items": hr}]},
            {"id": "site-arch", "name": "archive", "displayName": "Archive",
             "drives": [{"id": "d-arch", "name": "Documents", "driveType": "documentLibrary",
                         "items": [root([grant_group("g-staff")]),
                                   item("i-old", "old.md")]}]},
            {"id": "od-ann", "name": "ann_contoso_example", "personal": True,
             "webUrl": "https://contoso-my.sharepoint.example/personal/ann_contoso_example",
             "drives": [{"id": "d-od-ann", "name": "OneDrive", "driveType": "personal",
                         "owner": "u-ann",
                         "items": [root([]), item("i-notes", "notes.md",
                                                  perms=[link("users", ["u-carl"])])]}]},
        ],
    }


def generate_tenant(seed: int = 7, *, sites: int = 4, files_per_drive: int = 60,
                    people: int = 24, page_size: int = 50) -> JsonObject:
    rnd = random.Random(seed)
    users: list[JsonObject] = []
    for n in range(people):
        if n % 8 == 7:  # guests: #EXT# UPN, an address in mail (or none at all)
            mail = f"guest{n}@partner{n % 3}.example" if n % 16 != 15 else None
            users.append(user(f"u{n}", f"guest{n}", mail=mail, guest=True,
                              upn=f"guest{n}_partner.example#EXT#@contoso.onmicrosoft.example"))
        elif n % 5 == 4:  # a UPN that is not the address
            users.append(user(f"u{n}", f"person{n}", upn=f"p{n}@contoso.onmicrosoft.example"))
        else:
            users.append(user(f"u{n}", f"person{n}"))
    uids = [u["id"] for u in users]
    groups: list[JsonObject] = []
    for g in range(8):
        members = rnd.sample(uids, rnd.randint(1, 5))
        if g >= 2:  # nested: each later group may hold an earlier one
            members.append(f"g{rnd.randrange(g)}")
        groups.append({"id": f"g{g}", "displayName": f"Group {g}", "members": members})

    def grant() -> JsonObject:
        kind = rnd.choice(["user", "group", "group", "users-link", "org-link", "anon-link",
                           "expired-link", "limited", "all-users", "everyone", "invite",
                           "site-group"])
        if kind == "user":
            return grant_user(rnd.choice(uids), rnd.choice(["read", "write", "owner"]))
        if kind == "group":
            return grant_group(f"g{rnd.randrange(len(groups))}")
        if kind == "users-link":
            return link("users", rnd.sample(uids, 2))
        if kind == "org-link":
            return link("organization")
        if kind == "anon-link":
            return link("anonymous")
        if kind == "expired-link":
            return link("users", rnd.sample(uids, 2), PAST)
        if kind == "limited":
            return {"roles": ["Limited Access"], "grantedToV2": {"user": {"id": rnd.choice(uids)}}}
        if kind == "all-users":
            return {"roles": ["read"], "grantedToV2": {"siteUser": {"loginName": ALL_USERS}}}
        if kind == "everyone":
            return {"roles": ["read"], "grantedToV2": {"siteUser": {"loginName": "c:0(.s|true"}}}
        if kind == "invite":
            return {"roles": ["read"], "invitation": {"email": f"invitee{rnd.randrange(3)}"
                                                               "@partner0.example"}}
        return {"roles": ["read"], "grantedToV2": {"siteGroup": {"id": "3"}}}

    def tree(prefix: str, count: int) -> list[JsonObject]:
        items = [root([grant_group(f"g{rnd.randrange(len(groups))}")])]
        folders = ["root"]
        for n in range(count):
            parent = rnd.choice(folders)
            broken = rnd.random() < 0.15
            perms = [grant() for _ in range(rnd.choice([0, 0, 1, 2]))]
            iid = f"{prefix}-{n}"
            if rnd.random() < 0.2:
                items.append(item(iid, f"folder{n}", parent, folder=True, perms=perms,
                                  broken=broken))
                folders.append(iid)
                continue
            ext = rnd.choice([".md", ".txt", ".md", ".html", ".png"])
            entry = item(iid, f"file{n}{ext}", parent, perms=perms, broken=broken,
                         text=f"<p>file {n} zephyrmarker</p>" if ext == ".html" else "")
            if rnd.random() < 0.05:
                entry["deleted"] = True
            items.append(entry)
        return items

    site_list: list[JsonObject] = []
    for s in range(sites):
        site_list.append({"id": f"site{s}", "name": f"site{s}", "displayName": f"Site {s}",
                          "admins": [rnd.choice(uids)] if s % 2 == 0 else [],
                          "drives": [{"id": f"d{s}", "name": "Documents",
                                      "driveType": "documentLibrary",
                                      "items": tree(f"s{s}", files_per_drive)}]})
    for n in (0, 1, 2):
        site_list.append({"id": f"od{n}", "name": f"od{n}", "personal": True, "drives": [{
            "id": f"dod{n}", "name": "OneDrive", "driveType": "personal", "owner": f"u{n}",
            "items": tree(f"od{n}", files_per_drive // 4)}]})
    return {"tenant_id": TENANT_ID, "domains": [DOMAIN], "page_size": page_size,
            "apps": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}],
            "users": users, "groups": groups, "sites": site_list}
