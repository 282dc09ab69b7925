"""Read affectd's live websocket (protocol v1) into a pandas DataFrame.

    /usr/bin/python3 examples/python/live.py ws://127.0.0.1:8686/v1/ws 100

Collects N frame messages into one row per face per frame: stream, seq,
face id, the enrolled name (if any) and every head's values as columns
(head.label; a face's heads are the keys of its "source"), and prints each
face's means. Debian: python3-websockets, python3-pandas.
"""
import asyncio
import json
import sys

import pandas as pd
import websockets


async def collect(url, n):
    rows = []
    async with websockets.connect(url, max_size=None) as ws:
        while len(rows) < n:
            msg = json.loads(await ws.recv())
            if msg.get("type") != "frame":
                continue
            for face in msg["faces"]:
                row = {"stream": msg["stream"], "seq": msg["seq"], "face": face["id"],
                       "identity": face.get("identity", "")}
                for head in face.get("source", {}):  # the heads this face has values for
                    for label, v in face.get(head, {}).items():
                        row[f"{head}.{label}"] = v
                rows.append(row)
    return pd.DataFrame(rows)


if __name__ == "__main__":
    url, n = sys.argv[1], int(sys.argv[2])
    df = asyncio.run(collect(url, n))
    print(df.groupby("face").mean(numeric_only=True).round(3).to_string())
