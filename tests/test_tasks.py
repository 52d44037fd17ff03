"""Tasks: identifiers, samples, rendering (compact and paper), the per-epoch mix."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_prepared

from gensar.config import from_dict
from gensar.data.queries import words
from gensar.errors import ConfigError, InputError
from gensar.ids.item_ids import IdMaps
from gensar.model.encoder import SampleEncoder
from gensar.model.prompts import MARKER_TOKENS, tokenizer_corpus
from gensar.model.samples import KnownSamples, Sample, TaskMix, build_samples, pseudo_queries
from gensar.model.task_config import TASKS, TaskConfig
from gensar.model.tokenizer import TokenizerConfig, build_tokenizer


def _with_suffix(ids: dict[str, list[str]], stem: str) -> dict[str, list[str]]:
    """Append ``<{stem}_x_k>`` to every member of a group of equal IDs (as gensar.ids does)."""
    groups: dict[tuple, list[str]] = {}
    for item, toks in ids.items():
        groups.setdefault(tuple(toks), []).append(item)
    out = {}
    for toks, members in groups.items():
        for k, item in enumerate(members):
            out[item] = list(toks) + ([f"<{stem}_x_{k}>"] if len(members) > 1 else [])
    return out


def tiny_item_ids(n_items: int = 40) -> dict[str, dict[str, list[str]]]:
    """IDs for make_tiny_prepared() items: shared code = category, some with a disambiguation token."""
    sem = {f"i{i}": [f"<s_a_{i % 4}>", f"<sem_a_{(i // 4) % 7}>"] for i in range(n_items)}
    col = {f"i{i}": [f"<s_a_{i % 4}>", f"<col_a_{i // 8}>"] for i in range(n_items)}
    sem, col = _with_suffix(sem, "sem"), _with_suffix(col, "col")
    return {item: {"semantic": sem[item], "collaborative": col[item]} for item in sem}


def write_tiny_ids(path: Path, n_items: int = 40) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "item_ids.json").write_text(json.dumps(tiny_item_ids(n_items)))
    return path


def tiny_id_maps() -> IdMaps:
    raw = tiny_item_ids()
    return IdMaps(*[{k: tuple(v[kind]) for k, v in raw.items()} for kind in ("semantic", "collaborative")])


@pytest.fixture(scope="module")
def world():
    data = make_tiny_prepared()
    ids = tiny_id_maps()
    corpus = tokenizer_corpus(data, "paper")
    tok = build_tokenizer(
        corpus, list(MARKER_TOKENS) + ids.tokens(), TokenizerConfig(vocab_size=300, min_frequency=1)
    )
    return data, ids, tok


def test_tiny_ids_have_both_lengths():
    ids = tiny_item_ids()
    lengths = Counter(len(v["semantic"]) for v in ids.values()) + Counter(
        len(v["collaborative"]) for v in ids.values()
    )
    assert set(lengths) == {2, 3}  # the fixture exercises the disambiguation token


def test_id_maps_load_and_reverse(tmp_path):
    ids = IdMaps.load(write_tiny_ids(tmp_path))
    assert ids.item_of("semantic", ids.semantic["i5"]) == "i5"
    assert ids.item_of("collaborative", ids.collaborative["i5"]) == "i5"
    assert ids.item_of("semantic", ids.semantic["i5"][:1]) is None
    assert ids.tokens()[:4] == ["<col_a_0>", "<col_a_1>", "<col_a_2>", "<col_a_3>"]
    two = IdMaps({"a": ("<s_a_10>",), "b": ("<s_a_2>",)}, {"a": ("<c_10>",), "b": ("<c_9>",)})
    assert two.tokens() == ["<c_9>", "<c_10>", "<s_a_2>", "<s_a_10>"]  # numbers sort as numbers


def test_id_maps_reject_prefix_and_bad_tokens(tmp_path):
    bad = tiny_item_ids()
    bad["i1"]["semantic"] = bad["i0"]["semantic"] + ["<sem_b_1>"]  # i0's ID is a prefix of i1's
    (tmp_path / "item_ids.json").write_text(json.dumps(bad))
    with pytest.raises(InputError, match=r"item_ids.json: field 'i1.semantic': semantic ID of item 'i0'"):
        IdMaps.load(tmp_path)
    bad = tiny_item_ids()
    bad["i3"]["collaborative"] = ["col 3"]
    (tmp_path / "item_ids.json").write_text(json.dumps(bad))
    with pytest.raises(InputError, match=r"field 'i3.collaborative': bad identifier token 'col 3'"):
        IdMaps.load(tmp_path)
    ids = IdMaps.load(write_tiny_ids(tmp_path, n_items=10))
    with pytest.raises(InputError, match="item 'i10' of the prepared data has no identifier"):
        ids.require_items(["i0", "i10"])


@pytest.mark.parametrize("style", ["compact", "paper"])
def test_every_target_decodes_back(world, style):
    data, ids, tok = world
    cfg = TaskConfig(prompt_style=style, pseudo_queries=2, next_item=1.0, adhoc_logged=1.0)
    pools = build_samples(data, cfg, seed=0)
    enc = SampleEncoder(tok, ids, data, cfg, max_input_len=512)
    texts = dict(zip(data.items["item_id"], data.item_texts, strict=True))
    assert all(len(pools[t]) > 0 for t in TASKS)
    for task in TASKS:
        for s in pools[task]:
            d = enc.decode_target(enc.target(s))
            if task in ("rec", "next_item", "text2col"):
                assert (d.behavior, d.item) == ("<rec>", s.item)
            elif task in ("search", "text2sem", "adhoc", "adhoc_logged"):
                assert (d.behavior, d.item) == ("<search>", s.item)
            elif task == "next_query":
                assert d.behavior == "<query>" and words(d.text) == words(s.query)
            else:
                assert d.behavior == "<text>" and words(d.text) == words(texts[s.item])


@pytest.mark.parametrize("style", ["compact", "paper"])
def test_next_item_turns_search_clicks_into_rec_samples(world, style):
    data, ids, tok = world
    cfg = TaskConfig(prompt_style=style, next_item=1.0)
    pools = build_samples(data, cfg, seed=0)
    search = data.split("train", "search")
    assert len(pools["next_item"]) == len(search) > 0
    enc = SampleEncoder(tok, ids, data, cfg, max_input_len=512)
    for s, ex in zip(pools["next_item"], search.itertuples(), strict=True):
        assert (s.item, s.history, s.query) == (ex.target, tuple(ex.history), "")
        as_rec = Sample(task="rec", item=ex.target, history=tuple(ex.history))
        # the same input and target as a recommendation of that item: no query, collaborative ID
        assert enc.input(s) == enc.input(as_rec) and enc.target(s) == enc.target(as_rec)
        assert enc.target(s)[1:-1] == tok.convert_tokens_to_ids(list(ids.collaborative[ex.target]))
    assert build_samples(data, TaskConfig(), seed=0)["next_item"] == []  # off by default


@pytest.mark.parametrize("style", ["compact", "paper"])
def test_adhoc_logged_is_each_search_session_without_its_history(world, style):
    data, ids, tok = world
    cfg = TaskConfig(prompt_style=style, adhoc_logged=1.0)
    pools = build_samples(data, cfg, seed=0)
    search = data.split("train", "search")
    assert len(pools["adhoc_logged"]) == len(search) > 0
    assert any(len(h) > 0 for h in search["history"])  # the fixture has histories to drop
    enc = SampleEncoder(tok, ids, data, cfg, max_input_len=512)
    for s, ex in zip(pools["adhoc_logged"], search.itertuples(), strict=True):
        assert (s.item, s.query, s.history) == (ex.target, ex.query, ())
        as_adhoc = Sample(task="adhoc", item=ex.target, query=ex.query)
        assert enc.input(s) == enc.input(as_adhoc) and enc.target(s) == enc.target(as_adhoc)
        assert enc.target(s)[1:-1] == tok.convert_tokens_to_ids(list(ids.semantic[ex.target]))
    assert build_samples(data, TaskConfig(), seed=0)["adhoc_logged"] == []  # off by default


def test_compact_rendering_by_hand(world):
    data, ids, tok = world
    enc = SampleEncoder(tok, ids, data, TaskConfig(), max_input_len=512)
    ev = data.events
    # A search example whose history has both behaviors.
    ex = next(
        r
        for r in data.examples.itertuples()
        if r.behavior == "search" and {"rec", "search"} <= set(ev["behavior"].iloc[list(r.history)])
    )
    s = Sample(task="search", item=ex.target, query=ex.query, history=tuple(ex.history))
    expected = ["<t_search>"]
    for e in ex.history:
        row = ev.iloc[e]
        if row.behavior == "rec":
            expected += ["<rec>", *ids.collaborative[row["items"][0]]]
        else:
            expected += ["<search>", *row.query.split(), *ids.semantic[row["items"][0]]]
    expected += ["<search>", *ex.query.split(), "</s>"]
    assert tok.convert_ids_to_tokens(enc.input(s)) == expected
    assert tok.convert_ids_to_tokens(enc.target(s)) == ["<search>", *ids.semantic[ex.target], "</s>"]
    rec = Sample(task="rec", item="i7")
    assert tok.convert_ids_to_tokens(enc.input(rec)) == ["<t_rec>", "</s>"]
    assert tok.convert_ids_to_tokens(enc.input(Sample(task="sem2text", item="i7"))) == [
        "<t_sem2text>",
        *ids.semantic["i7"],
        "</s>",
    ]


def test_truncation_drops_oldest_whole_events(world):
    data, ids, tok = world
    history = tuple(range(5))  # user u0's first events
    full = SampleEncoder(tok, ids, data, TaskConfig(), max_input_len=512)
    ids_full = full.input(Sample(task="rec", item="i0", history=history))
    event_lens = [len(full._event(e)) for e in history]
    assert len(ids_full) == 2 + sum(event_lens)
    limit = 2 + sum(event_lens[-2:])  # room for exactly the two newest events
    short = SampleEncoder(tok, ids, data, TaskConfig(), max_input_len=limit).input(
        Sample(task="rec", item="i0", history=history)
    )
    assert short == ids_full[:1] + ids_full[len(ids_full) - 1 - sum(event_lens[-2:]) :]
    assert len(short) == limit


def test_paper_style_is_longer_with_same_targets(world):
    data, ids, tok = world
    compact = SampleEncoder(tok, ids, data, TaskConfig(), max_input_len=1024)
    paper = SampleEncoder(tok, ids, data, TaskConfig(prompt_style="paper"), max_input_len=1024)
    samples = [s for pool in build_samples(data, TaskConfig(), 0).values() for s in pool[:5]]
    for s in samples:
        assert paper.target(s) == compact.target(s)
        assert len(paper.input(s)) > len(compact.input(s))
    text = paper.input_text(Sample(task="rec", item="i0", history=(0, 1)))
    assert text.startswith("the user has the following interaction history")
    assert "<unk>" not in text
    assert "please recommend the next item" in text


def test_pseudo_queries(world):
    data, _, _ = world
    qs = pseudo_queries(data, n=3, seed=0)
    assert len(qs) == len(data.items)
    # item 1 is in Tools > Drills (category root "tools" is shared by only half the catalog, so it stays)
    assert qs[1][0] == "tools drills"
    title_words = words(data.items["title"][1])  # "item 1 drills"
    for q in qs[1][1:]:
        assert " ".join(q.split()) in " ".join(title_words)
    assert all(len(set(q)) == len(q) for q in qs)
    assert qs == pseudo_queries(data, n=3, seed=0)


def test_epoch_plan_counts_and_determinism(world):
    data, _, _ = world
    cfg = TaskConfig(
        rec=1.5,
        search=0.0,
        next_query=1.0,
        text2sem=2.0,
        text2col=0.25,
        sem2text=0.0,
        col2text=0.0,
        adhoc=0.0,
    )
    mix = TaskMix.build(build_samples(data, cfg, 0), cfg)
    n_rec = int((data.split("train", "rec")).shape[0])
    n_items = len(data.items)
    assert mix.counts()["rec"] == n_rec + round(0.5 * n_rec)
    assert mix.counts()["text2sem"] == 2 * n_items
    assert mix.counts()["text2col"] == round(0.25 * n_items)
    assert mix.counts()["search"] == 0
    plan = mix.epoch_plan(seed=3, epoch=0)
    assert len(plan) == mix.epoch_size()
    per_task = Counter(mix.samples[i].task for i in plan)
    assert per_task == Counter({t: c for t, c in mix.counts().items() if c})
    # every rec sample at least once, none more than twice
    rec_seen = Counter(int(i) for i in plan if mix.samples[i].task == "rec")
    assert len(rec_seen) == n_rec and set(rec_seen.values()) <= {1, 2}
    assert np.array_equal(plan, mix.epoch_plan(seed=3, epoch=0))
    assert not np.array_equal(plan, mix.epoch_plan(seed=3, epoch=1))


def test_replay_draws_new_samples_in_full_and_known_ones_at_their_share(world):
    data, _, _ = world
    cfg = TaskConfig(rec=1.5, search=0.0, next_query=0.0, text2sem=2.0, text2col=0.0, sem2text=0.0,
                     col2text=0.0, adhoc=0.0)
    pools = build_samples(data, cfg, 0)
    rec_ids = [s.example_id for s in pools["rec"]]
    items = data.items["item_id"].tolist()
    known_ex, known_items = frozenset(rec_ids[: len(rec_ids) // 2]), frozenset(items[:3])
    mix = TaskMix.build(pools, cfg, KnownSamples(known_ex, known_items, examples_share=0.5, items_share=0.5))
    n_known, n_new = len(known_ex), len(rec_ids) - len(known_ex)
    # rec: new at 1.5 passes, known at 0.75; text2sem: new items at 2, the 3 known at 1
    assert mix.counts()["rec"] == n_new + round(0.5 * n_new) + round(0.75 * n_known)
    assert mix.counts()["text2sem"] == 2 * (len(items) - 3) + 3
    plan = mix.epoch_plan(seed=3, epoch=0)
    assert len(plan) == mix.epoch_size()
    drawn = Counter(mix.samples[i] for i in plan)
    for sample in pools["rec"]:
        assert drawn[sample] in ({0, 1} if sample.example_id in known_ex else {1, 2})
    for sample in pools["text2sem"]:
        assert drawn[sample] == (1 if sample.item in known_items else 2)
    # full shares draw as without replay; the item-level share alone leaves the examples as they were
    plain = TaskMix.build(pools, cfg).counts()
    assert TaskMix.build(pools, cfg, KnownSamples(known_ex, known_items)).counts() == plain
    items_only = TaskMix.build(pools, cfg, KnownSamples(known_ex, known_items, items_share=0.0))
    assert items_only.counts()["rec"] == plain["rec"]
    assert items_only.counts()["text2sem"] == 2 * (len(items) - 3)  # the 3 known items never drawn
    assert not {items_only.samples[i].item for i in items_only.epoch_plan(seed=3, epoch=0)
                if items_only.samples[i].task == "text2sem"} & known_items
    # a task weighted below 1: the new samples' fraction of a draw rounds up (one new item at 0.25
    # is still drawn every epoch), the known ones' rounds as usual
    light = TaskConfig(rec=1.0, search=0.0, next_query=0.0, text2sem=0.25, text2col=0.0, sem2text=0.0,
                       col2text=0.0, adhoc=0.0)
    one_new = frozenset(items[1:])
    mix = TaskMix.build(build_samples(data, light, 0), light, KnownSamples(known_ex, one_new, items_share=0.5))
    assert mix.counts()["text2sem"] == 1 + round(0.125 * (len(items) - 1))
    for epoch in range(3):
        plan = mix.epoch_plan(seed=3, epoch=epoch)
        assert items[0] in {mix.samples[i].item for i in plan if mix.samples[i].task == "text2sem"}


def test_task_config_validation():
    with pytest.raises(ConfigError, match="'tasks.rec': sampling weight must be >= 0"):
        from_dict(TaskConfig, {"rec": -1})
    with pytest.raises(ConfigError, match="at least one task"):
        from_dict(TaskConfig, {t: 0 for t in TASKS})
    with pytest.raises(ConfigError, match="unknown config key 'recc'"):
        from_dict(TaskConfig, {"recc": 1})


def test_prompt_style_picks_its_renderer_once():
    from gensar.model.prompts import CompactPrompt, PaperPrompt, select_renderer

    assert isinstance(select_renderer("compact"), CompactPrompt)
    assert isinstance(select_renderer("paper"), PaperPrompt)
    with pytest.raises(ValueError, match="unknown prompt style 'chat'"):
        select_renderer("chat")
    assert select_renderer("compact").template_texts() == []  # compact prompts add no template words
    assert len(set(select_renderer("paper").template_texts())) > 5


@pytest.mark.parametrize("style", ["compact", "paper"])
def test_an_encoder_rebound_to_other_events_renders_as_a_fresh_one(world, style):
    """``with_events`` (how the server renders each request) gives the inputs of an encoder built
    over those events, and one table's events never leak into another's rendering."""
    data, ids, tok = world
    cfg = TaskConfig(prompt_style=style)
    base = SampleEncoder.for_events(tok, ids, data.events.iloc[:0], cfg, max_input_len=512)
    tables = [data.events.iloc[:6], data.events.iloc[6:9], data.events.iloc[:6].iloc[::-1]]
    for events in tables:
        rebound = base.with_events(events["behavior"].tolist(), events["query"].tolist(),
                                   [list(x) for x in events["items"]])
        fresh = SampleEncoder.for_events(tok, ids, events, cfg, max_input_len=512)
        for task, query in (("rec", ""), ("search", events["query"].iloc[0] or "a query")):
            sample = Sample(task=task, query=query, history=tuple(range(len(events))))
            assert rebound.input(sample) == fresh.input(sample)
    # the first and third tables hold the same events in another order: another rendering
    first, third = (base.with_events(t["behavior"].tolist(), t["query"].tolist(), [list(x) for x in t["items"]])
                    for t in (tables[0], tables[2]))
    sample = Sample(task="rec", history=tuple(range(6)))
    assert first.input(sample) != third.input(sample)


def _with_queries(data, query_of):
    """The same data with every training search query replaced by ``query_of(target item)``."""
    import dataclasses

    ex = data.examples.copy()
    search = (ex["split"] == "train") & (ex["behavior"] == "search")
    ex.loc[search, "query"] = [query_of(t) for t in ex.loc[search, "target"]]
    return dataclasses.replace(data, examples=ex)


def test_title_query_share_tells_title_word_logs_from_category_logs(world):
    from gensar.model.samples import title_query_share

    data, _, _ = world
    title = dict(zip(data.items["item_id"], data.items["title"], strict=True))
    assert title_query_share(data) == 0.0  # the tiny log's queries are category paths
    # "item 1 drills": 2 title words against 1 catalog word ("drills" is in both)
    titled = _with_queries(data, lambda t: " ".join(words(title[t])[:2]))
    assert title_query_share(titled) == 1.0
    n_search = int(((data.examples["split"] == "train") & (data.examples["behavior"] == "search")).sum())
    targets = data.split("train", "search")["target"].tolist()
    half = {t for t in targets[: n_search // 2]}
    mixed = _with_queries(data, lambda t: " ".join(words(title[t])[:2]) if t in half else "tools drills lab")
    expected = sum(t in half for t in targets) / n_search
    assert title_query_share(mixed) == pytest.approx(expected)


def test_pseudo_queries_follow_the_logs_kind_of_query(world):
    data, _, _ = world
    title = dict(zip(data.items["item_id"], data.items["title"], strict=True))
    category = pseudo_queries(data, n=2, seed=0, source="category")
    assert pseudo_queries(data, n=2, seed=0, source="auto") == category  # a category-path log
    assert category[1][0] == "tools drills"
    only_title = pseudo_queries(data, n=2, seed=0, source="title")
    for item, qs in zip(data.items["item_id"], only_title, strict=True):
        assert qs and all(set(q.split()) <= set(words(title[item])) for q in qs)
        assert "tools" not in " ".join(qs) and "lab" not in " ".join(qs)
    # the windows are the same draws: title mode drops the catalog query and keeps the windows
    assert [q[1] for q in category] == [q[0] for q in only_title]
    titled = _with_queries(data, lambda t: " ".join(words(title[t])[:2]))
    assert pseudo_queries(titled, n=2, seed=0, source="auto") == only_title
