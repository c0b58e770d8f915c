"""Losses on (embeddings, labels): the seed's contrastive loss, the FaceID designs' triplet loss
and the margin-based softmax losses CosFace and ArcFace.

All take a batch of L2-normalised signatures and one identity label per row (as produced by
``pairs.batch_indices``: m samples per identity). Contrastive and triplet compare the batch's
signatures with each other by Euclidean distance. CosFace (Wang et al. 2018) and ArcFace (Deng et
al. 2019) instead learn one proxy direction per training identity (``MarginSoftmax``) and ask
each signature to be closer, by an angular margin, to its own identity's proxy than to any other:
the proxies see every identity at once, where in-batch losses see 16.
"""

from __future__ import annotations

import math

import torch

from .errors import ConfigError

DEFAULT_MARGINS = {"contrastive": 1.0, "triplet": 0.3, "cosface": 0.35, "arcface": 0.5}
#: Losses that learn a proxy per training identity and so need a ``MarginSoftmax`` head.
PROXY_LOSSES = ("cosface", "arcface")
#: In-batch mining strategies of the triplet loss.
MININGS = ("batch_hard", "semi_hard", "all")


def pairwise_distances(emb: torch.Tensor) -> torch.Tensor:
    """(N, N) Euclidean distances; the epsilon keeps the gradient finite at zero distance."""
    sq = (emb.unsqueeze(1) - emb.unsqueeze(0)).pow(2).sum(-1)
    return torch.sqrt(sq + 1e-12)


def contrastive_pair_loss(distance: torch.Tensor, is_match: torch.Tensor, margin: float) -> torch.Tensor:
    """The tutorial's formula, with explicit booleans instead of its 0-means-match labels.

    mean( is_match * d^2 + (not is_match) * max(margin - d, 0)^2 )
    """
    is_match = is_match.to(torch.bool)
    match_term = distance.pow(2)
    nomatch_term = torch.clamp(margin - distance, min=0.0).pow(2)
    return torch.where(is_match, match_term, nomatch_term).mean()


def _same(labels: torch.Tensor) -> torch.Tensor:
    return labels.unsqueeze(0) == labels.unsqueeze(1)


def contrastive_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Contrastive loss over every pair in the batch, genuine and impostor halves weighted equally.

    A batch of m samples per identity has far more impostor than genuine pairs; averaging each kind
    separately keeps the balance the tutorial had with its 50/50 pair generator.
    """
    dist = pairwise_distances(emb)
    same = _same(labels)
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    genuine = same & upper
    impostor = ~same & upper
    if not genuine.any() or not impostor.any():
        raise ConfigError("contrastive loss needs at least 2 samples of an identity and 2 identities per batch")
    g = contrastive_pair_loss(dist[genuine], torch.ones_like(dist[genuine], dtype=torch.bool), margin)
    i = contrastive_pair_loss(dist[impostor], torch.zeros_like(dist[impostor], dtype=torch.bool), margin)
    return 0.5 * (g + i)


def triplet_loss(
    emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.3, mining: str = "batch_hard",
    anchors: torch.Tensor | None = None,
) -> torch.Tensor:
    """Triplet loss max(d(a,p) - d(a,n) + margin, 0) with in-batch mining.

    ``batch_hard``: for each anchor its farthest positive and nearest negative (Hermans et al.).
    ``semi_hard``: each (a, p) with the nearest negative farther than p (FaceNet), falling back to
    the hardest negative when none is. ``all``: the mean over every valid triplet with a positive loss.
    ``anchors`` (bool per sample) limits the anchors, and so the positives, to those samples: the
    owner-vs-others mode anchors on the owner's photos only.
    """
    dist = pairwise_distances(emb)
    same = _same(labels)
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos_mask = same & ~eye
    if anchors is not None:
        pos_mask = pos_mask & anchors.to(torch.bool).unsqueeze(1)
    neg_mask = ~same
    if not pos_mask.any() or not neg_mask.any():
        raise ConfigError("triplet loss needs at least 2 samples of an identity and 2 identities per batch")
    big = dist.detach().max() + 1.0
    if mining == "batch_hard":
        hardest_pos = torch.where(pos_mask, dist, torch.zeros_like(dist)).max(dim=1).values
        hardest_neg = torch.where(neg_mask, dist, big).min(dim=1).values
        valid = pos_mask.any(dim=1)
        return torch.relu(hardest_pos - hardest_neg + margin)[valid].mean()
    # (anchor, positive, negative) cube: loss[a, p, n] = d(a,p) - d(a,n) + margin
    d_ap = dist.unsqueeze(2)
    d_an = dist.unsqueeze(1)
    valid = pos_mask.unsqueeze(2) & neg_mask.unsqueeze(1)
    if mining == "semi_hard":
        farther = valid & (d_an > d_ap)
        semi = torch.where(farther, d_an.expand_as(valid), big).min(dim=2).values
        hard = torch.where(neg_mask, dist, big).min(dim=1).values.unsqueeze(1).expand_as(semi)
        chosen = torch.where(semi < big, semi, hard)
        return torch.relu(dist - chosen + margin)[pos_mask].mean()
    if mining == "all":
        losses = torch.relu(d_ap - d_an + margin)[valid]
        active = losses > 0
        return losses[active].mean() if active.any() else losses.sum() * 0.0
    raise ConfigError(f"unknown triplet mining {mining!r}; use {', '.join(MININGS)}")


def check_loss(name: str, mining: str = "all") -> None:
    """ConfigError naming the bad value unless ``name`` is a known loss and ``mining`` a known
    triplet mining (checked before training spends minutes preprocessing)."""
    if name not in DEFAULT_MARGINS:
        raise ConfigError(f"unknown loss {name!r}; use one of {', '.join(DEFAULT_MARGINS)}")
    if name == "triplet" and mining not in MININGS:
        raise ConfigError(f"unknown triplet mining {mining!r}; use {', '.join(MININGS)}")


class MarginSoftmax(torch.nn.Module):
    """CosFace / ArcFace head: one learned unit-length proxy per training identity.

    Logits are ``scale * cos(angle to each proxy)``; the own identity's logit is lowered by the
    margin, ``cos - m`` (CosFace) or ``cos(angle + m)`` (ArcFace), then softmax cross-entropy.
    Only the tower ships: the head exists during training only.
    """

    def __init__(self, n_identities: int, embedding_size: int, kind: str = "cosface",
                 margin: float = 0.0, scale: float = 30.0) -> None:
        super().__init__()
        if kind not in PROXY_LOSSES:
            raise ConfigError(f"unknown margin loss {kind!r}; use {' or '.join(PROXY_LOSSES)}")
        if n_identities < 2:
            raise ConfigError(f"{kind} needs at least 2 training identities, got {n_identities}")
        if scale <= 0:
            raise ConfigError(f"{kind} scale must be > 0, got {scale}")
        self.kind = kind
        self.margin = margin if margin > 0 else DEFAULT_MARGINS[kind]
        self.scale = scale
        self.proxies = torch.nn.Parameter(torch.randn(n_identities, embedding_size))

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(
            self.proxies, dim=1).T
        own = torch.nn.functional.one_hot(labels, cos.shape[1]).to(torch.bool)
        if self.kind == "cosface":
            target = cos - self.margin
        else:
            theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
            # Past pi - m the angle + m wraps round; fall back to a CosFace-like penalty there.
            target = torch.where(theta + self.margin < math.pi, torch.cos(theta + self.margin),
                                 cos - self.margin * math.sin(self.margin))
        logits = self.scale * torch.where(own, target, cos)
        return torch.nn.functional.cross_entropy(logits, labels)


def compute_loss(name: str, emb: torch.Tensor, labels: torch.Tensor, margin: float = 0.0,
                 mining: str = "batch_hard", head: MarginSoftmax | None = None,
                 anchors: torch.Tensor | None = None) -> torch.Tensor:
    """Dispatch by loss name; ``margin`` 0 means the loss's default (DEFAULT_MARGINS).

    ``head`` is the ``MarginSoftmax`` that CosFace and ArcFace train along with the tower;
    ``anchors`` limits the triplet loss's anchors (owner-vs-others training).
    """
    if anchors is not None and name != "triplet":
        raise ConfigError(f"owner-vs-others training uses the triplet loss, not {name!r}")
    check_loss(name, mining)
    if name in PROXY_LOSSES:
        if head is None or head.kind != name:
            raise ConfigError(f"the {name} loss needs its MarginSoftmax head (kind {name!r})")
        return head(emb, labels)
    m = margin if margin > 0 else DEFAULT_MARGINS[name]
    if name == "contrastive":
        return contrastive_loss(emb, labels, m)
    return triplet_loss(emb, labels, m, mining, anchors)
