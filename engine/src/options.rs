//! What the engine, a query and a replay are asked to do, and what planning took.

use std::time::Duration;

use crate::scan::embargo::Embargo;
use crate::upload::Upload;
/// How the engine runs queries.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Memory one query may use for execution (sorts, joins, aggregates), in bytes;
    /// each query has its own pool, so one heavy query cannot starve the others.
    pub memory_limit: usize,
    /// Of that, what sorts and other operators that can spill to disk hold before
    /// they do, in bytes: this keeps the memory of a large sorted result flat.
    pub spill_memory: usize,
    /// Memory all queries together may use, in bytes (by default half of the
    /// machine's): past it a query fails rather than the process.
    pub service_memory: usize,
    /// Temporary disk all queries together may fill when they spill, in bytes.
    pub spill_disk: u64,
    /// The folder spilled files go under (by default the system's temporary folder).
    pub spill_dir: Option<std::path::PathBuf>,
    /// Threads of parallelism per query.
    pub target_partitions: usize,
    /// Where query tokens are kept (an object-store URL); by default the catalog's
    /// own `_state/` when the catalog is writable, else the per-user state folder.
    pub state: Option<String>,
    /// The most bytes the state store may hold (records, kept uploads, async
    /// results); `None` leaves it unbounded, as for one user's own tokens.
    pub state_limit: Option<u64>,
    /// Bytes of results kept in memory for replays (0 turns the cache off).
    pub result_cache_bytes: u64,
    /// Which rows only privileged callers see.
    pub embargo: Embargo,
    /// The DataLink endpoint `ivoa.ObsCore`'s `access_url` points to
    /// (`/tap/links` of the service); none leaves it NULL.
    pub links_url: Option<String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            memory_limit: 2 << 30,
            spill_memory: 256 << 20,
            service_memory: crate::session::memory::half_of_physical(),
            spill_disk: 16 << 30,
            spill_dir: None,
            target_partitions: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            state: None,
            state_limit: None,
            result_cache_bytes: 256 << 20,
            embargo: Embargo::default(),
            links_url: None,
        }
    }
}

/// What a query asks beyond its ADQL.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// The snapshot to read (as the TAP parameter or `--as-of` gives it); must agree with
    /// any `FOR SYSTEM_TIME AS OF` in the ADQL.
    pub as_of: Option<adql::AsOf>,
    /// The most rows to return; more are cut and reported as an overflow.
    pub maxrec: Option<u64>,
    /// The longest the query may run, from when it is asked; past it, it fails.
    pub time_limit: Option<Duration>,
    /// Tables the query brings with it, read as `TAP_UPLOAD.<name>`.
    pub uploads: Vec<Upload>,
    /// Whether the caller may see embargoed rows.
    pub privileged: bool,
    /// Plan the query with DataFusion even when it is an id lookup the engine
    /// reads directly (to compare the two paths).
    pub always_plan: bool,
    /// Kept until the query's execution has stopped, not only its reader (a
    /// service's slot: an operator in the middle of a long step finishes the
    /// step before it sees that its reader has gone).
    pub hold: Option<Hold>,
}

/// Something the caller wants kept alive as long as a query executes.
pub type Hold = std::sync::Arc<dyn std::any::Any + Send + Sync>;

/// How a token is replayed.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Serve the result from memory when this engine has it (it is checked all the same).
    pub use_cache: bool,
    /// The longest the replay may run; past it, it fails.
    pub time_limit: Option<Duration>,
    /// Whether the caller may see embargoed rows (needed to replay a result that holds some).
    pub privileged: bool,
    /// As [`QueryOptions::hold`].
    pub hold: Option<Hold>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            use_cache: true,
            time_limit: None,
            privileged: false,
            hold: None,
        }
    }
}

/// Where a query's time went before execution.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// ADQL parsing, checking and rewriting.
    pub parse: Duration,
    /// Choosing the snapshot and its tables.
    pub pin: Duration,
    /// Logical planning and optimisation.
    pub plan: Duration,
    /// Physical planning (file and row-group pruning happens here).
    pub physical: Duration,
    /// Writing the token record, after the last row.
    pub record: Duration,
}
