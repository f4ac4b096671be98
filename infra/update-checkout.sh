#!/usr/bin/env bash
# Brings a deployment checkout of cajnn to a pinned ref before each retraining run, so that the
# weekly job runs the code, dvc.yaml and conf/ of CAJNN_GIT_REF and not whatever was cloned the
# first time. Used by infra/k8s/retrain-cronjob.yaml (init container, this file from the image),
# infra/systemd/cajnn-retrain.service and infra/cron/cajnn-retrain (see infra/README.md).
#
#   infra/update-checkout.sh DIR [IMAGE_LOCK]
#
#   CAJNN_GIT_REF  required: the branch or tag to run (a tag pins a release; a branch follows it)
#   CAJNN_GIT_URL  the repository: needed when DIR is not a checkout yet (it is then fetched into
#                  a new one); when set, origin is pointed at it
#   IMAGE_LOCK     the requirements.lock of the image the job runs in: stop (exit 1) when the ref
#                  needs other dependencies than the image has (build and pin an image for it)
#
# Tracked files are reset to the ref (local edits to them are lost). Ignored files stay: data/,
# models/, reports/, the DVC cache and data/retrain/ (state.json, the lock) survive every update.
set -euo pipefail

main() {
  local dir=${1:?usage: update-checkout.sh DIR [IMAGE_LOCK]}
  local lock=${2:-}
  local ref=${CAJNN_GIT_REF:?set CAJNN_GIT_REF to the branch or tag to run}
  local depth=()
  if [ ! -d "$dir/.git" ]; then
    : "${CAJNN_GIT_URL:?set CAJNN_GIT_URL: $dir is not a git checkout yet}"
    git init -q "$dir"
    git -C "$dir" remote add origin "$CAJNN_GIT_URL"
    depth=(--depth 1)
  else
    if [ -n "${CAJNN_GIT_URL:-}" ]; then
      git -C "$dir" remote set-url origin "$CAJNN_GIT_URL"
    fi
    if [ "$(git -C "$dir" rev-parse --is-shallow-repository)" = true ]; then
      depth=(--depth 1)
    fi
  fi
  git -C "$dir" fetch -q "${depth[@]}" origin "$ref"
  git -C "$dir" reset -q --hard FETCH_HEAD
  echo "update-checkout: $dir at $ref ($(git -C "$dir" rev-parse --short HEAD))"
  if [ -n "$lock" ] && ! cmp -s "$lock" "$dir/requirements.lock"; then
    echo "update-checkout: $dir/requirements.lock of $ref differs from the image's $lock:" \
         "build and pin an image for $ref" >&2
    exit 1
  fi
}

# One line: bash has read all of it before main runs, so the script may update its own file.
main "$@"; exit
