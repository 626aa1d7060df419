"""A generated Confluence tenant (deterministic for a seed), in the format of README.md."""

from __future__ import annotations

import random

from emulators.base import JsonObject


def generate_tenant(seed: int = 7, *, spaces: int = 4, pages: int = 300, users: int = 24,
                    groups: int = 6, attachment_every: int = 5) -> JsonObject:
    """A generated tenant: several spaces (the last open to anonymous users), deep page trees,
    read restrictions at several levels (and edit-only restrictions, which do not limit
    reading), flat groups with names that look nested (`team-1/sub-0`), users whose email is
    hidden, an app user, blog posts, drafts, trashed and archived pages, and attachments on
    every `attachment_every`-th page (text and markdown the extraction reads, images it does
    not). Deterministic for a seed."""
    rng = random.Random(seed)
    people: list[JsonObject] = []
    for n in range(users):
        person: JsonObject = {"accountId": f"acc-{n:03d}", "displayName": f"Person {n}"}
        if n % 7 != 3:  # every seventh person hides their email
            person["email"] = f"person{n}@acme.example"
        people.append(person)
    people.append({"accountId": "acc-bot", "accountType": "app", "displayName": "Bot"})
    ids = [p["accountId"] for p in people[:users]]
    group_list = [{"id": f"g-{n}", "name": f"team-{n}/sub-{n % 2}",
                   "members": sorted(rng.sample(ids, rng.randint(2, max(2, users // 3))))}
                  for n in range(groups)]
    gids = [g["id"] for g in group_list]
    space_list: list[JsonObject] = []
    for n in range(spaces):
        anonymous = n == spaces - 1
        perms = [] if anonymous else [{"operation": "read",
                                       "groups": rng.sample(gids, rng.randint(1, 2)),
                                       "users": rng.sample(ids, rng.randint(0, 3))}]
        space_list.append({"id": 100 + n, "key": f"S{n}", "name": f"Space {n}",
                           "anonymous": anonymous, "permissions": perms})
    content: list[JsonObject] = []
    by_space: dict[str, list[str]] = {s["key"]: [] for s in space_list}
    for n in range(pages):
        space = space_list[n % spaces]["key"]
        siblings = by_space[space]
        # Mostly a child of a recent page: trees many levels deep.
        parent = rng.choice(siblings[-6:]) if siblings and rng.random() < 0.85 else None
        cid = str(10_000 + n)
        restricted = rng.random() < 0.3
        read = {"users": rng.sample(ids, rng.randint(0, 4)) if restricted else [],
                "groups": rng.sample(gids, rng.randint(0, 2)) if restricted else []}
        status = "draft" if n % 41 == 40 else "trashed" if n % 37 == 36 \
            else "archived" if n % 53 == 52 else "current"
        kind = "blogpost" if n % 23 == 22 else "page"
        restrictions: JsonObject = {"read": read}
        if n % 11 == 5:  # edit restricted only: everyone who may read the page still may
            restrictions["update"] = {"users": rng.sample(ids, 1), "groups": []}
        attachments: list[JsonObject] = []
        if attachment_every and n % attachment_every == 0:
            attachments.append({"id": f"att{cid}", "title": f"notes-{n}.txt",
                                "mediaType": "text/plain", "version": 1,
                                "data": f"Notes attached to page {n}, zephyrmarker."})
            if n % (attachment_every * 3) == 0:
                attachments.append({"id": f"att{cid}-md", "title": f"plan-{n}.md",
                                    "mediaType": "text/markdown", "version": 1,
                                    "data": f"# Plan {n}\n\nAttached plan, zephyrmarker."})
                attachments.append({"id": f"att{cid}-png", "title": f"diagram-{n}.png",
                                    "mediaType": "image/png", "data_base64": "iVBORw0KGgo="})
        content.append({
            "id": cid, "type": kind, "space": space, "parent": None if kind == "blogpost"
            else parent, "title": f"Page {n}", "status": status, "version": 1,
            "when": f"2026-0{1 + n % 9}-1{n % 10}T0{n % 10}:00:00.000Z",
            "created": f"2026-01-01T00:{n % 60:02d}:00.000Z", "author": rng.choice(ids),
            "body": f"<h1>Page {n}</h1><p>Generated page {n}, zephyrmarker.</p>",
            "restrictions": restrictions, **({"attachments": attachments} if attachments
                                             else {})})
        if kind == "page" and status == "current":
            siblings.append(cid)
    return {"cloud_id": "generated", "timezone": "UTC", "page_size": 25,
            "credentials": [{"email": "admin@acme.example", "token": "generated-token",
                             "admin": True}],
            "users": people, "groups": group_list, "spaces": space_list, "content": content}
