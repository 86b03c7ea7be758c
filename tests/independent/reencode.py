#!/usr/bin/env python3
"""Reads single-object Avro records (hex, one per line on stdin), decodes each with fastavro
given only schemas/, and writes it again with fastavro under the same framing (hex, one per
line on stdout): so that woostream's decoder can be shown to read what another Avro library
writes, not only what it writes itself.
"""
import io
import sys

import fastavro

from decode import load_schemas


def main():
    schemas = load_schemas(sys.argv[1])
    for line in sys.stdin:
        data = bytes.fromhex(line.strip())
        if data[:2] != b"\xc3\x01":
            raise ValueError(f"not single-object framing: {data[:2]!r}")
        _, schema = schemas[data[2:10]]
        buf = io.BytesIO(data[10:])
        value = fastavro.schemaless_reader(buf, schema)
        if buf.read():
            raise ValueError("bytes left after the datum")
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema, value)
        print((data[:10] + out.getvalue()).hex())


if __name__ == "__main__":
    main()
