#!/bin/sh
# azd postdeploy hook: the Event Grid subscription targets the workspace-deleted function, which
# exists only once the code is deployed. First `azd up`: provision (no subscription) -> deploy ->
# this hook flips DSR_EVENTGRID_ENABLED and provisions again (idempotent, only adds it).
set -eu
if [ "${DSR_EVENTGRID_ENABLED:-false}" = "true" ]; then
  echo "postdeploy: Event Grid subscription already enabled"
  exit 0
fi
echo "postdeploy: enabling the Event Grid subscription (second provision pass)"
azd env set DSR_EVENTGRID_ENABLED true
azd provision --no-prompt
