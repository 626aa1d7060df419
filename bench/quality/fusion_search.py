"""Learning-free fusion rules scored on every set's cached candidate lists.

    python -m bench.quality.fusion_search [--sets ...] --candidates DIR [--embedder E]

Reads the candidate lists bench.quality.sets cached in DIR (run sets.py with the same
--candidates first) and scores a grid of fusion rules: the normalisation (min-max over the
candidates, min-max over the first `depth`, z-score, divide by the top score), the dense weight
(fixed, or per query from the score distributions), CombSUM vs CombMNZ, RRF with depth limits,
candidate depth, and whether chunks are grouped per document before fusing ("doc": each list's
best chunk per document) or after ("chunk", as the product did). A rule is chosen on the TUNE
halves of all sets together: the one with the largest worst margin over the best single
retriever (BM25 or dense alone), over every set and both R@5 and MRR@10. Then it is scored on
the held-out halves. Prints Markdown: the top rules by tune worst margin, with held-out figures.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.quality.sets import Question, add_set_arguments, candidates, load_set
from indexer.store.base import ChunkHit
from retriever.metrics import recall_at, reciprocal_rank

Scored = dict[str, float]  # doc_id -> fused score


@dataclass(frozen=True)
class Rule:
    norm: str = "minmax"  # minmax | minmax_d | z | top | rrf
    weight: str = "fixed"  # fixed | conf | gap
    dense_weight: float = 0.5
    depth: int = 100  # candidates used from each list
    conf_depth: int = 10
    combine: str = "sum"  # sum | mnz
    group: str = "chunk"  # chunk (fuse chunks, rank documents by best chunk) | doc
    rrf_k: int = 60

    def label(self) -> str:
        parts = [self.norm, f"w={self.weight}:{self.dense_weight}", f"depth {self.depth}",
                 self.combine, f"group {self.group}"]
        if self.weight != "fixed":
            parts.append(f"conf depth {self.conf_depth}")
        if self.norm == "rrf":
            parts.append(f"k {self.rrf_k}")
        return ", ".join(parts)


def _per_doc(hits: Sequence[ChunkHit]) -> list[ChunkHit]:
    seen: dict[str, ChunkHit] = {}
    for h in hits:  # best first: the first chunk of a document is its best
        seen.setdefault(h.doc_id, h)
    return list(seen.values())


def _normalise(scores: list[float], rule: Rule) -> tuple[list[float], float]:
    """Normalised scores and the value a candidate missing from the list gets."""
    if not scores:
        return [], 0.0
    if rule.norm == "rrf":
        return [1.0 / (rule.rrf_k + i + 1) for i in range(len(scores))], 0.0
    if rule.norm == "top":
        top = scores[0]
        return ([s / top for s in scores] if top > 0 else [1.0] * len(scores)), 0.0
    if rule.norm == "z":
        ref = scores[:max(2, rule.conf_depth)]
        mean = sum(ref) / len(ref)
        sd = (sum((x - mean) ** 2 for x in ref) / len(ref)) ** 0.5 or 1.0
        z = [(s - mean) / sd for s in scores]
        low = min(z)
        return [x - low for x in z], 0.0  # shifted so the last candidate is 0, as min-max
    top, low = scores[0], scores[-1]
    return ([(s - low) / (top - low) for s in scores] if top > low
            else [1.0] * len(scores)), 0.0


def _confidence(scores: list[float], rule: Rule) -> float:
    ref = scores[:max(2, rule.conf_depth)]
    if len(ref) < 2:
        return 0.0
    if rule.weight == "gap":  # (s1 - s2) / (s1 - s_depth)
        return (ref[0] - ref[1]) / (ref[0] - ref[-1]) if ref[0] > ref[-1] else 0.0
    mean = sum(ref) / len(ref)
    sd = (sum((x - mean) ** 2 for x in ref) / len(ref)) ** 0.5
    return (ref[0] - mean) / sd if sd > 0 else 0.0


def fuse_docs(lexical: list[ChunkHit], dense: list[ChunkHit], rule: Rule) -> list[str]:
    lists = [lexical[:rule.depth], dense[:rule.depth]]
    if rule.group == "doc":
        lists = [_per_doc(x) for x in lists]
    w = rule.dense_weight
    if rule.weight != "fixed":
        cd = w * _confidence([h.score for h in lists[1]], rule)
        cl = (1 - w) * _confidence([h.score for h in lists[0]], rule)
        w = cd / (cd + cl) if cd + cl > 0 else w
    fused: dict[int, float] = {}
    count: dict[int, int] = {}
    doc: dict[int, tuple[str, int]] = {}
    for hits, weight in ((lists[0], 1 - w), (lists[1], w)):
        normed, _ = _normalise([h.score for h in hits], rule)
        for h, s in zip(hits, normed, strict=True):
            key = hash(h.doc_id) if rule.group == "doc" else h.chunk_id
            fused[key] = fused.get(key, 0.0) + weight * s
            count[key] = count.get(key, 0) + 1
            doc.setdefault(key, (h.doc_id, h.ordinal))
    if rule.combine == "mnz":
        fused = {k: v * count[k] for k, v in fused.items()}
    order = sorted(fused, key=lambda k: (-fused[k], doc[k]))
    return list(dict.fromkeys(doc[k][0] for k in order))[:10]


Ranker = Callable[[list[ChunkHit], list[ChunkHit]], list[str]]
Cell = dict[str, tuple[float, float]]  # half -> (R@5, MRR@10)


def score_ranked(ranked_lists: Sequence[list[str]], questions: Sequence[Question]) -> Cell:
    """R@5 and MRR@10 of each question's ranked doc ids, per half."""
    acc = {h: [0.0, 0.0, 0] for h in ("tune", "held-out")}
    for ranked, (_, relevant, half) in zip(ranked_lists, questions, strict=True):
        a = acc[half]
        a[0] += recall_at(ranked, relevant, 5)
        a[1] += reciprocal_rank(ranked, relevant, 10)
        a[2] += 1
    return {h: (r / max(1, n), m / max(1, n)) for h, (r, m, n) in acc.items()}


def evaluate(lists: list[tuple[list[ChunkHit], list[ChunkHit]]], questions: list[Question],
             ranker: Ranker) -> Cell:
    return score_ranked([ranker(lx, dn) for lx, dn in lists], questions)


def best_single(lists: list[tuple[list[ChunkHit], list[ChunkHit]]],
                questions: list[Question]) -> Cell:
    """Per half and metric, the better of BM25 alone and dense alone."""
    b = evaluate(lists, questions, lambda lx, dn: list(dict.fromkeys(h.doc_id for h in lx)))
    d = evaluate(lists, questions, lambda lx, dn: list(dict.fromkeys(h.doc_id for h in dn)))
    return {h: (max(b[h][0], d[h][0]), max(b[h][1], d[h][1])) for h in b}


def worst_margin(cells: dict[str, Cell], single: dict[str, Cell], half: str) -> float:
    """The smallest (rule - best single) over every set and both metrics."""
    return min(cells[n][half][m] - single[n][half][m] for n in cells for m in (0, 1))


def grid() -> list[Rule]:
    rules = []
    weights = (0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)
    for norm, w, depth, combine, group in itertools.product(
            ("minmax", "minmax_d", "z", "top"), weights, (20, 50, 100), ("sum", "mnz"),
            ("chunk", "doc")):
        if norm == "minmax_d" or (norm == "minmax" and depth != 100):
            continue  # minmax over the first `depth` is minmax with depth < 100
        rules.append(Rule(norm=norm, dense_weight=w, depth=depth, combine=combine, group=group))
    for w, depth, k, group in itertools.product(weights, (20, 50, 100), (10, 30, 60),
                                                ("chunk", "doc")):
        rules.append(Rule(norm="rrf", dense_weight=w, depth=depth, rrf_k=k, group=group))
    for weight, w, cdepth, group in itertools.product(("conf", "gap"), (0.4, 0.5, 0.6, 0.7),
                                                      (5, 10, 20), ("chunk", "doc")):
        rules.append(Rule(weight=weight, dense_weight=w, conf_depth=cdepth, group=group))
    return rules


def main() -> None:
    ap = argparse.ArgumentParser()
    add_set_arguments(ap)
    ap.add_argument("--candidates", type=Path, required=True)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--oracle", type=int, default=0,
                    help="also print the N rules best on the HELD-OUT worst margin (a ceiling "
                         "for the report, never a choice)")
    args = ap.parse_args()
    loaded = []
    for name in args.sets:
        if not (args.candidates / f"{name}.{args.embedder}.json.gz").exists():
            print(f"<!-- {name}: no cached candidates, skipped -->")
            continue
        _, questions = load_set(name)
        lists, _ = candidates(name, args.embedder, args.candidates)
        loaded.append((name, questions, lists))
    names = [n for n, _, _ in loaded]
    single = {name: best_single(lists, questions) for name, questions, lists in loaded}
    results = []
    for rule in grid():
        cells = {name: evaluate(lists, questions, lambda lx, dn, r=rule: fuse_docs(lx, dn, r))
                 for name, questions, lists in loaded}
        results.append((worst_margin(cells, single, "tune"),
                        worst_margin(cells, single, "held-out"), rule, cells))
    results.sort(key=lambda r: -r[0])
    print(f"sets: {', '.join(names)}; {len(results)} rules; best single per set "
          "(tune R@5/MRR, held-out R@5/MRR): " + "; ".join(
              f"{n} {single[n]['tune'][0]:.3f}/{single[n]['tune'][1]:.3f}, "
              f"{single[n]['held-out'][0]:.3f}/{single[n]['held-out'][1]:.3f}" for n in names))
    print()
    print("| rule | tune worst margin | held-out worst margin | "
          + " | ".join(f"{n} held-out R@5 / MRR@10" for n in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    oracle = sorted(results, key=lambda r: -r[1])[:args.oracle]
    for t, h, rule, cells in [*results[:args.top], *oracle]:
        mark = " (oracle)" if (t, h, rule, cells) in oracle else ""
        print(f"| {rule.label()}{mark} | {t:+.3f} | {h:+.3f} | " + " | ".join(
            f"{cells[n]['held-out'][0]:.3f} / {cells[n]['held-out'][1]:.3f}" for n in names)
            + " |")


if __name__ == "__main__":
    main()
