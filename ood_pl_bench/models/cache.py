"""Reference samples Y(x) and reference log-probs: computed once, shared by every method.

Layout: ``<cache>/reference/<key>/`` with ``key.json`` (what the key hashes) and one file per
(domain, split): ``<domain>.<split>.jsonl`` for samples, ``<domain>.<split>.pairs.json`` for
pair log-probs. The key covers the policy weights (revision), precision, prompt format and
truncation, the task, the edition's data hash and, for samples, the decoding, seed and k.

Files are rewritten atomically after every chunk of prompts / pairs, so a killed run keeps what it
finished (whole domains and finished chunks of a domain) and a rerun computes only the rest.
Entries are stored by id and reused when their text is unchanged, so a larger prompt subset (a
different profile cap) reuses the smaller one's work. Samples do not depend on the other prompts
of a call (:meth:`Policy.generate` seeds each sample from seed, prompt text and sample index).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from ..io import read_json, read_jsonl, sha256_text, stable_hash, write_json, write_jsonl
from ..paths import cache_dir
from ..tasks import Decoding
from .policy import RESPONSES_PER_PACKED_ROW, Policy

CACHE_VERSION = 1
SAMPLE_CHUNK = 32   # prompts per checkpoint
PAIR_CHUNK = 64     # pairs per checkpoint


def policy_cache_fields(policy: Policy) -> dict:
    """What every reference cache key takes from the policy: weights, precision, text format."""
    return {
        "version": CACHE_VERSION, "revision": policy.resolved.revision, "source": policy.resolved.source,
        "dtype": policy.dtype, "prompt_format": policy.prompt_format, "task": policy.task.name,
        "edition": policy.task.edition, "max_prompt_tokens": policy.task.max_prompt_tokens,
        "max_response_tokens": policy.task.max_response_tokens,
    }


def samples_cache_key(policy: Policy, *, k: int, decoding: Decoding, seed: int, data_hash: str,
                      batch_size: int) -> tuple[str, dict]:
    """The key (and the fields it hashes) of a reference-samples cache."""
    # batch_size: samples are seeded per row, but in bf16 the padding of a batch moves logits by
    # rounding, which can flip a sampled token (measured: the same key at batch 16 and 32 gave
    # samples that part ways mid-sequence); the same key must mean the same values.
    fields = dict(policy_cache_fields(policy), kind="samples", k=k, decoding=dataclasses.asdict(decoding),
                  seed=seed, data_hash=data_hash, batch_size=batch_size)
    return stable_hash(fields), fields


def pairs_cache_key(policy: Policy, *, data_hash: str, batch_size: int) -> tuple[str, dict]:
    """The key (and the fields it hashes) of a reference pair log-prob cache."""
    # "scoring": pairs are scored packed by prompt (Policy.pair_logprobs), as the evaluation scores
    # pi_theta; values from an older layout (one response or one pair per row) differ in float
    # rounding, so they are not reused.
    fields = dict(policy_cache_fields(policy), kind="pair-logprobs",
                  scoring=f"packed-by-prompt-{RESPONSES_PER_PACKED_ROW}", batch_size=batch_size,
                  data_hash=data_hash)
    return stable_hash(fields), fields


def reference_samples(policy: Policy, prompts: list[dict], *, k: int, decoding: Decoding, seed: int,
                      data_hash: str, domain: str, split: str, batch_size: int = 8,
                      progress: Any = None) -> list[dict]:
    """k samples of π_ref per prompt, with their reference log-probs, cached on disk.

    ``prompts``: rows with ``prompt_id`` and ``prompt``. Returns rows in the same order:
    ``{prompt_id, prompt, samples: [{text, ref_logprob, num_tokens, finished}, ...]}``.
    ``ref_logprob`` is log π_ref(text | prompt) with the scoring truncation; unfinished samples are
    scored without EOS (as they were sampled).
    """
    key, fields = samples_cache_key(policy, k=k, decoding=decoding, seed=seed, data_hash=data_hash,
                                    batch_size=batch_size)
    folder = _folder(key, fields)
    path = folder / f"{_safe(domain)}.{_safe(split)}.jsonl"
    have: dict[str, dict] = {}
    if path.is_file():
        for row in read_jsonl(path):
            have[row["prompt_id"]] = row
    todo = [p for p in _unique(prompts, "prompt_id")
            if p["prompt_id"] not in have or have[p["prompt_id"]]["prompt"] != p["prompt"]]
    task = _start(progress, f"reference samples {domain}", len(todo))
    for lo in range(0, len(todo), SAMPLE_CHUNK):
        chunk = todo[lo:lo + SAMPLE_CHUNK]
        texts = [p["prompt"] for p in chunk]
        groups = policy.generate(texts, decoding, num_samples=k, seed=seed, batch_size=batch_size,
                                 reference=True)
        flat = [(p["prompt"], s) for p, group in zip(chunk, groups) for s in group]
        logprobs = policy.sequence_logprobs(
            [x for x, _ in flat], [s["text"] for _, s in flat], reference=True, batch_size=batch_size,
            eos=[s["finished"] for _, s in flat]).tolist() if flat else []
        it = iter(logprobs)
        for p, group in zip(chunk, groups):
            have[p["prompt_id"]] = {
                "prompt_id": p["prompt_id"], "prompt": p["prompt"],
                "samples": [{"text": s["text"], "ref_logprob": float(next(it)), "num_tokens": s["num_tokens"],
                             "finished": s["finished"]} for s in group],
            }
        write_jsonl(path, have.values())
        _advance(progress, task, len(chunk))
    return [have[p["prompt_id"]] for p in prompts]


def reference_pair_logprobs(policy: Policy, pairs: list[dict], *, data_hash: str, domain: str, split: str,
                            batch_size: int = 8, progress: Any = None) -> dict[str, tuple[float, float]]:
    """``{pair_id: (log π_ref(chosen | prompt), log π_ref(rejected | prompt))}``, cached on disk.

    Log-probs are sums over response tokens with the task's truncation (as every method scores).
    """
    key, fields = pairs_cache_key(policy, data_hash=data_hash, batch_size=batch_size)
    folder = _folder(key, fields)
    path = folder / f"{_safe(domain)}.{_safe(split)}.pairs.json"
    have: dict[str, list] = read_json(path) if path.is_file() else {}
    todo = [p for p in _unique(pairs, "pair_id")
            if p["pair_id"] not in have or have[p["pair_id"]][2] != _pair_hash(p)]
    task = _start(progress, f"reference log-probs {domain}", len(todo))
    for lo in range(0, len(todo), PAIR_CHUNK):
        chunk = todo[lo:lo + PAIR_CHUNK]
        prompts = [p["prompt"] for p in chunk]
        chosen, rejected = policy.pair_logprobs(prompts, [p["chosen"] for p in chunk],
                                                [p["rejected"] for p in chunk], reference=True,
                                                batch_size=batch_size)
        n = len(chunk)
        for p, c, r in zip(chunk, chosen.tolist(), rejected.tolist()):
            have[p["pair_id"]] = [float(c), float(r), _pair_hash(p)]
        write_json(path, have)
        _advance(progress, task, n)
    return {p["pair_id"]: (have[p["pair_id"]][0], have[p["pair_id"]][1]) for p in pairs}


def _folder(key: str, fields: dict) -> Path:
    folder = cache_dir() / "reference" / key
    if not (folder / "key.json").is_file():
        write_json(folder / "key.json", fields)
    return folder


def _safe(name: str) -> str:
    return re.sub(r"[^\w.\-]", "_", str(name))


def _pair_hash(pair: dict) -> str:
    return sha256_text("\x1f".join((pair["prompt"], pair["chosen"], pair["rejected"])))[:16]


def _unique(rows: list[dict], id_key: str) -> list[dict]:
    seen: dict[str, dict] = {}
    for row in rows:
        seen.setdefault(row[id_key], row)
    return list(seen.values())


def _start(progress: Any, description: str, total: int) -> Any:
    if progress is None or total == 0:
        return None
    return progress.add_task(description, total=total)


def _advance(progress: Any, task: Any, n: int) -> None:
    if progress is not None and task is not None:
        progress.advance(task, n)
