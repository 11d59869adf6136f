#!/usr/bin/env bash
# Static checks of the deployment assets. Exits non-zero on any failure.
#  1. tool venv in .build/venv (pinned: scripts/requirements-infra.txt, installed with uv)
#  2. every infra/**/*.bicep parses (pycep, the parser checkov uses: checkov skips files it
#     cannot parse, so a parse failure would otherwise look like a pass)
#  3. checkov -d infra --framework bicep with .checkov.yaml; every skip justified in infra/CHECKOV.md
#  4. host.json and every functions/*/function.json against schemas/ (hand-written, see there)
#  5. consistency: queues/settings named by function.json exist in the Bicep; parameters file
#     names only declared parameters; azure.yaml service "api" is wired as documented
#  6. if dist/azureml-dsr.zip exists: scripts/check_package.py on it
# There is no Bicep compiler here: nothing proves the templates compile or deploy (docs/deploy.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=.build/venv
REQ=scripts/requirements-infra.txt
UV_VERSION=0.9.5
STAMP="$VENV/.req-$(sha256sum "$REQ" | cut -c1-16)-uv$UV_VERSION"

step() { printf '\n== %s\n' "$*"; }

step "tool venv ($VENV)"
if [[ ! -f "$STAMP" ]]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
  # --no-deps: the file pins the complete closure, so no resolver run and no drift.
  "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps -r "$REQ"
  touch "$STAMP"
else
  echo "up to date"
fi
PY="$VENV/bin/python"
"$VENV/bin/checkov" --version

step "parse every Bicep file (pycep)"
"$PY" - <<'PY'
import pathlib, sys
from pycep import BicepParser
files = sorted(pathlib.Path("infra").rglob("*.bicep"))
bad = 0
for f in files:
    try:
        BicepParser().parse(file_path=f)
    except Exception as e:  # noqa: BLE001 - report every parse error
        bad += 1
        print(f"PARSE ERROR {f}: {type(e).__name__}: {str(e)[:500]}", file=sys.stderr)
print(f"{len(files) - bad}/{len(files)} Bicep files parsed")
sys.exit(1 if bad or not files else 0)
PY

step "checkov (bicep)"
rm -rf .build/checkov && mkdir -p .build/checkov
set +e
"$VENV/bin/checkov" -d infra --framework bicep --config-file .checkov.yaml --skip-download \
  -o cli -o json --output-file-path .build/checkov >/dev/null 2>.build/checkov/stderr.txt
CK_RC=$?
set -e
[[ $CK_RC -eq 0 ]] || cat .build/checkov/results_cli.txt 2>/dev/null || true
"$PY" - "$CK_RC" <<'PY'
import json, pathlib, re, sys
rc = int(sys.argv[1])
p = pathlib.Path(".build/checkov/results_json.json")
if not p.exists():
    print(pathlib.Path(".build/checkov/stderr.txt").read_text()[-3000:], file=sys.stderr)
    sys.exit("checkov produced no JSON result")
d = json.loads(p.read_text())
d = d[0] if isinstance(d, list) else d
s = d["summary"]
print(f"checkov summary: {s}")
for c in d["results"].get("failed_checks", []):
    print(f"  FAILED  {c['check_id']} {c['resource']} {c['file_path']}")
for c in d["results"].get("skipped_checks", []):
    print(f"  SKIPPED {c['check_id']} {c['resource']} {c['file_path']} ({c['check_result'].get('suppress_comment', '').strip()})")
errs = []
if s["parsing_errors"]:
    errs.append(f"{s['parsing_errors']} parsing errors")
if s["failed"]:
    errs.append(f"{s['failed']} failed checks")
if s["resource_count"] < 20:
    errs.append(f"only {s['resource_count']} resources scanned: files skipped?")
if rc not in (0, 1):
    errs.append(f"checkov exit code {rc}")
# every skip (config or inline) must have a justification section in infra/CHECKOV.md
md = pathlib.Path("infra/CHECKOV.md").read_text()
cfg = re.findall(r"^\s*-\s*(CKV2?_[A-Z]+_\d+)", pathlib.Path(".checkov.yaml").read_text(), re.M)
inline = [c["check_id"] for c in d["results"].get("skipped_checks", [])]
for cid in sorted(set(cfg + inline)):
    if not re.search(rf"^##+ .*\b{cid}\b", md, re.M):
        errs.append(f"{cid} is skipped but has no '## ... {cid}' section in infra/CHECKOV.md")
if errs:
    sys.exit("checkov: " + "; ".join(errs))
print(f"checkov OK ({len(set(cfg))} config skips, {len(inline)} inline skips, all justified)")
PY

step "JSON schemas: host.json, functions/*/function.json"
"$PY" - <<'PY'
import json, pathlib, sys
from jsonschema import Draft202012Validator
def validator(path):
    schema = json.loads(pathlib.Path(path).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)
host_v, fn_v = validator("schemas/host.schema.json"), validator("schemas/function.schema.json")
bad = 0
targets = [("host.json", host_v)] + [(str(p), fn_v) for p in sorted(pathlib.Path("functions").glob("*/function.json"))]
for path, v in targets:
    try:
        doc = json.loads(pathlib.Path(path).read_text())
    except json.JSONDecodeError as e:
        print(f"INVALID JSON {path}: {e}", file=sys.stderr); bad += 1; continue
    errors = sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path))
    for e in errors:
        print(f"SCHEMA {path} at /{'/'.join(map(str, e.absolute_path))}: {e.message}", file=sys.stderr)
    bad += bool(errors)
print(f"{len(targets) - bad}/{len(targets)} documents valid")
sys.exit(1 if bad or len(targets) < 2 else 0)
PY

step "consistency: function.json <-> Bicep <-> azure.yaml"
"$PY" - <<'PY'
import json, pathlib, re, sys
import yaml
errs = []
sb = pathlib.Path("infra/modules/servicebus.bicep").read_text()
app = pathlib.Path("infra/modules/functionapp.bicep").read_text()
main = pathlib.Path("infra/main.bicep").read_text()
# App settings: infra/app-settings.json is the single source; functionapp.bicep maps its
# 'param' entries through paramValues, and must use the file rather than list settings itself.
spec = json.loads(pathlib.Path("infra/app-settings.json").read_text())["settings"]
settings = {e["name"] for e in spec}
if len(settings) != len(spec):
    errs.append("app-settings.json: a setting is listed twice")
if "loadJsonContent('../app-settings.json')" not in app:
    errs.append("functionapp.bicep does not load ../app-settings.json")
pv = re.search(r"var paramValues = \{(.*?)\n\}", app, re.S)
mapped = set(re.findall(r"^\s*(\w+):", pv.group(1), re.M)) if pv else set()
app_params = set(re.findall(r"^param (\w+)", app, re.M))
for e in spec:
    if ("param" in e) == ("value" in e):
        errs.append(f"app-settings.json: {e['name']} needs exactly one of 'param' and 'value'")
    if "param" in e and e["param"] not in mapped:
        errs.append(f"app-settings.json: {e['name']} names '{e['param']}', which paramValues in functionapp.bicep lacks")
for m in mapped:
    if m not in app_params and m != "appInsightsAuthenticationString":
        errs.append(f"functionapp.bicep paramValues.{m} is not a parameter")
slice_types = re.search(r"var sliceTypes = \[(.*?)\]", sb, re.S).group(1)
queues = {f"dsr-slice-{t}" for t in re.findall(r"'([a-z]+)'", slice_types)}
queues |= set(re.findall(r"namespaces/queues@[^']+' = \{\s*\n\s*parent: ns\s*\n\s*name: '([a-z-]+)'", sb))
for p in sorted(pathlib.Path("functions").glob("*/function.json")):
    for b in json.loads(p.read_text())["bindings"]:
        if b["type"] in ("serviceBusTrigger", "serviceBus"):
            if "queueName" in b and b["queueName"] not in queues:
                errs.append(f"{p}: queue {b['queueName']} not declared in servicebus.bicep ({sorted(queues)})")
            if f"{b['connection']}__fullyQualifiedNamespace" not in settings:
                errs.append(f"{p}: connection {b['connection']} has no {b['connection']}__fullyQualifiedNamespace app setting")
        if b["type"] == "timerTrigger":
            m = re.fullmatch(r"%(\w+)%", b["schedule"])
            if m and m.group(1) not in settings:
                errs.append(f"{p}: schedule setting {m.group(1)} is not an app setting")
for forbidden in (r"AccountKey=", r"SharedAccessKey", r"listKeys\(", r"name: 'FUNCTIONS_WORKER_RUNTIME'", r"name: 'FUNCTIONS_EXTENSION_VERSION'"):
    for f in pathlib.Path("infra").rglob("*.bicep"):
        if re.search(forbidden, f.read_text()):
            errs.append(f"{f}: contains '{forbidden}' (identity-only / Flex: not allowed)")
declared = set(re.findall(r"^param (\w+)", main, re.M))
params = json.loads(pathlib.Path("infra/main.parameters.json").read_text())["parameters"]
for name in params:
    if name not in declared:
        errs.append(f"main.parameters.json: '{name}' is not a parameter of main.bicep")
az = yaml.safe_load(pathlib.Path("azure.yaml").read_text())
api = az.get("services", {}).get("api", {})
want = {"host": "function", "language": "custom", "project": "."}
for k, v in want.items():
    if api.get(k) != v:
        errs.append(f"azure.yaml: services.api.{k} = {api.get(k)!r}, expected {v!r}")
if api.get("dist") != "dist/azureml-dsr.zip":
    errs.append("azure.yaml: services.api.dist must be dist/azureml-dsr.zip (scripts/package.sh output)")
if "'azd-service-name': 'api'" not in app:
    errs.append("functionapp.bicep: missing azd-service-name tag 'api'")
if errs:
    print("\n".join(errs), file=sys.stderr); sys.exit(1)
print(f"OK: {len(queues)} queues, {len(settings)} app settings, {len(params)} parameters, azure.yaml service api")
PY

if [[ -f dist/azureml-dsr.zip ]]; then
  step "package layout (dist/azureml-dsr.zip)"
  "$PY" scripts/check_package.py dist/azureml-dsr.zip
fi

printf '\ncheck_infra: all checks passed\n'
