#!/usr/bin/env python3
"""Scans every topic of a broker for what it keeps about some people, sharing no code with
woostream: confluent-kafka reads every record of every topic (up to end markers it writes
itself), and the raw bytes of keys, values and headers are searched.

Prints one JSON object:
  clear: every record where a --needle (a name, an email, a phone, a street; case-insensitive)
         appears in clear;
  naming: per topic, the records whose key or value names one of the --subject strings
          (the people's customer keys);
  sealed_ids: the key ids of the sealed values ("ws1.<id>.") in those records (and in every
              record of an --all-sealed-in topic);
  live: of those ids, the ones the key topic (latest record per key) still holds;
  records: per topic, how many records were read.
"""
import argparse
import json
import re
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

MARKER = b"woostream-end-marker"
SEALED = re.compile(rb"ws[12]\.([0-9a-f]{32}|[0-9a-f]{16})\.")


def end_markers(bootstrap, topic, partitions):
    """Writes a marker (a tombstone) to each partition; returns partition -> its offset."""
    offsets = {}

    def report(err, msg):
        if err is None:
            offsets[msg.partition()] = msg.offset()

    p = Producer({"bootstrap.servers": bootstrap, "broker.address.family": "v4"})
    for part in partitions:
        p.produce(topic, key=MARKER, value=None, partition=part, on_delivery=report)
    p.flush(30)
    if len(offsets) != len(partitions):
        sys.exit(f"end markers of {topic}: only {offsets}")
    return offsets


def read_topic(bootstrap, topic, partitions):
    stops = end_markers(bootstrap, topic, partitions)
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"scan-{uuid.uuid4()}",
        "enable.auto.commit": False,
        # Everything the log holds, records of transactions never ended included.
        "isolation.level": "read_uncommitted",
        "broker.address.family": "v4",
    })
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    open_parts = set(partitions)
    out = []
    deadline = time.time() + 120
    while open_parts and time.time() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        if m.partition() not in open_parts:
            continue
        if m.offset() >= stops[m.partition()]:
            open_parts.discard(m.partition())
            continue
        if m.key() != MARKER:
            out.append(m)
    c.close()
    if open_parts:
        sys.exit(f"{topic}: partitions {open_parts} did not reach their end markers")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--needle", action="append", default=[])
    ap.add_argument("--subject", action="append", default=[])
    ap.add_argument("--keys-topic", default="woostream.subject-keys")
    ap.add_argument("--all-sealed-in", action="append", default=[],
                    help="a topic whose every sealed value counts as theirs (dead letters)")
    a = ap.parse_args()

    needles = [n.lower().encode() for n in a.needle]
    subjects = [s.encode() for s in a.subject]
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "scan-metadata",
                  "broker.address.family": "v4"})
    md = c.list_topics(timeout=10)
    c.close()
    topics = sorted(t for t in md.topics if not t.startswith("__"))
    clear, naming, sealed_ids, records = [], {}, set(), {}
    latest_key = {}
    for topic in topics:
        parts = sorted(md.topics[topic].partitions)
        msgs = read_topic(a.bootstrap, topic, parts)
        records[topic] = len(msgs)
        for m in msgs:
            key, value = m.key() or b"", m.value() or b""
            headers = b"".join((k.encode() + (v or b"")) for k, v in (m.headers() or []))
            if topic == a.keys_topic:
                latest_key[key] = m.value() is not None
            raw = (key + b"\x00" + value + b"\x00" + headers).lower()
            for n, needle in zip(a.needle, needles):
                if needle in raw:
                    clear.append({"topic": topic, "partition": m.partition(),
                                  "offset": m.offset(), "needle": n})
            if topic in a.all_sealed_in:
                sealed_ids.update(i.decode() for i in SEALED.findall(value))
            if any(s in key or s in value for s in subjects):
                naming[topic] = naming.get(topic, 0) + 1
                sealed_ids.update(i.decode() for i in SEALED.findall(value))
    live = sorted(i for i in sealed_ids if latest_key.get(i.encode(), False))
    print(json.dumps({"clear": clear, "naming": naming, "sealed_ids": sorted(sealed_ids),
                      "live": live, "records": records}))


if __name__ == "__main__":
    main()
