#!/usr/bin/env bash
# Build the Linux x64 release binary and produce dist/azureml-dsr.zip, the Functions
# deployment package: host.json + one folder per function + the executable, at the zip root.
# Reproducible: sorted entries, fixed timestamps (SOURCE_DATE_EPOCH or 1980-01-01), fixed
# permissions (0755 for the binary, 0644 otherwise). Prints the package's sha256.
#   scripts/package.sh            build + package
#   SKIP_BUILD=1 scripts/package.sh   package an already built binary
#   DSR_BINARY=path scripts/package.sh  package that binary (e.g. a CI artifact); implies SKIP_BUILD
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
HOST_TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
if [[ "$HOST_TRIPLE" == "$TARGET" ]]; then
  TARGET_ARGS=()
  BIN=target/release/azureml-dsr
else
  TARGET_ARGS=(--target "$TARGET")
  BIN=target/$TARGET/release/azureml-dsr
fi

if [[ -n "${DSR_BINARY:-}" ]]; then
  BIN=$DSR_BINARY
elif [[ "${SKIP_BUILD:-0}" != "1" ]]; then
  cargo build --release --locked "${TARGET_ARGS[@]}" -p azureml-dsr
fi
[[ -x "$BIN" ]] || { echo "package.sh: binary $BIN missing or not executable" >&2; exit 1; }

mkdir -p dist
OUT=dist/azureml-dsr.zip
python3 - "$BIN" "$OUT" <<'PY'
import os, sys, zipfile, json, time
bin_path, out = sys.argv[1], sys.argv[2]
epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))  # 1980-01-01, zip's minimum
stamp = time.gmtime(max(epoch, 315532800))[:6]
exe = json.load(open("host.json"))["customHandler"]["description"]["defaultExecutablePath"]

entries = {"host.json": ("host.json", 0o644)}
for name in sorted(os.listdir("functions")):
    fj = os.path.join("functions", name, "function.json")
    if os.path.isfile(fj):
        # At deployment the function folders sit at the app root (not under functions/).
        entries[f"{name}/function.json"] = (fj, 0o644)
entries[exe] = (bin_path, 0o755)

tmp = out + ".tmp"
with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for arc in sorted(entries):
        src, mode = entries[arc]
        info = zipfile.ZipInfo(arc, date_time=stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.create_system = 3  # Unix, so that external_attr carries the mode
        info.external_attr = (0o100000 | mode) << 16
        with open(src, "rb") as f:
            z.writestr(info, f.read())
os.replace(tmp, out)
print(f"{out}: {len(entries)} entries")
PY
python3 scripts/check_package.py "$OUT"
sha256sum "$OUT"
