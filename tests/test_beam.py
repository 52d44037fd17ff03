"""Constrained beam search vs brute-force scoring and vs transformers' generate()."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import T5Config, T5ForConditionalGeneration

from gensar.decode.beam import beam_search, constrained_beam_search
from gensar.decode.lm_head import OutputHead
from gensar.decode.reference import DictTrie, brute_force_scores, hf_constrained_generate
from gensar.decode.t5_decoder import T5BeamDecoder
from gensar.decode.t5_fused import T5Weights
from gensar.errors import GensarError
from gensar.ids.trie import IdTrie

VOCAB = 24
BEHAVIOR = 2  # stands for a behavior token such as <rec>
CODES = range(3, VOCAB)  # identifier tokens (0 pad/start, 1 eos, 2 behavior)

# Tolerances come from the arithmetic, so they hold for any thread count, batch shape or CPU kernel
# (each sums in its own order). Two float32 evaluations of a logit differ by a few eps times the size
# of the terms it sums, sum_i |h_i W_vi|, not times the logit itself: a logit that cancels to ~0 from
# terms of size 100 is off by ~100 eps (the flake was 1.1e-5 on a logit of 0.04 with terms of 150).
# Measured here: at most 2 eps x that size, at 1 and 2 threads. SLACK leaves room for other kernels;
# a real bug (a wrong cache row, position bias or beam origin) moves logits by over 1e-2 x that size.
EPS = torch.finfo(torch.float32).eps
SLACK = 16


def logit_tol(hidden: torch.Tensor, weight: torch.Tensor) -> float:
    """Tolerance for logits ``hidden @ weight.T`` computed two ways: SLACK eps x the largest term sum."""
    return SLACK * EPS * float((hidden.abs() @ weight.abs().T).max())


def score_tol(model: T5ForConditionalGeneration, ids: torch.Tensor, mask: torch.Tensor, steps: int) -> float:
    """Tolerance for log-probs summed over ``steps`` decoding steps: each step adds a logit and a
    log-sum-exp, each off by SLACK eps x the size of the logits (measured on one pass through every token)."""
    vocab = model.config.vocab_size
    with torch.no_grad():
        every = torch.arange(vocab).expand(ids.shape[0], vocab)
        size = model(input_ids=ids, attention_mask=mask, decoder_input_ids=every).logits.abs().max()
    return 2 * steps * SLACK * EPS * float(size)


def tiny_t5(
    seed: int, vocab: int = VOCAB, encoder_layers: int = 1, overrides: dict | None = None
) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    settings = {
        "vocab_size": vocab,
        "d_model": 16,
        "d_ff": 32,
        "d_kv": 4,
        "num_heads": 2,
        "num_layers": encoder_layers,
        "num_decoder_layers": 2,
        "relative_attention_num_buckets": 8,
        "dropout_rate": 0.0,
        "decoder_start_token_id": 0,
        "pad_token_id": 0,
        "eos_token_id": 1,
    }
    cfg = T5Config(**(settings | (overrides or {})))
    model = T5ForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # sharper distributions than the default init, so rankings have few near-ties
        model.lm_head.weight.mul_(8.0)
    return model


def encoder_inputs(seed: int, batch: int, length: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, length - 2 :] = 0  # a padded example
    return ids, mask


def assert_same_ranking(items, scores, ref_scores_by_item: dict[int, float], k: int, tol: float):
    """``items`` is a valid top-k of the reference up to ties, and ``scores`` are the true log-probs."""
    ranked = sorted(ref_scores_by_item.values(), reverse=True)[:k]
    got = [int(i) for i in items[:k]]
    assert len(set(got)) == len(got)
    for pos, item in enumerate(got):
        assert scores[pos] == pytest.approx(ref_scores_by_item[item], abs=tol)
        assert ref_scores_by_item[item] == pytest.approx(ranked[pos], abs=tol)


def prefix_free(seqs):
    kept = []
    for s in sorted(set(seqs), key=len):
        if not any(s[: len(k)] == k for k in kept):
            kept.append(s)
    return kept


identifier_sets = st.lists(
    st.lists(st.sampled_from(list(CODES)[:6]), min_size=1, max_size=4).map(tuple), min_size=1, max_size=25
).map(prefix_free)


@settings(max_examples=40, deadline=None)
@given(seqs=identifier_sets, seed=st.integers(0, 10_000), small_beam=st.integers(1, 6))
def test_exhaustive_beam_equals_brute_force(seqs, seed, small_beam):
    model = tiny_t5(seed)
    ids, mask = encoder_inputs(seed, batch=2)
    trie = IdTrie.build([list(s) for s in seqs])
    ref = brute_force_scores(model, ids, mask, [BEHAVIOR], seqs)  # [B, M]
    n = len(seqs)
    tol = score_tol(model, ids, mask, steps=trie.max_depth + 1)

    # beam >= number of items: the search is exhaustive and must return brute-force ranking.
    out = constrained_beam_search(model, ids, mask, trie, [BEHAVIOR], beam_size=n + 2)
    assert (
        out.items.shape == (2, n + 2)
        and out.scores.shape == (2, n + 2)
        and out.tokens.shape == (2, n + 2, trie.max_depth)
    )
    for b in range(2):
        assert sorted(out.items[b, :n].tolist()) == list(range(n))  # every item exactly once
        assert out.items[b, n:].tolist() == [-1, -1] and torch.isinf(out.scores[b, n:]).all()
        assert_same_ranking(out.items[b], out.scores[b], dict(enumerate(ref[b].tolist())), k=n, tol=tol)
        for j, item in enumerate(out.items[b, :n].tolist()):
            assert tuple(t for t in out.tokens[b, j].tolist() if t >= 0) == seqs[item]

    # any beam: only real items, each scored with its true log-prob, best first.
    small = constrained_beam_search(model, ids, mask, trie, [BEHAVIOR], beam_size=small_beam)
    for b in range(2):
        got = small.items[b][small.items[b] >= 0].tolist()
        assert len(got) == min(small_beam, n) and len(set(got)) == len(got)
        for item, score in zip(got, small.scores[b].tolist()):
            assert score == pytest.approx(float(ref[b, item]), abs=tol)
        assert (small.scores[b, :-1] >= small.scores[b, 1:]).all()


def test_matches_transformers_generate_with_prefix_allowed_tokens_fn():
    rng = np.random.default_rng(1)
    codes = np.unique(rng.integers(3, VOCAB, size=(80, 3)), axis=0)
    seqs = [tuple(c) for c in codes.tolist()]
    model = tiny_t5(7, encoder_layers=2)  # generate() sizes its cache by num_layers: keep them equal
    ids, mask = encoder_inputs(7, batch=4)
    ours = constrained_beam_search(model, ids, mask, IdTrie.build(codes), [BEHAVIOR], beam_size=8, top_k=5)
    items, scores = hf_constrained_generate(
        model, ids, mask, DictTrie(seqs), torch.tensor([BEHAVIOR]), 3, 8, 5
    )
    assert (items >= 0).all()
    tol = score_tol(model, ids, mask, steps=4)
    torch.testing.assert_close(ours.scores, scores, atol=tol, rtol=0)
    for b in range(4):
        for pos in range(5):  # same item unless the two candidates tie
            if ours.items[b, pos] != items[b, pos]:
                assert abs(float(scores[b, pos]) - float(ours.scores[b, pos])) < tol


def test_candidate_lists_forest():
    rng = np.random.default_rng(2)
    codes = np.unique(rng.integers(3, VOCAB, size=(60, 3)), axis=0)
    seqs = [tuple(c) for c in codes.tolist()]
    cands = np.stack([rng.choice(len(codes), size=10, replace=False) for _ in range(3)])
    cands[2, 7:] = -1  # a shorter list
    model = tiny_t5(3)
    ids, mask = encoder_inputs(3, batch=3)
    prefix = torch.tensor([[BEHAVIOR], [BEHAVIOR + 1], [BEHAVIOR]])  # per-example forced token
    forest = IdTrie.build_forest(codes, cands)
    out = constrained_beam_search(model, ids, mask.bool(), forest, prefix, beam_size=12)  # bool mask works too
    ref = brute_force_scores(model, ids, mask, prefix, seqs)  # [B, all items]
    tol = score_tol(model, ids, mask, steps=4)
    for b in range(3):
        allowed = [int(i) for i in cands[b] if i >= 0]
        assert set(out.items[b][out.items[b] >= 0].tolist()) == set(allowed)
        assert_same_ranking(
            out.items[b], out.scores[b], {i: float(ref[b, i]) for i in allowed}, k=len(allowed), tol=tol
        )
    # roots= picks a root of a larger forest for each example
    again = constrained_beam_search(
        model,
        ids[1:2],
        mask[1:2],
        forest,
        prefix[1:2],
        beam_size=12,
        roots=torch.tensor([1]),
    )
    torch.testing.assert_close(again.scores[0], out.scores[1], atol=tol, rtol=0)  # batch of 1 vs of 3


def test_unconstrained_exhaustive_beam_equals_brute_force():
    vocab = 6
    model = tiny_t5(5, vocab=vocab)
    ids = torch.randint(0, vocab, (2, 5), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    every = [(a, b) for a in range(vocab) for b in range(vocab)]
    ref = brute_force_scores(model, ids, mask, [], every)  # [B, 36], no forced prefix
    out = beam_search(model, ids, mask, [], num_steps=2, beam_size=len(every), top_k=10)
    assert out.tokens.shape == (2, 10, 2)
    tol = score_tol(model, ids, mask, steps=2)
    for b in range(2):
        got = [every.index(tuple(t)) for t in out.tokens[b].tolist()]
        assert_same_ranking(got, out.scores[b], dict(enumerate(ref[b].tolist())), k=10, tol=tol)


def test_fewer_items_than_k_pads():
    model = tiny_t5(0)
    ids, mask = encoder_inputs(0, batch=2)
    out = constrained_beam_search(
        model,
        ids,
        mask,
        IdTrie.build([[3, 4], [5, 6]], item_indices=[7, 9]),
        [BEHAVIOR],
        beam_size=5,
        top_k=4,
    )
    assert out.items.shape == (2, 4)
    assert sorted(out.items[0, :2].tolist()) == [7, 9] and out.items[:, 2:].eq(-1).all()
    assert torch.isneginf(out.scores[:, 2:]).all() and out.tokens[:, 2:].eq(-1).all()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "feed_forward_proj": "gated-gelu",
            "tie_word_embeddings": False,
            "num_decoder_layers": 3,
        },  # T5 v1.1 style
        {
            "relative_attention_num_buckets": 4,
            "relative_attention_max_distance": 4,
            "d_kv": 6,
        },  # far-bucket bias
    ],
)
def test_t5_beam_decoder_matches_model_forward(overrides):
    model = tiny_t5(11, overrides=overrides)
    ids, mask = encoder_inputs(11, batch=2)
    g = torch.Generator().manual_seed(1)
    # 12 tokens: past the relative-position bucket limits of the third config, and past the 8
    # positions of the decoder's first position-bias table (it grows)
    seqs = torch.randint(2, VOCAB, (2, 3, 12), generator=g)  # [B, beams, T]: 3 different continuations each
    seqs[:, :, 0] = 0  # decoder start
    seqs[:, :, 1:3] = seqs[:, :1, 1:3]  # a shared 2-token prefix per example
    ref = model(
        input_ids=ids.repeat_interleave(3, 0),
        attention_mask=mask.repeat_interleave(3, 0),
        decoder_input_ids=seqs.view(6, 12),
    ).logits.view(2, 3, 12, -1)  # [B, beams, T, V]
    with torch.inference_mode():
        # the fused encoder (padded inputs included) against transformers' own
        torch.testing.assert_close(
            T5Weights.of(model).encode(ids, mask),
            model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state,
            atol=1e-5, rtol=1e-5,
        )
        dec = T5BeamDecoder(model, ids, mask)
        hidden = dec.start(seqs[:, 0, 1:3])  # [B, d]: one row per example
        tol = logit_tol(hidden, dec.head.weight)
        torch.testing.assert_close(dec.head.logits(hidden), ref[:, 0, 2], atol=tol, rtol=0)
        origin = torch.arange(2).repeat_interleave(3)  # expand to 3 rows per example
        for t in range(3, 12):
            hidden = dec.advance(origin, seqs[:, :, t].reshape(-1))  # [B*3, d]
            tol = logit_tol(hidden, dec.head.weight)
            torch.testing.assert_close(dec.head.logits(hidden).view(2, 3, -1), ref[:, :, t], atol=tol, rtol=0)
            origin = torch.arange(6)


def test_beam_rows_follow_their_origin():
    model = tiny_t5(12)
    ids, mask = encoder_inputs(12, batch=2)
    with torch.inference_mode():
        dec = T5BeamDecoder(model, ids, mask)
        dec.start(torch.tensor([[5], [6]]))
        dec.advance(torch.tensor([0, 0, 1, 1]), torch.tensor([7, 8, 9, 10]))
        swapped = dec.advance(torch.tensor([1, 0, 3, 2]), torch.tensor([4, 4, 4, 4]))  # rows swap histories
        ref = model(
            input_ids=ids.repeat_interleave(2, 0),
            attention_mask=mask.repeat_interleave(2, 0),
            decoder_input_ids=torch.tensor([[0, 5, 8, 4], [0, 5, 7, 4], [0, 6, 10, 4], [0, 6, 9, 4]]),
        ).logits
        torch.testing.assert_close(dec.head.logits(swapped), ref[:, -1], atol=logit_tol(swapped, dec.head.weight),
                                   rtol=0)


def test_output_head_chunked_reductions_equal_full_logits():
    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(1001, 8, generator=g), torch.randn(1001, generator=g)
    hidden = torch.randn(5, 8, generator=g) * 3
    head = OutputHead(weight, bias, block_elements=1000)  # forces many chunks, a ragged last one
    full = hidden @ weight.T + bias  # [5, 1001]
    # Chunks sum in another order than one matmul: logits differ by logit_tol (the bias adds a term);
    # a log-sum-exp by that much too, plus a few eps relative for its sum of 1001 exponentials.
    tol = logit_tol(hidden, weight) + SLACK * EPS * float(bias.abs().max())
    lse_rtol = SLACK * EPS
    torch.testing.assert_close(head.logsumexp(hidden), torch.logsumexp(full, 1), atol=tol, rtol=lse_rtol)
    best, tok, lse = head.topk(hidden, 7)
    ref_best, ref_tok = full.topk(7, dim=1)
    torch.testing.assert_close(best, ref_best, atol=tol, rtol=0)
    assert torch.equal(tok, ref_tok)
    torch.testing.assert_close(lse, torch.logsumexp(full, 1), atol=tol, rtol=lse_rtol)
    tokens = torch.tensor([[0, 1000, -1], [3, 3, 999], [5, -1, -1], [7, 8, 9], [1, 2, 3]])
    expected = full.gather(1, tokens.clamp(min=0)).masked_fill(tokens < 0, 0.0)
    torch.testing.assert_close(head.logits_at(hidden, tokens), expected, atol=tol, rtol=0)


def test_empty_trie_returns_padding():
    model = tiny_t5(0)
    ids, mask = encoder_inputs(0, batch=2)
    out = constrained_beam_search(model, ids, mask, IdTrie.build([]), [BEHAVIOR], beam_size=4, top_k=3)
    assert out.items.tolist() == [[-1] * 3] * 2 and torch.isneginf(out.scores).all()


def test_errors():
    model = tiny_t5(0)
    ids, mask = encoder_inputs(0, batch=2)
    trie = IdTrie.build([[3, 4], [5, 6]])
    with pytest.raises(GensarError, match="roots"):
        constrained_beam_search(
            model, ids, mask, IdTrie.build_forest(np.array([[3, 4]]), np.zeros((3, 1))), [2]
        )
    with pytest.raises(GensarError, match="top_k"):
        constrained_beam_search(model, ids, mask, trie, [2], beam_size=2, top_k=3)
    with pytest.raises(GensarError, match="prefix_tokens"):
        constrained_beam_search(model, ids, mask, trie, torch.tensor([[2], [2], [2]]))
    with pytest.raises(GensarError, match="num_steps"):
        beam_search(model, ids, mask, [2], num_steps=0)
    model.train()
    with pytest.raises(GensarError, match="eval mode"):
        constrained_beam_search(model, ids, mask, trie, [2])
