"""`builtin:folk-melodies`: the monophonic folk tunes bundled with music21, as melody token sequences; and the
windows of bars that a sequence model trains and is evaluated on.

The corpus (offline: the ABC files ship inside music21): the Essen folk songs (`essenFolksong`, 31 files, ~8,500
tunes; han1/han2 are Chinese songs), O'Neill's Music of Ireland (`oneills1850`, 39 files whose number ranges overlap:
a tune number seen in an earlier file is skipped as `duplicate_number`) and Ryan's Mammoth Collection
(`ryansMammoth`, 1,059 files of one tune each). Every tune is encoded with `hf_vq.music.melody_to_tokens` (4 steps
per quarter; a pickup bar padded with `NO_EVENT`s to a whole bar, so bar lines fall on multiples of the bar length;
repeats are not expanded: first and second endings follow each other as written). Tunes that cannot be encoded are
skipped and counted by reason: `tuplet`, `off_grid` (32nd notes, dotted 16ths), `pitch_range`, `overlap`, `unpitched`
(the `MelodyError` reasons), `empty` (no note), `duplicate_number`, `duplicate_content` (the same tokens as a tune
kept before), `unreadable` (music21 failed on the file or the tune).

Meters: every encodable tune is kept, whatever its meter, with its `meter` (the time signatures, e.g. "6/8", or
"4/4,3/4" when it changes, "" when free) and `steps_per_bar` (16 for 4/4 and 2/2, 8 for 2/4, 12 for 3/4 and 6/8; 0
for free or changing meters). Which tunes to cut into windows is the stream's choice: `SequenceStream` and
`melody_windows` keep by default only tunes whose bar is `bar_length` steps, as MusicVAE does (its melody converter
drops any sequence whose bar is not 16 steps); `match_meter=False` (`--match_meter false` in training and
`scripts/melodies.py`) cuts every tune in `bar_length`-step units.

Rows: `tune_id` (stable: `essen/<file>/<X number>`, `oneills/<number>`, `ryans/<file>`), `collection`, `title`,
`meter`, `steps_per_bar`, `tokens` (int8 values in [0, 90)). Split by tune: a tune is in `test` when the hash of its
id falls in the lowest `TEST_FRACTION`, so that no tune is on both sides and adding tunes moves no other.

Built once (parsing all files takes minutes; a process per core on Linux, one process elsewhere) and saved under the
datasets cache, keyed by `ENCODING_VERSION` and the installed music21's version (its ABC parser decides the tokens
too); later loads read the saved copy. The build report (tunes per collection, skips by reason, split sizes) is the
`info.description` of each split (`folk_melodies_report`) and `build_info.json` beside the data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from importlib.metadata import version
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict, DatasetInfo, Features, IterableDataset, Value, load_from_disk
from datasets import List as ListFeature
from datasets import config as datasets_config
from tqdm.auto import tqdm

from ..music.encoding import MELODY_ERROR_REASONS, NUM_SPECIAL_TOKENS, MelodyError, melody_to_tokens
from ..utils.errors import UsageError

logger = logging.getLogger(__name__)

# Bump when the tokens of any tune would change (encoding, pickup handling, skip rules): the cache is keyed by it.
ENCODING_VERSION = 1
# short name -> music21 corpus name
COLLECTIONS = {"essen": "essenFolksong", "oneills": "oneills1850", "ryans": "ryansMammoth"}
TEST_FRACTION = 0.1
SKIP_REASONS = (*MELODY_ERROR_REASONS, "empty", "duplicate_number", "duplicate_content", "unreadable")
FEATURES = Features(
    {
        "tune_id": Value("string"),
        "collection": Value("string"),
        "title": Value("string"),
        "meter": Value("string"),
        "steps_per_bar": Value("int32"),
        "tokens": ListFeature(Value("int8")),  # < VOCAB_SIZE = 90
    }
)
BUILD_INFO = "build_info.json"


# --------------------------------------------------------------------------------------------------- one file


def corpus_files(
    collections: Sequence[str] = tuple(COLLECTIONS), max_files: int | None = None
) -> list[tuple[str, Path]]:
    """`(collection, path)` of the ABC files of the given collections, in a fixed order (by name within each)."""
    from music21 import corpus

    unknown = [name for name in collections if name not in COLLECTIONS]
    if unknown:
        raise UsageError(f"unknown folk-melody collections {unknown}; available: {list(COLLECTIONS)}")
    files = []
    for name in collections:
        paths = sorted(Path(path) for path in corpus.getComposer(COLLECTIONS[name]))
        files += [(name, path) for path in paths[:max_files]]
    return files


def _parse_file(path: Path) -> list[Any]:
    """The scores of an ABC file (music21 returns an Opus for several tunes, a Score for one)."""
    from music21 import converter, stream

    # forceSource: parse the file itself, neither reading nor writing music21's pickle cache
    parsed = converter.parse(path, forceSource=True)
    return list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]


def _meter(score: Any) -> tuple[str, int]:
    """The time signatures of a tune (distinct, in order, comma-joined) and its bar length in steps (0 when the
    meter is free or changes, or the bar is off the step grid)."""
    from music21 import meter

    signatures = list(score.recurse().getElementsByClass(meter.TimeSignature))
    names = list(dict.fromkeys(signature.ratioString for signature in signatures))
    bars = {signature.barDuration.quarterLength for signature in signatures}
    steps_per_bar = 0
    if len(bars) == 1:
        steps = bars.pop() * 4  # STEPS_PER_QUARTER
        steps_per_bar = int(steps) if steps == int(steps) else 0
    return ",".join(names), steps_per_bar


def _tune_id(collection: str, path: Path, number: Any, index: int) -> str:
    if collection == "ryans":
        return f"ryans/{path.stem}"
    label = str(number).strip() if number not in (None, "") else f"#{index}"
    if collection == "oneills":  # the number is O'Neill's, shared by the files that overlap
        return f"oneills/{int(label):04d}" if label.isdigit() else f"oneills/{label}"
    return f"{collection}/{path.stem}/{label}"


def _encode_file(collection: str, path: Path, max_tunes: int | None = None) -> dict[str, Any]:
    """The rows of one ABC file and its skips: `{"rows": [...], "skips": [(tune_id, reason, message)], "tunes": n}`.
    Runs in a worker process: returns plain data."""
    try:
        scores = _parse_file(path)
    except Exception as error:  # music21's ABC reader raises many kinds on malformed files
        return {"rows": [], "skips": [(f"{collection}/{path.stem}", "unreadable", repr(error))], "tunes": 1}
    rows, skips = [], []
    for index, score in enumerate(scores[:max_tunes]):
        metadata = score.metadata
        tune_id = _tune_id(collection, path, metadata.number if metadata else None, index)
        try:
            tokens = melody_to_tokens(score)
            meter, steps_per_bar = _meter(score)
        except MelodyError as error:
            skips.append((tune_id, error.reason, str(error)))
            continue
        except Exception as error:  # a music21 failure on one odd tune should not stop the build
            skips.append((tune_id, "unreadable", f"{type(error).__name__}: {error}"))
            continue
        if not any(token >= NUM_SPECIAL_TOKENS for token in tokens):
            skips.append((tune_id, "empty", "no note"))
            continue
        title = (metadata.title if metadata else None) or ""
        rows.append(
            {
                "tune_id": tune_id,
                "collection": collection,
                "title": title,
                "meter": meter,
                "steps_per_bar": steps_per_bar,
                "tokens": tokens,
            }
        )
    return {"rows": rows, "skips": skips, "tunes": min(len(scores), max_tunes or len(scores))}


# ------------------------------------------------------------------------------------------------- the corpus


def tune_split(tune_id: str) -> str:
    """`"test"` for the tunes whose id hashes into the lowest `TEST_FRACTION`, else `"train"`."""
    digest = hashlib.sha256(tune_id.encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") < TEST_FRACTION * 2**64 else "train"


def _worker_context() -> BaseContext | None:
    """How the build starts worker processes: by fork on Linux; elsewhere none are started (None), the files are
    parsed in this process.

    Fork only on Linux: on macOS a child forked after torch (and the system frameworks it loads) is unsafe, it may
    crash or hang. Spawn is not used instead: it re-runs the caller's script in each worker, and a script without a
    `__main__` guard that loads the builtin at the top would fail. The build is slower off Linux, and done once.
    """
    return get_context("fork") if sys.platform.startswith("linux") else None


def _encode_files(files: list[tuple[str, Path]], max_tunes: int | None, num_proc: int, progress: bool) -> list[dict]:
    """`_encode_file` of every file, in the order of `files`, with a progress bar; in `num_proc` processes where
    `_worker_context` allows them, else in this process."""
    results: list[dict | None] = [None] * len(files)
    bar = tqdm(total=len(files), unit="file", desc="folk melodies", disable=not progress)
    kept = 0
    context = _worker_context() if num_proc > 1 and len(files) > 1 else None
    if context is None:
        if num_proc > 1 and len(files) > 1:
            logger.info("folk melodies: parsing in this process (worker processes are forked on Linux only)")
        for i, (collection, path) in enumerate(files):
            results[i] = _encode_file(collection, path, max_tunes)
            kept += len(results[i]["rows"])
            bar.set_postfix(tunes=kept, refresh=False)
            bar.update()
    else:
        # largest files first, so that no process is left with a 700-tune file at the end; the forked workers only
        # parse ABC and return lists, touching no torch state
        order = sorted(range(len(files)), key=lambda i: -files[i][1].stat().st_size)
        with ProcessPoolExecutor(num_proc, mp_context=context) as pool:
            futures = {pool.submit(_encode_file, *files[i], max_tunes): i for i in order}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                kept += len(results[futures[future]]["rows"])
                bar.set_postfix(tunes=kept, refresh=False)
                bar.update()
    bar.close()
    return results


def build_folk_melodies(
    collections: Sequence[str] = tuple(COLLECTIONS),
    max_files: int | None = None,
    max_tunes_per_file: int | None = None,
    num_proc: int | None = None,
    progress: bool = True,
) -> tuple[DatasetDict, dict[str, Any]]:
    """Parse and encode the corpus (no cache): a `DatasetDict` with `train` and `test`, and the build report.

    Args:
        collections: short names from `COLLECTIONS` (`essen`, `oneills`, `ryans`).
        max_files: take only the first this many files of each collection (tests, quick looks).
        max_tunes_per_file: take only the first this many tunes of each file.
        num_proc: processes parsing files; defaults to the number of cores.
        progress: show a progress bar over the files.
    """
    start = time.perf_counter()
    files = corpus_files(collections, max_files)
    num_proc = (os.cpu_count() or 1) if num_proc is None else num_proc
    results = _encode_files(files, max_tunes_per_file, num_proc, progress)

    report: dict[str, Any] = {name: {"files": 0, "tunes": 0, "kept": 0, "skipped": Counter()} for name in collections}
    examples: dict[str, str] = {}  # the first skip of each reason, for the log
    splits: dict[str, list[dict]] = {"train": [], "test": []}
    seen_ids: set[str] = set()
    seen_content: dict[bytes, str] = {}
    for (collection, _path), result in zip(files, results, strict=True):
        entry = report[collection]
        entry["files"] += 1
        entry["tunes"] += result["tunes"]
        skips = list(result["skips"])
        for row in result["rows"]:
            tokens = np.asarray(row["tokens"], dtype=np.int8).tobytes()
            if row["tune_id"] in seen_ids:
                skips.append((row["tune_id"], "duplicate_number", "the same tune number in an earlier file"))
            elif tokens in seen_content:
                skips.append((row["tune_id"], "duplicate_content", f"the same tokens as {seen_content[tokens]}"))
            else:
                seen_ids.add(row["tune_id"])
                seen_content[tokens] = row["tune_id"]
                splits[tune_split(row["tune_id"])].append(row)
                entry["kept"] += 1
        for tune_id, reason, message in skips:
            entry["skipped"][reason] += 1
            examples.setdefault(reason, f"{tune_id}: {message}")

    summary = {
        "encoding_version": ENCODING_VERSION,
        "music21_version": version("music21"),  # as in the cache folder's name
        "collections": {
            name: {**entry, "skipped": dict(sorted(entry["skipped"].items()))} for name, entry in report.items()
        },
        "skipped": dict(sorted(sum((entry["skipped"] for entry in report.values()), Counter()).items())),
        "splits": {name: len(rows) for name, rows in splits.items()},
        "limits": {"max_files": max_files, "max_tunes_per_file": max_tunes_per_file},
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    for reason, example in sorted(examples.items()):
        logger.info("folk melodies: skipped %d tunes as %s, e.g. %s", summary["skipped"][reason], reason, example)
    logger.info("folk melodies: %s", json.dumps(summary))
    info = DatasetInfo(description=json.dumps(summary), features=FEATURES)

    def split(rows: list[dict]) -> Dataset:
        columns = {name: [row[name] for row in rows] for name in FEATURES}
        return Dataset.from_dict(columns, features=FEATURES, info=info.copy())

    return DatasetDict({name: split(rows) for name, rows in splits.items()}), summary


def folk_melodies_cache_path(
    collections: Sequence[str] = tuple(COLLECTIONS),
    max_files: int | None = None,
    max_tunes_per_file: int | None = None,
) -> Path:
    """Where `load_folk_melodies` keeps a build: `<datasets cache>/hf_vq/folk-melodies-v<ENCODING_VERSION>-music21-
    <installed version>` (another music21 may parse a tune differently, so its build is another), with a suffix naming
    the subset when the build is limited (so that a quick build never stands in for the full corpus)."""
    name = f"folk-melodies-v{ENCODING_VERSION}-music21-{version('music21')}"
    if tuple(collections) != tuple(COLLECTIONS) or max_files is not None or max_tunes_per_file is not None:
        key = json.dumps([list(collections), max_files, max_tunes_per_file])
        name += "-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    return Path(datasets_config.HF_DATASETS_CACHE) / "hf_vq" / name


def load_folk_melodies(
    cache_dir: str | os.PathLike | None = None,
    collections: Sequence[str] = tuple(COLLECTIONS),
    max_files: int | None = None,
    max_tunes_per_file: int | None = None,
    num_proc: int | None = None,
    progress: bool = True,
) -> DatasetDict:
    """`builtin:folk-melodies`: the saved corpus if it exists, else built (`build_folk_melodies`) and saved first.

    `cache_dir` replaces `folk_melodies_cache_path(...)` (the folder the splits are saved in). The save is atomic
    (a temporary folder beside it, renamed), so an interrupted build leaves nothing that a later load would trust.
    """
    path = (
        Path(cache_dir)
        if cache_dir is not None
        else folk_melodies_cache_path(collections, max_files, max_tunes_per_file)
    )
    if (path / "dataset_dict.json").is_file():
        return load_from_disk(str(path))
    dataset, summary = build_folk_melodies(collections, max_files, max_tunes_per_file, num_proc, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        # one shard a split (a few MB); also the only way datasets can read back an empty split (a limited build)
        dataset.save_to_disk(str(tmp), num_shards=dict.fromkeys(dataset, 1))
        (tmp / BUILD_INFO).write_text(json.dumps(summary, indent=2) + "\n")
        tmp.chmod(0o755)  # mkdtemp's 0o700 would hide a shared cache from other users
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "dataset_dict.json").is_file():  # not another process's finished build: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("folk melodies saved to %s", path)
    return load_from_disk(str(path))


def folk_melodies_report(dataset: Dataset | DatasetDict) -> dict[str, Any]:
    """The build report stored in a folk-melodies split's `info.description`."""
    split = next(iter(dataset.values())) if isinstance(dataset, DatasetDict) else dataset
    return json.loads(split.info.description)


# ----------------------------------------------------------------------------------------------------- windows


def tune_windows(tokens: np.ndarray, window: int, hop: int, dedupe: bool = True) -> tuple[np.ndarray, int, int]:
    """The windows of `window` steps of one tune, starting every `hop` steps from step 0 (the last partial one
    dropped): `(windows (n, window) int8, silent, duplicates)`, without the windows that hold no note-on (`silent`)
    and, with `dedupe`, without repeats of an earlier window of the tune (`duplicates`, as MusicVAE removes them)."""
    tokens = np.asarray(tokens, dtype=np.int8)
    count = (len(tokens) - window) // hop + 1 if len(tokens) >= window else 0
    if count <= 0:
        return np.zeros((0, window), dtype=np.int8), 0, 0
    windows = tokens[np.arange(count)[:, None] * hop + np.arange(window)]  # (count, window)
    windows = windows[(windows >= NUM_SPECIAL_TOKENS).any(axis=1)]
    silent = count - len(windows)
    duplicates = 0
    if dedupe and len(windows):
        _, first = np.unique(windows, axis=0, return_index=True)
        duplicates = len(windows) - len(first)
        windows = windows[np.sort(first)]  # keep the tune's order
    return windows, silent, duplicates


def _check_columns(available: list[str], columns: list[str]) -> None:
    for column in columns:
        if column not in available:
            hint = (
                " (the bar length in steps; to cut every tune of any meter, pass --match_meter false, or set "
                "`match_meter: false` in a recipe)"
                if column != columns[0]
                else ""
            )
            raise UsageError(f"column {column!r} is not a column of the melody dataset{hint}; columns: {available}")


def _tunes(dataset: Dataset | IterableDataset, tokens_column: str, bar_column: str | None) -> Iterator[tuple]:
    """`(tokens, steps_per_bar or None)` of every row, read in batches."""
    columns = [tokens_column] + ([bar_column] if bar_column else [])
    if dataset.features is not None:
        _check_columns(list(dataset.features), columns)
        dataset = dataset.select_columns(columns)
    for batch in dataset.with_format("numpy").iter(batch_size=512):
        _check_columns(list(batch), columns)  # a stream whose features were unknown
        bars = batch[bar_column] if bar_column else [None] * len(batch[tokens_column])
        yield from zip(batch[tokens_column], bars, strict=True)


def cut_melody_windows(
    dataset: Dataset | IterableDataset,
    num_bars: int,
    bar_length: int = 16,
    match_meter: bool = True,
    dedupe: bool = True,
    tokens_column: str = "tokens",
    bar_column: str = "steps_per_bar",
) -> tuple[np.ndarray, dict[str, int]]:
    """Every window of `num_bars * bar_length` steps of every tune, hop one bar, in dataset order (see
    `tune_windows`); with `match_meter`, only tunes whose `bar_column` is `bar_length`. Returns the windows
    `(N, T)` int8 and counts: tunes, tunes_other_meter, tunes_too_short, windows, silent, duplicate."""
    if num_bars < 1 or bar_length < 1:
        raise UsageError(f"`num_bars` and `bar_length` must be >= 1, got {num_bars} and {bar_length}")
    window = num_bars * bar_length
    stats = dict.fromkeys(("tunes", "tunes_other_meter", "tunes_too_short", "windows", "silent", "duplicate"), 0)
    parts = []
    for tokens, steps_per_bar in _tunes(dataset, tokens_column, bar_column if match_meter else None):
        stats["tunes"] += 1
        if match_meter and steps_per_bar != bar_length:
            stats["tunes_other_meter"] += 1
            continue
        if len(tokens) < window:
            stats["tunes_too_short"] += 1
            continue
        windows, silent, duplicates = tune_windows(tokens, window, bar_length, dedupe)
        parts.append(windows)
        stats["silent"] += silent
        stats["duplicate"] += duplicates
    windows = np.concatenate(parts) if parts else np.zeros((0, window), dtype=np.int8)
    stats["windows"] = len(windows)
    return windows, stats


def melody_windows(
    dataset: Dataset | IterableDataset,
    num_bars: int,
    bar_length: int = 16,
    max_windows: int | None = None,
    match_meter: bool = True,
    dedupe: bool = True,
    tokens_column: str = "tokens",
    bar_column: str = "steps_per_bar",
) -> torch.Tensor:
    """The windows of a split for evaluation, always the same ones: `(N, num_bars * bar_length)` int64.

    With `max_windows`, that many evenly spaced windows in dataset order (so they come from tunes all over the
    split, not the first few). Cutting as `cut_melody_windows`.
    """
    windows, _ = cut_melody_windows(dataset, num_bars, bar_length, match_meter, dedupe, tokens_column, bar_column)
    if max_windows is not None and max_windows < len(windows):
        if max_windows < 1:
            raise UsageError(f"`max_windows` must be >= 1, got {max_windows}")
        windows = windows[np.unique(np.linspace(0, len(windows) - 1, max_windows).round().astype(np.int64))]
    return torch.from_numpy(windows.astype(np.int64))
