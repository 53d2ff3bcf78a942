"""twinedge cloud aggregator: sync endpoint, time-series storage, queries, model registry, physics."""

import os

# numpy's OpenBLAS threads make the small matrix work of the physics checks 20-100x
# slower as soon as other processes load the CPU; one thread per process is faster
# here. Set before numpy is imported anywhere in the service; an explicit setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
