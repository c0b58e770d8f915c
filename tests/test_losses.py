"""Tests for siamid.losses on hand-computed batches."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from siamid.errors import ConfigError
from siamid.losses import (
    DEFAULT_MARGINS,
    MarginSoftmax,
    compute_loss,
    contrastive_loss,
    contrastive_pair_loss,
    pairwise_distances,
    triplet_loss,
)

S = math.sqrt(1.6)  # distance between points 2 and 3 of the hand batch


def hand_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two identities, two 2-D points each. Distances:

    d01 = 0.3, d23 = sqrt(1.6); impostors d02 = 0.4, d03 = 1.2, d12 = 0.5, d13 = 0.9.
    """
    emb = torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.0, 0.4], [1.2, 0.0]], dtype=torch.float64)
    return emb, torch.tensor([0, 0, 1, 1])


def separated_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three identities on orthogonal unit vectors, each repeated: d_ap = 0, d_an = sqrt(2)."""
    eye = torch.eye(3, dtype=torch.float32)
    emb = eye.repeat_interleave(3, dim=0)
    return emb, torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])


def test_pairwise_distances() -> None:
    emb, _ = hand_batch()
    d = pairwise_distances(emb)
    expected = torch.tensor([
        [0.0, 0.3, 0.4, 1.2],
        [0.3, 0.0, 0.5, 0.9],
        [0.4, 0.5, 0.0, S],
        [1.2, 0.9, S, 0.0],
    ], dtype=torch.float64)
    torch.testing.assert_close(d, expected, atol=1e-5, rtol=0)
    assert torch.equal(d, d.T)


def test_contrastive_pair_loss_by_hand() -> None:
    d = torch.tensor([0.5, 0.2])
    loss = contrastive_pair_loss(d, torch.tensor([True, False]), 1.0)
    assert float(loss) == pytest.approx((0.25 + 0.64) / 2)   # 0.445
    # The sign convention: a match is pulled together, a non-match pushed past the margin.
    assert float(contrastive_pair_loss(torch.tensor([0.0]), torch.tensor([True]), 1.0)) == 0.0
    assert float(contrastive_pair_loss(torch.tensor([0.0]), torch.tensor([False]), 1.0)) == 1.0
    assert float(contrastive_pair_loss(torch.tensor([1.5]), torch.tensor([False]), 1.0)) == 0.0
    assert float(contrastive_pair_loss(torch.tensor([1.5]), torch.tensor([True]), 1.0)) == 2.25
    # 0/1 integers are read as booleans: 1 = match.
    assert float(contrastive_pair_loss(d, torch.tensor([1, 0]), 1.0)) == pytest.approx(0.445)


def test_contrastive_loss_by_hand() -> None:
    emb, labels = hand_batch()
    # Genuine: (0.3^2 + 1.6) / 2 = 0.845. Impostor, margin 1: (0.6^2 + 0 + 0.5^2 + 0.1^2) / 4 = 0.155.
    loss = contrastive_loss(emb, labels, margin=1.0)
    assert float(loss) == pytest.approx(0.5 * (0.845 + 0.155), abs=1e-6)
    # Margin 0.45: only d02 = 0.4 is inside it.
    loss = contrastive_loss(emb, labels, margin=0.45)
    assert float(loss) == pytest.approx(0.5 * (0.845 + 0.05 ** 2 / 4), abs=1e-6)


def test_triplet_batch_hard_by_hand() -> None:
    emb, labels = hand_batch()
    # Anchor: hardest positive - nearest negative + 0.3
    # a0: 0.3 - 0.4 + 0.3 = 0.2;  a1: 0.3 - 0.5 + 0.3 = 0.1
    # a2: S - 0.4 + 0.3;          a3: S - 0.9 + 0.3
    expected = (0.2 + 0.1 + (S - 0.1) + (S - 0.6)) / 4
    loss = triplet_loss(emb, labels, margin=0.3, mining="batch_hard")
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_triplet_all_by_hand() -> None:
    emb, labels = hand_batch()
    # Positive triplets only: (0,1,2) 0.2, (1,0,2) 0.1, (2,3,0) S-0.1, (2,3,1) S-0.2,
    # (3,2,0) S-0.9, (3,2,1) S-0.6; (0,1,3) and (1,0,3) are inactive.
    active = [0.2, 0.1, S - 0.1, S - 0.2, S - 0.9, S - 0.6]
    loss = triplet_loss(emb, labels, margin=0.3, mining="all")
    assert float(loss) == pytest.approx(sum(active) / len(active), abs=1e-6)


def semi_hard_reference(emb: torch.Tensor, labels: list[int], margin: float) -> float:
    """FaceNet semi-hard mining written out with loops, as an independent reference."""
    n = len(labels)
    d = [[float((emb[i] - emb[j]).norm()) for j in range(n)] for i in range(n)]
    terms = []
    for a, p in itertools.permutations(range(n), 2):
        if labels[a] != labels[p]:
            continue
        negs = [d[a][k] for k in range(n) if labels[k] != labels[a]]
        farther = [x for x in negs if x > d[a][p]]
        neg = min(farther) if farther else min(negs)
        terms.append(max(d[a][p] - neg + margin, 0.0))
    return sum(terms) / len(terms)


def test_triplet_semi_hard_by_hand() -> None:
    # 1-D points (as 2-D): A at 0, 0.2, 0.5; B at 0.6, 1.5, 2.0.
    xs = [0.0, 0.2, 0.5, 0.6, 1.5, 2.0]
    emb = torch.tensor([[x, 0.0] for x in xs], dtype=torch.float64)
    labels = [0, 0, 0, 1, 1, 1]
    loss = triplet_loss(emb, torch.tensor(labels), margin=0.3, mining="semi_hard")
    # Anchor 0, positive 0.2: negatives 0.6, 1.5, 2.0, all farther, nearest 0.6 -> 0.2-0.6+0.3 < 0.
    # Anchor 0, positive 0.5: nearest farther negative 0.6 -> 0.5 - 0.6 + 0.3 = 0.2 (and so on).
    hand = {
        (0, 1): 0.0, (0, 2): 0.2, (1, 0): 0.2 - 0.4 + 0.3, (1, 2): 0.3 - 0.4 + 0.3, (2, 0): 0.0, (2, 1): 0.0,
        # A anchors see negatives at: 0 -> 0.6, 1.5, 2.0; 0.2 -> 0.4, 1.3, 1.8; 0.5 -> 0.1, 1.0, 1.5.
        # B anchors: 0.6 has negatives at 0.6, 0.4, 0.1; 1.5 at 1.5, 1.3, 1.0; 2.0 at 2.0, 1.8, 1.5.
        (3, 4): 0.9 - 0.1 + 0.3,      # none farther than 0.9 -> hardest 0.1
        (3, 5): 1.4 - 0.1 + 0.3,
        (4, 3): 0.9 - 1.0 + 0.3,      # farther than 0.9: 1.0
        (4, 5): 0.0,                  # 0.5 - 1.0 + 0.3 < 0
        (5, 3): 1.4 - 1.5 + 0.3,      # farther than 1.4: 1.5
        (5, 4): 0.0,                  # 0.5 - 1.5 + 0.3 < 0
    }
    expected = sum(hand.values()) / len(hand)
    assert expected == pytest.approx(3.6 / 12)
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    assert float(loss) == pytest.approx(semi_hard_reference(emb, labels, 0.3), abs=1e-6)


def test_triplet_semi_hard_matches_reference_on_random_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(12, 4, generator=gen, dtype=torch.float64), dim=1)
    labels = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    loss = triplet_loss(emb, torch.tensor(labels), margin=0.3, mining="semi_hard")
    assert float(loss) == pytest.approx(semi_hard_reference(emb, labels, 0.3), abs=1e-6)


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "all"])
def test_triplet_zero_for_separated_clusters(mining: str) -> None:
    emb, labels = separated_batch()
    loss = triplet_loss(emb, labels, margin=0.3, mining=mining)
    assert torch.isfinite(loss)
    assert float(loss) == pytest.approx(0.0, abs=1e-5)


def test_contrastive_zero_for_separated_clusters() -> None:
    emb, labels = separated_batch()
    assert float(contrastive_loss(emb, labels, 1.0)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("mining", ["batch_hard", "semi_hard", "all"])
def test_triplet_finite_on_random_batch(mining: str) -> None:
    gen = torch.Generator().manual_seed(1)
    emb = torch.nn.functional.normalize(torch.randn(16, 8, generator=gen), dim=1)
    labels = torch.arange(4).repeat_interleave(4)
    loss = triplet_loss(emb, labels, margin=0.3, mining=mining)
    assert torch.isfinite(loss) and float(loss) > 0.0


@pytest.mark.parametrize("name, mining", [
    ("triplet", "batch_hard"), ("triplet", "semi_hard"), ("triplet", "all"), ("contrastive", ""),
])
def test_gradients_flow(name: str, mining: str) -> None:
    # A hard batch: identities interleaved, so every loss is active.
    gen = torch.Generator().manual_seed(2)
    raw = torch.randn(8, 4, generator=gen, requires_grad=True)
    emb = torch.nn.functional.normalize(raw, dim=1)
    labels = torch.tensor([0, 1, 0, 1, 2, 3, 2, 3])
    loss = compute_loss(name, emb, labels, mining=mining or "batch_hard")
    assert float(loss.detach()) > 0
    loss.backward()
    assert raw.grad is not None
    assert torch.isfinite(raw.grad).all()
    assert float(raw.grad.abs().sum()) > 0


@pytest.mark.parametrize("name, mining", [
    ("triplet", "batch_hard"), ("triplet", "semi_hard"), ("triplet", "all"), ("contrastive", ""),
])
def test_gradient_finite_with_identical_embeddings(name: str, mining: str) -> None:
    """Duplicate signatures (distance 0) must not give NaN gradients (the sqrt epsilon)."""
    raw = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.9, 0.1]], requires_grad=True)
    loss = compute_loss(name, raw, torch.tensor([0, 0, 1, 1]), mining=mining or "batch_hard")
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(raw.grad).all()


def test_compute_loss_dispatch_and_default_margins() -> None:
    emb, labels = hand_batch()
    assert DEFAULT_MARGINS == {"contrastive": 1.0, "triplet": 0.3, "cosface": 0.35, "arcface": 0.5}
    assert torch.equal(compute_loss("contrastive", emb, labels), contrastive_loss(emb, labels, 1.0))
    assert torch.equal(compute_loss("contrastive", emb, labels, margin=0.45),
                       contrastive_loss(emb, labels, 0.45))
    for mining in ("batch_hard", "semi_hard", "all"):
        assert torch.equal(compute_loss("triplet", emb, labels, mining=mining),
                           triplet_loss(emb, labels, 0.3, mining))
    # A larger margin gives a larger batch-hard loss: by 0.2 on each of the 4 active anchors.
    bigger = compute_loss("triplet", emb, labels, margin=0.5)
    assert float(bigger) == pytest.approx(float(compute_loss("triplet", emb, labels)) + 0.2, abs=1e-6)


def test_compute_loss_errors() -> None:
    emb, labels = hand_batch()
    with pytest.raises(ConfigError, match="'sphereface'") as info:
        compute_loss("sphereface", emb, labels)
    assert "triplet" in str(info.value) and "cosface" in str(info.value)
    with pytest.raises(ConfigError, match="MarginSoftmax head"):
        compute_loss("arcface", emb, labels)
    with pytest.raises(ConfigError, match="MarginSoftmax head"):
        compute_loss("arcface", emb, labels, head=MarginSoftmax(2, 2, "cosface"))
    with pytest.raises(ConfigError, match="'hardest'"):
        compute_loss("triplet", emb, labels, mining="hardest")
    one_identity = torch.zeros(4, dtype=torch.long)
    for name in ("triplet", "contrastive"):
        with pytest.raises(ConfigError, match="2 identities"):
            compute_loss(name, emb, one_identity)
    all_distinct = torch.arange(4)
    for name in ("triplet", "contrastive"):
        with pytest.raises(ConfigError, match="2 samples"):
            compute_loss(name, emb, all_distinct)


def test_batch_hard_skips_anchors_without_positive() -> None:
    # Point 2 is alone in its identity: it is a negative but never an anchor.
    emb = torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.0, 0.4]], dtype=torch.float64)
    loss = triplet_loss(emb, torch.tensor([0, 0, 1]), margin=0.3, mining="batch_hard")
    assert float(loss) == pytest.approx((0.2 + 0.1) / 2, abs=1e-6)


def _proxy_head(kind: str, margin: float = 0.0) -> MarginSoftmax:
    head = MarginSoftmax(2, 2, kind, margin, scale=10.0).double()
    with torch.no_grad():
        head.proxies.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))  # unit x and (scaled) unit y
    return head


@pytest.mark.parametrize("kind", ["cosface", "arcface"])
def test_margin_softmax_by_hand(kind: str) -> None:
    # One signature at 60 degrees from proxy 0 (30 from proxy 1), labelled 0.
    emb = torch.tensor([[0.5, math.sqrt(3) / 2]], dtype=torch.float64)
    head = _proxy_head(kind).requires_grad_(False)
    own = 0.5 - 0.35 if kind == "cosface" else math.cos(math.pi / 3 + 0.5)
    want = -math.log(math.exp(10 * own) / (math.exp(10 * own) + math.exp(10 * math.sqrt(3) / 2)))
    assert head(emb, torch.tensor([0])).item() == pytest.approx(want, rel=1e-9)
    assert float(compute_loss(kind, emb, torch.tensor([0]), head=head)) == pytest.approx(want)
    # The margin makes the same geometry cost more than plain softmax would.
    plain = _proxy_head(kind, 1e-9).requires_grad_(False)
    assert head(emb, torch.tensor([0])).item() > plain(emb, torch.tensor([0])).item()


def test_arcface_stays_finite_and_monotone_past_pi_minus_margin() -> None:
    head = _proxy_head("arcface")
    opposite = torch.tensor([[-1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = head(opposite, torch.tensor([0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(opposite.grad).all()
    # Farther from the own proxy still costs more, also beyond pi - m.
    near = head(torch.tensor([[-0.8, -0.6]], dtype=torch.float64), torch.tensor([0]))
    assert loss.item() > near.item()


def test_margin_softmax_refuses_bad_settings() -> None:
    with pytest.raises(ConfigError, match="'triplet'"):
        MarginSoftmax(4, 8, "triplet")
    with pytest.raises(ConfigError, match="2 training identities"):
        MarginSoftmax(1, 8, "cosface")
    with pytest.raises(ConfigError, match="scale"):
        MarginSoftmax(4, 8, "cosface", scale=0.0)
