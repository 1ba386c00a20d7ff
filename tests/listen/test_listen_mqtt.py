"""Home Assistant over a real MQTT broker (mosquitto on 127.0.0.1): discovery, availability, ON/OFF, a broker
restart in the middle of the stream, SIGTERM during an event, and the last will of a killed listener."""

from __future__ import annotations

import json
import signal
import time

from homesound_testkit.listen import ListenProcess, Subscriber, hub_environment

NODE = "nursery"
STATE = f"homesound/{NODE}/crying/state"
ATTRIBUTES = f"homesound/{NODE}/crying/attributes"
AVAILABILITY = f"homesound/{NODE}/availability"
CONFIG = f"homeassistant/binary_sensor/{NODE}/crying/config"


def start_listener(hub_dir, broker, tmp_path) -> ListenProcess:
    env, _ = hub_environment(tmp_path / "site")
    return ListenProcess(["--hub", str(hub_dir), "--source", "-", "--rate", "44100", "--format", "s16le",
                          "--mqtt", f"mqtt://127.0.0.1:{broker.port}", "--mqtt-node", NODE, "--min-event", "1.92",
                          "--stall-timeout", "60"], env, tmp_path / "stderr.txt")


def test_home_assistant_sees_the_crying_across_a_broker_restart_and_a_sigterm(hub_dir, household_audio, broker,
                                                                             tmp_path):
    subscriber = Subscriber(broker.port)
    listener = start_listener(hub_dir, broker, tmp_path)
    try:
        # Discovery: one binary_sensor per class, retained, pointing at the state/availability topics.
        config = json.loads(subscriber.messages[subscriber.wait_for(CONFIG)][1])
        assert config["state_topic"] == STATE and config["availability_topic"] == AVAILABILITY
        assert config["json_attributes_topic"] == ATTRIBUTES and config["device_class"] == "sound"
        assert config["unique_id"] == f"homesound_{NODE}_crying"
        subscriber.wait_for(f"homeassistant/binary_sensor/{NODE}/laughter/config")
        subscriber.wait_for(AVAILABILITY, "online")

        # The first crying (10-24 s): ON while it lasts, with its probability and start; OFF after the hold time.
        listener.feed(household_audio.pcm_until(30.0))
        on = subscriber.wait_for(STATE, "ON")
        attributes = [json.loads(p) for t, p, _ in subscriber.messages[:on + 1] if t == ATTRIBUTES][-1]
        assert attributes["probability"] > 0.3 and attributes["event_start"]
        off = subscriber.wait_for(STATE, "OFF", after=on)
        started = listener.wait_for(lambda r: r["type"] == "event" and r["state"] == "start")
        assert started["label"] == "crying" and abs(started["start"] - 10.0) <= 1.5

        # The broker goes away; the listener keeps listening; the broker comes back on the same port.
        broker.stop()
        listener.feed(household_audio.pcm_until(44.0, start=30.0))
        time.sleep(1.0)
        assert listener.process.poll() is None
        mark = len(subscriber.messages)
        broker.start()
        subscriber.wait_for(CONFIG, after=mark, timeout=30)  # republished on reconnection (no persistence)
        subscriber.wait_for(AVAILABILITY, "online", after=mark)
        subscriber.wait_for(STATE, "OFF", after=mark)
        assert listener.process.poll() is None

        # The second crying starts (49 s); SIGTERM in the middle of it closes the event and goes offline.
        mark = len(subscriber.messages)
        listener.feed(household_audio.pcm_until(52.5, start=44.0))
        on = subscriber.wait_for(STATE, "ON", after=mark)
        listener.process.send_signal(signal.SIGTERM)
        assert listener.finish(timeout=20) == 0, listener.stderr_text()
        subscriber.wait_for(STATE, "OFF", after=on)
        subscriber.wait_for(AVAILABILITY, "offline", after=on)
        last_event = [r for r in listener.records if r["type"] == "event"][-1]
        assert (last_event["label"], last_event["state"]) == ("crying", "end")
        assert abs(last_event["start"] - household_audio.truth[-1][1]) <= 1.5
        assert off < on
    finally:
        listener.kill()
        subscriber.close()


def test_a_killed_listener_is_marked_offline_by_its_last_will(hub_dir, household_audio, broker, tmp_path):
    subscriber = Subscriber(broker.port)
    listener = start_listener(hub_dir, broker, tmp_path)
    try:
        listener.feed(household_audio.pcm_until(2.0))
        online = subscriber.wait_for(AVAILABILITY, "online")
        listener.process.kill()
        listener.process.wait()
        subscriber.wait_for(AVAILABILITY, "offline", after=online, timeout=15)
    finally:
        listener.kill()
        subscriber.close()
