"""Read `affectd features` output (the input of `affectd train`) with numpy.

    /usr/bin/python3 examples/python/features.py features/

Each video is <video>.npy (float32, rows x D) and <video>.index.csv
(row, frame, face). Prints each video's shape and first frames.
"""
import glob
import os
import sys

import numpy as np
import pandas as pd

for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.npy"))):
    x = np.load(path)
    index = pd.read_csv(path[: -len(".npy")] + ".index.csv")
    assert len(index) == x.shape[0], "index and features disagree"
    name = os.path.basename(path)[: -len(".npy")]
    print(f"{name}: {x.shape[0]} rows x {x.shape[1]} features, frames {index.frame.min()}..{index.frame.max()}, "
          f"mean norm {np.linalg.norm(x, axis=1).mean():.3f}")
