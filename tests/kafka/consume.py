#!/usr/bin/env python3
"""Independent Kafka client for the shadowdiff tests: reads a topic from the beginning with
confluent-kafka (its own bundled librdkafka, not shadowdiff's) and prints one JSON line per
message: {"key": ..., "value": ..., "partition": ..., "offset": ...}.

Stops when --expect-ids distinct event ids (and at least --min-messages messages) have been seen
and the topic then stays quiet for --settle seconds (so late duplicates are still caught), or after
--timeout seconds. --min-messages serves topics whose messages carry no id (statistics).
"""
import argparse
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--expect-ids", type=int, default=0)
    ap.add_argument("--min-messages", type=int, default=0)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    c = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": "shadowdiff-test-" + uuid.uuid4().hex,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([args.topic])
    ids = set()
    seen = 0
    deadline = time.monotonic() + args.timeout
    last_msg = time.monotonic()
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            now = time.monotonic()
            if m is None:
                if (len(ids) >= args.expect_ids and seen >= args.min_messages
                        and now - last_msg >= args.settle):
                    break
                continue
            if m.error():
                if m.error().code() in (KafkaError._PARTITION_EOF,
                                        KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                print(json.dumps({"error": str(m.error())}), file=sys.stderr)
                continue
            last_msg = now
            seen += 1
            key = m.key().decode("utf-8", "replace") if m.key() is not None else None
            value = m.value().decode("utf-8", "replace") if m.value() is not None else None
            try:
                ids.add(json.loads(value)["id"])
            except Exception:  # noqa: BLE001 - malformed values are printed for the test to see
                pass
            print(json.dumps({"key": key, "value": value,
                              "partition": m.partition(), "offset": m.offset()}), flush=True)
    finally:
        c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
