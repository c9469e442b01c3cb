#!/usr/bin/env bash
# The main job end to end on the embedded default: local platform, a trained
# example app in the local MLflow store, `home-mlops pipeline` against the local
# registry, then a real request to the gateway on the app's port (jobs/projects.yaml,
# or HOME_MLOPS_PORT; the gateway listens on every address, the request goes to 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
APP=${APP:-tabular-iris-multi-classifier}
export PATH="$PWD/.venv/bin:$PATH"

home-mlops platform up
echo "demo: training $APP into the local MLflow store"
ids=$(python "training/$APP/train.py" | grep -E '^(EXPERIMENT_ID|RUN_ID)=')
EXPERIMENT_ID=$(sed -n 's/^EXPERIMENT_ID=//p' <<<"$ids")
RUN_ID=$(sed -n 's/^RUN_ID=//p' <<<"$ids")
export APP_NAME="$APP" EXPERIMENT_ID RUN_ID AR_NAME=127.0.0.1:5000/home-mlops
home-mlops pipeline --json home-mlops-state/demo-result.json

read -r local_url url < <(python -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["local_url"], r["url"])' \
    home-mlops-state/demo-result.json)
example=$(python - <<'PY'
import json
result = json.load(open("home-mlops-state/demo-result.json"))
example = json.load(open(result["resolve"]["local_path"] + "/input_example.json"))
print(json.dumps({"dataframe_records": [dict(zip(example["columns"], row)) for row in example["data"]]}))
PY
)
echo "demo: POST $local_url/predict $example"
curl -sS --fail-with-body -X POST "$local_url/predict" -H 'content-type: application/json' -d "$example"
echo
home-mlops status
echo "demo: ok - $APP run $RUN_ID is served on $url (from this host: $local_url)"
