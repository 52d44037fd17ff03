"""RecBole atomic files: ``NAME.inter`` (+ ``NAME.item`` or ``NAME.text``, index maps).

Layout (tab-separated; the first line is a header of ``name:type`` columns, type one of
token, token_seq, float, float_seq; sequences are space-separated):

NAME.inter | NAME.{train,valid,test}.inter
    *interaction variant*: ``user_id:token  item_id:token  [timestamp:float]  [rating ...]``,
    one row per interaction (ratings are ignored; rows are ordered by timestamp, else file order).
    *sequence variant* (UniSRec/RecBole sequential benchmarks): ``user_id:token
    item_id_list:token_seq  item_id:token``, one row per prediction step (history, next item).
    ``NAME.inter`` wins over split files when both exist.
NAME.item   item features; columns found by header name (see ``_ITEM_COLUMNS``).
NAME.text   ``item_id:token  text:token_seq`` with text ``title. category path. brand. `` (UniSRec).
NAME.item2index / NAME.user2index   headerless ``original_id<TAB>index``; when present the
    indices used in .inter are mapped back, so item_id is e.g. the ASIN and user_id the reviewer.

Sequence rebuild: histories in the .inter rows may be cut to their last L items (L = the longest
history in the files, 50 for UniSRec data). Each row is a window ``history + [next]`` of the user's
sequence. Windows whose history is shorter than L are uncut prefixes: the longest gives the start
of the sequence. Cut windows (history length L) are then chained: a window extends the sequence
when its history equals the last L items. Every row must agree with the rebuilt sequence (rows
from train, valid and test overlap by construction); the position in the sequence is the
timestamp.
"""

from __future__ import annotations

import ast
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gensar.data.loaders._common import TableFile, finish, iter_lines
from gensar.data.schema import RawDataset
from gensar.errors import InputError

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
SPLITS = ("train", "valid", "test")

# canonical field -> header names accepted in NAME.item, first match wins
_ITEM_COLUMNS: dict[str, tuple[str, ...]] = {
    "title": ("title", "movie_title", "item_name", "name"),
    "categories": ("categories", "category", "genre", "genres", "class"),
    "brand": ("brand",),
    "description": ("description", "desc"),
}
# genre-like columns hold single-word tags separated by spaces (e.g. ml-100k "class")
_WORD_TAG_COLUMNS = ("genre", "genres", "class")


@dataclass(frozen=True)
class RecboleFiles:
    """The atomic files of one dataset ``prefix`` (= directory / NAME)."""

    prefix: Path
    inter: tuple[Path, ...]
    item: Path | None
    text: Path | None
    item2index: Path | None
    user2index: Path | None


# ---- locating files ------------------------------------------------------------------------


def _dataset_name(filename: str) -> str:
    """'Scientific.train.inter' -> 'Scientific'; 'ml-100k.inter' -> 'ml-100k'."""
    stem = filename[: -len(".inter")]
    for split in SPLITS:
        if stem.endswith("." + split):
            return stem[: -len(split) - 1]
    return stem


def _sibling(prefix: Path, suffix: str) -> Path:
    return prefix.with_name(prefix.name + suffix)


def find_recbole_files(source: str | Path) -> RecboleFiles:
    """Resolve a directory (holding one dataset), a ``.inter`` file or a path prefix."""
    path = Path(source)
    if path.is_dir():
        names = sorted(
            {_dataset_name(f.name) for f in path.iterdir() if f.is_file() and f.name.endswith(".inter")}
        )
        if not names:
            raise InputError(
                "no RecBole atomic files here (NAME.inter or NAME.train/valid/test.inter)", path=path
            )
        if len(names) > 1:
            raise InputError(f"several RecBole datasets here ({', '.join(names)}); pass DIR/NAME", path=path)
        prefix = path / names[0]
    elif path.name.endswith(".inter"):
        prefix = path.parent / _dataset_name(path.name)
    else:
        prefix = path
    whole = _sibling(prefix, ".inter")
    if whole.is_file():
        inter: tuple[Path, ...] = (whole,)
    else:
        inter = tuple(p for p in (_sibling(prefix, f".{s}.inter") for s in SPLITS) if p.is_file())
    if not inter:
        raise InputError(
            "no RecBole interaction file (NAME.inter or NAME.train/valid/test.inter)", path=prefix
        )

    def optional(suffix: str) -> Path | None:
        p = _sibling(prefix, suffix)
        return p if p.is_file() else None

    return RecboleFiles(
        prefix, inter, optional(".item"), optional(".text"), optional(".item2index"), optional(".user2index")
    )


def looks_like_recbole(source: str | Path) -> bool:
    try:
        find_recbole_files(source)
    except InputError:
        return False
    return True


# ---- atomic file reading -------------------------------------------------------------------


class AtomicFile(TableFile):
    """A RecBole atomic file: tab-separated, header columns written ``name:type``."""

    def parse_header(self, header: str) -> list[str]:
        names = []
        for spec in header.split("\t"):
            name, sep, kind = spec.strip().partition(":")
            if not sep or not name or kind not in ATOMIC_TYPES:
                raise InputError(
                    f"header column '{spec}' is not 'name:type' with type in {'/'.join(ATOMIC_TYPES)}",
                    path=self.path,
                    line=1,
                )
            names.append(name)
        return names


def read_index_map(path: Path) -> dict[str, str]:
    """``NAME.item2index`` / ``NAME.user2index``: index (as in .inter) -> original id."""
    by_index: dict[str, str] = {}
    seen_ids: dict[str, int] = {}
    for lineno, text in iter_lines(path):
        fields = text.split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise InputError("expected 'original_id<TAB>index'", path=path, line=lineno)
        original, index = fields[0].strip(), fields[1].strip()
        if index in by_index:
            raise InputError(f"index '{index}' appears twice", path=path, line=lineno, field="index")
        if original in seen_ids:
            raise InputError(
                f"duplicate id '{original}' (first on line {seen_ids[original]})", path=path, line=lineno
            )
        by_index[index] = original
        seen_ids[original] = lineno
    return by_index


# ---- item text -----------------------------------------------------------------------------


def _text_segments(text: str) -> list[str]:
    """'T. C. B. ' -> ['T', 'C', 'B'] (a title or brand may itself contain '. ')."""
    body = text.strip()
    body = body.removesuffix(".")
    return [s.strip() for s in body.split(". ")]


def split_item_texts(texts: list[str]) -> list[tuple[str, str, str]]:
    """Parse UniSRec texts ``title. category path. brand. `` into (title, path, brand).

    With exactly three segments the split is unambiguous. When a title or brand contains '. '
    ("Mr. Heater", "J.V. Converting") the category is the candidate segment that (1) equals a
    path seen in an unambiguous text, else (2) is empty (no category) or starts with a word that
    starts such paths (the root, e.g. 'Industrial'), else the rightmost candidate. Texts with
    fewer than three segments are all title.
    """
    segmented = [_text_segments(t) for t in texts]
    known = Counter(s[1] for s in segmented if len(s) == 3)
    first_words = {p.split(" ", 1)[0] for p in known if p}
    out = []
    for segs in segmented:
        if len(segs) < 3:
            out.append((". ".join(segs), "", ""))
            continue
        best = max(
            range(1, len(segs) - 1),
            key=lambda k: (segs[k] in known, not segs[k] or segs[k].split(" ", 1)[0] in first_words, k),
        )
        out.append((". ".join(segs[:best]), segs[best], ". ".join(segs[best + 1 :])))
    return out


def split_category_paths(paths: list[str]) -> tuple[list[list[str]], str]:
    """Split space-joined category paths into ``[root, rest]`` lists; also return the root.

    The path has lost its separators ('Industrial & Scientific Abrasive & Finishing Products
    Manual Sanding Products Sanding Rolls'), and category names contain spaces, so inner
    boundaries cannot be recovered reliably. The one boundary that can: the root shared by all
    paths, taken as their longest common word prefix when at least two distinct paths exist. The
    remainder stays one string. Words and their order are
    unchanged, so ``item_text`` and category-word queries are unaffected.
    """
    words = [p.split() for p in paths if p.strip()]
    root: list[str] = []
    if len({tuple(w) for w in words}) >= 2:
        root = list(words[0])
        for w in words[1:]:
            n = 0
            while n < min(len(root), len(w)) and root[n] == w[n]:
                n += 1
            root = root[:n]
    out = []
    for p in paths:
        w = p.split()
        if not w:
            out.append([])
        elif root and len(w) > len(root):
            out.append([" ".join(root), " ".join(w[len(root) :])])
        else:
            out.append([" ".join(w)])
    return out, " ".join(root)


def parse_category_cell(value: str, column: str) -> list[str]:
    """A categories cell of NAME.item: a Python list literal (nested: the first path), '|'-
    separated names, space-separated single-word tags for genre-like columns, else one name."""
    value = value.strip()
    if not value:
        return []
    if value.startswith("["):
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = None
        if isinstance(parsed, list):
            if parsed and isinstance(parsed[0], list):
                parsed = parsed[0]
            return [str(c).strip() for c in parsed if str(c).strip()]
    if "|" in value:
        return [c.strip() for c in value.split("|") if c.strip()]
    if column in _WORD_TAG_COLUMNS:
        return value.split()
    return [value]


def _item_id_mode(ids: list[str], item_of_index: dict[str, str] | None) -> bool:
    """Whether an item file's ids are .inter indices (True) rather than original ids."""
    if item_of_index is None:
        return False
    originals = set(item_of_index.values())
    as_index = sum(i in item_of_index for i in ids)
    as_original = sum(i in originals for i in ids)
    return as_index > as_original


def read_items(path: Path, kind: str, item_of_index: dict[str, str] | None) -> tuple[list[dict], dict]:
    """Item records from NAME.item (kind 'item') or NAME.text (kind 'text')."""
    f = AtomicFile(path)
    f.require("item_id")
    if kind == "text":
        f.require("text")
    rows = [(lineno, fields) for lineno, fields in f.rows()]
    ids = [fields[f.columns["item_id"]].strip() for _, fields in rows]
    mapped = _item_id_mode(ids, item_of_index)
    info: dict = {}
    records: list[dict] = []
    first_line: dict[str, int] = {}
    for (lineno, fields), raw_id in zip(rows, ids, strict=True):
        if not raw_id:
            raise InputError("empty item id", path=path, line=lineno, field="item_id")
        item_id = raw_id
        if mapped:
            assert item_of_index is not None
            if raw_id not in item_of_index:
                raise InputError(
                    f"item '{raw_id}' is not in item2index", path=path, line=lineno, field="item_id"
                )
            item_id = item_of_index[raw_id]
        if item_id in first_line:
            raise InputError(
                f"duplicate item id '{item_id}' (first on line {first_line[item_id]})",
                path=path,
                line=lineno,
                field="item_id",
            )
        first_line[item_id] = lineno
        record = {"item_id": item_id}
        if kind == "item":
            for target, names in _ITEM_COLUMNS.items():
                column = next((n for n in names if n in f.columns), None)
                if column is None:
                    continue
                cell = fields[f.columns[column]]
                record[target] = parse_category_cell(cell, column) if target == "categories" else cell.strip()
        else:
            record["text"] = fields[f.columns["text"]]
        records.append(record)
    if kind == "text":
        parsed = split_item_texts([r.pop("text") for r in records])
        categories, root = split_category_paths([p for _, p, _ in parsed])
        for record, (title, _, brand), cats in zip(records, parsed, categories, strict=True):
            record.update(title=title, categories=cats, brand=brand, description="")
        info["category_root"] = root
    return records, info


# ---- interactions --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    history: tuple[str, ...]
    target: str
    path: Path
    line: int


def _rebuild_sequence(user: str, windows: list[_Window], cut: int) -> list[str]:
    """The user's full item sequence from overlapping (history, next item) windows."""
    uncut = [w for w in windows if len(w.history) < cut]
    full = [w for w in windows if len(w.history) >= cut]
    if uncut:
        longest = max(uncut, key=lambda w: len(w.history))
        seq = [*longest.history, longest.target]
    else:  # only cut windows: start from one that no other window leads into
        successors = {(*w.history[1:], w.target) for w in full}
        seq = list(next((w for w in full if w.history not in successors), full[0]).history)
    for w in uncut:
        n = len(w.history)
        if tuple(seq[:n]) != w.history or seq[n] != w.target:
            raise InputError(
                f"history of user '{user}' disagrees with the user's other rows", path=w.path, line=w.line
            )
    # chain the cut windows: each one continues the sequence whose last `cut` items it holds
    pending: dict[tuple[str, ...], list[_Window]] = defaultdict(list)
    for w in full:
        pending[w.history].append(w)
    used: set[_Window] = set()
    while True:
        queue = pending.get(tuple(seq[-cut:])) if len(seq) >= cut else None
        if not queue:
            break
        w = queue.pop(0)
        used.add(w)
        seq.append(w.target)
    grams = {tuple(seq[i : i + cut + 1]) for i in range(max(0, len(seq) - cut))}
    for w in full:
        if w not in used and (*w.history, w.target) not in grams:
            raise InputError(
                f"history of user '{user}' disagrees with the user's other rows", path=w.path, line=w.line
            )
    return seq


def _mapper(mapping: dict[str, str] | None, path: Path, field: str, what: str) -> Callable[[str, int], str]:
    """Map a .inter token through an index file (identity when there is none)."""

    def apply(token: str, line: int) -> str:
        if mapping is None:
            return token
        try:
            return mapping[token]
        except KeyError:
            raise InputError(
                f"{what} index '{token}' is not in {what}2index", path=path, line=line, field=field
            ) from None

    return apply


def load_recbole(source: str | Path) -> RawDataset:
    files = find_recbole_files(source)
    item_of_index = read_index_map(files.item2index) if files.item2index else None
    user_of_index = read_index_map(files.user2index) if files.user2index else None
    info: dict = {"inter_files": [p.name for p in files.inter]}

    item_records: list[dict] = []
    known: set[str] | None = None
    item_file = files.item or files.text
    if item_file is not None:
        item_records, item_info = read_items(
            item_file, "item" if item_file == files.item else "text", item_of_index
        )
        info.update(item_info, item_file=item_file.name)
        known = {r["item_id"] for r in item_records}

    opened = [AtomicFile(p) for p in files.inter]
    variants = {"sequence" if "item_id_list" in f.columns else "interaction" for f in opened}
    if len(variants) > 1:
        raise InputError("mixes the interaction and the sequence variant (item_id_list)", path=files.prefix)
    variant = variants.pop()
    info["variant"] = variant

    def check_item(item: str, path: Path, line: int, field: str) -> str:
        if known is not None and item not in known:
            raise InputError(
                f"interaction names unknown item '{item}' (not in {item_file.name})",
                path=path,
                line=line,
                field=field,
            )
        return item

    users: list[str] = []
    items: list[str] = []
    stamps: list[float] = []
    if variant == "sequence":
        windows: dict[str, list[_Window]] = defaultdict(list)
        for f in opened:
            f.require("user_id", "item_id_list", "item_id")
            cu, ch, ct = f.columns["user_id"], f.columns["item_id_list"], f.columns["item_id"]
            user_map = _mapper(user_of_index, f.path, "user_id", "user")
            hist_map = _mapper(item_of_index, f.path, "item_id_list", "item")
            item_map = _mapper(item_of_index, f.path, "item_id", "item")
            for lineno, fields in f.rows():
                if not fields[cu].strip() or not fields[ct].strip() or not fields[ch].split():
                    raise InputError("empty user_id, item_id_list or item_id", path=f.path, line=lineno)
                history = tuple(
                    check_item(hist_map(t, lineno), f.path, lineno, "item_id_list")
                    for t in fields[ch].split()
                )
                target = check_item(item_map(fields[ct].strip(), lineno), f.path, lineno, "item_id")
                windows[user_map(fields[cu].strip(), lineno)].append(_Window(history, target, f.path, lineno))
        cut = max(len(w.history) for ws in windows.values() for w in ws)
        info["max_history_in_files"] = cut
        for user, ws in windows.items():
            seq = _rebuild_sequence(user, ws, cut)
            users.extend([user] * len(seq))
            items.extend(seq)
            stamps.extend(range(len(seq)))
        order = np.arange(len(users))
    else:
        has_time = all("timestamp" in f.columns for f in opened)
        info["timestamps"] = "timestamp column" if has_time else "file order"
        position: Counter[str] = Counter()
        for f in opened:
            f.require("user_id", "item_id")
            cu, ci = f.columns["user_id"], f.columns["item_id"]
            cts = f.columns.get("timestamp")
            user_map = _mapper(user_of_index, f.path, "user_id", "user")
            item_map = _mapper(item_of_index, f.path, "item_id", "item")
            for lineno, fields in f.rows():
                if not fields[cu].strip() or not fields[ci].strip():
                    raise InputError("empty user_id or item_id", path=f.path, line=lineno)
                user = user_map(fields[cu].strip(), lineno)
                users.append(user)
                items.append(check_item(item_map(fields[ci].strip(), lineno), f.path, lineno, "item_id"))
                if has_time:
                    assert cts is not None
                    try:
                        stamps.append(float(fields[cts]))
                    except ValueError:
                        raise InputError(
                            f"expected a number, got '{fields[cts]}'",
                            path=f.path,
                            line=lineno,
                            field="timestamp",
                        ) from None
                else:
                    stamps.append(position[user])
                    position[user] += 1
        # sort by the float timestamp first so sub-second order survives the int64 cast
        order = np.argsort(np.asarray(stamps, dtype=np.float64), kind="stable")

    if known is None:  # no item file: items are the ids seen, in first-seen order
        item_records = [{"item_id": i} for i in dict.fromkeys(items)]
    if item_of_index is not None:  # keep the RecBole index order (item index = RecBole index)
        rank = {original: n for n, original in enumerate(item_of_index.values())}
        item_records.sort(key=lambda r: rank.get(r["item_id"], len(rank)))

    stamp_arr = np.asarray(stamps, dtype=np.float64)[order]
    events = pd.DataFrame(
        {
            "user_id": np.asarray(users, dtype=object)[order],
            "timestamp": np.round(stamp_arr).astype(np.int64),
            "items": [[items[k]] for k in order],
        }
    )
    return finish(item_records, events, source=source, format="recbole", info=info)
