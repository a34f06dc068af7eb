// Group-by aggregation in two steps: each input block is reduced to partial aggregates (one
// row per group: the keys and a few state columns per aggregation), which cross the exchange;
// the reducers combine partial rows into the final ones. Internal to src/data.
#pragma once

#include <string>
#include <vector>

#include "lumen/data/batch.h"
#include "lumen/data/dataset.h"

namespace lumen::data::internal {

// At plan time: the output names are distinct and none is a key. Throws DataError.
void CheckAggregations(const std::vector<std::string>& keys, const std::vector<AggregateFn>& aggs);

// Partial aggregates of `block`: one row per group of `keys` (none: one group) with the state
// columns of `aggs`. Throws DataError naming the aggregation for a missing column or a type it
// cannot take.
Batch PartialAggregate(const std::vector<std::string>& keys, const std::vector<AggregateFn>& aggs,
                       const Batch& block);
// What a map task sends across the exchange for `block`: its partial aggregates when combining
// shrinks it (at most 3 groups in 4 rows), else its rows projected to the keys and the
// aggregated columns: combining nearly unique keys costs a hash pass and more bytes than it
// saves. The reducer tells them apart with HoldsPartials. Errors as PartialAggregate.
Batch CombineForExchange(const std::vector<std::string>& keys, const std::vector<AggregateFn>& aggs,
                         const Batch& block);
// Whether `b` (without its `__partition` column) holds partial aggregates of `aggs`, not rows.
bool HoldsPartials(const std::vector<AggregateFn>& aggs, const Batch& b);
// The final rows from partial rows (from any blocks, in any order): the keys, then each
// aggregation under its name, sorted by the keys. Without keys: exactly one row.
Batch FinalAggregate(const std::vector<std::string>& keys, const std::vector<AggregateFn>& aggs,
                     const Batch& partials);

}  // namespace lumen::data::internal
