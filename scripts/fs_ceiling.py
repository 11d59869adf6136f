"""The file store's ceiling for scripts/bench_issue_size_local.sh: the storage work a request
does on the subject's blobs, by the plainest code. Export: copy each of her blob files and read
the copy back to hash it. Delete: unlink as many files. 32 at a time, as the Azurite ceiling in
bench/dsr.rs. Prints one line per phase with the wall time in seconds.

usage: python3 scripts/fs_ceiling.py DATA_DIR [SUBJECT_KEY]
"""

import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor

IN_FLIGHT = 32


def main() -> None:
    data = sys.argv[1]
    subject = sys.argv[2] if len(sys.argv) > 2 else "alice"
    with open(os.path.join(data, "seed-truth.json")) as f:
        truth = json.load(f)
    # Blobs the seed gives to the subject outright (not the display-name-only ones for review).
    keys = [k for k, owner in truth["blobs"].items() if owner == subject]
    scratch = os.path.join(data, "ceiling")
    dests = [os.path.join(scratch, f"{i // 1000:05d}", f"{i:08d}") for i in range(len(keys))]
    for d in sorted({os.path.dirname(p) for p in dests}):
        os.makedirs(d, exist_ok=True)

    def export(i: int) -> int:
        shutil.copyfile(os.path.join(data, "store", keys[i]), dests[i])
        with open(dests[i], "rb") as f:
            hashlib.sha256(f.read()).hexdigest()
        return 1

    t = time.monotonic()
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        done = sum(pool.map(export, range(len(keys)), chunksize=256))
    print(f"ceiling export: {done} blobs copied and hashed in {time.monotonic() - t:.1f} s")

    t = time.monotonic()
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        list(pool.map(os.unlink, dests, chunksize=256))
    print(f"ceiling delete: {len(dests)} files unlinked in {time.monotonic() - t:.1f} s")
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
