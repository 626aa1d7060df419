"""`clearance demo` explains why two people's answers differ from the product's own explain
output, and the explanation it prints matches the answers it printed."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.test_cli import cli_env
from tests.support import clearance_exe

pytestmark = pytest.mark.e2e

SOURCE = re.compile(r"^  \[(\d+)\] .* \((?P<doc>[^()\s]+:[^()\s]+)\)$")
DOC_HEADER = re.compile(r"^  (?P<doc>\S+) \(.*\), cited to (?P<who>.+):$")
ACCESS = re.compile(r"^    (?P<email>\S+@\S+): (?P<verdict>yes|no): (?P<rest>.*)$")


@dataclass
class Round:
    question: str
    cited: dict[str, set[str]] = field(default_factory=dict)  # person -> documents cited
    cited_to: dict[str, set[str]] = field(default_factory=dict)  # document -> people (explained)
    access: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)


def parse(stdout: str) -> list[Round]:
    rounds: list[Round] = []
    asker = doc = None
    for line in stdout.splitlines():
        if line.startswith("=== "):
            if not rounds or rounds[-1].question != line[4:]:
                rounds.append(Round(line[4:]))
        elif line.startswith("--- asked by "):
            asker = line.removeprefix("--- asked by ")
            rounds[-1].cited.setdefault(asker, set())
        elif (m := SOURCE.match(line)) and asker:
            rounds[-1].cited[asker].add(m["doc"])
        elif m := DOC_HEADER.match(line):
            doc = m["doc"]
            rounds[-1].cited_to[doc] = set(m["who"].split(", "))
        elif (m := ACCESS.match(line)) and doc:
            rounds[-1].access[(doc, m["email"])] = (m["verdict"], m["rest"])
    return rounds


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    home = tmp_path_factory.mktemp("demo") / "home"
    r = subprocess.run([clearance_exe(), "--home", str(home), "demo"], capture_output=True,
                       text=True, env=cli_env(), timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    yield home, r.stdout


def explain(home: Path, doc: str, email: str) -> str:
    r = subprocess.run([clearance_exe(), "--home", str(home), "explain", doc, "--as", email,
                        "--config", str(home / "clearance.toml")],
                       capture_output=True, text=True, env=cli_env(), timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_the_demo_prints_no_canned_reasons(demo: tuple[Path, str]) -> None:
    _, stdout = demo
    assert "(why they differ:" not in stdout
    people = json.loads((Path(__file__).parents[2] / "apps/demo/acme_people.json").read_text())
    assert all("why" not in item for item in people["demo"])


def test_explanation_matches_the_answers_it_printed(demo: tuple[Path, str]) -> None:
    home, stdout = demo
    rounds = parse(stdout)
    assert len(rounds) == 2 and all(len(r.cited) == 2 for r in rounds), stdout
    refused_somewhere = 0
    for rnd in rounds:
        people = list(rnd.cited)
        # Every document cited to anyone is explained, naming exactly whom it was cited to.
        expected: dict[str, set[str]] = {}
        for person, docs in rnd.cited.items():
            for doc in docs:
                expected.setdefault(doc, set()).add(person)
        assert rnd.cited_to == expected, (rnd.question, rnd.cited_to, expected)
        for doc, cited_to in rnd.cited_to.items():
            for person in people:
                verdict, rest = rnd.access[(doc, person)]
                if person in cited_to:
                    assert verdict == "yes", (doc, person, rest)  # cited, so readable
                if verdict == "no":
                    refused_somewhere += 1
                    assert "not met; needs one of" in rest or "deny:" in rest, rest
                # The demo's words are the product's explain, for the same person and document.
                product = explain(home, doc, person).splitlines()[1:]
                assert rest == "; ".join(line.strip() for line in product)[len(verdict) + 2:]
    assert refused_somewhere >= 2, "each question must show a document one person cannot read"


def test_salary_band_is_cited_to_hr_and_alice_misses_the_hr_gate(
        demo: tuple[Path, str]) -> None:
    rnd = parse(demo[1])[0]
    doc = "acme:hr/salary-bands-2026.md"
    assert doc in rnd.cited["carol.diaz@acme.example"]
    assert doc not in rnd.cited["alice.chen@acme.example"]
    verdict, rest = rnd.access[(doc, "alice.chen@acme.example")]
    assert verdict == "no" and re.search(r"needs one of group:(\S+:)?hr\b", rest), rest


def test_demo_json_carries_the_explanations(tmp_path: Path) -> None:
    r = subprocess.run([clearance_exe(), "--home", str(tmp_path / "h"), "demo", "--json"],
                       capture_output=True, text=True, env=cli_env(), timeout=600)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    for item in data["explanations"]:
        cited = {a["as"] for a in data["answers"] if a["question"] == item["question"]
                 and item["doc_id"] in {c["doc_id"] for c in a["citations"]}}
        assert set(item["cited_to"]) == cited
        for email in item["cited_to"]:
            assert item["access"][email]["allowed"] is True
    assert any(not d["allowed"] for item in data["explanations"] for d in item["access"].values())
