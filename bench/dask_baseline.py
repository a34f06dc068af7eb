"""Dask distributed baseline for lumen_bench_core: the same no-op task workload on a local
cluster of this machine (one worker process per CPU, one thread each). Prints
`dask_tasks_async_per_s <value> tasks/s`."""
import os
import sys
import time

from dask.distributed import Client, LocalCluster


def noop(x):
    return x


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    workers = os.cpu_count() or 2
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1") as cluster, \
            Client(cluster) as client:
        client.gather(client.map(noop, range(100), pure=False))  # warm up
        start = time.perf_counter()
        # client.map is Dask's fastest way to submit many tasks (faster than submit() each).
        results = client.gather(client.map(noop, range(n), pure=False))
        elapsed = time.perf_counter() - start
        assert results == list(range(n))
        print(f"dask_tasks_async_per_s {n / elapsed:.0f} tasks/s", flush=True)


if __name__ == "__main__":
    main()
