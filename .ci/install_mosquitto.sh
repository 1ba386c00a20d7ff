#!/usr/bin/env bash
# The MQTT broker the listen tests start on 127.0.0.1 (Debian's mosquitto; its system service is not used).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
fi
broker=$(command -v mosquitto || echo /usr/sbin/mosquitto)
"$broker" -h 2>&1 | head -1 || true
