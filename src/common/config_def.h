// System tuning knobs: one line and one comment each. Every knob can be overridden by the
// environment variable LUMEN_<NAME in upper case>, which workers inherit from their driver.
// LUMEN_CONFIG(type, name, default, comment)

LUMEN_CONFIG(int64_t, max_inline_object_bytes, 100 * 1024,
             "Values up to this size travel inline in RPCs and live in the owner's memory store")
LUMEN_CONFIG(int64_t, max_tasks_in_flight_per_worker, 16,
             "Tasks pushed to one leased worker before it reports one finished (pipelining)")
LUMEN_CONFIG(int64_t, max_pending_tasks, 20000,
             "Unfinished tasks one owner may have before Remote() blocks (submission backpressure)")
LUMEN_CONFIG(int64_t, lease_idle_timeout_ms, 200,
             "How long an owner keeps an idle worker lease for more tasks of the same shape")
LUMEN_CONFIG(int64_t, max_lease_requests_in_flight, 4,
             "Concurrent worker-lease requests per scheduling key")
LUMEN_CONFIG(double, object_store_memory_fraction, 0.3,
             "Default object store capacity as a fraction of physical memory")
LUMEN_CONFIG(int64_t, object_store_full_timeout_ms, 10000,
             "How long a create waits for spilling to make room before ObjectStoreFull")
LUMEN_CONFIG(int64_t, min_spill_bytes, 64 << 20,
             "Spill at least this many bytes at once, fused into one file")
LUMEN_CONFIG(int64_t, spin_wait_us, 300,
             "Threads on the task path poll this long (yielding) before blocking; 0: never spin")
LUMEN_CONFIG(int64_t, heartbeat_period_ms, 1000,
             "Longest heartbeat period; the GCS asks nodes for a quarter of its death timeout")
LUMEN_CONFIG(int64_t, node_death_timeout_ms, 4000,
             "A node without heartbeats for this long is declared dead")
LUMEN_CONFIG(int64_t, gcs_reconnect_timeout_s, 60,
             "Nodes, drivers and workers reconnect to a restarted control service for this long; "
             "what needs it waits as long, then fails")
LUMEN_CONFIG(int64_t, lost_copy_recheck_ms, 100,
             "A read cut off by another node asks the GCS this often whether that node died")
LUMEN_CONFIG(int64_t, max_lineage_bytes, 1ll << 30,
             "An owner keeps the specs of finished tasks whose results are referenced, for "
             "re-creating lost objects, up to this many bytes (oldest evicted first)")
LUMEN_CONFIG(int64_t, worker_start_timeout_ms, 60000,
             "A started worker that has not registered after this long is killed")
LUMEN_CONFIG(int64_t, max_workers_per_cpu, 4,
             "Cap on non-actor worker processes per CPU (blocked workers release their CPU)")
LUMEN_CONFIG(int64_t, idle_worker_keep_ms, 60000,
             "Idle workers above the CPU count are stopped after this long")
LUMEN_CONFIG(double, memory_usage_threshold, 0.95,
             "Above this fraction of the node's memory in use, its daemon kills a worker")
LUMEN_CONFIG(int64_t, memory_monitor_refresh_ms, 250,
             "How often a node daemon checks its memory use; 0 turns the memory monitor off")
LUMEN_CONFIG(int64_t, memory_kill_retry_delay_ms, 1000,
             "A task killed for memory is retried after this long, doubled at each such kill")
LUMEN_CONFIG(int64_t, memory_kill_retry_max_delay_ms, 30000,
             "The longest wait before retrying a task killed for memory")
LUMEN_CONFIG(int64_t, worker_exit_status_wait_ms, 2000,
             "How long an owner waits to learn why a worker's connection dropped")
LUMEN_CONFIG(int64_t, actor_death_info_wait_ms, 5000,
             "How long a caller waits for the GCS to say why an actor's connection dropped")
LUMEN_CONFIG(int64_t, borrower_ack_timeout_ms, 10000,
             "How long a task waits for an owner to acknowledge a borrowed reference")
LUMEN_CONFIG(int64_t, connect_timeout_ms, 5000,
             "A TCP connect to a peer that has not completed after this long fails")
LUMEN_CONFIG(int64_t, rpc_timeout_ms, 10000,
             "A request to the control service or a node daemon unanswered this long fails")
LUMEN_CONFIG(int64_t, shutdown_rpc_timeout_ms, 3000,
             "How long a driver's last requests at Shutdown (flush logs, job finished) may take")
LUMEN_CONFIG(
    int64_t, kv_timeout_ms, 30000,
    "A KV request (programs stored by content travel in 8 MiB chunks) unanswered this long fails")
LUMEN_CONFIG(int64_t, object_chunk_timeout_ms, 60000,
             "A chunk of an object pulled from another node that has not arrived after this long "
             "fails the pull")
LUMEN_CONFIG(int64_t, object_source_wait_ms, 30000,
             "How long a node serving a pull waits for the object to be sealed locally")
LUMEN_CONFIG(
    int64_t, actor_schedule_retry_ms, 500,
    "The control service retries placing an actor after this long when a node is unreachable")
LUMEN_CONFIG(int64_t, handshake_timeout_ms, 5000,
             "A connection whose peer has not sent a valid Hello by then is closed")
LUMEN_CONFIG(int64_t, max_handshaking_connections, 512,
             "Connections a server keeps while they have not authenticated; past it the oldest go")
LUMEN_CONFIG(int64_t, accept_backoff_ms, 200,
             "A listener out of file descriptors (EMFILE/ENFILE) pauses this long, not spinning")
LUMEN_CONFIG(int64_t, log_repeat_window_ms, 5000,
             "Rate-limited log lines from one place are written at most once per this window")
LUMEN_CONFIG(int64_t, owner_status_poll_ms, 10000,
             "An owner answers a borrower's status request with PENDING after this long")
LUMEN_CONFIG(int64_t, owner_reply_timeout_ms, 30000,
             "A status request its owner leaves unanswered this long fails with OwnerDiedError")
LUMEN_CONFIG(int64_t, resource_report_period_ms, 100,
             "Shortest interval between a node's resource reports (and the GCS's view broadcasts)")
LUMEN_CONFIG(int64_t, log_monitor_period_ms, 100,
             "How often a node daemon forwards what its workers printed to their drivers")
LUMEN_CONFIG(double, scheduler_spread_threshold, 0.5,
             "Hybrid scheduling packs on the local node below this utilisation, then spreads")
LUMEN_CONFIG(int64_t, max_spillbacks, 4,
             "Times a lease request may be redirected to another node before it queues")
LUMEN_CONFIG(int64_t, infeasible_wait_s, 0,
             "How long a request no alive node can hold waits for a node that can (0: fail now)")
LUMEN_CONFIG(int64_t, locality_min_bytes, 1 << 20,
             "Arguments this large on another node make the owner lease from that node")
LUMEN_CONFIG(int64_t, placement_group_rpc_timeout_ms, 10000,
             "How long the control service waits for a node daemon to prepare, commit or return "
             "a placement group's bundles before it gives up on that attempt")
LUMEN_CONFIG(int64_t, placement_group_retry_ms, 200,
             "Pause before a placement group whose reservation failed on a node tries again")
LUMEN_CONFIG(int64_t, job_stop_grace_ms, 3000,
             "How long `lumen job stop` lets a driver exit after SIGTERM before SIGKILL")
