#!/usr/bin/env python3
"""A consumer that still has the previous version of a schema: reads records written with the
current one (hex datums, one per line on stdin, schema names as arguments: WRITER.avsc
READER.avsc) through Avro schema resolution, and prints each as JSON and as the datum that
consumer would write back with its own schema (hex), tab-separated, one per line. What a
team's existing consumer does the day woostream starts writing the new fields, and what
woostream must still read from records written before it did.
"""
import io
import json
import sys

import fastavro


def main():
    writer = fastavro.parse_schema(json.load(open(sys.argv[1])))
    reader = fastavro.parse_schema(json.load(open(sys.argv[2])))
    for line in sys.stdin:
        buf = io.BytesIO(bytes.fromhex(line.strip()))
        value = fastavro.schemaless_reader(buf, writer, reader)
        if buf.read():
            raise ValueError("bytes left after the datum")
        out = io.BytesIO()
        fastavro.schemaless_writer(out, reader, value)
        print(json.dumps(value, default=str) + "\t" + out.getvalue().hex())


if __name__ == "__main__":
    main()
