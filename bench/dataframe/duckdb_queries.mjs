// The DuckDB side of lumen_bench_dataframe: the same generated tables and the same four
// operations, each timed alone; prints `name value unit` lines (times and checks).
import { DuckDBInstance } from '@duckdb/node-api';

const rows = Number(process.argv[2] ?? 10000000);
const dimRows = Number(process.argv[3] ?? 1000000);
const threads = Number(process.argv[4] ?? 2);

const inst = await DuckDBInstance.create(':memory:', { threads: String(threads) });
const con = await inst.connect();
const run = (sql) => con.runAndReadAll(sql);
const report = (name, value, unit) => console.log(`${name} ${value} ${unit}`);
async function timed(name, sql) {
  const t = performance.now();
  const r = await run(sql);
  report(`duckdb_${name}_s`, ((performance.now() - t) / 1000).toFixed(4), 's');
  return r.getRows();
}

await run(`CREATE TABLE fact AS SELECT (i * 7919) % 1000000 AS key,
             ((i * 104729) % 1000003)::DOUBLE / 1000003 AS a, ((i * 3) % 1000)::DOUBLE / 10 AS b,
             's' || (i % 1000)::VARCHAR AS s FROM range(${rows}) t(i)`);
await run(`CREATE TABLE dim AS SELECT j AS key, (j % 97)::DOUBLE / 97 AS d,
             'n' || (j % 500)::VARCHAR AS name FROM range(${dimRows}) t(j)`);

let r = await timed('groupby_sum',
  `CREATE TEMP TABLE g AS SELECT key, sum(a) AS sa, avg(b) AS mb FROM fact GROUP BY key`);
r = await run(`SELECT count(*), sum(sa), sum(mb) FROM g`);
report('duckdb_groupby_rows', Number(r.getRows()[0][0]), 'rows');
report('duckdb_groupby_sum_a', r.getRows()[0][1], 'sum');

await timed('join_inner',
  `CREATE TEMP TABLE j AS SELECT * FROM fact JOIN dim USING (key)`);
r = await run(`SELECT count(*), sum(d) FROM j`);
report('duckdb_join_rows', Number(r.getRows()[0][0]), 'rows');
report('duckdb_join_sum_d', r.getRows()[0][1], 'sum');

await timed('sort', `CREATE TEMP TABLE s AS SELECT * FROM fact ORDER BY a`);

r = await timed('filter_project',
  `CREATE TEMP TABLE f AS SELECT *, a * b + 1 AS c FROM fact WHERE a > 0.5 AND s LIKE 's1%'`);
r = await run(`SELECT count(*), sum(c) FROM f`);
report('duckdb_filter_rows', Number(r.getRows()[0][0]), 'rows');
report('duckdb_filter_sum_c', r.getRows()[0][1], 'sum');
