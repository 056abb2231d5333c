"""The batch job's output store: atomically committed shards, a manifest, and the merged output file.

Layout for `--output results.jsonl`:

    results.jsonl                 the merged output, written once every input line has a result
    results.jsonl.shards/
        job.json                  which input these shards belong to (its sha256), checked on resume
        shard-000001.jsonl ...    committed output lines; a shard exists completely or not at all
        manifest.json             shard names and row counts (a summary; the shard files are the truth)

Only the job's driver writes here, one shard at a time: write `NAME.tmp`, fsync, rename to `NAME`, fsync
the directory. A rename is atomic, so a job killed at any instant leaves every shard either committed in
full or absent (a stray `.tmp` is deleted on the next run). On resume the committed shards say which
`custom_id`s are done; the rest is run again, so every `custom_id` ends up exactly once.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHARD_PREFIX = "shard-"
SHARD_SUFFIX = ".jsonl"


class StoreError(Exception):
    """The output directory cannot be used for this job (another input's shards, a damaged shard)."""


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers (and a later run) see the old or the new file, never
    a partial one, even if this process is killed or the machine loses power mid-write."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def jsonl_bytes(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def shards_dir_for(output: Path) -> Path:
    return output.with_name(output.name + ".shards")


def default_errors_path(output: Path) -> Path:
    """`results.jsonl` -> `results.errors.jsonl` (beside the output)."""
    stem = output.name.removesuffix(".jsonl")
    return output.with_name(f"{stem}.errors.jsonl")


@dataclass(slots=True)
class ShardStore:
    """Opened by `cluster.batch` for one run; `commit` is called once per finished shard."""

    output: Path
    directory: Path = field(init=False)
    # custom_id -> its committed output line (loaded on open, extended by each commit).
    committed: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)
    shard_rows: dict[str, int] = field(default_factory=dict, init=False)
    duplicates_dropped: int = field(default=0, init=False)
    _input_sha256: str = field(default="", init=False)
    _lock: Any = field(default=None, init=False)  # the open lock file (see `_lock_as_the_only_writer`)

    def __post_init__(self) -> None:
        self.directory = shards_dir_for(self.output)

    def open(self, input_path: Path, input_sha256: str, job: dict[str, str] | None = None) -> None:
        """Create the store, or resume it if it belongs to the same input and the same `job` (what shapes
        the answers: the model and its config); raise `StoreError` otherwise, or when another run holds
        the store."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_as_the_only_writer()
        try:
            self._open_locked(input_path, input_sha256, job)
        except BaseException:
            self.close()  # a refused store is not held
            raise

    def _open_locked(self, input_path: Path, input_sha256: str, job: dict[str, str] | None) -> None:
        self._input_sha256 = input_sha256
        job_file = self.directory / "job.json"
        identity = {"input_sha256": input_sha256, **(job or {})}
        if job_file.exists():
            previous = json.loads(job_file.read_text())
            if previous.get("input_sha256") != input_sha256:
                raise StoreError(
                    f"{self.directory} holds results of another input ({previous.get('input')}, sha256 "
                    f"{str(previous.get('input_sha256'))[:12]}...), not of {input_path} (sha256 "
                    f"{input_sha256[:12]}...): choose another --output, or delete that directory to start over")
            changed = [key for key, value in identity.items() if key in previous and previous[key] != value]
            if changed:
                raise StoreError(
                    f"{self.directory} holds results of the same input run with another "
                    f"{' and '.join(changed)} ({', '.join(f'{k} {previous[k]!r}' for k in changed)}): resuming "
                    "would mix their answers with this run's; choose another --output, or delete that "
                    "directory to start over")
        else:
            atomic_write(job_file, json.dumps({"input": str(input_path), **identity}).encode())
        for stray in self.directory.glob("*.tmp"):  # a commit that was killed before its rename (we hold the lock)
            stray.unlink()
        for shard in sorted(self.directory.glob(f"{SHARD_PREFIX}*{SHARD_SUFFIX}")):
            self._load_shard(shard)

    def _lock_as_the_only_writer(self) -> None:
        """An exclusive lock on the store, held while this process lives: two runs on one output would
        overwrite each other's temporary files and shard numbers."""
        handle = open(self.directory / ".lock", "a+")  # noqa: SIM115 (held open for the process's life)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StoreError(f"another batch run ({holder}) is writing into {self.directory}: wait for it to "
                             "end, or choose another --output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._lock = handle

    def close(self) -> None:
        """Let another run write here (the lock also ends with this process)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _load_shard(self, shard: Path) -> None:
        rows = 0
        for number, line in enumerate(shard.read_text().splitlines(), start=1):
            try:
                record = json.loads(line)
                custom_id = record["custom_id"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                # Cannot happen through `commit` (fsync before rename); someone edited or truncated it.
                raise StoreError(f"{shard}:{number}: damaged committed shard ({error}); delete the file to "
                                 "recompute its rows") from None
            if custom_id in self.committed:
                self.duplicates_dropped += 1
                continue
            self.committed[custom_id] = record
            rows += 1
        self.shard_rows[shard.name] = rows

    def next_shard_number(self) -> int:
        numbers = [int(name[len(SHARD_PREFIX):-len(SHARD_SUFFIX)]) for name in self.shard_rows]
        return max(numbers, default=0) + 1

    def commit(self, records: list[dict[str, Any]]) -> str | None:
        """Commit one shard of output lines atomically; returns its file name (None if nothing was new).

        A record whose custom_id is already committed is dropped: a shard delivered twice (a retried
        task) can never produce a second line for the same request.
        """
        fresh: list[dict[str, Any]] = []
        seen: set[str] = set()
        for record in records:
            custom_id = record["custom_id"]
            if custom_id in self.committed or custom_id in seen:
                self.duplicates_dropped += 1
                continue
            seen.add(custom_id)
            fresh.append(record)
        if not fresh:
            return None
        name = f"{SHARD_PREFIX}{self.next_shard_number():06d}{SHARD_SUFFIX}"
        atomic_write(self.directory / name, jsonl_bytes(fresh))
        for record in fresh:
            self.committed[record["custom_id"]] = record
        self.shard_rows[name] = len(fresh)
        self._write_manifest(complete=False)
        return name

    def _write_manifest(self, complete: bool) -> None:
        manifest = {"input_sha256": self._input_sha256, "complete": complete,
                    "committed_rows": len(self.committed), "shards": self.shard_rows,
                    "updated_at": time.time()}
        atomic_write(self.directory / "manifest.json", json.dumps(manifest, indent=1).encode())

    def merge(self, line_of: dict[str, int]) -> int:
        """Write the merged output (input order) atomically once every custom_id in `line_of` is committed;
        returns the number of lines written. Raises `StoreError` naming what is missing otherwise."""
        missing = [cid for cid in line_of if cid not in self.committed]
        if missing:
            raise StoreError(f"cannot merge: {len(missing)} requests have no committed result "
                             f"(first: {missing[:3]})")
        ordered = sorted(line_of, key=line_of.__getitem__)
        atomic_write(self.output, jsonl_bytes([self.committed[cid] for cid in ordered]))
        self._write_manifest(complete=True)
        return len(ordered)


def write_errors_file(path: Path, records: list[dict[str, Any]]) -> None:
    """The malformed lines of the input; rewritten whole on each run (it depends only on the input)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, jsonl_bytes(records))
