"""Telling the house: Home Assistant over MQTT (discovery, availability, ON/OFF) and webhooks.

MQTT keeps no backlog: the sensors' *current* state is what matters, so while the broker is
away nothing is queued, and every (re)connection republishes discovery, availability and each
sensor's state (retained). paho reconnects on its own with exponential backoff. A webhook gets
every event update in order from a bounded queue, retried a few times, then dropped with a
warning, so a dead web server never slows the listener down.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from homesound import __version__
from homesound.backoff import Backoff
from homesound.errors import HomesoundError
from homesound.redact import redact_text, redact_url, url_secrets
from homesound_hub.listen import EventReport, Sink, iso_time

log = logging.getLogger(__name__)

PASSWORD_ENV = "HOMESOUND_MQTT_PASSWORD"
ON, OFF = "ON", "OFF"
ONLINE, OFFLINE = "online", "offline"
UNAVAILABLE_STATUSES = ("stalled", "failed", "error", "ended")  # no audio: the sensors cannot know
AVAILABLE_STATUSES = ("connected", "resumed")


def topic_safe(name: str) -> str:
    """Home Assistant node and object ids allow [a-zA-Z0-9_-] only."""
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", name).strip("_") or "x"


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a repr (logs, tracebacks)
    tls: bool = False
    node_id: str = "homesound"
    discovery_prefix: str = "homeassistant"
    base_topic: str = "homesound"
    keepalive_seconds: int = 30
    reconnect_min_seconds: int = 1
    reconnect_max_seconds: int = 60
    max_queued_messages: int = 200  # messages in flight when the link drops; beyond, publishing waits for resync

    @classmethod
    def from_url(cls, url: str, **options) -> "MqttSettings":
        """mqtt://[user[:password]@]host[:port] or mqtts://...; the password may come from $HOMESOUND_MQTT_PASSWORD."""
        url = url if "://" in url else f"mqtt://{url}"
        shown = redact_url(url)  # the password never reaches a message
        try:
            parts = urlsplit(url)
            hostname = parts.hostname
        except ValueError:
            raise HomesoundError(f"--mqtt {shown}: not a URL; use mqtt://[user[:password]@]host[:port]") from None
        if parts.scheme not in ("mqtt", "mqtts") or not hostname:
            raise HomesoundError(f"--mqtt {shown}: use mqtt://[user[:password]@]host[:port] (or mqtts:// for TLS)")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise HomesoundError(f"--mqtt {shown}: the port is not a number from 1 to 65535") from None
        password = unquote(parts.password) if parts.password else os.environ.get(PASSWORD_ENV)
        return cls(host=hostname, port=port, username=unquote(parts.username) if parts.username else None,
                   password=password, tls=tls, **options)


class HomeAssistantMqtt(Sink):
    """One binary_sensor per class, under one device named after the node."""

    def __init__(self, settings: MqttSettings, source: str):
        try:
            import paho.mqtt.client  # noqa: F401  (checked here: before any audio is read)
        except ImportError:
            raise HomesoundError("--mqtt needs paho-mqtt: pip install paho-mqtt") from None
        self.settings = settings
        self.source = source
        self.node = topic_safe(settings.node_id)
        self.classes: tuple[str, ...] = ()
        self._lock = threading.Lock()  # paho's thread (on_connect) reads the state this thread writes
        self._available = False
        self._states: dict[str, str] = {}
        self._attributes: dict[str, dict] = {}
        self._client = None
        self.connections = 0
        self.failed_attempts = 0

    # topics
    @property
    def availability_topic(self) -> str:
        return f"{self.settings.base_topic}/{self.node}/availability"

    def state_topic(self, label: str) -> str:
        return f"{self.settings.base_topic}/{self.node}/{topic_safe(label)}/state"

    def attributes_topic(self, label: str) -> str:
        return f"{self.settings.base_topic}/{self.node}/{topic_safe(label)}/attributes"

    def config_topic(self, label: str) -> str:
        return f"{self.settings.discovery_prefix}/binary_sensor/{self.node}/{topic_safe(label)}/config"

    def discovery_config(self, label: str) -> dict:
        return {
            "name": label.replace("_", " ").capitalize(),
            "unique_id": f"homesound_{self.node}_{topic_safe(label)}",
            "device_class": "sound",
            "state_topic": self.state_topic(label),
            "payload_on": ON,
            "payload_off": OFF,
            "availability_topic": self.availability_topic,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "json_attributes_topic": self.attributes_topic(label),
            "device": {"identifiers": [f"homesound_{self.node}"], "name": f"homesound {self.node}",
                       "manufacturer": "homesound", "model": "VGGish + causal GRU", "sw_version": __version__},
            "origin": {"name": "homesound", "sw_version": __version__},
        }

    # Sink
    def open(self, classes: tuple[str, ...]) -> None:
        import paho.mqtt.client as mqtt

        self.classes = classes
        self._states = {label: OFF for label in classes}
        self._attributes = {label: {"probability": 0.0, "event_start": None, "source": self.source}
                            for label in classes}
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"homesound-{self.node}",
                             clean_session=True)
        client.will_set(self.availability_topic, OFFLINE, qos=1, retain=True)
        if self.settings.username:
            client.username_pw_set(self.settings.username, self.settings.password)
        if self.settings.tls:
            client.tls_set()
        client.reconnect_delay_set(self.settings.reconnect_min_seconds, self.settings.reconnect_max_seconds)
        client.max_queued_messages_set(self.settings.max_queued_messages)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        self._client = client
        client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_seconds)
        client.loop_start()  # paho's thread: connects, and reconnects with backoff, for as long as we run

    def status(self, status: str, message: str) -> None:
        if status in AVAILABLE_STATUSES or status in UNAVAILABLE_STATUSES:
            with self._lock:
                self._available = status in AVAILABLE_STATUSES
                self._publish(self.availability_topic, ONLINE if self._available else OFFLINE)

    def hop(self, hop, result, wall: float, latency: float) -> None:
        with self._lock:
            for label, probability in zip(self.classes, result.probabilities):
                self._attributes[label]["probability"] = round(float(probability), 4)
                if self._states[label] == ON:  # live probability while an event lasts; quiet otherwise
                    self._publish(self.attributes_topic(label), json.dumps(self._attributes[label]))

    def event(self, report: EventReport) -> None:
        label = report.update.event.label
        with self._lock:
            attributes = self._attributes[label]
            if report.update.kind == "start":
                self._states[label] = ON
                attributes.update(event_start=iso_time(report.start_wall), event_end=None)
            else:
                self._states[label] = OFF
                attributes.update(event_end=iso_time(report.end_wall))
            attributes["peak_probability"] = round(report.update.event.peak_probability, 4)
            self._publish(self.attributes_topic(label), json.dumps(attributes))
            self._publish(self.state_topic(label), self._states[label])

    @property
    def undelivered(self) -> bool:
        """True when the broker was never reached: nothing this run detected got to Home Assistant."""
        return self.connections == 0

    def close(self) -> None:
        """Every sensor OFF, then offline (a clean disconnect does not fire the last will)."""
        if self._client is None:
            return
        if self.connections == 0:
            log.warning("MQTT broker %s:%d was never reached (%d attempts): nothing was published",
                        self.settings.host, self.settings.port, self.failed_attempts)
        with self._lock:
            self._states = {label: OFF for label in self.classes}
            self._available = False
            messages = [self._publish(self.state_topic(label), OFF) for label in self.classes]
            messages.append(self._publish(self.availability_topic, OFFLINE))
        for message in messages:
            if message is not None:
                try:
                    message.wait_for_publish(timeout=3.0)
                except (RuntimeError, ValueError):  # not sent: the broker is away; the last will says offline
                    break
        self._client.disconnect()
        self._client.loop_stop()
        self._client = None

    # paho's thread
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT broker %s:%d refused the connection: %s", self.settings.host, self.settings.port,
                        reason_code)
            return
        self.connections += 1
        log.info("MQTT connected to %s:%d", self.settings.host, self.settings.port)
        with self._lock:
            for label in self.classes:
                self._publish(self.config_topic(label), json.dumps(self.discovery_config(label)))
            self._publish(self.availability_topic, ONLINE if self._available else OFFLINE)
            for label in self.classes:
                self._publish(self.attributes_topic(label), json.dumps(self._attributes[label]))
                self._publish(self.state_topic(label), self._states[label])

    def _on_connect_fail(self, client, userdata) -> None:
        """paho could not reach the broker (refused, unknown host, timeout); it retries with backoff."""
        self.failed_attempts += 1
        log.warning("MQTT broker %s:%d is not reachable (attempt %d); retrying with backoff up to %d s",
                    self.settings.host, self.settings.port, self.failed_attempts, self.settings.reconnect_max_seconds)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code != 0:
            log.warning("MQTT connection to %s:%d lost (%s); reconnecting", self.settings.host, self.settings.port,
                        reason_code)

    def _publish(self, topic: str, payload: str):
        """Retained, at least once; skipped while disconnected (the next connection republishes state)."""
        if self._client is None or not self._client.is_connected():
            return None
        return self._client.publish(topic, payload, qos=1, retain=True)


class Webhook(Sink):
    """POSTs each event update as JSON to a URL, from a background thread."""

    QUEUE_SIZE = 100
    ATTEMPTS = 4

    def __init__(self, url: str, timeout: float = 5.0):
        if urlsplit(url).scheme not in ("http", "https"):
            raise HomesoundError(f"--webhook {redact_url(url, hide_path=True)}: give an http:// or https:// URL")
        self.url = url
        self.shown_url = redact_url(url, hide_path=True)  # the path of a webhook URL is its secret
        self._secrets = url_secrets(url, hide_path=True)
        self.timeout = timeout
        self.dropped = 0
        self.delivered = 0
        self._queue: queue.Queue = queue.Queue(maxsize=self.QUEUE_SIZE)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="homesound-webhook", daemon=True)
        self._thread.start()

    def event(self, report: EventReport) -> None:
        try:
            self._queue.put_nowait(report.record())
        except queue.Full:
            self.dropped += 1
            log.warning("webhook %s is not keeping up: %d event updates dropped", self.shown_url, self.dropped)

    def close(self) -> None:
        """Deliver what is queued (a few seconds at most), then stop."""
        self._queue.put(None)
        self._thread.join(timeout=self.timeout * 2)
        self._stop.set()

    def _run(self) -> None:
        while (record := self._queue.get()) is not None:
            self._deliver(record)

    def _deliver(self, record: dict) -> None:
        body = json.dumps(record).encode()
        backoff = Backoff(initial_seconds=0.5, maximum_seconds=5.0)
        for attempt in range(1, self.ATTEMPTS + 1):
            request = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json",
                                                      "User-Agent": f"homesound/{__version__}"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
                self.delivered += 1
                return
            except (urllib.error.URLError, OSError) as error:
                if attempt == self.ATTEMPTS or self._stop.is_set():
                    self.dropped += 1
                    log.warning("webhook %s failed %d times (%s): event update dropped", self.shown_url, attempt,
                                redact_text(str(error), self._secrets))
                    return
                self._stop.wait(backoff.next_delay())
