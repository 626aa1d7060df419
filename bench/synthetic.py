"""Deterministic synthetic corpora for benchmarks: Zipf-distributed words, folder ACLs, groups."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np

from core.acl import Acl

_SYLLABLES = (
    "ka ro mi tu le sa no vi de pa lo ri ne ta mo su ga be fi ho ju ke la me ni po qu ra se "
    "ti vo wa xe yo ze"
).split()


def vocabulary(size: int = 20000, seed: int = 7) -> list[str]:
    """Real English words by frequency (from the man-page set), so token counts per word and
    BM25 statistics look like real text; made-up syllable words if that set is unavailable."""
    try:
        from bench.quality.dataset import load_dataset

        counts: dict[str, int] = {}
        for _, _, text in load_dataset().documents:
            for word in re.findall(r"[a-z]{2,}", text.lower()):
                counts[word] = counts.get(word, 0) + 1
        ranked = sorted(counts, key=lambda w: (-counts[w], w))
        if len(ranked) >= size // 4:
            return ranked[:size]
    except (ImportError, OSError):
        pass
    rng = random.Random(seed)
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


class TextGenerator:
    def __init__(self, seed: int = 11, vocab_size: int = 20000) -> None:
        self.rng = np.random.default_rng(seed)
        self.vocab = vocabulary(vocab_size, seed)
        ranks = np.arange(1, len(self.vocab) + 1)  # the list is most frequent first
        weights = 1.0 / ranks**1.07
        self.p = weights / weights.sum()

    def words(self, n: int) -> list[str]:
        idx = self.rng.choice(len(self.vocab), size=n, p=self.p)
        return [self.vocab[i] for i in idx]

    def paragraph(self, n_words: int) -> str:
        words = self.words(n_words)
        sentences, i = [], 0
        while i < len(words):
            k = int(self.rng.integers(8, 20))
            s = " ".join(words[i:i + k])
            sentences.append(s[:1].upper() + s[1:] + ".")
            i += k
        return " ".join(sentences)

    def query(self) -> str:
        # Mid-frequency words: what people type is rarely the commonest or rarest terms.
        idx = self.rng.integers(50, 3000, size=int(self.rng.integers(2, 5)))
        return " ".join(self.vocab[i] for i in idx)


GROUPS = [f"group:team{i}" for i in range(40)]


def random_acl(rng: random.Random) -> Acl:
    """A realistic mix: company-wide, team-only, team within department, with a deny."""
    roll = rng.random()
    if roll < 0.25:
        return Acl.single(["domain:bench.example"])
    if roll < 0.7:
        return Acl.single(rng.sample(GROUPS, k=rng.randint(1, 3)))
    if roll < 0.9:
        return Acl.of([rng.sample(GROUPS, k=3), rng.sample(GROUPS, k=5)])
    return Acl.single(rng.sample(GROUPS, k=4), deny=[rng.choice(GROUPS)])


def caller_principals(rng: random.Random) -> frozenset[str]:
    return frozenset({"user:someone@bench.example", "domain:bench.example", "everyone",
                      *rng.sample(GROUPS, k=4)})


def write_tree(root: Path, n_docs: int, words_per_doc: tuple[int, int] = (60, 300),
               seed: int = 3) -> Path:
    """A folder tree of markdown files, 100 per folder, each folder with an .access.json."""
    rng = random.Random(seed)
    gen = TextGenerator(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / ".access.json").write_text(json.dumps({"read": ["domain:bench.example"]}))
    (root / ".groups.json").write_text(json.dumps(
        {g.split(":", 1)[1]: [f"user:u{i}@bench.example" for i in range(rng.randint(1, 6))]
         for g in GROUPS}))
    for i in range(n_docs):
        folder = root / f"f{i // 100:04d}"
        if not folder.exists():
            folder.mkdir()
            acl = random_acl(rng)
            (folder / ".access.json").write_text(json.dumps(
                {"read": sorted(acl.gates[-1]), "deny": sorted(acl.deny)}))
        n = rng.randint(*words_per_doc)
        paragraphs = [gen.paragraph(min(n, 120)) for _ in range(max(1, n // 120))]
        text = f"# Document {i}\n\n" + "\n\n".join(paragraphs) + "\n"
        (folder / f"doc{i:05d}.md").write_text(text)
    return root
