"""Who is compared with whom: frozen evaluation pair lists and training batches.

Evaluation uses the FVC protocol (Maio et al., FVC2000-2006): genuine = every pair of impressions
of the same finger; impostor = the first impression of each finger against the first impression of
every other finger. ``all_pairs`` is the variant with every cross-identity pair, for when the FVC
impostor count is too small to measure a low FMR. Pair lists are saved to JSON so that every model
is scored on exactly the same comparisons. ``enrollment_trials`` is the ``enrollK`` protocol of a
door lock: a template from each finger's first K impressions, probed by its later ones.

Training batches hold ``m`` samples of each of ``P`` identities (the "PK" sampling that triplet
and contrastive losses with in-batch mining need: every sample has positives and negatives).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .errors import ConfigError, DatasetError
from .types import Pair, SampleId, Trial

__all__ = [
    "MAX_IMPOSTOR",
    "Protocol",
    "natural_key",
    "fvc_pairs",
    "all_pairs",
    "enrollment_trials",
    "save_pairs",
    "load_pairs",
    "batch_indices",
]

PAIRS_FORMAT = "siamid-pairs"
PAIRS_VERSION = 1

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """Sort key that orders digit runs by value: take ``"10"`` comes after ``"9"``.

    Splitting on digit runs puts text at even positions and numbers at odd ones, so two keys
    never compare a str with an int. The raw text breaks ties such as ``"01"`` vs ``"1"``.
    """
    parts = _DIGITS.split(text)
    return (tuple(int(p) if k % 2 else p.lower() for k, p in enumerate(parts)), text)


def _group(ids: Iterable[SampleId]) -> list[list[SampleId]]:
    """Samples grouped by identity; identities and takes in natural order. Refuses duplicates."""
    groups: dict[str, list[SampleId]] = {}
    seen: set[SampleId] = set()
    for sample_id in ids:
        if not isinstance(sample_id, SampleId):
            raise DatasetError(f"expected SampleId, got {sample_id!r}")
        if sample_id in seen:
            raise DatasetError(
                f"sample {sample_id} appears twice; each image must be listed once "
                "(a sample compared with itself would be a fake genuine pair)"
            )
        seen.add(sample_id)
        groups.setdefault(sample_id.identity, []).append(sample_id)
    if not groups:
        raise DatasetError("no samples: cannot make pairs from an empty sample list")
    ordered = sorted(groups, key=natural_key)
    return [sorted(groups[name], key=lambda s: natural_key(s.take)) for name in ordered]


def _genuine(groups: list[list[SampleId]]) -> list[Pair]:
    return [Pair(a, b, True) for takes in groups for a, b in itertools.combinations(takes, 2)]


def fvc_pairs(ids: Sequence[SampleId]) -> list[Pair]:
    """The FVC protocol's pairs: genuine first, then impostor, in a fixed order.

    Genuine: every pair (i < j) of impressions of the same identity. Impostor: the first
    impression (smallest take in natural order) of each identity against the first of every other
    identity (i < j). ``n`` identities with ``k`` impressions each give ``n*k*(k-1)/2`` genuine
    and ``n*(n-1)/2`` impostor pairs (FVC set B, 10 x 8: 280 and 45).
    """
    groups = _group(ids)
    firsts = [takes[0] for takes in groups]
    impostor = [Pair(a, b, False) for a, b in itertools.combinations(firsts, 2)]
    return _genuine(groups) + impostor


def all_pairs(
    ids: Sequence[SampleId], max_impostor: int | None = None, seed: int = 0
) -> list[Pair]:
    """Genuine pairs as in ``fvc_pairs``, impostor = every cross-identity pair of samples.

    With ``max_impostor``, a uniform random subset of that many impostor pairs (without
    replacement, chosen by ``seed``, returned in the canonical order) is drawn without listing
    all of them first, so it stays cheap when the full count is in the billions.
    """
    if max_impostor is not None and (isinstance(max_impostor, bool) or max_impostor < 0):
        raise ConfigError(f"max_impostor must be a count >= 0 or None, got {max_impostor!r}")
    groups = _group(ids)
    flat = [s for takes in groups for s in takes]
    # Samples are contiguous per identity, so sample i's impostor partners are exactly the
    # samples from the end of its identity's block to the end of the list.
    block_end = np.cumsum([len(takes) for takes in groups])
    ends = np.repeat(block_end, [len(takes) for takes in groups])
    partners = len(flat) - ends
    total = int(partners.sum())
    if max_impostor is None or max_impostor >= total:
        chosen = np.arange(total, dtype=np.int64)
    else:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(total, size=int(max_impostor), replace=False))
    starts = np.concatenate([[0], np.cumsum(partners)])
    first = np.searchsorted(starts, chosen, side="right") - 1
    second = ends[first] + (chosen - starts[first])
    impostor = [Pair(flat[i], flat[j], False) for i, j in zip(first.tolist(), second.tolist())]
    return _genuine(groups) + impostor


#: The one cap on impostor comparisons: beyond it a protocol draws a seeded uniform subset, so
#: memory and time stay bounded on large sets (a validation split of 240 synthetic fingers x 8
#: has 1.8 million cross-finger pairs). Every scorer, model or classical, uses it, so both meet
#: exactly the same comparisons.
MAX_IMPOSTOR = 200_000

_ENROLL = re.compile(r"enroll([1-9][0-9]*)")


@dataclass(frozen=True)
class Protocol:
    """Who is compared with whom: ``fvc``, ``all`` or ``enrollK``.

    ``kind`` is ``"fvc"`` (FVC pairs), ``"all"`` (every cross-identity pair) or ``"enroll"``
    (K-image templates probed by later impressions, see ``enrollment_trials``); ``size`` is K,
    the number of signatures a probe is compared against (1 for the pair protocols).
    ``Protocol.parse("enroll3")`` reads the names users type; ``str()`` gives them back.
    """

    kind: str
    size: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("fvc", "all", "enroll"):
            raise ConfigError(f"unknown protocol kind {self.kind!r}; use fvc, all or enroll")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ConfigError(f"templates need K >= 1 images, got {self.size!r}")
        if self.kind != "enroll" and self.size != 1:
            raise ConfigError(f"protocol {self.kind} compares single images, not {self.size}")

    @classmethod
    def parse(cls, name: str) -> "Protocol":
        """``fvc``, ``all`` or ``enrollK`` (``enroll3``: 3-image templates); ConfigError naming
        the protocols for anything else."""
        text = str(name).strip()
        if text in ("fvc", "all"):
            return cls(text)
        found = _ENROLL.fullmatch(text)
        if found is None:
            raise ConfigError(
                f"unknown protocol {name!r}; use fvc, all or enrollK (K images per template, "
                "e.g. enroll3)"
            )
        return cls("enroll", int(found.group(1)))

    @classmethod
    def parse_list(cls, text: str) -> tuple["Protocol", ...]:
        """A comma-separated list (``both`` = ``fvc,all``); ConfigError if it names none."""
        names = [p.strip() for p in str(text).replace("both", "fvc,all").split(",") if p.strip()]
        if not names:
            raise ConfigError(f"no protocol in {text!r}; use fvc, all, enrollK or both")
        return tuple(cls.parse(n) for n in names)

    def __str__(self) -> str:
        return f"enroll{self.size}" if self.kind == "enroll" else self.kind

    @property
    def uses_templates(self) -> bool:
        """Whether the comparisons are Trials (probe vs K-image template), not Pairs."""
        return self.kind == "enroll"

    def comparisons(self, ids: Sequence[SampleId], max_impostor: int = MAX_IMPOSTOR,
                    seed: int = 0) -> list[Pair] | list[Trial]:
        """This protocol's comparisons of ``ids``: Pairs for fvc/all, Trials for enrollK.
        Impostor comparisons beyond ``max_impostor`` are a seeded uniform subset (the FVC
        protocol's are never sampled: it has one per pair of identities)."""
        if self.kind == "fvc":
            return fvc_pairs(ids)
        if self.kind == "all":
            return all_pairs(ids, max_impostor=max_impostor, seed=seed)
        return enrollment_trials(ids, self.size, max_impostor=max_impostor, seed=seed)


def enrollment_trials(
    ids: Sequence[SampleId], k: int, max_impostor: int | None = None, seed: int = 0
) -> list[Trial]:
    """Verification attempts with ``k``-image templates: the ``enrollK`` protocol.

    Each identity with at least ``k`` takes enrolls its first ``k`` (natural order); its later
    takes are probes. Genuine: each probe against its own identity's template. Impostor: each
    probe against every other identity's template (an identity with exactly ``k`` takes is only
    a template; one with fewer is left out). With ``max_impostor``, a seeded uniform subset of
    the impostor attempts. Genuine first, then impostor, grouped by template.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"templates need k >= 1 images, got {k!r}")
    groups = [takes for takes in _group(ids) if len(takes) >= k]
    templates = [tuple(takes[:k]) for takes in groups]
    probes = [s for takes in groups for s in takes[k:]]
    if not probes:
        raise DatasetError(
            f"no identity has more than {k} takes: nothing is left to probe {k}-image templates"
        )
    owner = np.repeat(np.arange(len(groups)), [len(takes) - k for takes in groups])
    genuine = [Trial(templates[g], s, True) for g, s in zip(owner.tolist(), probes)]
    t_idx, p_idx = np.nonzero(np.arange(len(groups))[:, None] != owner[None, :])
    if max_impostor is not None and max_impostor < len(t_idx):
        keep = np.sort(np.random.default_rng(seed).choice(len(t_idx), int(max_impostor),
                                                          replace=False))
        t_idx, p_idx = t_idx[keep], p_idx[keep]
    impostor = [Trial(templates[t], probes[p], False)
                for t, p in zip(t_idx.tolist(), p_idx.tolist())]
    return genuine + impostor


def save_pairs(pairs: Sequence[Pair], path: str | Path) -> Path:
    """Freeze a pair list as JSON (one pair per line), so every model meets the same comparisons.

    Each pair is ``[[subject, trait, take], [subject, trait, take], is_match]``; a header records
    the format, version and the genuine/impostor counts. Returns the path written.
    """
    path = Path(path)
    n_genuine = sum(1 for p in pairs if p.is_match)
    header = {
        "format": PAIRS_FORMAT,
        "version": PAIRS_VERSION,
        "n_genuine": n_genuine,
        "n_impostor": len(pairs) - n_genuine,
    }
    rows = [
        json.dumps([[p.a.subject, p.a.trait, p.a.take], [p.b.subject, p.b.trait, p.b.take],
                    bool(p.is_match)])
        for p in pairs
    ]
    head = json.dumps(header)[:-1]  # reopen the object to append the pairs array
    body = ",\n".join(rows)
    text = f'{head}, "pairs": [\n{body}\n]}}\n' if rows else f'{head}, "pairs": []}}\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_pairs(path: str | Path) -> list[Pair]:
    """Read a pair list written by ``save_pairs``; DatasetError naming the file if it is missing
    or malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"pair list not found: {path}; make one with save_pairs") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable JSON pair list: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != PAIRS_FORMAT:
        raise DatasetError(f"{path}: not a siamid pair list (no \"format\": \"{PAIRS_FORMAT}\")")
    if data.get("version") != PAIRS_VERSION:
        raise DatasetError(
            f"{path}: pair list version {data.get('version')!r} is not supported "
            f"(this siamid reads version {PAIRS_VERSION})"
        )
    pairs: list[Pair] = []
    for n, row in enumerate(data.get("pairs", [])):
        try:
            a, b, is_match = row
            if not isinstance(is_match, bool) or not all(
                isinstance(x, str) for x in (*a, *b)
            ):
                raise TypeError("wrong field types")
            pairs.append(Pair(SampleId(*a), SampleId(*b), is_match))
        except (TypeError, ValueError) as exc:
            raise DatasetError(
                f"{path}: pair {n} is malformed ({row!r}): expected "
                "[[subject, trait, take], [subject, trait, take], true|false]"
            ) from exc
    return pairs


def batch_indices(
    labels: Sequence[str],
    identities_per_batch: int,
    samples_per_identity: int,
    rng: np.random.Generator,
    include: str | None = None,
) -> np.ndarray:
    """Indices into ``labels`` for one training batch: ``P`` identities x ``m`` samples.

    ``include`` names an identity every batch must hold (the owner, in owner-vs-others
    training); it takes the first drawn identity's place when the draw missed it.

    Identities are drawn without replacement; ``P`` is capped at the number of identities there
    are (a small split still trains, with smaller batches). Within an identity the ``m`` samples
    are drawn without replacement when it has at least ``m`` of them, with replacement otherwise.
    The result (int64, length ``P * m``) is grouped: entries ``[k*m, (k+1)*m)`` share a label.
    Raises DatasetError with fewer than 2 identities (no negatives), ConfigError if ``P < 2`` or
    ``m < 2`` (a batch then has no negatives or no positives).
    """
    if identities_per_batch < 2:
        raise ConfigError(
            f"identities_per_batch must be at least 2 (a batch needs negatives), "
            f"got {identities_per_batch}"
        )
    if samples_per_identity < 2:
        raise ConfigError(
            f"samples_per_identity must be at least 2 (a batch needs positives), "
            f"got {samples_per_identity}"
        )
    names, inverse = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    if names.size < 2:
        raise DatasetError(
            f"training needs at least 2 identities, found {names.size} "
            f"({', '.join(names[:1]) or 'no samples'}); add data or change the split"
        )
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=names.size)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    p = min(int(identities_per_batch), names.size)
    m = int(samples_per_identity)
    chosen = rng.choice(names.size, size=p, replace=False)
    if include is not None:
        where = np.flatnonzero(names == include)
        if where.size == 0:
            raise DatasetError(f"identity {include!r} is not among the training labels")
        if where[0] not in chosen:
            chosen[0] = where[0]
    out = np.empty(p * m, dtype=np.int64)
    for k, identity in enumerate(chosen):
        n = int(counts[identity])
        within = rng.choice(n, size=m, replace=n < m)
        out[k * m:(k + 1) * m] = order[starts[identity] + within]
    return out
