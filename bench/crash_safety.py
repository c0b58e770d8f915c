"""Crash safety of the template store, measured: SIGKILL a writer at random moments, then check.

A child process enrolls, replaces and removes subjects in a loop on one gallery, through
TemplateStore with precomputed signatures (fast, so kills land inside transactions), and for
``--cli-kills`` rounds through the real ``siamid enroll --replace`` / ``siamid gallery remove``.
The parent kills it with SIGKILL at a random moment, ``--kills`` times per mode, and after each
kill checks that:

- the gallery opens (SQLite rolls back a hot journal) and passes ``TemplateStore.check()``:
  integrity check, every template decrypts, authenticates, has its shape and a matching header;
- every template is complete: exactly the signatures written by one operation (the model id
  carries the operation's number; the signatures are regenerated from it and compared bit for
  bit), never a mix of two;
- nothing was lost or invented: the gallery equals the state after the last operation the child
  logged as committed, or that state plus the one operation in flight when it was killed;
- no live journal is left behind once the gallery has been opened and closed (a journal whose
  header was never written, from a kill before the journal was synced, is counted apart: SQLite
  ignores it and the next write removes it).

Both modes run by default: a clear gallery and an encrypted one (a fresh key in
SIAMID_GALLERY_KEY). Prints a table and writes bench/results/crash_safety.json.

    .venv/bin/python bench/crash_safety.py [--kills 100] [--cli-kills 10] [--modes clear,encrypted]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, print_table, write_json  # noqa: E402

from siamid.errors import SiamidError  # noqa: E402
from siamid.store import KEY_ENV, TemplateStore, new_key  # noqa: E402
from siamid.types import Template  # noqa: E402

SUBJECTS = [f"subject-{i}" for i in range(8)]
DIM = 64
MODEL_PREFIX = "bench-"
CLI_SUBJECT = "cli-subject"
# The first bytes of a rollback journal SQLite will replay (a "hot" journal).
JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")


def signatures(subject: str, op: int) -> np.ndarray:
    """The signatures operation ``op`` writes for ``subject``: 3-5 unit rows, reproducible."""
    rng = np.random.default_rng([zlib.crc32(subject.encode()), op])
    sigs = rng.normal(size=(3 + op % 3, DIM)).astype(np.float32)
    return sigs / np.linalg.norm(sigs, axis=1, keepdims=True)


# -- the child: writes until it is killed ------------------------------------------------------------


def child(gallery: Path, log: Path, start: int, seed: int) -> None:
    """Enroll/replace/remove forever, logging ``begin`` before and ``done`` after each commit."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    rng = np.random.default_rng(seed)
    with TemplateStore(gallery, create=True) as store:
        present = set(store.subjects())
        os.write(fd, b"ready\n")
        op = start
        while True:
            subject = SUBJECTS[int(rng.integers(len(SUBJECTS)))]
            kind = ("remove" if rng.random() < 0.3 else "replace") if subject in present else "put"
            os.write(fd, f"begin {op} {kind} {subject}\n".encode())
            if kind == "remove":
                store.delete(subject)
                present.discard(subject)
            else:
                store.put(Template(subject, f"{MODEL_PREFIX}{op}", signatures(subject, op)),
                          replace=kind == "replace")
                present.add(subject)
            os.write(fd, f"done {op}\n".encode())
            op += 1


# -- the parent: kills and checks ------------------------------------------------------------------


def replay(log: Path, state: dict[str, int]) -> tuple[dict[str, int], tuple | None, int]:
    """The state after the logged committed operations, the one in flight, the last number.

    ``state`` maps subject -> the operation number that wrote its template.
    """
    state = dict(state)
    pending, last = None, -1
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts[0] == "begin":
            pending = (int(parts[1]), parts[2], parts[3])
            last = int(parts[1])
        elif parts[0] == "done" and pending is not None:
            state = apply(state, pending)
            pending = None
    return state, pending, last


def apply(state: dict[str, int], op: tuple) -> dict[str, int]:
    """``state`` (subject -> operation that wrote its template) after ``op``."""
    number, kind, subject = op
    state = dict(state)
    if kind == "remove":
        state.pop(subject, None)
    else:
        state[subject] = number
    return state


def label_of(template: Template, cli_sets: dict[str, np.ndarray]):
    """Which write produced ``template`` (an operation number, or the CLI's image set); None if
    its signatures are those of no single write (half-written or mixed)."""
    if template.model_id.startswith(MODEL_PREFIX):
        op = int(template.model_id[len(MODEL_PREFIX):])
        return op if np.array_equal(signatures(template.subject, op), template.signatures) else None
    for name, want in cli_sets.items():
        if want.shape == template.signatures.shape and np.array_equal(want, template.signatures):
            return name
    return None


def observe(gallery: Path, key: bytes | None, cli_sets: dict) -> tuple[dict, list[str]]:
    """Open the gallery after a kill: its state (subject -> write label) and the problems."""
    problems: list[str] = []
    state: dict = {}
    try:
        with TemplateStore(gallery, key=key) as store:
            problems += [f"check: {p}" for p in store.check()]
            for t in store.all():
                state[t.subject] = label_of(t, cli_sets)
                if state[t.subject] is None:
                    problems.append(f"incomplete or mixed template of {t.subject!r}")
    except SiamidError as exc:
        problems.append(f"cannot open: {exc}")
    if Path(f"{gallery}-wal").exists():
        problems.append("a WAL file is left behind after open and close")
    journal = Path(f"{gallery}-journal")
    if journal.exists() and journal.read_bytes()[:8] == JOURNAL_MAGIC:
        problems.append("a live (hot) journal is left behind after open and close")
    return state, problems


def stale_journal(gallery: Path) -> bool:
    """Whether a journal whose header was never completed lies beside the gallery.

    A writer killed before it synced its journal leaves one: SQLite ignores it (the database was
    not yet touched, so it holds only copies of pages still in the file) and the next write
    transaction overwrites and deletes it. Counted, not a failure; a hot journal would be.
    """
    journal = Path(f"{gallery}-journal")
    return journal.exists() and journal.read_bytes()[:8] != JOURNAL_MAGIC


def store_round(gallery: Path, key: bytes | None, state: dict, next_op: int, rng, env,
                cli_sets: dict) -> dict:
    """One kill of a TemplateStore writer; what was found."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "ops.log"
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(gallery), str(log), str(next_op),
             str(int(rng.integers(2**31)))], env=env,
        )
        deadline = time.monotonic() + 60
        while not (log.exists() and log.read_bytes().startswith(b"ready")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the writer did not start (exit {proc.returncode})")
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0.0, 0.25)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before, pending, last = replay(log, state)
    found, problems = observe(gallery, key, cli_sets)
    allowed = [before] + ([apply(before, pending)] if pending else [])
    if found not in allowed:
        problems.append(f"state after the kill is none of the allowed ones: {found} vs {allowed}")
    return {"state": found, "next_op": max(next_op, last + 1), "problems": problems,
            "stale_journal": stale_journal(gallery),
            "in_flight": pending is not None,
            "in_flight_committed": pending is not None and found == allowed[-1] != before}


def cli_round(gallery: Path, key: bytes | None, state: dict, images: dict, cli_sets: dict,
              rng, env, runtime: float) -> dict:
    """One kill of ``siamid enroll --replace`` (or ``gallery remove``) at a random moment."""
    if CLI_SUBJECT in state and rng.random() < 0.3:
        args, after = ["gallery", "remove", CLI_SUBJECT, "--gallery", str(gallery)], None
    else:
        after = str(rng.choice(sorted(images)))
        args = ["enroll", CLI_SUBJECT, *map(str, images[after]), "--gallery", str(gallery),
                "--replace"]
    proc = subprocess.Popen([sys.executable, "-m", "siamid.cli.main", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(float(rng.uniform(0.0, runtime)))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    found, problems = observe(gallery, key, cli_sets)
    untouched = {k: v for k, v in state.items() if k != CLI_SUBJECT}
    if {k: v for k, v in found.items() if k != CLI_SUBJECT} != untouched:
        problems.append("a subject the command did not touch changed")
    allowed = {state.get(CLI_SUBJECT), after}
    if found.get(CLI_SUBJECT) not in allowed:
        problems.append(f"{CLI_SUBJECT} is {found.get(CLI_SUBJECT)}, allowed {allowed}")
    return {"state": found, "problems": problems, "completed": proc.returncode == 0}


def run_mode(mode: str, kills: int, cli_kills: int, seed: int, workdir: Path,
             prints: tuple | None) -> dict:
    """``kills`` store rounds then ``cli_kills`` CLI rounds on one gallery; counts."""
    rng = np.random.default_rng(seed)
    key = new_key() if mode == "encrypted" else None
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    env.pop(KEY_ENV, None)
    if key:
        env[KEY_ENV] = key.decode()
    gallery = workdir / f"{mode}.db"
    images, cli_sets = prints if prints else ({}, {})
    state: dict = {}
    next_op = 0
    counts = {"kills": 0, "in_flight": 0, "in_flight_committed": 0, "in_flight_rolled_back": 0,
              "stale_journal": 0, "templates_checked": 0, "failures": 0}
    failures: list[str] = []
    cli = {"kills": 0, "completed_before_kill": 0, "failures": 0}
    for _ in range(kills):
        r = store_round(gallery, key, state, next_op, rng, env, cli_sets)
        state, next_op = r["state"], r["next_op"]
        counts["kills"] += 1
        counts["in_flight"] += r["in_flight"]
        counts["in_flight_committed"] += r["in_flight_committed"]
        counts["in_flight_rolled_back"] += r["in_flight"] and not r["in_flight_committed"]
        counts["stale_journal"] += r["stale_journal"]
        counts["templates_checked"] += len(state)
        if r["problems"]:
            counts["failures"] += 1
            failures += r["problems"]
    if cli_kills and images:
        runtime = _time_cli(env, gallery, images)  # one whole run: the CLI subject now has "A"
        state = observe(gallery, key, cli_sets)[0]
        for _ in range(cli_kills):
            r = cli_round(gallery, key, state, images, cli_sets, rng, env, runtime)
            state = r["state"]
            cli["kills"] += 1
            cli["completed_before_kill"] += r["completed"]
            if r["problems"]:
                cli["failures"] += 1
                failures += r["problems"]
    return {"mode": mode, "store": counts, "cli": cli, "problems": failures[:20]}


def _time_cli(env: dict, gallery: Path, images: dict) -> float:
    """Seconds one complete ``siamid enroll --replace`` takes here (kills land within it)."""
    name = next(iter(images))
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "siamid.cli.main", "enroll", CLI_SUBJECT,
                    *map(str, images[name]), "--gallery", str(gallery), "--replace"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def make_prints(workdir: Path) -> tuple[dict, dict]:
    """Two image sets of one synthetic finger and the signatures the shipped model gives them."""
    from PIL import Image

    from siamid.runtime import Embedder
    from siamid.synth import generate_finger

    _, pixels = generate_finger(seed=1, impressions=4, index=1)
    sets = {"A": [0, 1, 2], "B": [1, 2, 3]}
    paths = []
    for take, image in enumerate(pixels):
        paths.append(workdir / f"take{take}.png")
        Image.fromarray(image).save(paths[-1])
    embedder = Embedder()
    images = {name: [paths[i] for i in idx] for name, idx in sets.items()}
    expected = {name: embedder.embed([pixels[i] for i in idx]) for name, idx in sets.items()}
    return images, expected


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; the results as written to JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs of the store writer per mode")
    parser.add_argument("--cli-kills", type=int, default=10, help="SIGKILLs of the real CLI per mode")
    parser.add_argument("--modes", default="clear,encrypted")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-json", action="store_true", help="print only (for quick checks)")
    args = parser.parse_args(argv)
    results = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        prints = make_prints(workdir) if args.cli_kills else None
        for i, mode in enumerate(args.modes.split(",")):
            results.append(run_mode(mode, args.kills, args.cli_kills, args.seed + i, workdir, prints))
    rows = [[r["mode"], str(r["store"]["kills"]), str(r["store"]["in_flight"]),
             str(r["store"]["in_flight_committed"]), str(r["store"]["in_flight_rolled_back"]),
             str(r["store"]["stale_journal"]),
             str(r["store"]["templates_checked"]), str(r["store"]["failures"]),
             str(r["cli"]["kills"]), str(r["cli"]["failures"])] for r in results]
    print_table(["mode", "store kills", "mid-write", "  committed", "  rolled back", "stale journal",
                 "templates checked", "failures", "CLI kills", "CLI failures"], rows)
    for r in results:
        for p in r["problems"]:
            print(f"{r['mode']}: {p}")
    data = {"machine": machine(), "kills_per_mode": args.kills, "cli_kills_per_mode": args.cli_kills,
            "seconds": round(time.monotonic() - start, 1), "modes": results}
    if not args.no_json:
        print(f"written to {write_json('crash_safety', data)}")
    return data


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
