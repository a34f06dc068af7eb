"""Dask distributed baseline for W1 of lumen_bench_pipelines: copies every file of a tree with
one task per file on a local cluster (one single-threaded worker process per CPU).
Prints `w1_dask_s <seconds>` (after the cluster is up, until the last file is written)."""
import os
import sys
import time

from dask.distributed import Client, LocalCluster


def copy(pair):
    src, dst = pair
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data)
    return len(data)


def main():
    src_root, dst_root = sys.argv[1], sys.argv[2]
    pairs = []
    for d, _, names in os.walk(src_root):
        for n in names:
            src = os.path.join(d, n)
            pairs.append((src, os.path.join(dst_root, os.path.relpath(src, src_root))))
    pairs.sort()
    workers = os.cpu_count() or 2
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        start = time.perf_counter()
        total = sum(client.gather(client.map(copy, pairs, pure=False)))
        elapsed = time.perf_counter() - start
        print(f"w1_dask_s {elapsed:.4f} s", flush=True)
        print(f"w1_dask_bytes {total} bytes", flush=True)


if __name__ == "__main__":
    main()
