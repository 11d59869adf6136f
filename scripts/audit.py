#!/usr/bin/env python3
"""Check Cargo.lock against the RustSec advisory database (what `cargo audit` does), offline.

Usage: scripts/audit.py [--db DIR] [--lock Cargo.lock] [--require-db]
       scripts/audit.py --refresh-snapshot DIR   (DIR: a full checkout of the database)

The database is a checkout (or export) of https://github.com/rustsec/advisory-db: DIR/crates/
<crate>/RUSTSEC-*.md, each opening with a TOML block. It is looked for in --db, $RUSTSEC_DB,
then .build/advisory-db. CI reaches package registries only, not GitHub, so when none of those
exists the check falls back to the snapshot committed in scripts/advisory-snapshot/: the
advisories of every crate in Cargo.lock, plus the names of all crates the database had
advisories for at that commit. A Cargo.lock crate that has advisories in the database but not
in the snapshot (a dependency added since) fails the check until the snapshot is refreshed, so
the fallback cannot silently skip a crate. The snapshot's date is printed: it knows nothing
newer. Without a database or a snapshot the check says so and exits 0, unless --require-db.

Exit status: 1 if a dependency matches an active (not withdrawn, not informational)
advisory; 0 otherwise. Informational advisories (unmaintained, unsound) are listed as
warnings, as `cargo audit` does.
"""

import argparse
import os
import re
import sys
import tomllib
from pathlib import Path


def parse_version(v):
    """'1.2.3-beta.1' -> ((1, 2, 3), 'beta.1'); missing parts are 0."""
    v = v.strip().split("+", 1)[0]
    core, _, pre = v.partition("-")
    parts = [int(p) for p in core.split(".") if p != ""]
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts[:3]), pre


def cmp_versions(a, b):
    (ac, ap), (bc, bp) = a, b
    if ac != bc:
        return -1 if ac < bc else 1
    # A pre-release sorts before its release.
    if ap == bp:
        return 0
    if not ap:
        return 1
    if not bp:
        return -1
    return -1 if ap < bp else 1


def comparator_matches(comp, version):
    comp = comp.strip()
    m = re.match(r"^(>=|<=|>|<|=|\^|~)?\s*([0-9][0-9A-Za-z.\-+*]*)$", comp)
    if not m:
        raise ValueError(f"unsupported version requirement {comp!r}")
    op, ver = m.group(1) or "^", m.group(2)
    n_parts = len([p for p in ver.split("-")[0].split(".") if p not in ("", "*")])
    ver = ".".join(p for p in ver.split(".") if p != "*")
    want = parse_version(ver)
    c = cmp_versions(version, want)
    if op == ">=":
        return c >= 0
    if op == ">":
        return c > 0
    if op == "<=":
        return c <= 0
    if op == "<":
        return c < 0
    if op == "=":
        if n_parts >= 3:
            return c == 0
        return version[0][:n_parts] == want[0][:n_parts]
    major, minor, patch = want[0]
    if op == "~":
        upper = (major, minor + 1, 0) if n_parts >= 2 else (major + 1, 0, 0)
    else:  # caret: the left-most non-zero part may not change
        if major > 0 or n_parts == 1:
            upper = (major + 1, 0, 0)
        elif minor > 0 or n_parts == 2:
            upper = (0, minor + 1, 0)
        else:
            upper = (0, 0, patch + 1)
    return c >= 0 and cmp_versions(version, (upper, "")) < 0


def req_matches(req, version):
    """A requirement like '>= 1.2.3, < 1.3' matches when every comparator does."""
    return all(comparator_matches(c, version) for c in req.split(",") if c.strip())


def affected(advisory, version_text):
    v = parse_version(version_text)
    versions = advisory.get("versions", {})
    for req in versions.get("patched", []) + versions.get("unaffected", []):
        if req_matches(req, v):
            return False
    return True


def load_advisories(db):
    out = {}
    for path in sorted((db / "crates").glob("*/*.md")):
        text = path.read_text(encoding="utf-8")
        m = re.search(r"```toml\n(.*?)\n```", text, re.S)
        if not m:
            continue
        try:
            doc = tomllib.loads(m.group(1))
        except tomllib.TOMLDecodeError as e:
            print(f"audit: skipping unreadable {path}: {e}", file=sys.stderr)
            continue
        adv = doc.get("advisory", {})
        title = re.search(r"^# (.+)$", text[m.end():], re.M)
        adv.setdefault("title", title.group(1) if title else "")
        if adv.get("withdrawn"):
            continue
        out.setdefault(adv.get("package"), []).append(doc)
    return out


SNAPSHOT = Path(__file__).parent / "advisory-snapshot"


def find_db(arg):
    for cand in [arg, os.environ.get("RUSTSEC_DB"), ".build/advisory-db"]:
        if cand and (Path(cand) / "crates").is_dir():
            return Path(cand)
    return None


def lock_packages(lock_path):
    lock = tomllib.loads(Path(lock_path).read_text(encoding="utf-8"))
    return [p for p in lock.get("package", []) if p.get("source", "").startswith("registry+")]


def snapshot_gaps(snapshot, packages):
    """Crates of the lock file the database has advisories for but the snapshot does not hold."""
    listed = set((snapshot / "crates.txt").read_text(encoding="utf-8").split())
    return sorted(
        {p["name"] for p in packages if p["name"] in listed and not (snapshot / "crates" / p["name"]).is_dir()}
    )


def refresh_snapshot(full_db, lock_path, snapshot):
    """Copy the advisories of the lock's crates (and the list of all advised crates) from a full DB."""
    import shutil

    full = Path(full_db)
    if not (full / "crates").is_dir():
        print(f"audit: {full} has no crates/ directory")
        return 2
    names = sorted(d.name for d in (full / "crates").iterdir() if d.is_dir())
    wanted = {p["name"] for p in lock_packages(lock_path)} & set(names)
    if snapshot.exists():
        shutil.rmtree(snapshot)
    (snapshot / "crates").mkdir(parents=True)
    for n in sorted(wanted):
        shutil.copytree(full / "crates" / n, snapshot / "crates" / n)
    (snapshot / "crates.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    source = os.environ.get("RUSTSEC_SNAPSHOT_SOURCE", str(full))
    (snapshot / "SOURCE").write_text(source + "\n", encoding="utf-8")
    print(f"audit: snapshot of {len(wanted)} crates' advisories ({len(names)} crates listed) in {snapshot}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db")
    ap.add_argument("--lock", default="Cargo.lock")
    ap.add_argument("--require-db", action="store_true")
    ap.add_argument("--snapshot", default=str(SNAPSHOT), help=argparse.SUPPRESS)
    ap.add_argument("--refresh-snapshot", metavar="FULL_DB")
    args = ap.parse_args()
    snapshot = Path(args.snapshot)
    if args.refresh_snapshot:
        return refresh_snapshot(args.refresh_snapshot, args.lock, snapshot)

    db = find_db(args.db)
    if db is None and (snapshot / "crates.txt").is_file():
        packages = lock_packages(args.lock)
        source = (snapshot / "SOURCE").read_text(encoding="utf-8").strip() if (snapshot / "SOURCE").is_file() else "?"
        print(f"audit: no full database here; using the committed snapshot ({source})")
        gaps = snapshot_gaps(snapshot, packages)
        if gaps:
            print(f"audit: the snapshot lacks advisories for {', '.join(gaps)} (in Cargo.lock since it was taken);")
            print("  refresh it: python3 scripts/audit.py --refresh-snapshot <advisory-db checkout>")
            return 1
        db = snapshot
    if db is None:
        msg = "audit: no RustSec advisory database here (set RUSTSEC_DB to a checkout of rustsec/advisory-db)"
        print(msg)
        return 2 if args.require_db else 0
    advisories = load_advisories(db)
    packages = lock_packages(args.lock)
    vulns, warnings = [], []
    for p in packages:
        for doc in advisories.get(p["name"], []):
            if not affected(doc, p["version"]):
                continue
            adv = doc["advisory"]
            line = f"{adv['id']} {p['name']} {p['version']}: {adv.get('title', '').strip() or adv.get('url', '')}"
            (warnings if adv.get("informational") else vulns).append(
                line + (f" [{adv['informational']}]" if adv.get("informational") else "")
            )
    n_adv = sum(len(v) for v in advisories.values())
    print(f"audit: {len(packages)} crates from Cargo.lock checked against {n_adv} advisories in {db}")
    for w in warnings:
        print(f"  warning: {w}")
    for v in vulns:
        print(f"  VULNERABLE: {v}")
    print(f"audit: {len(vulns)} vulnerabilities, {len(warnings)} warnings")
    return 1 if vulns else 0


if __name__ == "__main__":
    sys.exit(main())
