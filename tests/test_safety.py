"""Issue 15: never lose a user's data, never show a traceback.

Ownership markers and ``--overwrite``, output over input, locks, stale temporaries, the events
log's torn-tail rule, and one table of bad inputs that must each end in a one-line exit-2 error.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, make_tiny_prepared

from gensar.cli import main
from gensar.errors import InputError
from gensar.ownership import MARKER, is_ours
from gensar.serve.events import EventLog, read_log

TINY = str(REPO / "src" / "gensar" / "configs" / "tiny.yaml")
KNOWN = {"i1", "i2"}.__contains__


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Read-only inputs shared by the tests: a canonical source, variants of it, a run with data/."""
    root = tmp_path_factory.mktemp("inputs")
    assert main(["synth", "--out", str(root / "src"), "--users", "40", "--items", "150"]) == 0
    lines = (root / "src" / "events.jsonl").read_text().splitlines()
    for name, replace in (("big_ts", None), ("deep", "[" * 100_000 + "]" * 100_000)):
        (root / name).mkdir()
        (root / name / "items.jsonl").write_bytes((root / "src" / "items.jsonl").read_bytes())
        edited = list(lines)
        if replace is None:
            first = json.loads(edited[0])
            first["timestamp"] = 10**30
            edited[0] = json.dumps(first)
        else:
            edited[100] = replace
        (root / name / "events.jsonl").write_text("\n".join(edited) + "\n")
    make_tiny_prepared().save(root / "run" / "data")
    (root / "requests.jsonl").write_text('{"user_id": "u1", "k": 3}\n')
    (root / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    return root


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` (hidden ones too) with its bytes (None for a directory)."""
    return {p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in root.rglob("*")}


def _one_line_error(capsys, argv: list[str], expect: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"gensar {argv[0]}: error: "), err
    assert "Traceback" not in err and expect in err, err


# ---- 1.1 data loss: --out of a directory gensar did not write --------------------------------------

def test_pipeline_refuses_a_directory_it_did_not_write(tmp_path, capsys, monkeypatch):
    user = tmp_path / "mine"
    (user / "data" / "mysrc").mkdir(parents=True)
    (user / "data" / "mysrc" / "events.csv").write_text("precious\n")
    (user / "metrics.json").write_text("{}\n")
    before = _tree(tmp_path)
    _one_line_error(capsys, ["pipeline", "--config", TINY, "--out", str(user)], "is not a gensar run directory")
    monkeypatch.chdir(user)
    _one_line_error(capsys, ["pipeline", "--config", TINY, "--out", "."], "is not a gensar run directory")
    assert _tree(tmp_path) == before


def test_overwrite_replaces_only_what_gensar_wrote(tmp_path, capsys):
    out = tmp_path / "world"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["synth", "--out", str(out), "--users", "40", "--items", "150"]
    _one_line_error(capsys, argv + ["--overwrite"], "was not written by gensar")
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    assert main(argv) == 0 and is_ours(out)  # an empty directory may be filled
    assert json.loads((out / MARKER).read_text())["kind"] == "synth"
    _one_line_error(capsys, argv, "use --overwrite")
    assert main(argv + ["--overwrite", "--seed", "3"]) == 0  # ours: replaced


def test_overwrite_leaves_a_neighbour_named_like_the_old_output_alone(tmp_path):
    """Replacing an output moves the previous one aside under a fresh name: a directory of the
    user's that happens to be called ``.OUT.old`` beside it survives, and nothing is left over."""
    out = tmp_path / "world"
    argv = ["synth", "--out", str(out), "--users", "40", "--items", "150"]
    assert main(argv) == 0
    first = (out / "items.jsonl").read_bytes()
    mine = tmp_path / ".world.old"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert main(argv + ["--overwrite", "--seed", "3"]) == 0
    assert (mine / "notes.txt").read_text() == "mine"
    assert (out / "items.jsonl").read_bytes() != first  # replaced by the seed-3 world
    assert sorted(p.name for p in tmp_path.iterdir()) == [".world.old", "world"]


def test_directories_written_before_the_marker_are_still_ours(tmp_path, inputs):
    prepared = tmp_path / "prepared"
    assert main(["prepare", str(inputs / "src"), "--out", str(prepared)]) == 0
    (prepared / MARKER).unlink()
    assert is_ours(prepared)  # manifest.json with gensar_version and schema_version
    assert main(["prepare", str(inputs / "src"), "--out", str(prepared), "--overwrite"]) == 0
    run = tmp_path / "run"
    run.mkdir()
    (run / "pipeline.yaml").write_text("data: {}\n")
    (run / "stages.json").write_text('{"data": "abc"}\n')
    assert is_ours(run)
    (run / "stages.json").write_text('{"my": "own"}\n')  # a user's stages.json is not ours
    assert not is_ours(run)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text('{"name": "my dataset"}\n')
    assert not is_ours(fake)


# ---- 1.2 the events log -----------------------------------------------------------------------------

def test_events_log_refuses_a_file_that_is_not_a_log(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"my shopping list")  # one line, no trailing newline: not a torn record
    with pytest.raises(InputError, match="not an events log"):
        EventLog(path, KNOWN)
    assert path.read_bytes() == b"my shopping list"
    with pytest.raises(InputError, match="not an events log"):
        read_log(path, KNOWN)
    good = b'{"seq": 1, "user_id": "u", "behavior": "rec", "query": "", "items": ["i1"], "timestamp": 0}\n'
    path.write_bytes(good + b"not a record")
    with pytest.raises(InputError, match=f"{path}:2"):
        EventLog(path, KNOWN)
    assert path.read_bytes() == good + b"not a record"
    # a real torn write is still cut, even of the very first record
    for torn in (b'{"seq": 1, "user_id": "u", "beh', b'{"se'):
        path.write_bytes(torn)
        log = EventLog(path, KNOWN)
        assert log.records == [] and path.read_bytes() == b""
        log.close()


# ---- 1.3 output over input --------------------------------------------------------------------------

def test_output_over_input_is_refused(tmp_path, capsys, inputs):
    src = tmp_path / "src"
    src.mkdir()
    for f in (inputs / "src").iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    (src / MARKER).unlink(missing_ok=True)  # a user's own source directory
    before = _tree(tmp_path)
    for out, how in ((src, "is the input"), (tmp_path, "contains the input"), (src / "sub", "lies inside")):
        _one_line_error(capsys, ["prepare", str(src), "--out", str(out), "--overwrite"], how)
    assert _tree(tmp_path) == before
    # ... even a directory gensar wrote: a synth world used as a prepare source
    _one_line_error(capsys, ["prepare", str(inputs / "src"), "--out", str(inputs / "src"), "--overwrite"],
                    "is the input")
    reqs = tmp_path / "requests.jsonl"
    reqs.write_bytes((inputs / "requests.jsonl").read_bytes())
    _one_line_error(capsys, ["recommend", str(inputs / "run"), "--engine", "fake", "--batch", str(reqs),
                             "--out", str(reqs)], "is the input --batch")
    assert reqs.read_bytes() == (inputs / "requests.jsonl").read_bytes()


# ---- 1.4 one writer at a time -----------------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from gensar.locks import DirLock
    lock = DirLock(Path(sys.argv[1]), Path(sys.argv[1])).acquire()
    print("locked", flush=True)
    sys.stdin.read()
""")


@pytest.mark.parametrize("command", ["pipeline", "prepare"])
def test_a_second_writer_gets_exit_2_naming_the_holder(tmp_path, capsys, inputs, command):
    out = tmp_path / "out"
    if command == "pipeline":
        out.mkdir()
        lock_file = out / ".gensar.lock"
        argv = ["pipeline", "--config", TINY, "--set", "data.source=/nonexistent", "--out", str(out)]
    else:
        lock_file = tmp_path / ".out.lock"
        argv = ["prepare", str(inputs / "src"), "--out", str(out)]
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_file)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    try:
        assert holder.stdout.readline() == "locked\n"
        _one_line_error(capsys, argv, f"in use by another gensar process (pid {holder.pid}")
        assert not (out / "data").exists()
    finally:
        holder.communicate("")
    assert main(argv[:-2] + ["--out", str(out)]) == (2 if command == "pipeline" else 0)  # the lock is free
    assert not lock_file.exists()


def test_a_users_file_named_like_the_lock_is_refused_not_truncated(tmp_path, capsys, inputs):
    mine = tmp_path / ".out.lock"
    mine.write_text("my notes\n")
    argv = ["prepare", str(inputs / "src"), "--out", str(tmp_path / "out")]
    _one_line_error(capsys, argv, f"{mine}: exists and is not a gensar lock file")
    assert mine.read_text() == "my notes\n" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("left", ["12345\n", ""])  # a killed holder's pid; killed before writing it
def test_the_lock_file_of_a_killed_holder_is_taken_over(tmp_path, inputs, left):
    (tmp_path / ".out.lock").write_text(left)
    assert main(["prepare", str(inputs / "src"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "events.parquet").is_file() and not (tmp_path / ".out.lock").exists()


# ---- 1.5 stale temporaries --------------------------------------------------------------------------

def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path, inputs):
    stale = tmp_path / ".out.k1ll3d_x.tmp"  # atomic_dir's exact naming: .NAME.<8 chars>.tmp
    stale.mkdir()
    (stale / "events.parquet").write_bytes(b"half")
    others = [tmp_path / ".out.keep.tmp", tmp_path / ".other.k1ll3d_x.tmp", tmp_path / ".out.12345678.tmp.bak"]
    for p in others:
        p.mkdir()
    plain = tmp_path / ".out.abcdefgh.tmp"
    plain.write_text("a file, not our temporary directory")
    assert main(["prepare", str(inputs / "src"), "--out", str(tmp_path / "out")]) == 0
    assert not stale.exists()
    assert all(p.is_dir() for p in others) and plain.is_file()


def test_a_pipeline_run_removes_the_stale_temporaries_of_a_killed_one(tmp_path):
    from gensar import locks
    from gensar.pipeline import LOCK_NAME, claim_run_dir

    run = tmp_path / "run"
    assert claim_run_dir(run) is True
    locks.release(run / LOCK_NAME)
    stale = [run / ".data.k1ll3d_x.tmp", run / ".metrics.json.abc_1234.tmp"]
    stale[0].mkdir()
    stale[1].write_text("{")
    keep = [run / ".metrics.json.notes.tmp", run / "metrics.json"]
    for p in keep:
        p.write_text("{}")
    assert claim_run_dir(run) is False
    locks.release(run / LOCK_NAME)
    assert not any(p.exists() for p in stale) and all(p.is_file() for p in keep)


# ---- 3. tracebacks that must be one-line errors -----------------------------------------------------

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


BAD_INPUTS = [
    # (id, argv with {in} = inputs and {tmp} = this case's directory, expected message, patch)
    ("timestamp-1e30", ["prepare", "{in}/big_ts", "--out", "{tmp}/out"], "events.jsonl:1: field 'timestamp'", None),
    ("json-nested-100000", ["prepare", "{in}/deep", "--out", "{tmp}/out"], "events.jsonl:101: malformed JSON", None),
    ("prepare-missing-source", ["prepare", "{in}/missing", "--out", "{tmp}/new/deeper/out"], "does not exist", None),
    ("prepare-seed", ["prepare", "{in}/src", "--out", "{tmp}/out", "--seed", "-1"], "'seed'", None),
    ("prepare-kcore", ["prepare", "{in}/src", "--out", "{tmp}/out", "--kcore", str(10**23)], "'kcore'", None),
    ("prepare-max-history", ["prepare", "{in}/src", "--out", "{tmp}/out", "--max-history", str(10**23)],
     "'max_history'", None),
    ("synth-seed", ["synth", "--out", "{tmp}/out", "--seed", "-1"], "'seed'", None),
    ("synth-users", ["synth", "--out", "{tmp}/out", "--users", "99999999999999999999"], "'n_users'", None),
    ("prepare-parent-not-writable", ["prepare", "{in}/src", "--out", "{tmp}/file/out"], "{tmp}/file", None),
    ("synth-parent-not-writable", ["synth", "--out", "{tmp}/file/out"], "{tmp}/file", None),
    ("pipeline-parent-not-writable", ["pipeline", "--config", TINY, "--out", "{tmp}/file/run"], "{tmp}/file", None),
    ("prepare-disk-full", ["prepare", "{in}/src", "--out", "{tmp}/out"], "No space left on device",
     (pd.DataFrame, "to_parquet")),
    ("synth-disk-full", ["synth", "--out", "{tmp}/out", "--users", "40", "--items", "150"],
     "No space left on device", (Path, "write_bytes")),
    ("pipeline-disk-full", ["pipeline", "--config", TINY, "--out", "{tmp}/run"], "No space left on device",
     (os, "fsync")),
    ("serve-port", ["serve", "{in}/run", "--engine", "fake", "--port", "99999"], "--port 99999", None),
    ("serve-read-only-run", ["serve", "{in}/run", "--engine", "fake", "--port", "0", "--events-log",
                             "{tmp}/file/live.jsonl"], "cannot open the events log", None),
    ("recommend-out-dir", ["recommend", "{in}/run", "--engine", "fake", "--batch", "{in}/requests.jsonl",
                           "--out", "{tmp}"], "is a directory", None),
    ("pipeline-out-file", ["pipeline", "--config", TINY, "--out", "{tmp}/file"], "not a directory", None),
    ("config-binary", ["pipeline", "--config", "{in}/binary.yaml", "--out", "{tmp}/run"], "binary.yaml", None),
    ("synth-config-binary", ["synth", "--config", "{in}/binary.yaml", "--out", "{tmp}/out"], "not UTF-8", None),
]


@pytest.mark.parametrize(("argv", "expect", "patch"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, capsys, monkeypatch, inputs, argv, expect, patch):
    (tmp_path / "file").write_text("a file where a directory is expected\n")
    before, inputs_before = _tree(tmp_path), _tree(inputs)
    if patch is not None:
        monkeypatch.setattr(*patch, _enospc)
    fill = {"{in}": str(inputs), "{tmp}": str(tmp_path)}
    argv = [_fill(a, fill) for a in argv]
    _one_line_error(capsys, argv, _fill(expect, fill))
    monkeypatch.undo()
    assert _tree(tmp_path) == before and _tree(inputs) == inputs_before


def _fill(text: str, fill: dict[str, str]) -> str:
    for key, value in fill.items():
        text = text.replace(key, value)
    return text


def test_a_closed_pipe_ends_quietly(inputs):
    """`gensar stats DIR --json | head -1`: the reader leaves first; no BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "gensar.cli", "stats", str(inputs / "run" / "data"), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    proc.stdout.close()  # long before the child has imported anything and printed
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 141) and err == ""


# ---- 2. malformed input must not pass ---------------------------------------------------------------

def _csv_source(root: Path, events: list[str]) -> Path:
    root.mkdir()
    (root / "items.csv").write_text('item_id,title\na,"a title\nover two lines"\nb,bee\nc,sea\n')  # text may
    (root / "events.csv").write_text("user_id,timestamp,behavior,query,items\n" + "\n".join(events) + "\n")
    return root


def test_csv_quote_over_a_line_end_is_refused_where_it_opened(tmp_path):
    from gensar.data.canonical import read_canonical

    rows = [f"u{i},{i},search,q{i},a" for i in range(1, 9)]
    ok = read_canonical(_csv_source(tmp_path / "ok", rows))
    assert ok.items["title"][0] == "a title\nover two lines" and len(ok.events) == 8
    merged = list(rows)
    merged[3] = 'u4,4,search,"usb'  # the quote closes on the next line: two records become one
    merged[4] = 'mic",b'
    with pytest.raises(InputError, match=r"events\.csv:5: field 'query': a quoted value runs over a line end"):
        read_canonical(_csv_source(tmp_path / "merged", merged))
    # an unclosed quote swallows the rest of the file, past csv's field size limit (128 KiB)
    unclosed = [f"user{i:06d},{i},search,query number {i},a" for i in range(1, 6001)]
    unclosed[99] = 'u100,100,search,"never closed,a'
    with pytest.raises(InputError, match=r"events\.csv:101: "):
        read_canonical(_csv_source(tmp_path / "unclosed", unclosed))


def test_events_api_and_prepare_share_one_validation(tmp_path):
    from pydantic import ValidationError

    from gensar.data.canonical import read_canonical
    from gensar.serve.engine import HistoryEvent
    from gensar.serve.events import check_event
    from gensar.serve.schemas import EventRequest

    bad = [({"user_id": "u1", "behavior": "search", "query": "q", "items": ["a", "a"]}, "'a' is listed twice"),
           ({"user_id": "u\x001", "behavior": "rec", "items": ["a"]}, "control character"),
           ({"user_id": "u\n1", "behavior": "rec", "items": ["a"]}, "control character")]
    for body, message in bad:
        with pytest.raises(ValidationError, match=message):
            EventRequest.model_validate(body)
        event = HistoryEvent(body["behavior"], body.get("query", ""), tuple(body["items"]), 0)
        assert message in check_event(body["user_id"], event, {"a"}.__contains__)  # log replay
        src = tmp_path / f"src{len(list(tmp_path.iterdir()))}"
        src.mkdir()
        (src / "items.jsonl").write_text('{"item_id": "a"}\n')
        (src / "events.jsonl").write_text(json.dumps({"timestamp": 0, **body}) + "\n")
        with pytest.raises(InputError, match=message):
            read_canonical(src)


def test_duplicate_yaml_keys_and_empty_configs_are_refused(tmp_path, capsys):
    from gensar.config import read_yaml
    from gensar.errors import ConfigError

    dup = tmp_path / "dup.yaml"
    dup.write_text("n_users: 40\nseed: 1\nn_users: 50\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml:3: invalid YAML: duplicate key 'n_users' \(first on line 1\)"):
        read_yaml(dup)
    nested = tmp_path / "nested.yaml"
    nested.write_text("train:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match="duplicate key 'lr'"):
        read_yaml(nested)
    for text in ("", "# only a comment\n"):
        empty = tmp_path / "empty.yaml"
        empty.write_text(text)
        _one_line_error(capsys, ["synth", "--config", str(empty), "--out", str(tmp_path / "out")],
                        "config file is empty")
    assert read_yaml(REPO / "configs" / "tiny.yaml")["data"]["source"] == "synthetic"


def test_more_negatives_than_the_catalog_warns_with_the_count(tmp_path, capsys, inputs):
    assert main(["prepare", str(inputs / "src"), "--out", str(tmp_path / "out"), "--num-negatives", "500"]) == 0
    err = capsys.readouterr().err
    lists = json.loads((tmp_path / "out" / "manifest.json").read_text())["candidates"]["lists"]
    assert f"warning: {lists} of {lists} candidate lists have fewer than --num-negatives 500" in err
    assert main(["prepare", str(inputs / "src"), "--out", str(tmp_path / "ok"), "--num-negatives", "20"]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("bad, message", [
    ({"items": []}, "event of user 'u2' has no items"),
    ({"items": ["zz"]}, "unknown item 'zz' \\(user 'u2'\\)"),
    ({"behavior": "search", "query": "  "}, "search session of user 'u2' has an empty query"),
    ({"items": ["a", "b"]}, "a rec event names exactly one clicked item \\(user 'u2'\\)"),
    ({"query": "x"}, "a rec event has no query"),
    ({"behavior": "search", "query": "q", "items": ["b", "b"]}, "item 'b' is listed twice"),
    ({"behavior": "search", "query": "q\nr"}, "contains a NUL or a line break"),
    ({"user_id": "u\t2"}, "control character"),
    ({"user_id": " "}, "user_id must not be empty"),
])
def test_validate_names_the_first_bad_event_among_many(bad, message):
    """``validate`` checks suspect rows only (found per column); the error is the row-by-row one, of
    the first bad row in table order."""
    from gensar.data.schema import make_events, make_items, validate

    items = make_items([{"item_id": i, "title": i} for i in ("a", "b", "c")])
    good = [{"user_id": f"u{n % 5}", "timestamp": n, "behavior": "rec", "query": "", "items": ["abc"[n % 3]]}
            for n in range(300)] + [{"user_id": "u9", "timestamp": 1, "behavior": "search", "query": "q a",
                                     "items": ["a", "c"]}]
    validate(items, make_events(good))
    first = {"user_id": "u2", "timestamp": -1, "behavior": "rec", "query": "", "items": ["a"]} | bad
    later = {"user_id": "u4", "timestamp": 10**6, "behavior": "rec", "query": "", "items": ["nope"]}
    events = make_events(good + [later, first])  # sorted by user: the u2 row before the u4 one
    assert events["user_id"].tolist().index(first["user_id"]) < events["user_id"].tolist().index("u4")
    with pytest.raises(InputError, match=message):
        validate(items, events)


def test_benchmark_results_replace_only_their_own_earlier_results(tmp_path, capsys, monkeypatch):
    """``--json`` / ``--out`` of the benchmarks: a user's file (or another tool's JSON, or a
    directory) is refused with exit 2 and left byte for byte; a result the benchmark wrote may be
    written again."""
    import importlib.util

    from gensar.errors import OutputError
    from gensar.io import check_output_json

    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "data"}\n')
    other = tmp_path / "serve.json"
    other.write_text('{"benchmark": "serve"}\n')
    text = tmp_path / "notes.txt"
    text.write_text("not json at all")
    for path in (mine, other, text, tmp_path):
        with pytest.raises(OutputError, match="not a result this command wrote"):
            check_output_json(path, "benchmark", "train_throughput")
    assert check_output_json(other, "benchmark", "serve") == other
    assert check_output_json(tmp_path / "new.json", "benchmark", "serve") == tmp_path / "new.json"

    spec = importlib.util.spec_from_file_location("bench_train", REPO / "benchmarks" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_train", bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    before = mine.read_bytes()
    assert bench.main(["--json", str(mine), "--steps", "1"]) == 2  # refused before any work
    assert mine.read_bytes() == before
    assert "not a result this command wrote" in capsys.readouterr().err
