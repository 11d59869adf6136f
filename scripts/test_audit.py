#!/usr/bin/env python3
"""Tests of scripts/audit.py on a synthetic advisory database (no network, no real DB needed)."""

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import audit  # noqa: E402

ADVISORY = """```toml
[advisory]
id = "RUSTSEC-0000-0001"
package = "{pkg}"
date = "2026-01-01"
{extra}
[versions]
patched = ["{patched}"]
unaffected = ["< 0.2.0"]
```

# A test advisory
"""

LOCK = """version = 4
[[package]]
name = "{pkg}"
version = "{version}"
source = "registry+https://github.com/rust-lang/crates.io-index"
"""


def run(db, pkg, version, patched=">= 1.4.2, < 2.0.0", extra="", adv_pkg=None):
    d = Path(db) / "crates" / (adv_pkg or pkg)
    d.mkdir(parents=True, exist_ok=True)
    (d / "RUSTSEC-0000-0001.md").write_text(
        ADVISORY.format(pkg=adv_pkg or pkg, patched=patched, extra=extra)
    )
    lock = Path(db) / "Cargo.lock"
    lock.write_text(LOCK.format(pkg=pkg, version=version))
    return subprocess.run(
        [sys.executable, str(Path(__file__).parent / "audit.py"), "--db", db, "--lock", str(lock)],
        capture_output=True,
        text=True,
    )


class AuditTest(unittest.TestCase):
    def test_vulnerable_version_fails(self):
        with tempfile.TemporaryDirectory() as db:
            r = run(db, "foo", "1.4.1")
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("VULNERABLE: RUSTSEC-0000-0001 foo 1.4.1", r.stdout)

    def test_patched_and_unaffected_versions_pass(self):
        for v in ["1.4.2", "1.9.0", "0.1.9"]:
            with tempfile.TemporaryDirectory() as db:
                r = run(db, "foo", v)
                self.assertEqual(r.returncode, 0, f"{v}: {r.stdout}")
        # 2.0.0 is outside the patched range and above the unaffected one.
        with tempfile.TemporaryDirectory() as db:
            self.assertEqual(run(db, "foo", "2.0.0").returncode, 1)

    def test_withdrawn_ignored_and_informational_is_a_warning(self):
        with tempfile.TemporaryDirectory() as db:
            r = run(db, "foo", "1.0.0", extra='withdrawn = "2026-02-01"')
            self.assertEqual(r.returncode, 0, r.stdout)
        with tempfile.TemporaryDirectory() as db:
            r = run(db, "foo", "1.0.0", extra='informational = "unmaintained"')
            self.assertEqual(r.returncode, 0, r.stdout)
            self.assertIn("warning: RUSTSEC-0000-0001 foo 1.0.0", r.stdout)

    def test_other_crates_not_flagged(self):
        with tempfile.TemporaryDirectory() as db:
            r = run(db, "bar", "1.0.0", adv_pkg="foo")
            self.assertEqual(r.returncode, 0, r.stdout)

    def test_requirements(self):
        v = audit.parse_version
        self.assertTrue(audit.req_matches("^0.3.1", v("0.3.9")))
        self.assertFalse(audit.req_matches("^0.3.1", v("0.4.0")))
        self.assertTrue(audit.req_matches("~1.2", v("1.2.7")))
        self.assertFalse(audit.req_matches("~1.2", v("1.3.0")))
        self.assertTrue(audit.req_matches("= 1.2", v("1.2.5")))
        self.assertFalse(audit.req_matches(">= 1.0.0-beta.2", v("1.0.0-beta.1")))
        self.assertTrue(audit.req_matches(">= 1.0.0-beta.2", v("1.0.0")))

    def test_missing_db_is_reported(self):
        with tempfile.TemporaryDirectory() as empty:
            r = subprocess.run(
                [sys.executable, str(Path(__file__).parent / "audit.py"), "--db", empty, "--require-db",
                 "--snapshot", str(Path(empty) / "none")],
                capture_output=True, text=True, cwd=empty, env={"PATH": "/usr/bin:/bin"},
            )
            self.assertEqual(r.returncode, 2, r.stdout)
            self.assertIn("no RustSec advisory database", r.stdout)

    def test_snapshot_is_used_and_a_missing_crate_fails(self):
        with tempfile.TemporaryDirectory() as full, tempfile.TemporaryDirectory() as work:
            run(full, "foo", "1.4.1")  # full DB: an advisory for foo
            (Path(full) / "crates" / "bar").mkdir()  # bar has advisories too, none for our lock
            lock = Path(work) / "Cargo.lock"
            lock.write_text(LOCK.format(pkg="foo", version="1.4.1"))
            snap = Path(work) / "snap"
            audit_py = str(Path(__file__).parent / "audit.py")
            env = {"PATH": "/usr/bin:/bin"}

            def check(*extra):
                return subprocess.run(
                    [sys.executable, audit_py, "--lock", str(lock), "--snapshot", str(snap), *extra],
                    capture_output=True, text=True, cwd=work, env=env,
                )

            self.assertEqual(check("--refresh-snapshot", full).returncode, 0)
            self.assertTrue((snap / "crates" / "foo").is_dir())
            self.assertFalse((snap / "crates" / "bar").exists())
            r = check()
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("committed snapshot", r.stdout)
            self.assertIn("VULNERABLE: RUSTSEC-0000-0001 foo 1.4.1", r.stdout)
            # A crate added to the lock after the snapshot, which the database has advisories
            # for, is not silently passed.
            lock.write_text(LOCK.format(pkg="bar", version="1.0.0"))
            r = check()
            self.assertEqual(r.returncode, 1, r.stdout)
            self.assertIn("lacks advisories for bar", r.stdout)


if __name__ == "__main__":
    unittest.main()
