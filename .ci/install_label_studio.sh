#!/usr/bin/env bash
# Install the Label Studio server into its own virtualenv, apart from homesound's environment:
# the server pins its own Django, numpy and pandas, which must not leak into ours.
# The tests (homesound_testkit/label_studio_server.py) look for it at $LABEL_STUDIO_VENV, else
# <repo>/.venv-label-studio. Idempotent: a venv that already has this version is kept.
#
#   .ci/install_label_studio.sh            # ~100 s and ~1 GB the first time
#   LABEL_STUDIO_VENV=/opt/ls .ci/install_label_studio.sh
set -euo pipefail

LABEL_STUDIO_VERSION="${LABEL_STUDIO_VERSION:-1.23.2}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LABEL_STUDIO_VENV:-$repo_root/.venv-label-studio}"
python="${PYTHON:-python3}"

if [ -x "$venv/bin/label-studio" ] && \
   [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("label-studio"))' 2>/dev/null)" = "$LABEL_STUDIO_VERSION" ]; then
    echo "label-studio $LABEL_STUDIO_VERSION already installed in $venv"
    exit 0
fi

"$python" -m venv --clear "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# label-studio pins the exact label-studio-sdk it was released with; pip resolves it.
"$venv/bin/python" -m pip install --quiet "label-studio==$LABEL_STUDIO_VERSION"
# Not `label-studio --version`: it initialises ~/.local/share/label-studio and starts a server.
"$venv/bin/python" -c 'import importlib.metadata as m; print("label-studio", m.version("label-studio"), "sdk", m.version("label-studio-sdk"))'
echo "label-studio $LABEL_STUDIO_VERSION installed in $venv"
