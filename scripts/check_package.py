#!/usr/bin/env python3
"""Verify an azureml-dsr deployment zip.

Checks: host.json at the root; its customHandler.description.defaultExecutablePath is a file in
the zip with the executable bit in the entry's Unix attributes (the Functions host runs it as
is: a lost +x bit is the classic custom-handler deploy failure); every function of the repo's
functions/ folder is present as <name>/function.json AT THE ROOT (deployment layout, not
functions/<name>/...) and is identical to the source; no stray functions/ prefix; the binary is
an ELF x86-64 executable. Exit 0 = OK, 1 = problems (each printed).

Usage: scripts/check_package.py dist/azureml-dsr.zip [--repo .]
"""
import argparse
import json
import os
import stat
import sys
import zipfile


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("zip")
    ap.add_argument("--repo", default=os.path.join(os.path.dirname(__file__), ".."))
    a = ap.parse_args()
    errors = []
    try:
        z = zipfile.ZipFile(a.zip)
    except (OSError, zipfile.BadZipFile) as e:
        print(f"check_package: cannot open {a.zip}: {e}", file=sys.stderr)
        return 1
    names = {i.filename: i for i in z.infolist()}

    if "host.json" not in names:
        errors.append("host.json is not at the zip root")
        exe = None
    else:
        host = json.loads(z.read("host.json"))
        exe = host.get("customHandler", {}).get("description", {}).get("defaultExecutablePath")
        if not exe:
            errors.append("host.json has no customHandler.description.defaultExecutablePath")

    if exe:
        info = names.get(exe)
        if info is None:
            errors.append(f"defaultExecutablePath '{exe}' is not in the zip root")
        else:
            mode = (info.external_attr >> 16) & 0o7777
            if info.create_system != 3:
                errors.append(f"{exe}: entry not created with Unix attributes (create_system={info.create_system})")
            if not mode & stat.S_IXUSR:
                errors.append(f"{exe}: executable bit missing (mode {oct(mode)})")
            head = z.read(exe)[:20]
            if head[:4] != b"\x7fELF" or head[4] != 2 or int.from_bytes(head[18:20], "little") != 62:
                errors.append(f"{exe}: not an ELF64 x86-64 binary")

    fn_dir = os.path.join(a.repo, "functions")
    expected = sorted(d for d in os.listdir(fn_dir) if os.path.isfile(os.path.join(fn_dir, d, "function.json")))
    if not expected:
        errors.append(f"no functions found under {fn_dir}")
    for fn in expected:
        arc = f"{fn}/function.json"
        if arc not in names:
            errors.append(f"missing {arc} at the zip root")
            continue
        with open(os.path.join(fn_dir, fn, "function.json"), "rb") as f:
            if json.loads(f.read()) != json.loads(z.read(arc)):
                errors.append(f"{arc} differs from functions/{fn}/function.json")
    for n in names:
        if n.startswith("functions/"):
            errors.append(f"{n}: function folders must sit at the app root, not under functions/")
        if n.endswith("/function.json") and n.count("/") != 1:
            errors.append(f"{n}: function.json must be exactly one level deep")
        if n.endswith("/function.json") and n.split("/")[0] not in expected:
            errors.append(f"{n}: function not in the repo's functions/ folder")

    if errors:
        for e in errors:
            print(f"check_package: {e}", file=sys.stderr)
        return 1
    print(f"check_package: OK {a.zip}: host.json, {exe} (executable), {len(expected)} functions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
