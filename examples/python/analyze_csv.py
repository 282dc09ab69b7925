"""Read an `affectd analyze` CSV (OpenFace 2 columns) into pandas.

    /usr/bin/python3 examples/python/analyze_csv.py processed/clip.csv

Prints, per face, the frames it was tracked on and its mean AU intensities.
"""
import sys

import pandas as pd

df = pd.read_csv(sys.argv[1], skipinitialspace=True)
au = [c for c in df.columns if c.startswith("AU") and c.endswith("_r")]
ok = df[df["success"] == 1]
print(ok.groupby("face_id").agg(frames=("frame", "count"), **{c: (c, "mean") for c in au}).round(3).to_string())
