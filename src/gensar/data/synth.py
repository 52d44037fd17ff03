"""A synthetic shop with real search queries and two separable signals: semantic and collaborative.

The generative story (all draws from one ``numpy`` generator seeded by ``SynthConfig.seed``):

1. **Category tree.** ``Shop > department > leaf``: ``n_departments`` departments drawn from a
   fixed vocabulary (``Power Tools``, ``Lab Equipment``, ...), each with
   ``leaves_per_department`` leaves named ``<modifier> <noun>`` (``Cordless Drills``). Leaf
   nouns are unique; modifiers (``Digital``, ``Portable``, ...) are shared between leaves, so a
   partial query can be ambiguous.
2. **Co-purchase groups (hidden).** Each of ``n_groups`` groups is a "project" spanning
   ``leaves_per_group`` leaves spread over as many departments as possible (a drill, a
   respirator, a lamp, ...). Items are dealt to groups evenly, then round-robin to the group's
   leaves. A leaf hosts items of several groups, so an item's text (which reveals its leaf)
   does not reveal its group.
3. **Items.** Popularity ~ LogNormal(0, ``popularity_sigma``); a brand from the department's
   ``brands_per_department`` brands; title ``<brand> [<attribute>] <noun> <model>``; a
   description from templates using the noun and department. Nothing depends on the group.
4. **Users.** A user's taste is ``preferred_departments`` departments (weights ~ Dirichlet(2))
   and ``preferred_leaves_per_department`` leaves in each (weights ~
   Dirichlet(``leaf_concentration``)). A user makes ``min_events..max_events`` events and never
   clicks the same item twice. The user is always in a current project, drawn with probability
   proportional to how much of the group's leaves the user likes, and re-drawn before an event
   with probability ``group_switch_prob``. Each event picks its item, with weights times
   popularity, from:

   - with probability ``off_preference_prob``: any item (noise);
   - else with probability ``group_prob``: the current group, *outside the leaf of the
     previous item* (a project needs complementary things), restricted with probability
     ``in_group_preferred_prob`` to the user's preferred leaves (weighted by taste);
   - else: the user's preferred leaves, any group.

   When a choice has no unseen item left it falls back to the next broader one (group ->
   taste -> anything). So the next item is likely (a) in a preferred category -- the
   **semantic** signal, visible in item text and queries -- and (b) in the same hidden group
   as the recent items but in another leaf -- the **collaborative** signal, visible only
   through co-occurrence. The likely items are the intersection, which neither signal finds
   alone.
5. **Search.** With probability ``search_ratio`` an event is a search session: the item is
   drawn as above, and the query is the de-duplicated lower-case words of its department and
   leaf (not the root); each word is dropped with probability ``query_drop_prob`` (when all
   are, the query is the leaf noun) and a noise word ("best", "cheap", ...) is added with probability
   ``query_noise_prob``. With probability ``second_click_prob`` the session clicks a second
   item of the same leaf. ``query_source`` ``title`` replaces that query by a seeded subset of
   the clicked item's title words (``gensar.data.queries.title_query``: specific queries that
   name a brand or model), ``mixed`` does so for half the sessions; those draws use a generator
   of their own, so the world (items, events, clicks) is the same for every query source.
6. **Time.** Each user starts at ``start_timestamp`` plus up to 30 days; gaps between events
   are 1 s + Exponential(``mean_gap_s``), so a user's events have distinct, increasing times.

With the defaults (1,500 users, 800 items, 10-20 events each, ~22k events, ~2 s), predicting
each user's last rec item over all 800 items gives HR@10 of 0.17 for a category-preference
scorer, 0.20 for an item co-occurrence scorer and 0.34 for their product (seed 0; seeds 1-3
give 0.17-0.18 / 0.20-0.21 / 0.32-0.33; the scorers are in tests/test_synth.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from tqdm import tqdm

from gensar.config import require, require_seed, to_dict
from gensar.data.queries import session_queries
from gensar.data.schema import REC, SEARCH, RawDataset, make_events, make_items

ROOT = "Shop"

# department -> singular leaf nouns (unique across departments)
VOCABULARY: dict[str, tuple[str, ...]] = {
    "Power Tools": ("Drill", "Saw", "Sander", "Grinder", "Router", "Nailer", "Planer", "Heat Gun"),
    "Hand Tools": ("Hammer", "Wrench", "Pliers", "Screwdriver", "Chisel", "Clamp", "Rasp", "Level"),
    "Lab Equipment": ("Beaker", "Pipette", "Centrifuge", "Microscope", "Scale", "Thermometer", "Burner", "Flask"),
    "Safety Gear": ("Glove", "Goggles", "Respirator", "Helmet", "Earplugs", "Vest", "Harness", "Boot"),
    "Electrical": ("Multimeter", "Cable", "Switch", "Fuse", "Battery", "Relay", "Socket", "Transformer"),
    "Plumbing": ("Valve", "Pipe", "Faucet", "Pump", "Hose", "Fitting", "Gauge", "Filter"),
    "Office Supplies": ("Stapler", "Binder", "Marker", "Label", "Shredder", "Calculator", "Folder", "Printer"),
    "Kitchen": ("Blender", "Kettle", "Knife", "Pan", "Mixer", "Toaster", "Grill", "Juicer"),
    "Garden": ("Mower", "Trimmer", "Sprinkler", "Shovel", "Rake", "Planter", "Pruner", "Seeder"),
    "Automotive": ("Jack", "Charger", "Wiper", "Compressor", "Polisher", "Jump Starter", "Floor Mat", "Car Cover"),
    "Cleaning": ("Mop", "Vacuum", "Broom", "Sponge", "Squeegee", "Duster", "Scrubber", "Bucket"),
    "Lighting": ("Lamp", "Lantern", "Flashlight", "Bulb", "Floodlight", "Headlamp", "Spotlight", "Work Light"),
}
MAX_LEAVES_PER_DEPARTMENT = min(len(v) for v in VOCABULARY.values())
MAX_SIZE = 10_000_000  # users or items of a synthetic world (far beyond what fits a CPU run)
LEAF_MODIFIERS = ("Digital", "Portable", "Professional", "Compact", "Heavy-Duty", "Cordless", "Precision",
                  "Industrial", "Mini", "Smart")
TITLE_ATTRIBUTES = ("Pro", "Ultra", "Max", "Classic", "Eco", "Plus", "Lite", "Steel")
DESCRIPTIVE = ("lightweight", "durable", "ergonomic", "reliable", "rugged", "versatile", "easy-to-use", "sturdy")
FEATURES = ("Comes with a two-year warranty.", "Includes a carrying case.", "Easy to clean.",
            "Ships in recyclable packaging.", "Backed by a lifetime guarantee.", "Tested for daily use.",
            "Spare parts are available.", "Fits most standard setups.")
QUERY_NOISE = ("best", "cheap", "new", "set", "kit", "pro", "small", "large", "quality", "deal", "pack", "sale")
BRAND_HEADS = ("Vol", "Aqu", "Ter", "Nex", "Kor", "Lum", "Ste", "Bri", "Ori", "Zen", "Pax", "Dur", "Fal", "Hex",
               "Mag", "Tri", "Qua", "Rex")
BRAND_TAILS = ("tix", "ara", "ion", "ora", "max", "tek", "vo", "line", "dyne", "craft", "ware", "ly")
_UNCOUNTABLE = {"Pliers", "Goggles", "Earplugs"}


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of the synthetic world (see the module docstring for the story)."""

    seed: int = 0
    n_users: int = 1500
    n_items: int = 800
    n_departments: int = 6
    leaves_per_department: int = 6
    n_groups: int = 16
    leaves_per_group: int = 8
    brands_per_department: int = 4
    preferred_departments: int = 2
    preferred_leaves_per_department: int = 2
    leaf_concentration: float = 2.0
    min_events: int = 10
    max_events: int = 20
    search_ratio: float = 0.4
    group_prob: float = 0.85
    group_switch_prob: float = 0.1
    in_group_preferred_prob: float = 0.9
    off_preference_prob: float = 0.05
    popularity_sigma: float = 0.8
    query_drop_prob: float = 0.3
    query_noise_prob: float = 0.3
    query_source: Literal["category", "title", "mixed"] = "category"  # see step 5 of the story
    second_click_prob: float = 0.2
    start_timestamp: int = 1_600_000_000
    mean_gap_s: int = 86_400

    def validate(self) -> None:
        require(1 <= self.n_users <= MAX_SIZE, "n_users", f"must be in 1..{MAX_SIZE}")
        require(self.n_items <= MAX_SIZE, "n_items", f"must be <= {MAX_SIZE}")
        require_seed(self.seed)
        require(1 <= self.n_departments <= len(VOCABULARY), "n_departments", f"must be in 1..{len(VOCABULARY)}")
        require(1 <= self.leaves_per_department <= MAX_LEAVES_PER_DEPARTMENT, "leaves_per_department",
                f"must be in 1..{MAX_LEAVES_PER_DEPARTMENT}")
        require(self.n_groups >= 1, "n_groups", "must be >= 1")
        require(1 <= self.leaves_per_group <= self.n_departments * self.leaves_per_department, "leaves_per_group",
                "must be in 1..n_departments * leaves_per_department")
        require(self.n_items >= self.n_groups * self.leaves_per_group, "n_items",
                "must be >= n_groups * leaves_per_group (every group leaf gets an item)")
        require(1 <= self.brands_per_department <= len(BRAND_HEADS), "brands_per_department",
                f"must be in 1..{len(BRAND_HEADS)}")
        require(1 <= self.preferred_departments <= self.n_departments, "preferred_departments",
                "must be in 1..n_departments")
        require(1 <= self.preferred_leaves_per_department <= self.leaves_per_department,
                "preferred_leaves_per_department", "must be in 1..leaves_per_department")
        require(self.leaf_concentration > 0, "leaf_concentration", "must be > 0")
        require(1 <= self.min_events <= self.max_events, "min_events", "must be in 1..max_events")
        # a user clicks at most 2 items per event and never repeats one: keep the catalogue far from exhausted
        require(2 * self.max_events <= self.n_items // 2, "max_events", "must be <= n_items / 4")
        for key in ("search_ratio", "group_prob", "group_switch_prob", "in_group_preferred_prob",
                    "off_preference_prob", "query_drop_prob", "query_noise_prob", "second_click_prob"):
            value = getattr(self, key)
            require(0.0 <= value <= 1.0, key, "must be a probability in [0, 1]")
        require(self.popularity_sigma >= 0, "popularity_sigma", "must be >= 0")
        require(self.mean_gap_s >= 0, "mean_gap_s", "must be >= 0")


@dataclass(frozen=True)
class _Catalogue:
    """The hidden structure behind the item table (arrays are indexed by item row or leaf)."""

    leaf_paths: list[list[str]]  # leaf -> ["Shop", department, leaf name]
    leaf_nouns: list[str]  # leaf -> singular noun
    leaf_department: np.ndarray  # (L,) int
    group_leaves: list[np.ndarray]  # group -> its leaves
    item_leaf: np.ndarray  # (N,) int
    item_group: np.ndarray  # (N,) int
    popularity: np.ndarray  # (N,) float, > 0


def generate_world(cfg: SynthConfig, progress: bool = True) -> RawDataset:
    """Generate the synthetic world described in the module docstring (deterministic per seed).

    ``info`` holds the hidden truth: ``item_group`` and ``item_leaf`` (aligned with item rows),
    ``user_preferred`` (user id -> preferred category paths) and the config.
    """
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    cat = _catalogue(cfg, rng)
    items = _items(cfg, cat, rng)
    events, preferred = _events(cfg, cat, items["item_id"].tolist(), rng, progress)
    events = _with_query_source(events, items, cfg)
    info = {
        "config": to_dict(cfg),
        "item_group": cat.item_group.tolist(),
        "item_leaf": cat.item_leaf.tolist(),
        "user_preferred": {u: [" > ".join(cat.leaf_paths[leaf]) for leaf in leaves] for u, leaves in preferred.items()},
    }
    return RawDataset(items=items, events=events, source=f"synth(seed={cfg.seed})", format="synth", info=info)


def _with_query_source(events: pd.DataFrame, items: pd.DataFrame, cfg: SynthConfig) -> pd.DataFrame:
    """The events with their search queries redrawn from item titles, for query sources other
    than the category one (a separate generator: nothing else changes)."""
    if cfg.query_source == "category":
        return events
    search = np.flatnonzero(events["behavior"].to_numpy() == SEARCH)
    first = [events["items"].iloc[row][0] for row in search]
    titles = dict(zip(items["item_id"], items["title"], strict=True))
    drawn = session_queries(first, events["query"].iloc[search].tolist(), titles, cfg.query_source, cfg.seed)
    out = events.copy()
    queries = out["query"].to_numpy(dtype=object).copy()
    queries[search] = drawn
    out["query"] = queries
    return out


def _catalogue(cfg: SynthConfig, rng: np.random.Generator) -> _Catalogue:
    names = list(VOCABULARY)
    departments = [names[i] for i in rng.permutation(len(names))[: cfg.n_departments]]
    leaf_paths, leaf_nouns, leaf_department = [], [], []
    for d, dept in enumerate(departments):
        nouns = VOCABULARY[dept]
        for j in rng.permutation(len(nouns))[: cfg.leaves_per_department]:
            modifier = LEAF_MODIFIERS[int(rng.integers(len(LEAF_MODIFIERS)))]
            leaf_paths.append([ROOT, dept, f"{modifier} {_plural(nouns[j])}"])
            leaf_nouns.append(nouns[j])
            leaf_department.append(d)
    leaf_department_arr = np.asarray(leaf_department)
    group_leaves = []
    n_dep, per_dep = cfg.n_departments, cfg.leaves_per_department
    # each department deals its leaves from a shuffled deck, so leaves are used evenly and every
    # leaf is shared by several groups once n_groups * leaves_per_group is a few times the leaves
    decks: list[list[int]] = [[] for _ in range(n_dep)]
    for _ in range(cfg.n_groups):
        # spread the group over as many departments as possible
        rounds = -(-cfg.leaves_per_group // n_dep)
        depts = np.concatenate([rng.permutation(n_dep) for _ in range(rounds)])[: cfg.leaves_per_group]
        leaves: list[int] = []
        for d in depts:
            deck = decks[d]
            if not any(leaf not in leaves for leaf in deck):
                # leaf index = department * leaves_per_department + position within the department
                deck.extend(int(d) * per_dep + int(j) for j in rng.permutation(per_dep))
            leaves.append(deck.pop(next(k for k, leaf in enumerate(deck) if leaf not in leaves)))
        group_leaves.append(np.asarray(leaves))
    item_group = np.empty(cfg.n_items, dtype=np.int64)
    item_leaf = np.empty(cfg.n_items, dtype=np.int64)
    order = rng.permutation(cfg.n_items)  # item rows carry no trace of their group
    for k, item in enumerate(order):
        g = k % cfg.n_groups
        item_group[item] = g
        item_leaf[item] = group_leaves[g][(k // cfg.n_groups) % cfg.leaves_per_group]
    popularity = rng.lognormal(0.0, cfg.popularity_sigma, size=cfg.n_items)
    return _Catalogue(leaf_paths, leaf_nouns, leaf_department_arr, group_leaves, item_leaf, item_group, popularity)


def _items(cfg: SynthConfig, cat: _Catalogue, rng: np.random.Generator) -> pd.DataFrame:
    brands = _brand_names(cfg.n_departments * cfg.brands_per_department, rng)
    width = len(str(cfg.n_items - 1))
    rows = []
    for i in range(cfg.n_items):
        leaf = int(cat.item_leaf[i])
        dept_idx = int(cat.leaf_department[leaf])
        dept = cat.leaf_paths[leaf][1]
        noun = cat.leaf_nouns[leaf]
        brand = brands[dept_idx * cfg.brands_per_department + int(rng.integers(cfg.brands_per_department))]
        attribute = TITLE_ATTRIBUTES[int(rng.integers(len(TITLE_ATTRIBUTES)))] + " " if rng.random() < 0.5 else ""
        letters = "".join(chr(ord("A") + int(c)) for c in rng.integers(26, size=2))
        model = f"{letters}-{int(rng.integers(100, 1000))}"
        adjective = DESCRIPTIVE[int(rng.integers(len(DESCRIPTIVE)))]
        article = "An" if adjective[0] in "aeiou" else "A"
        feature = FEATURES[int(rng.integers(len(FEATURES)))]
        rows.append({
            "item_id": f"I{i:0{width}d}",
            "title": f"{brand} {attribute}{noun} {model}",
            "categories": list(cat.leaf_paths[leaf]),
            "description": f"{article} {adjective} {noun.lower()} by {brand} for {dept.lower()}. {feature}",
            "brand": brand,
        })
    return make_items(rows)


def _events(
    cfg: SynthConfig, cat: _Catalogue, item_ids: list[str], rng: np.random.Generator, progress: bool
) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    n_leaves = len(cat.leaf_paths)
    populated = np.zeros(n_leaves, dtype=bool)  # leaves that hold items (exactly the group leaves)
    populated[cat.item_leaf] = True
    departments = np.unique(cat.leaf_department[populated])
    group_leaf = np.zeros((cfg.n_groups, n_leaves))  # (G, L) 1 where the group spans the leaf
    for g, leaves in enumerate(cat.group_leaves):
        group_leaf[g, leaves] = 1.0
    width = len(str(cfg.n_users - 1))
    rows: list[dict] = []
    preferred: dict[str, list[int]] = {}
    for u in tqdm(range(cfg.n_users), desc="synth users", unit="user", delay=1.0, disable=not progress):
        user = f"U{u:0{width}d}"
        leaf_pref = _leaf_preference(cfg, cat, populated, departments, rng)  # (L,)
        item_pref = leaf_pref[cat.item_leaf]  # (N,)
        group_w = group_leaf @ leaf_pref  # (G,) a project is likely when much of it is to the user's taste
        preferred[user] = [int(x) for x in np.flatnonzero(leaf_pref)]
        seen = np.zeros(len(item_ids), dtype=bool)
        group, last_leaf = -1, -1
        t = cfg.start_timestamp + int(rng.integers(30 * 86_400))
        for _ in range(int(rng.integers(cfg.min_events, cfg.max_events + 1))):
            if group < 0 or rng.random() < cfg.group_switch_prob:
                group = int(rng.choice(cfg.n_groups, p=group_w / group_w.sum()))
            weights = _intent_weights(cfg, cat, item_pref, group, last_leaf, rng)
            item = _draw(weights, cat.popularity, seen, rng)
            last_leaf = int(cat.item_leaf[item])
            clicked = [item]
            t += 1 + int(rng.exponential(cfg.mean_gap_s))
            if rng.random() < cfg.search_ratio:
                query = _query(cat.leaf_paths[cat.item_leaf[item]], cat.leaf_nouns[cat.item_leaf[item]], cfg, rng)
                if rng.random() < cfg.second_click_prob:
                    same_leaf = cat.item_leaf == cat.item_leaf[item]
                    if (same_leaf & ~seen).any():
                        clicked.append(_draw([same_leaf.astype(float)], cat.popularity, seen, rng))
                rows.append({"user_id": user, "timestamp": t, "behavior": SEARCH, "query": query,
                             "items": [item_ids[i] for i in clicked]})
            else:
                rows.append({"user_id": user, "timestamp": t, "behavior": REC, "query": "", "items": [item_ids[item]]})
    return make_events(rows), preferred


def _leaf_preference(
    cfg: SynthConfig, cat: _Catalogue, populated: np.ndarray, departments: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(L,) a user's taste: Dirichlet weights over preferred departments, then over their leaves."""
    k = min(cfg.preferred_departments, len(departments))
    chosen = rng.choice(departments, size=k, replace=False)
    dept_w = rng.dirichlet(np.full(k, 2.0))
    pref = np.zeros(len(cat.leaf_paths))
    for d, w in zip(chosen, dept_w, strict=True):
        leaves = np.flatnonzero((cat.leaf_department == d) & populated)
        leaves = rng.choice(leaves, size=min(cfg.preferred_leaves_per_department, len(leaves)), replace=False)
        pref[leaves] = w * rng.dirichlet(np.full(len(leaves), cfg.leaf_concentration))
    return pref


def _intent_weights(
    cfg: SynthConfig, cat: _Catalogue, item_pref: np.ndarray, group: int, last_leaf: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """(N,) unnormalized item weights for this event, most specific first (before popularity).

    ``_draw`` uses the first that leaves an unseen item, so a used-up project falls back to the
    rest of the group, then to the user's taste, then to any item.
    """
    anything = np.ones_like(item_pref)
    if rng.random() < cfg.off_preference_prob:
        return [anything]
    if rng.random() < cfg.group_prob:
        # a project needs complementary things: the next part comes from another leaf
        in_group = ((cat.item_group == group) & (cat.item_leaf != last_leaf)).astype(float)
        if rng.random() < cfg.in_group_preferred_prob:
            return [in_group * item_pref, in_group, item_pref, anything]
        return [in_group, item_pref, anything]
    return [item_pref, anything]


def _draw(choices: list[np.ndarray], popularity: np.ndarray, seen: np.ndarray, rng: np.random.Generator) -> int:
    """Draw one unseen item ∝ weights * popularity from the first usable weights; mark it seen."""
    for weights in choices:
        w = weights * popularity * ~seen
        total = w.sum()
        if total > 0:
            break
    cdf = np.cumsum(w)  # inverse-CDF draw: rng.choice(p=...) costs ~3x more per event
    item = min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(w) - 1)
    while w[item] <= 0:  # float edge: the draw landed on a zero-weight tail
        item -= 1
    seen[item] = True
    return item


def _query(path: list[str], noun: str, cfg: SynthConfig, rng: np.random.Generator) -> str:
    """Lower-case words of department + leaf, some dropped (never all), maybe one noise word."""
    words: list[str] = []
    for part in path[1:]:
        for w in part.lower().split():
            if w not in words:
                words.append(w)
    keep = [w for w in words if rng.random() >= cfg.query_drop_prob]
    if not keep:
        keep = _plural(noun).lower().split()
    if rng.random() < cfg.query_noise_prob:
        noise = QUERY_NOISE[int(rng.integers(len(QUERY_NOISE)))]
        keep.insert(int(rng.integers(len(keep) + 1)), noise)
    return " ".join(keep)


def _plural(noun: str) -> str:
    head, _, last = noun.rpartition(" ")
    if last in _UNCOUNTABLE:
        plural = last
    elif last.endswith("fe"):
        plural = last[:-2] + "ves"
    elif last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        plural = last[:-1] + "ies"
    elif last.endswith(("s", "sh", "ch", "x")):
        plural = last + "es"
    else:
        plural = last + "s"
    return f"{head} {plural}" if head else plural


def _brand_names(n: int, rng: np.random.Generator) -> list[str]:
    names: list[str] = []
    pairs = [(h, t) for h in BRAND_HEADS for t in BRAND_TAILS]
    for idx in rng.permutation(len(pairs))[:n]:
        head, tail = pairs[idx]
        names.append(head + tail)
    return names
