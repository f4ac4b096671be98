#!/bin/bash
# The paper preset's pipeline path (`dvc exp run -S preset=paper`) on a local two-node Ray
# cluster, with the micro network and the embedded photos in place of DIV2K + Flickr2K (no
# download), as a check that the cluster settings of README "Several machines" work end to end:
# an MLflow tracking server, checkpoints in S3 (moto_server), degrade tasks and the training
# worker forced onto the second node, which cannot see the checkout's data/, runs/ or mlflow/
# (its own mount namespace with empty tmpfs over them: needs root, as in
# tests/pipelines/test_multinode.py). Everything on 127.0.0.1; ~2 min on 2 cores.
#   sudo bash scripts/two_node_paper_path.sh [WORKDIR]    (default /tmp/cajnn-two-node)
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd); V=$REPO/.venv/bin
TOP=${1:-/tmp/cajnn-two-node}; W=$TOP/cajnn; B=$TOP/run
rm -rf "$TOP"; mkdir -p "$B"
git clone -q "$REPO" "$W"; cd "$W"; mkdir -p data runs mlflow
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 DVC_NO_ANALYTICS=1 PATH=$V:$PATH
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
cleanup() { ray stop --force >/dev/null 2>&1 || true; kill $(jobs -p) 2>/dev/null || true; }
trap cleanup EXIT
moto_server -H 127.0.0.1 -p 5077 > "$B/moto.log" 2>&1 &
mlflow server --backend-store-uri "sqlite:///$B/mlflow.db" --default-artifact-root "$B/artifacts" \
  --host 127.0.0.1 --port 5066 --workers 1 > "$B/mlflow.log" 2>&1 &
sleep 4
python -c "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:5077').create_bucket(Bucket='ray')"
ports() { echo --dashboard-agent-listen-port=${1}1 --dashboard-agent-grpc-port=${1}2 --runtime-env-agent-port=${1}3 \
  --metrics-export-port=${1}4 --node-manager-port=${1}5 --object-manager-port=${1}6; }
ray start --head --port=6390 --num-cpus=1 --include-dashboard=false --ray-client-server-port=52407 \
  --temp-dir="$B/h" --disable-usage-stats $(ports 5240) > "$B/head.log" 2>&1
unshare --pid --fork --kill-child --mount-proc --mount --propagation private sh -c \
  "for d in data runs mlflow; do mount -t tmpfs tmpfs $W/\$d; done && exec $V/ray start --address=127.0.0.1:6390 \
   --resources='{\"node2\": 1}' --num-cpus=1 --temp-dir=$B/n --disable-usage-stats --block $(ports 5241)" \
  > "$B/node2.log" 2>&1 &
until python -c "import ray, sys; ray.init(address='127.0.0.1:6390', logging_level='ERROR'); \
  sys.exit(0 if ray.cluster_resources().get('node2') else 1)" 2>/dev/null; do sleep 1; done
time dvc exp run -n paper-2node -S preset=paper -S train.model.preset=micro -S train.iterations=60 \
  -S train.batch_size=8 -S train.cpus_per_worker=1 -S train.checkpoint_every=30 -S train.log_every=10 \
  -S 'fetch.sources=[sample]' -S 'fetch.holdout=[chelsea,coffee]' -S 'degrade.inputs=[data/raw/sample-train]' \
  -S 'train.val_sets=[data/raw/sample-holdout]' -S '~evaluate.sets.Set5' -S '~evaluate.sets.Set14' \
  -S '~evaluate.sets.B100' -S '~evaluate.sets.Urban100' -S evaluate.sets.holdout=data/raw/sample-holdout \
  -S evaluate.sweep_set=holdout -S evaluate.self_ensemble=false \
  -S ray.address=127.0.0.1:6390 -S '+ray.task_resources.node2=1' -S mlflow.tracking_uri=http://127.0.0.1:5066 \
  -S train.storage_path=s3://ray/runs -S train.storage_endpoint_url=http://127.0.0.1:5077
echo "checkpoints in S3: $(python -c "import boto3; print(sum('checkpoint_' in o['Key'] for o in boto3.client('s3', \
  endpoint_url='http://127.0.0.1:5077').list_objects_v2(Bucket='ray')['Contents']))") objects; node2's worker logs: \
  $(ls "$B"/n/session_latest/logs/worker-*.out | wc -l)"
