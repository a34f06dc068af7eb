"""The Dask side of lumen_bench_dataframe: the same generated tables (pandas, then Dask with
one partition per core pair) and the same four operations, each timed alone; prints
`name value unit` lines."""
import sys
import time

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
dim_rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
parts = int(sys.argv[3]) if len(sys.argv) > 3 else 8

i = np.arange(rows, dtype=np.int64)
fact = pd.DataFrame({
    "key": (i * 7919) % 1000000,
    "a": ((i * 104729) % 1000003) / 1000003.0,
    "b": ((i * 3) % 1000) / 10.0,
    "s": pd.Series(i % 1000).map(lambda v: "s" + str(v)),
})
j = np.arange(dim_rows, dtype=np.int64)
dim = pd.DataFrame({"key": j, "d": (j % 97) / 97.0,
                    "name": pd.Series(j % 500).map(lambda v: "n" + str(v))})
fact_dd = dd.from_pandas(fact, npartitions=parts)
dim_dd = dd.from_pandas(dim, npartitions=max(1, parts // 4))


def report(name, value, unit):
    print(f"{name} {value} {unit}", flush=True)


def timed(name, fn):
    t = time.perf_counter()
    out = fn()
    report(f"dask_{name}_s", round(time.perf_counter() - t, 4), "s")
    return out


with dask.config.set(scheduler="threads"):
    g = timed("groupby_sum", lambda: fact_dd.groupby("key").agg({"a": "sum", "b": "mean"}).compute())
    report("dask_groupby_rows", len(g), "rows")
    jn = timed("join_inner", lambda: fact_dd.merge(dim_dd, on="key", how="inner").compute())
    report("dask_join_rows", len(jn), "rows")
    timed("sort", lambda: fact_dd.sort_values("a").compute())
    def filt():
        f = fact_dd[(fact_dd.a > 0.5) & fact_dd.s.str.startswith("s1")]
        return f.assign(c=f.a * f.b + 1).compute()
    f = timed("filter_project", filt)
    report("dask_filter_rows", len(f), "rows")
