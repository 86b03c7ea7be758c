#!/usr/bin/env python3
"""Reads woostream topics with tools that share no code with woostream.

confluent-kafka (its own librdkafka) consumes; fastavro decodes, given only the .avsc files in
schemas/. Frames are recognised by the Avro spec (single-object: C3 01 + CRC-64-AVRO
fingerprint, little-endian) or by Confluent's wire format (00 + big-endian schema id, resolved
through --registry). Prints one JSON object per record on stdout.

With --keys-topic, personal fields sealed per person ("ws2.<key id>.<field>.<base64url(nonce ‖
ciphertext)>", ChaCha20-Poly1305 with "<key id>|<field>" as associated data; "ws1.<key id>.<…>"
without, as earlier releases wrote) are opened with the keys that topic holds (JSON records,
the key in base64, unwrapped) using the `cryptography` package, and each record lists the
paths it found sealed ("sealed"); a value whose key is gone stays as it is.
"""
import argparse
import base64
import datetime
import decimal
import glob
import io
import json
import os
import sys
import urllib.request
import uuid

import fastavro
from confluent_kafka import Consumer, TopicPartition

BOUND_PREFIX = "ws2."
SEALED_PREFIXES = ("ws1.", BOUND_PREFIX)


def read_keys(bootstrap, topic, timeout):
    """The latest key per key id in the key topic (read until idle for a few seconds)."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"independent-keys-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "broker.address.family": "v4",
    })
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    keys = {}
    idle_until = datetime.datetime.now() + datetime.timedelta(seconds=3)
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
    while datetime.datetime.now() < min(idle_until, deadline):
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        idle_until = datetime.datetime.now() + datetime.timedelta(seconds=3)
        kid = m.key().decode()
        if m.value() is None:
            keys.pop(kid, None)
            continue
        rec = json.loads(m.value())
        if rec["wrapping"] != "none":
            raise ValueError(f"key {kid} is wrapped; this reader opens unwrapped keys only")
        keys[kid] = ChaCha20Poly1305(base64.b64decode(rec["key"]))
    c.close()
    return keys


def open_sealed(value, keys, path, found):
    """Opens every sealed string in a decoded value; records the paths of sealed ones."""
    if isinstance(value, str) and value.startswith(SEALED_PREFIXES):
        bound = value.startswith(BOUND_PREFIX)
        kid, _, data = value[4:].partition(".")
        aad = None
        if bound:
            # ws2.<key id>.<field>.<data>: bound to the key id and the field it was sealed for.
            field, _, data = data.partition(".")
            aad = f"{kid}|{field}".encode()
        found.append(path)
        if kid not in keys:
            return value
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        return keys[kid].decrypt(raw[:12], raw[12:], aad).decode()
    if isinstance(value, dict):
        return {k: open_sealed(v, keys, f"{path}.{k}" if path else k, found) for k, v in value.items()}
    if isinstance(value, list):
        return [open_sealed(v, keys, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value

EMPTY = 0xC15D213AA4D7A795


def _table():
    t = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        t.append(fp)
    return t


TABLE = _table()


def crc64_avro(data: bytes) -> int:
    """The Avro spec's Rabin fingerprint, written out from the spec."""
    fp = EMPTY
    for b in data:
        fp = (fp >> 8) ^ TABLE[(fp ^ b) & 0xFF]
    return fp


def load_schemas(directory):
    by_fp = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.avsc"))):
        with open(path) as f:
            raw = json.load(f)
        parsed = fastavro.parse_schema(raw)
        canonical = fastavro.schema.to_parsing_canonical_form(raw)
        fp = crc64_avro(canonical.encode()).to_bytes(8, "little")
        # fastavro's own fingerprint must agree with the spec's algorithm.
        assert fastavro.schema.fingerprint(canonical, "CRC-64-AVRO") == fp.hex(), path
        by_fp[fp] = (os.path.basename(path)[:-5], parsed)
    return by_fp


def plain(v):
    if isinstance(v, decimal.Decimal):
        return format(v.normalize(), "f") if v != 0 else "0"
    if isinstance(v, datetime.datetime):
        return v.astimezone(datetime.timezone.utc).isoformat()
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, uuid.UUID):
        return str(v)
    return v


class Decoder:
    def __init__(self, schemas, registry):
        self.by_fp = schemas
        self.registry = registry
        self.by_id = {}

    def decode(self, data):
        if data is None:
            return None, None
        if data[:2] == b"\xc3\x01":
            name, schema = self.by_fp[data[2:10]]
            body = data[10:]
        elif data[:1] == b"\x00":
            sid = int.from_bytes(data[1:5], "big")
            if sid not in self.by_id:
                with urllib.request.urlopen(f"{self.registry}/schemas/ids/{sid}") as r:
                    text = json.load(r)["schema"]
                raw = json.loads(text)
                self.by_id[sid] = (raw.get("name", "?") if isinstance(raw, dict) else raw, fastavro.parse_schema(raw))
            name, schema = self.by_id[sid]
            body = data[5:]
        else:
            raise ValueError(f"unknown framing {data[:2]!r}")
        buf = io.BytesIO(body)
        value = fastavro.schemaless_reader(buf, schema)
        if buf.read():
            raise ValueError("bytes left after the datum")
        return name, value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--schemas", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--registry")
    ap.add_argument("--keys-topic")
    a = ap.parse_args()
    keys = read_keys(a.bootstrap, a.keys_topic, a.timeout) if a.keys_topic else None

    decoder = Decoder(load_schemas(a.schemas), a.registry)
    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": f"independent-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "broker.address.family": "v4",
    })
    md = c.list_topics(a.topic, timeout=10)
    parts = md.topics[a.topic].partitions
    c.assign([TopicPartition(a.topic, p, 0) for p in parts])
    seen = 0
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=a.timeout)
    while seen < a.count and datetime.datetime.now() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            print(f"consumer error: {m.error()}", file=sys.stderr)
            continue
        # The end markers woostream's readers write (a plain key, no value): not records.
        if m.key() == b"woostream-end-marker":
            continue
        key_schema, key = decoder.decode(m.key())
        value_schema, value = decoder.decode(m.value())
        record = {
            "topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
            "key_schema": key_schema, "key": plain(key),
            "value_schema": value_schema, "value": plain(value),
            "headers": {k: v.decode() for k, v in (m.headers() or [])},
        }
        if keys is not None:
            sealed = []
            # A kept body sealed under a key: its bytes are the sealed text of their base64.
            if isinstance(value, dict) and value.get("body_encryption") == "subject-key":
                text = value["body"].decode()
                opened = open_sealed(text, keys, "body", sealed)
                if opened != text:
                    raw = base64.urlsafe_b64decode(opened + "=" * (-len(opened) % 4))
                    record["value"]["body"] = base64.b64encode(raw).decode()
                    record["value"]["body_encryption"] = "opened"
            record["value"] = open_sealed(record["value"], keys, "", sealed)
            record["sealed"] = sealed
        print(json.dumps(record, sort_keys=True), flush=True)
        seen += 1
    c.close()
    if seen < a.count:
        print(f"only {seen} of {a.count} records arrived", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
