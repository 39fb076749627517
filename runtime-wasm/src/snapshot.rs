//! An open snapshot over HTTP: `_CURRENT`, the manifest and the vector routing artifacts read at
//! open; shard databases opened on first use and read page by page with Range requests.
//!
//! The driver (`Snapshot::run_jobs`) runs SQLite statements synchronously over the page cache
//! (`edgeshard_shared::pages`, `edgeshard_shared::sqlite_vfs`, shared with runtime-native). A
//! statement that reads a page which is not there fails; the driver then fetches every page any
//! statement of the call found missing, all shards at once, in one parallel round, and runs the
//! statements that missed again. Lookups of one call (the keys of
//! `getMany`, the id and payload rows of a search's hits) run as separate statements so that
//! all their misses land in the same round.

use crate::error::{Error, Result};
use crate::http::{Fetcher, Ranged};
use edgeshard_shared::codes::{self, Codes};
use edgeshard_shared::current::CurrentPointer;
use edgeshard_shared::filter::project;
use edgeshard_shared::ivf::{self, Cells};
use edgeshard_shared::key_index::{self, KeyIndex, Lookup};
use edgeshard_shared::manifest::{ShardEntry, Strategy, VectorBackend, VectorSpec};
use edgeshard_shared::merge::{merge_top_k_distinct, Scored};
use edgeshard_shared::pages::{
    PageCache, PageFetch, PageStats, ShardOpening, ShardPages, StatsSnapshot as Counters,
    HEADER_BLOCK, MAX_ROUNDS, PROBE_BLOCK,
};
use edgeshard_shared::search_plan::{self, Router};
use edgeshard_shared::sidecar::Sidecar;
use edgeshard_shared::{layout, routing, vector, Key, Manifest};
use edgeshard_shared::{shard_schema, sqlite_vfs};
use futures::future::join_all;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};

use edgeshard_shared::query::{dot_score, CandidatePolicy, Fetch};
pub use edgeshard_shared::query::{SearchHit, SearchOptions, SearchResponse, VectorId, MAX_K};

/// SQLite's own page cache per shard connection, in KiB: kept small because the page cache
/// (under the caller's budget) already holds the pages; what SQLite keeps on top of the budget
/// is this much per open shard.
const SQLITE_CACHE_KIB: i64 = 64;

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Budget of the page cache shared by all shards, in bytes.
    pub cache_bytes: usize,
    /// Retries of a request after a transient failure.
    pub retries: u32,
    /// First backoff between retries, doubled each time.
    pub retry_backoff_ms: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cache_bytes: 64 << 20,
            retries: 3,
            retry_backoff_ms: 100,
        }
    }
}

struct Slot {
    entry: ShardEntry,
    db_url: String,
    sidecar_url: Option<String>,
    /// The shard's key index (`shard.keyindex`), when the manifest announces key indexes.
    key_index_url: Option<String>,
    open: RefCell<Option<Rc<OpenShard>>>,
    /// Shards with binary codes: the codes, fetched whole with the shard's open.
    codes: RefCell<Option<Rc<Codes>>>,
}

struct OpenShard {
    db_id: u32,
    url: String,
    /// The ETag seen at open; every later range answer must carry the same.
    etag: Option<String>,
    pages: Arc<ShardPages>,
    conn: Connection,
    has_sidecar: bool,
    /// Set when the shard was opened for lookups through its key index (then without its
    /// sidecar): a lookup reads the one page the index names. Any other use opens it again
    /// with its sidecar.
    key_index: Option<Rc<KeyIndex>>,
    /// Whether a search already planned this shard's vector reads.
    vectors_planned: Cell<bool>,
    /// IVF shards: the cells' centroids, read on the first search.
    cells: std::cell::OnceCell<Rc<Cells>>,
    /// Set once the shard's first stored key was seen to route to it (checked before its
    /// first "not found" is answered, as runtime-native does), or from the start when page
    /// checksums and checked key bounds already tie the file to its slot.
    routing_checked: Cell<bool>,
}

impl OpenShard {
    fn corrupt(&self, detail: String) -> Error {
        Error::CorruptShard {
            db_id: self.db_id,
            url: self.url.clone(),
            detail,
        }
    }

    /// A range answer must come from the object opened: same size, same ETag.
    fn check(&self, answer: &Ranged) -> Result<()> {
        if answer.total != self.pages.len {
            return Err(Error::Changed {
                url: self.url.clone(),
                detail: format!(
                    "it is now {} bytes, it was {} at open",
                    answer.total, self.pages.len
                ),
            });
        }
        if let (Some(pinned), Some(now)) = (&self.etag, &answer.etag) {
            if pinned != now {
                return Err(Error::Changed {
                    url: self.url.clone(),
                    detail: format!("its ETag is now {now}, it was {pinned} at open"),
                });
            }
        }
        Ok(())
    }
}

/// A statement of a call, run (again) by the driver until it no longer misses pages.
type Statement<'a, T> = Box<dyn FnMut(&Connection) -> rusqlite::Result<T> + 'a>;
/// One statement on one shard.
type Job<'a, T> = (Rc<OpenShard>, Statement<'a, T>);

pub struct Snapshot {
    root: String,
    manifest_path: String,
    manifest: Manifest,
    vector: Option<VectorSpec>,
    /// How vectors are placed: which shards a search reads (the plan every reader shares).
    router: Router,
    /// Indexed by db_id; `None` for empty slots.
    slots: Vec<Option<Slot>>,
    cache: Arc<Mutex<PageCache>>,
    counters: Arc<PageStats>,
    fetcher: Fetcher,
    /// Counters of the last finished call.
    last_call: Cell<Counters>,
    /// One call at a time: statements of interleaved calls would take each other's misses.
    lock: futures::lock::Mutex<()>,
}

impl Snapshot {
    /// Reads `_CURRENT`, the manifest it points at, and the vector routing artifact if the
    /// snapshot is cluster- or LSH-routed: 2 or 3 requests, one after the other.
    pub async fn open(root: &str, options: Options) -> Result<Self> {
        let root = root.trim_end_matches('/').to_string();
        let counters = Arc::new(PageStats::default());
        let fetcher = Fetcher {
            retries: options.retries,
            backoff_ms: options.retry_backoff_ms,
            counters: counters.clone(),
        };
        let current_url = layout::join(&root, layout::CURRENT);
        PageStats::bump(&counters.rounds);
        let current = fetcher.get_whole(&current_url, "_CURRENT").await?;
        let pointer =
            CurrentPointer::parse(&current.bytes).map_err(|e| Error::InvalidSnapshot {
                url: current_url.clone(),
                detail: e.to_string(),
            })?;
        // The manifest URL was recorded where the snapshot was published; find it relative to
        // wherever the snapshot is served now.
        let manifest_path = layout::manifest_ref_relative(&pointer.manifest_ref).map_err(|e| {
            Error::InvalidSnapshot {
                url: current_url.clone(),
                detail: e.to_string(),
            }
        })?;
        let manifest_url = layout::join(&root, &manifest_path);
        PageStats::bump(&counters.rounds);
        let manifest_bytes = fetcher.get_whole(&manifest_url, "manifest").await?;
        let invalid = |detail: String| Error::InvalidSnapshot {
            url: manifest_url.clone(),
            detail,
        };
        let manifest = Manifest::from_sqlite_bytes(&manifest_bytes.bytes)
            .map_err(|e| invalid(e.to_string()))?;
        let vector = manifest.vector_spec().map_err(|e| invalid(e.to_string()))?;
        let router = read_router(&root, &manifest, vector.as_ref(), &fetcher).await?;

        let sidecar_file = manifest.meta.custom.get("sqlite_sidecar").map(|config| {
            config
                .get("filename")
                .and_then(Value::as_str)
                .unwrap_or(layout::SIDECAR_FILE)
                .to_string()
        });
        let mut slots: Vec<Option<Slot>> = (0..manifest.meta.num_dbs).map(|_| None).collect();
        for entry in &manifest.shards {
            let dir = manifest
                .shard_dir_relative(entry)
                .map_err(|e| Error::InvalidSnapshot {
                    url: manifest_url.clone(),
                    detail: e.to_string(),
                })?;
            slots[entry.db_id as usize] = Some(Slot {
                entry: entry.clone(),
                db_url: layout::join(&root, &layout::join(&dir, layout::SHARD_DB_FILE)),
                sidecar_url: sidecar_file
                    .as_ref()
                    .map(|file| layout::join(&root, &layout::join(&dir, file))),
                key_index_url: key_index::announced_file(&manifest.meta.custom)
                    .map(|file| layout::join(&root, &layout::join(&dir, file))),
                open: RefCell::new(None),
                codes: RefCell::new(None),
            });
        }
        let snapshot = Self {
            root,
            manifest_path,
            manifest,
            vector,
            router,
            slots,
            cache: Arc::new(Mutex::new(PageCache::new(options.cache_bytes))),
            counters: counters.clone(),
            fetcher,
            last_call: Cell::new(Counters::default()),
            lock: futures::lock::Mutex::new(()),
        };
        snapshot.last_call.set(counters.snapshot());
        Ok(snapshot)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Everything counted so far (open included).
    pub fn total(&self) -> Counters {
        self.counters.snapshot()
    }

    /// What the last finished call cost.
    pub fn last_call(&self) -> Counters {
        self.last_call.get()
    }

    pub fn cache_bytes(&self) -> usize {
        self.cache().bytes()
    }

    pub fn cache_pages(&self) -> usize {
        self.cache().len()
    }

    /// The page cache (a poisoned lock cannot happen on single-threaded wasm32; recovered
    /// anyway: the cache stays valid).
    fn cache(&self) -> MutexGuard<'_, PageCache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn cache_budget(&self) -> usize {
        self.cache().budget()
    }

    /// The shard slots whose databases are open.
    pub fn open_shards(&self) -> Vec<u32> {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.open.borrow().is_some())
            .map(|s| s.entry.db_id)
            .collect()
    }

    /// Open shards whose sidecar is in use (its tag matched the live ETag).
    pub fn shards_with_sidecar(&self) -> Vec<u32> {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.open.borrow().as_ref().is_some_and(|o| o.has_sidecar))
            .map(|s| s.entry.db_id)
            .collect()
    }

    pub fn info(&self) -> Value {
        let meta = &self.manifest.meta;
        let num_probes = self
            .vector
            .as_ref()
            .and_then(|v| v.routing.as_ref())
            .map(|r| r.num_probes);
        let routing = match &self.router {
            Router::ByKey => json!({"strategy": "all"}),
            Router::Cluster(_) => json!({"strategy": "cluster", "num_probes": num_probes}),
            Router::Lsh(_) => json!({"strategy": "lsh", "num_probes": num_probes}),
            Router::Explicit => json!({"strategy": "explicit"}),
            Router::Cel => json!({"strategy": "cel"}),
        };
        json!({
            "root": self.root,
            "run_id": meta.run_id,
            "created_at": meta.created_at,
            "manifest": self.manifest_path,
            "num_dbs": meta.num_dbs,
            "non_empty_shards": self.manifest.shards.len(),
            "rows": self.manifest.shards.iter().map(|s| s.row_count).sum::<u64>(),
            "bytes": self.manifest.shards.iter().map(|s| s.db_bytes).sum::<u64>(),
            "key_encoding": meta.key_encoding.as_str(),
            "key_col": meta.key_col,
            "sharding": match meta.sharding.strategy {
                Strategy::Hash => "hash",
                Strategy::Cel => "cel",
            },
            "vector": meta.custom.get("vector").cloned(),
            "vector_routing": routing,
        })
    }

    /// Runs one public call: one at a time, counted as "the last call".
    async fn call<T>(&self, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let _turn = self.lock.lock().await;
        self.cache().begin_call();
        for slot in self.slots.iter().flatten() {
            if let Some(shard) = slot.open.borrow().as_ref() {
                shard.pages.reset_read_ahead();
            }
        }
        let before = self.total();
        let outcome = work.await;
        self.last_call.set(self.total() - before);
        outcome
    }

    /// The value stored under `key`, or `None` when absent.
    pub async fn get(&self, key: Key) -> Result<Option<Vec<u8>>> {
        self.call(async {
            let mut values = self.get_many_inner(vec![key]).await?;
            Ok(values.pop().flatten())
        })
        .await
    }

    /// Values for `keys`, in input order; `None` for absent keys. All cold shards open in one
    /// round, and all the leaves the keys need are fetched in the next.
    pub async fn get_many(&self, keys: Vec<Key>) -> Result<Vec<Option<Vec<u8>>>> {
        self.call(self.get_many_inner(keys)).await
    }

    fn route(&self, key: &Key) -> Result<u32> {
        if self.manifest.meta.sharding.strategy == Strategy::Cel {
            return Err(Error::Unsupported(
                "CEL-routed snapshots cannot be routed by key in this reader".into(),
            ));
        }
        routing::shard_for_key(key, self.manifest.meta.num_dbs).map_err(Error::invalid_argument)
    }

    async fn get_many_inner(&self, keys: Vec<Key>) -> Result<Vec<Option<Vec<u8>>>> {
        let encoding = self.manifest.meta.key_encoding;
        let mut wanted: Vec<(usize, u32, Vec<u8>)> = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let encoded = encoding.encode(key).map_err(Error::invalid_argument)?;
            let db_id = self.route(key)?;
            if self.slots[db_id as usize].is_some() {
                wanted.push((i, db_id, encoded));
            }
        }
        let ids: BTreeSet<u32> = wanted.iter().map(|(_, db_id, _)| *db_id).collect();
        let shards = self
            .open_shards_now(&ids.into_iter().collect::<Vec<_>>(), false, true)
            .await?;
        // Shards opened through their key index answer from the one page it names; the rest
        // (and keys an index cannot answer for) through SQLite.
        let mut found = self.lookup_by_key_index(&wanted, &shards).await?;
        let mut jobs: Vec<Job<'_, Option<Vec<u8>>>> = Vec::new();
        let mut asked = Vec::new();
        for (n, (_, db_id, encoded)) in wanted.iter().enumerate() {
            if found[n].is_some() {
                continue;
            }
            asked.push(n);
            let shard = shards[db_id].clone();
            jobs.push((
                shard,
                Box::new(move |conn: &Connection| {
                    conn.prepare_cached(shard_schema::KV_GET)?
                        .query_row([encoded], |r| r.get(0))
                        .optional()
                }),
            ));
        }
        for (n, value) in asked.into_iter().zip(self.run_jobs(jobs).await?) {
            found[n] = Some(value);
        }
        let found: Vec<Option<Vec<u8>>> = found.into_iter().map(Option::flatten).collect();
        // Before a shard's first "not found" is answered: its first stored key must route to
        // it, or the shard file sits under the wrong manifest row (swapped or renumbered rows,
        // another num_dbs) and every lookup in it would wrongly say "not found". A key index
        // knows that key without a read.
        let missed: BTreeSet<u32> = wanted
            .iter()
            .zip(&found)
            .filter(|(_, value)| value.is_none())
            .map(|((_, db_id, _), _)| *db_id)
            .filter(|db_id| !shards[db_id].routing_checked.get())
            .collect();
        let (indexed, unindexed): (Vec<u32>, Vec<u32>) = missed
            .iter()
            .partition(|db_id| shards[db_id].key_index.is_some());
        let first_keys: Vec<Job<'_, Option<Vec<u8>>>> = unindexed
            .iter()
            .map(|db_id| {
                let job: Statement<'_, Option<Vec<u8>>> = Box::new(|conn: &Connection| {
                    conn.prepare_cached(shard_schema::KV_FIRST_KEY)?
                        .query_row([], |r| r.get(0))
                        .optional()
                });
                (shards[db_id].clone(), job)
            })
            .collect();
        let mut firsts: Vec<(u32, Option<Vec<u8>>)> = unindexed
            .iter()
            .copied()
            .zip(self.run_jobs(first_keys).await?)
            .collect();
        for db_id in indexed {
            let first = shards[&db_id]
                .key_index
                .as_ref()
                .map(|i| i.first_key.clone());
            firsts.push((db_id, first));
        }
        for (db_id, first) in firsts {
            let shard = &shards[&db_id];
            if let Some(key) = first {
                self.manifest
                    .check_shard_holds_key(db_id, &key)
                    .map_err(|e| shard.corrupt(e.to_string()))?;
            }
            shard.routing_checked.set(true);
        }
        let mut out = vec![None; keys.len()];
        for ((i, _, _), value) in wanted.iter().zip(found) {
            out[*i] = value;
        }
        Ok(out)
    }

    /// Answers for `wanted` (`(input index, shard, encoded key)`) from the key indexes of the
    /// shards opened through one: every key's page, for all shards in one round, then the rest
    /// of any overflowing value. Per key, `None` when its shard has no key index or the index
    /// cannot answer for it (SQLite answers those).
    async fn lookup_by_key_index(
        &self,
        wanted: &[(usize, u32, Vec<u8>)],
        shards: &HashMap<u32, Rc<OpenShard>>,
    ) -> Result<Vec<Option<Option<Vec<u8>>>>> {
        let mut answers: Vec<Option<Option<Vec<u8>>>> = vec![None; wanted.len()];
        let mut pending: Vec<usize> = (0..wanted.len())
            .filter(|n| shards[&wanted[*n].1].key_index.is_some())
            .collect();
        let mut rounds = 0u32;
        while !pending.is_empty() {
            let mut waiting = Vec::new();
            let mut missing: HashMap<u32, Rc<OpenShard>> = HashMap::new();
            for n in pending {
                let (_, db_id, key) = &wanted[n];
                let shard = &shards[db_id];
                let Some(index) = &shard.key_index else {
                    continue;
                };
                let step = index
                    .lookup(key, shard.pages.usable_size, |p| shard.pages.peek_page(p))
                    .map_err(|e| shard.corrupt(e.detail().to_string()))?;
                match step {
                    Lookup::Need(pages) => {
                        shard.pages.want(pages);
                        missing.insert(*db_id, shard.clone());
                        waiting.push(n);
                    }
                    Lookup::Found(value) => answers[n] = Some(Some(value)),
                    Lookup::Absent => answers[n] = Some(None),
                    Lookup::Unsupported => {}
                }
                if answers[n].is_some() {
                    PageStats::bump(&self.counters.key_index_lookups);
                }
            }
            if waiting.is_empty() {
                break;
            }
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(Error::TooManyRounds(format!(
                    "a lookup through a key index still missed pages after {MAX_ROUNDS} rounds"
                )));
            }
            let shards: Vec<Rc<OpenShard>> = missing.into_values().collect();
            self.fetch_missing(&shards, false).await?;
            pending = waiting;
        }
        Ok(answers)
    }

    /// The stored vector of id `key` in a unified snapshot (where a record's vector id is its
    /// key, so the key's shard holds it), or `None` when there is none. For "more like this".
    pub async fn get_vector(&self, key: Key) -> Result<Option<Vec<f32>>> {
        self.call(async {
            let spec = self.vector.as_ref().ok_or_else(|| {
                Error::InvalidArgument("this snapshot has no vectors (no custom.vector)".into())
            })?;
            if !spec.unified {
                return Err(Error::Unsupported(
                    "getVector needs a unified snapshot (vector ids routed like keys)".into(),
                ));
            }
            let db_id = self.route(&key)?;
            if self.slots[db_id as usize].is_none() {
                return Ok(None);
            }
            let with_codes = codes::in_use(spec, &Default::default(), false);
            let shards = self.open_shards_now(&[db_id], false, false).await?;
            let shard = shards[&db_id].clone();
            match with_codes {
                // The id map's leaves and the shard's codes in one round; the vector then from
                // the pages the codes' map names (a search through the codes follows).
                true => {
                    let ids = [db_id];
                    let (leaves, loaded) = futures::join!(
                        self.plan_table_leaves(&shard, "vec_id_map"),
                        self.load_codes(&ids, spec)
                    );
                    leaves?;
                    loaded?;
                }
                // The id map and the vector chunks in two rounds (a search with the vector
                // follows).
                false => {
                    self.plan_vector_reads(std::slice::from_ref(&shard), false)
                        .await?
                }
            }
            let Some(wanted) = VectorId::from_key(&key) else {
                return Ok(None);
            };
            // vec_id_map has no index on original_id: read it whole (one shard's ids) and match
            // parsed ids, so the JSON spelling does not matter.
            let find: Statement<'_, Vec<(i64, String)>> = Box::new(|conn: &Connection| {
                let mut stmt =
                    conn.prepare_cached("SELECT internal_id, original_id FROM vec_id_map")?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            });
            let ids = self.run_jobs(vec![(shard.clone(), find)]).await?;
            let Some(rowid) = ids
                .into_iter()
                .flatten()
                .find(|(_, text)| VectorId::from_stored(text).as_ref() == Some(&wanted))
                .map(|(rowid, _)| rowid)
            else {
                return Ok(None);
            };
            if with_codes {
                let codes = self.slots[db_id as usize]
                    .as_ref()
                    .and_then(|slot| slot.codes.borrow().clone())
                    .ok_or_else(|| shard.corrupt("its codes were not loaded".into()))?;
                let ordinal = codes.ordinal_of(rowid).ok_or_else(|| {
                    shard.corrupt(format!(
                        "vector {rowid} is in vec_id_map but not in its codes"
                    ))
                })?;
                let pages = codes
                    .pages_of(ordinal)
                    .map_err(|e| shard.corrupt(e.detail().to_string()))?;
                shard
                    .pages
                    .want(pages.into_iter().filter(|p| !shard.pages.has_page(*p)));
                self.fetch_missing(std::slice::from_ref(&shard), false)
                    .await?;
                let bytes = codes
                    .read_vector(ordinal, |p| shard.pages.peek_page(p))
                    .map_err(|e| shard.corrupt(e.detail().to_string()))?;
                return vector::from_le_bytes(&bytes)
                    .map(Some)
                    .map_err(|e| shard.corrupt(format!("vector {rowid}: {e}")));
            }
            let read: Statement<'_, Option<Vec<u8>>> = Box::new(move |conn: &Connection| {
                conn.prepare_cached("SELECT embedding FROM vec_index WHERE rowid = ?1")?
                    .query_row([rowid], |r| r.get(0))
                    .optional()
            });
            let blob = self
                .run_jobs(vec![(shard.clone(), read)])
                .await?
                .pop()
                .flatten();
            blob.map(|bytes| {
                vector::from_le_bytes(&bytes)
                    .map_err(|e| shard.corrupt(format!("vector {rowid}: {e}")))
            })
            .transpose()
        })
        .await
    }

    /// The `k` nearest vectors to `query`. Shards: `shard_ids` when given; else the probed
    /// shards of a cluster/LSH-routed snapshot (`probes` or the manifest's `num_probes`); else
    /// every non-empty shard.
    pub async fn search(&self, query: Vec<f32>, request: SearchOptions) -> Result<SearchResponse> {
        self.call(self.search_inner(query, request)).await
    }

    /// The shard slots a search visits (before dropping empty slots), ascending.
    pub fn search_targets(
        &self,
        query: &[f32],
        probes: Option<usize>,
        shard_ids: Option<Vec<u32>>,
    ) -> Result<Vec<u32>> {
        let spec = self.vector.as_ref().ok_or_else(|| {
            Error::InvalidArgument("this snapshot has no vectors (no custom.vector)".into())
        })?;
        self.router
            .shards_to_search(
                spec,
                self.manifest.meta.num_dbs,
                query,
                probes,
                shard_ids.as_deref(),
            )
            .map_err(|e| Error::InvalidArgument(e.detail().to_string()))
    }

    async fn search_inner(
        &self,
        query: Vec<f32>,
        request: SearchOptions,
    ) -> Result<SearchResponse> {
        let spec = request
            .check(self.vector.as_ref(), &query)
            .map_err(|e| Error::InvalidArgument(e.detail().to_string()))?;
        let SearchOptions {
            k,
            probes,
            shard_ids,
            filter,
            payload_fields: fields,
            ann,
        } = request;
        let filter = filter.as_ref();
        if spec.backend == Some(VectorBackend::LanceDb) {
            return Err(Error::Unsupported(
                "LanceDB vector shards cannot be read in wasm; build with --vector-backend \
                 sqlite-vec"
                    .into(),
            ));
        }
        // dot_product is stored as an L2 reduction (one extra dimension, see
        // `shared::vector::DotReduction`): search with `[q, 0]`, over-fetch, and re-rank by the
        // exact `1 - q.v` from the stored vectors, as runtime-native does.
        let dot = match (spec.metric, spec.dot_reduction) {
            (vector::Metric::DotProduct, Some(_)) => true,
            (vector::Metric::DotProduct, None) => {
                return Err(Error::Unsupported(
                    "this dot_product snapshot records no dot_reduction: sqlite-vec has no \
                     inner-product distance, so it cannot be ranked correctly"
                        .into(),
                ))
            }
            _ => false,
        };
        let dim = spec.dim;
        let targets: Vec<u32> = self
            .search_targets(&query, probes, shard_ids)?
            .into_iter()
            .filter(|id| self.slots[*id as usize].is_some())
            .collect();
        let stored = match dot {
            true => vector::DotReduction::augment_query(&query),
            false => query.clone(),
        };
        // Binary codes: fetched with the shards' open, in the same round.
        let with_codes = codes::in_use(spec, &ann, filter.is_some());
        let (shards, codes_loaded) =
            futures::join!(self.open_shards_now(&targets, with_codes, false), async {
                match with_codes {
                    true => self.load_codes(&targets, spec).await,
                    false => Ok(()),
                }
            });
        let shards = shards?;
        codes_loaded?;
        let ordered: Vec<Rc<OpenShard>> = targets.iter().map(|id| shards[id].clone()).collect();
        let per_shard: Vec<Vec<(i64, f64)>> = match with_codes {
            true => {
                let refine = ann.refine_factor.or(spec.ann_defaults.refine_factor);
                self.codes_hits(&ordered, spec.metric, &query, &stored, refine, k)
                    .await?
            }
            false => {
                let ivf = spec.index_type.as_deref() == Some(ivf::INDEX_TYPE) && !ann.exact;
                self.plan_vector_reads(&ordered, ivf).await?;

                let query_bytes = vector::to_le_bytes(&stored);
                // IVF: each shard's cells to read (none: the whole shard, when every cell is probed).
                let cells_of: Vec<Vec<usize>> = match ivf {
                    false => vec![Vec::new(); ordered.len()],
                    true => {
                        self.load_cells(&ordered, stored.len(), spec.metric).await?;
                        let nprobes = ann.nprobes.or(spec.ann_defaults.nprobes);
                        ordered
                            .iter()
                            .map(|shard| match shard.cells.get() {
                                Some(cells) => {
                                    let n = nprobes
                                        .unwrap_or_else(|| ivf::default_nprobes(cells.len()));
                                    match n >= cells.len() {
                                        true => Vec::new(),
                                        false => cells.probe(&stored, n),
                                    }
                                }
                                None => Vec::new(),
                            })
                            .collect()
                    }
                };
                // How many candidates each shard gives is the shared policy (`CandidatePolicy`: filter
                // over-fetch, exact dot_product rescoring), the same as runtime-native's; here every
                // pending shard's statement of a step runs in the same round. A filtered statement
                // joins each candidate's payload so the filter sees it in that round.

                self.plan_cell_reads(&ordered, &cells_of).await?;
                let policy =
                    CandidatePolicy::new(k, filter.is_some(), spec.dot_reduction.filter(|_| dot));
                let policies: Vec<CandidatePolicy> = cells_of
                    .iter()
                    .map(|cells| policy.in_cells(!cells.is_empty()))
                    .collect();
                let scan_sql = search_plan::sql::scan(spec.metric, dot);
                let mut fetch_of: Vec<Fetch> =
                    policies.iter().map(CandidatePolicy::first).collect();
                let mut settled: Vec<Option<Vec<(i64, f64)>>> = vec![None; ordered.len()];
                loop {
                    let pending: Vec<usize> = (0..ordered.len())
                        .filter(|i| settled[*i].is_none())
                        .collect();
                    if pending.is_empty() {
                        break;
                    }
                    let knn_jobs: Vec<Job<'_, Vec<KnnRow>>> = pending
                        .iter()
                        .map(|&i| {
                            let query_bytes = &query_bytes;
                            let scan_sql = &scan_sql;
                            // Past the KNN cap, every vector in distance order (the same f32 distance).
                            let (scan, fetch) = match fetch_of[i] {
                                Fetch::All => (true, 0),
                                Fetch::Nearest(n) => (false, n),
                            };
                            let filtered = filter.is_some();
                            let metric = spec.metric;
                            let cells = &cells_of[i];
                            let stored = &stored;
                            let job: Statement<'_, Vec<KnnRow>> =
                                Box::new(move |conn: &Connection| {
                                    // The nearest: vec0's chunks (the probed cells', or all of them)
                                    // scanned by edgeshard's SIMD loops, as in runtime-native.
                                    if !scan {
                                        let cells = (!cells.is_empty()).then_some(cells.as_slice());
                                        return cell_rows(
                                            conn, stored, metric, fetch, cells, filtered,
                                        );
                                    }
                                    // A filter needs each candidate's payload in the same statement; the
                                    // others look their hits up afterwards, in one round for all shards.
                                    let sql = match scan {
                            true if filtered => scan_sql.clone(),
                            true => "SELECT rowid, vec_distance_l2(embedding, ?1) AS distance, \
                                 NULL, NULL, embedding FROM vec_index ORDER BY distance, rowid"
                                .to_string(),
                            false => search_plan::sql::knn(filtered, dot),
                        };
                                    let mut stmt = conn.prepare_cached(&sql)?;
                                    // Columns: rowid, distance, original_id, payload, embedding.
                                    let row = |r: &rusqlite::Row<'_>| {
                                        Ok((r.get(0)?, r.get(1)?, r.get(4)?, r.get(3)?))
                                    };
                                    let rows = match scan {
                                        true => stmt
                                            .query_map(rusqlite::params![query_bytes], row)?
                                            .collect(),
                                        false => stmt
                                            .query_map(
                                                rusqlite::params![query_bytes, fetch as i64],
                                                row,
                                            )?
                                            .collect(),
                                    };
                                    rows
                                });
                            (ordered[i].clone(), job)
                        })
                        .collect();
                    let raw = self.run_jobs(knn_jobs).await?;
                    for (&i, rows) in pending.iter().zip(raw) {
                        let shard = &ordered[i];
                        let returned = rows.len();
                        let last_distance = rows.last().map(|r| r.1);
                        let mut hits = Vec::with_capacity(rows.len());
                        for (rowid, distance, embedding, payload) in rows {
                            if let Some(filter) = filter {
                                let payload: Option<Value> = payload
                                    .map(|text| {
                                        serde_json::from_str(&text).map_err(|e| {
                                            shard.corrupt(format!("vec_payloads row {rowid}: {e}"))
                                        })
                                    })
                                    .transpose()?;
                                if !filter.matches(payload.as_ref()) {
                                    continue;
                                }
                            }
                            let score = match dot {
                                false => distance,
                                true => dot_score(&query, embedding.as_deref(), dim)
                                    .map_err(|e| shard.corrupt(format!("vector {rowid}: {e}")))?,
                            };
                            hits.push((rowid, score));
                        }
                        // The order runtime-native reports: score, then rowid.
                        hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                        let kth = hits.get(k - 1).map(|h| h.1);
                        match policies[i].next(fetch_of[i], returned, kth, last_distance, &query) {
                            Some(next) => fetch_of[i] = next,
                            None => {
                                hits.truncate(k);
                                settled[i] = Some(hits);
                            }
                        }
                    }
                }
                settled.into_iter().flatten().collect()
            }
        };

        // Ids and payloads of the hits: separate jobs (a job stops at its first missing page),
        // so all their misses share a round.
        let mut lookup_jobs: Vec<Job<'_, Option<String>>> = Vec::new();
        for (shard, hits) in ordered.iter().zip(&per_shard) {
            for (rowid, _) in hits {
                let rowid = *rowid;
                for sql in [
                    "SELECT original_id FROM vec_id_map WHERE internal_id = ?1",
                    "SELECT payload FROM vec_payloads WHERE rowid = ?1",
                ] {
                    lookup_jobs.push((
                        shard.clone(),
                        Box::new(move |conn: &Connection| {
                            conn.prepare_cached(sql)?
                                .query_row([rowid], |r| r.get::<_, String>(0))
                                .optional()
                        }),
                    ));
                }
            }
        }
        let mut answers = self.run_jobs(lookup_jobs).await?.into_iter();
        let mut looked_up = std::iter::from_fn(|| Some((answers.next()?, answers.next()?)));
        let mut scored: Vec<Vec<Scored<SearchHit>>> = Vec::with_capacity(ordered.len());
        for (shard, hits) in ordered.iter().zip(per_shard) {
            let mut list = Vec::with_capacity(hits.len());
            for (rowid, distance) in hits {
                let (id_text, payload_text) = looked_up
                    .next()
                    .ok_or_else(|| shard.corrupt("lookup results out of step".into()))?;
                let id = match id_text {
                    Some(text) => VectorId::from_stored(&text).ok_or_else(|| {
                        shard.corrupt(format!("vec_id_map row {rowid}: {text:?}"))
                    })?,
                    None => {
                        return Err(shard.corrupt(format!("vector {rowid} has no vec_id_map row")))
                    }
                };
                let payload = payload_text
                    .map(|text| {
                        serde_json::from_str(&text)
                            .map_err(|e| shard.corrupt(format!("vec_payloads row {rowid}: {e}")))
                    })
                    .transpose()?;
                // sqlite-vec distances already follow the reported convention for cosine
                // (1 - cos) and l2 (Euclidean); dot_product was rescored above.
                list.push(Scored {
                    score: distance,
                    item: SearchHit {
                        id,
                        score: distance,
                        payload: match &fields {
                            Some(fields) => project(payload, fields),
                            None => payload,
                        },
                        shard: shard.db_id,
                    },
                });
            }
            scored.push(list);
        }
        let results = merge_top_k_distinct(scored, k, |hit| hit.id.clone())
            .into_iter()
            .map(|s| s.item)
            .collect();
        Ok(SearchResponse {
            results,
            shards_queried: targets.len(),
            shards: targets,
        })
    }

    /// Fetches the leaves of `table` (found through the pinned interior pages of a shard with a
    /// sidecar) in one round, so a statement reading it whole misses nothing.
    async fn plan_table_leaves(&self, shard: &Rc<OpenShard>, table: &'static str) -> Result<()> {
        if !shard.has_sidecar {
            return Ok(());
        }
        let root: Statement<'_, u32> = Box::new(move |conn: &Connection| {
            conn.query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
        });
        let root = self
            .run_jobs(vec![(shard.clone(), root)])
            .await?
            .pop()
            .unwrap_or(0);
        shard.pages.want(shard.pages.leaves_below(root));
        self.fetch_missing(std::slice::from_ref(shard), false)
            .await?;
        Ok(())
    }

    /// Fetches the binary codes of the `targets` that have none yet, whole and in parallel
    /// (beside their shards' open: the same round), each checked against its manifest row.
    async fn load_codes(&self, targets: &[u32], spec: &VectorSpec) -> Result<()> {
        let todo: Vec<&Slot> = targets
            .iter()
            .filter_map(|id| self.slots.get(*id as usize).and_then(Option::as_ref))
            .filter(|slot| slot.codes.borrow().is_none())
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        // Counted as a round of its own only when no shard opens beside it.
        if todo.iter().all(|slot| slot.open.borrow().is_some()) {
            PageStats::bump(&self.counters.rounds);
        }
        let fetches = todo.iter().map(|slot| async move {
            let corrupt = |url: &str, detail: String| Error::CorruptShard {
                db_id: slot.entry.db_id,
                url: url.to_string(),
                detail,
            };
            let dir = slot
                .db_url
                .strip_suffix(layout::SHARD_DB_FILE)
                .unwrap_or(&slot.db_url);
            let file = codes::file_of(&slot.entry).map_err(|e| corrupt(&slot.db_url, e))?;
            let url = format!("{dir}{file}");
            let whole = self.fetcher.get_whole(&url, "shard codes").await?;
            let parsed =
                codes::load(&slot.entry, spec, &whole.bytes).map_err(|e| corrupt(&url, e))?;
            *slot.codes.borrow_mut() = Some(Rc::new(parsed));
            Ok::<(), Error>(())
        });
        for outcome in join_all(fetches).await {
            outcome?;
        }
        Ok(())
    }

    /// The hits of a search through binary codes (runtime-native's steps): every shard's best
    /// estimates, the best `k x refine` of all shards, their stored vectors read through the
    /// codes' map (one round for all shards), scored exactly; per shard (in the order of
    /// `shards`), its best `k` as `(rowid, score)`.
    async fn codes_hits(
        &self,
        shards: &[Rc<OpenShard>],
        metric: vector::Metric,
        query: &[f32],
        stored: &[f32],
        refine: Option<u32>,
        k: usize,
    ) -> Result<Vec<Vec<(i64, f64)>>> {
        let wanted = codes::candidates_for(k, refine);
        let all: Vec<Rc<Codes>> = shards
            .iter()
            .map(|shard| {
                self.slots
                    .get(shard.db_id as usize)
                    .and_then(Option::as_ref)
                    .and_then(|slot| slot.codes.borrow().clone())
                    .ok_or_else(|| shard.corrupt("its codes were not loaded".into()))
            })
            .collect::<Result<_>>()?;
        let estimates: Vec<Vec<(f32, u32)>> =
            all.iter().map(|c| c.nearest(query, wanted)).collect();
        let chosen = codes::select_candidates(&estimates, wanted);
        // Chains a fresh open left wanted (`open_shards_now`'s `defer_chains`) are pinned in
        // the same round as the candidates' pages.
        let mut plans: Vec<(Rc<OpenShard>, PageFetch, bool)> = shards
            .iter()
            .map(|s| (s.clone(), s.pages.take_fetch(), true))
            .collect();
        for ((shard, codes), ordinals) in shards.iter().zip(&all).zip(&chosen) {
            for ordinal in ordinals {
                let pages = codes
                    .pages_of(*ordinal as usize)
                    .map_err(|e| shard.corrupt(e.detail().to_string()))?;
                shard
                    .pages
                    .want(pages.into_iter().filter(|p| !shard.pages.has_page(*p)));
            }
        }
        plans.extend(
            shards
                .iter()
                .map(|s| (s.clone(), s.pages.take_fetch(), false)),
        );
        self.fetch_plans(plans).await?;
        let mut out = Vec::with_capacity(shards.len());
        for ((shard, codes), ordinals) in shards.iter().zip(&all).zip(&chosen) {
            let mut hits = Vec::with_capacity(ordinals.len());
            for ordinal in ordinals {
                let rowid = codes.rowid(*ordinal as usize);
                let bytes = codes
                    .read_vector(*ordinal as usize, |p| shard.pages.peek_page(p))
                    .map_err(|e| shard.corrupt(e.detail().to_string()))?;
                let score = codes::exact_score(metric, query, stored, &bytes)
                    .map_err(|e| shard.corrupt(format!("vector {rowid}: {e}")))?;
                hits.push((rowid, score));
            }
            hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            hits.truncate(k);
            out.push(hits);
        }
        Ok(out)
    }

    /// Opens the given shards (those not open yet, all in one round) and returns them by id.
    /// The overflow chains of their pinned interior pages are pinned in a second round, or,
    /// with `defer_chains`, left wanted for the caller's next round to pin (a search through
    /// binary codes reads its candidates' vectors then, and needs none of them before).
    async fn open_shards_now(
        &self,
        ids: &[u32],
        defer_chains: bool,
        for_lookups: bool,
    ) -> Result<HashMap<u32, Rc<OpenShard>>> {
        // A shard opened through its key index has no sidecar: any use but lookups opens it
        // again with one.
        let cold: Vec<&Slot> = ids
            .iter()
            .filter_map(|id| self.slots.get(*id as usize).and_then(Option::as_ref))
            .filter(|slot| match slot.open.borrow().as_ref() {
                None => true,
                Some(open) => open.key_index.is_some() && !for_lookups,
            })
            .collect();
        if !cold.is_empty() {
            PageStats::bump(&self.counters.rounds);
            let opened = join_all(cold.iter().map(|slot| self.open_shard(slot, for_lookups))).await;
            let mut fresh = Vec::new();
            for (slot, shard) in cold.iter().zip(opened) {
                let shard = Rc::new(shard?);
                *slot.open.borrow_mut() = Some(shard.clone());
                fresh.push(shard);
            }
            // Chains hanging off pinned interior pages are read on every descent: pin them now.
            if !defer_chains && fresh.iter().any(|s| s.pages.has_missing()) {
                self.fetch_missing(&fresh, true).await?;
            }
            // Reading the schema turns "not a database" into an error now, with the shard
            // named. With a sidecar this reads pinned pages only. A shard opened through its
            // key index is bound to its file's bytes by it: nothing to check, nothing to read.
            let checks: Vec<Job<'_, i64>> = fresh
                .iter()
                .filter(|shard| shard.key_index.is_none())
                .map(|shard| {
                    let job: Statement<'_, i64> = Box::new(|conn: &Connection| {
                        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                    });
                    (shard.clone(), job)
                })
                .collect();
            self.run_jobs(checks).await?;
        }
        let mut out = HashMap::new();
        for id in ids {
            if let Some(slot) = self.slots.get(*id as usize).and_then(Option::as_ref) {
                if let Some(shard) = slot.open.borrow().as_ref() {
                    out.insert(*id, shard.clone());
                }
            }
        }
        Ok(out)
    }

    /// One shard's open for lookups when the manifest announces key indexes: its key index and
    /// the first page of `shard.db` (its size, ETag and page 1), fetched together. `None` when
    /// the index is missing, damaged or bound to another file (counted; the caller opens the
    /// shard with its sidecar instead, answers unchanged).
    async fn open_by_key_index(&self, slot: &Slot, url: &str) -> Result<Option<OpenShard>> {
        let (index, probe) = futures::join!(
            self.fetcher.get_whole(url, "shard key index"),
            // One byte: the size and ETag of shard.db (page 1 is in the index).
            self.fetcher.get_range(&slot.db_url, "shard database", 0, 1)
        );
        let probe = probe?;
        let index = index
            .ok()
            .and_then(|whole| key_index::load(&slot.entry, &whole.bytes, probe.total).ok());
        let Some(index) = index else {
            PageStats::bump(&self.counters.key_index_fallbacks);
            return Ok(None);
        };
        let page1 = index.page1.clone();
        self.open_with(slot, &probe, &page1, None, Some(Rc::new(index)))
            .map(Some)
    }

    /// One shard's open: its sidecar (when the manifest announces one) and the first block of
    /// `shard.db` (for its size, its ETag and page 1), fetched together. For lookups, through
    /// its key index when it has one.
    async fn open_shard(&self, slot: &Slot, for_lookups: bool) -> Result<OpenShard> {
        if let (true, Some(url)) = (for_lookups, &slot.key_index_url) {
            if let Some(open) = self.open_by_key_index(slot, url).await? {
                return Ok(open);
            }
            // The sidecar after all: one more round.
            PageStats::bump(&self.counters.rounds);
        }
        let probe_len = if slot.sidecar_url.is_some() {
            PROBE_BLOCK
        } else {
            HEADER_BLOCK
        };
        let sidecar_fetch = async {
            match &slot.sidecar_url {
                Some(url) => Some(self.fetcher.get_whole(url, "shard sidecar").await),
                None => None,
            }
        };
        let probe_fetch = self
            .fetcher
            .get_range(&slot.db_url, "shard database", 0, probe_len);
        let (sidecar, probe) = futures::join!(sidecar_fetch, probe_fetch);
        let probe = probe?;
        // A sidecar is used only when bound to the object being read (spec section 8); any
        // other answer (absent, malformed, another tag) means plain page reads.
        let sidecar = match sidecar {
            Some(Ok(whole)) => Sidecar::parse(&whole.bytes)
                .ok()
                .filter(|s| probe.etag.as_deref() == Some(s.tag.as_str())),
            _ => None,
        };
        self.open_with(slot, &probe, &probe.bytes, sidecar, None)
    }

    /// A shard ready for reads from what its open fetched: `probe` (a range answer giving the
    /// object's size and ETag), its first bytes, and its sidecar or key index.
    fn open_with(
        &self,
        slot: &Slot,
        probe: &Ranged,
        first_block: &[u8],
        sidecar: Option<Sidecar>,
        key_index: Option<Rc<KeyIndex>>,
    ) -> Result<OpenShard> {
        let db_id = slot.entry.db_id;
        let url = slot.db_url.clone();
        let corrupt = |detail: String| Error::CorruptShard {
            db_id,
            url: url.clone(),
            detail,
        };
        if slot.entry.db_bytes != 0 && probe.total != slot.entry.db_bytes {
            return Err(Error::Changed {
                url: url.clone(),
                detail: format!(
                    "it is {} bytes, the manifest says {}",
                    probe.total, slot.entry.db_bytes
                ),
            });
        }
        let has_sidecar = sidecar.is_some();
        // Pages of a shard whose writer recorded page checksums are all checked: the sidecar's
        // before they are pinned, fetched ones before they are stored.
        let verifier = slot
            .entry
            .page_verifier()
            .map_err(|e| corrupt(e.to_string()))?;
        let pages = ShardPages::open(
            ShardOpening {
                slot: db_id,
                len: probe.total,
                verifier,
                sidecar: sidecar.map(|s| s.content),
                first_block,
            },
            self.cache.clone(),
            self.counters.clone(),
        )
        .map_err(|e| corrupt(e.to_string()))?;
        // An edgeshard-written row's key bounds were checked against the routing at open, and
        // page checksums bind the file to this row's slot: the first-miss routing check (one
        // more round) would prove nothing more.
        let provenance_checked = verifier.is_some() && slot.entry.written_by_edgeshard();
        let pages = Arc::new(pages);
        let conn =
            sqlite_vfs::open_connection(pages.clone()).map_err(|e| corrupt(e.to_string()))?;
        conn.pragma_update(None, "cache_size", -SQLITE_CACHE_KIB)
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(OpenShard {
            db_id,
            url,
            etag: probe.etag.clone(),
            pages,
            conn,
            has_sidecar,
            key_index,
            vectors_planned: Cell::new(false),
            cells: std::cell::OnceCell::new(),
            routing_checked: Cell::new(provenance_checked),
        })
    }

    /// Runs statements until none misses pages: each pass runs every pending statement, then
    /// one round fetches what all of them missed.
    async fn run_jobs<T>(&self, mut jobs: Vec<Job<'_, T>>) -> Result<Vec<T>> {
        let mut results: Vec<Option<T>> = (0..jobs.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..jobs.len()).collect();
        let mut rounds = 0u32;
        while !pending.is_empty() {
            let mut missed = Vec::new();
            for &i in &pending {
                let (shard, job) = &mut jobs[i];
                let before = shard.pages.miss_count();
                let outcome = job(&shard.conn);
                if shard.pages.miss_count() != before {
                    missed.push(i);
                    continue;
                }
                match outcome {
                    Ok(value) => results[i] = Some(value),
                    Err(e) => return Err(shard.corrupt(e.to_string())),
                }
            }
            if missed.is_empty() {
                break;
            }
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(Error::TooManyRounds(format!(
                    "a statement still missed pages after {MAX_ROUNDS} rounds of reads (cache \
                     budget {} bytes)",
                    self.cache().budget()
                )));
            }
            let mut seen = BTreeSet::new();
            let shards: Vec<Rc<OpenShard>> = missed
                .iter()
                .map(|i| jobs[*i].0.clone())
                .filter(|s| seen.insert(s.db_id))
                .collect();
            self.fill(&shards).await?;
            pending = missed;
        }
        results
            .into_iter()
            .map(|r| r.ok_or_else(|| Error::TooManyRounds("a statement did not finish".into())))
            .collect()
    }

    /// Fetches what the shards' statements missed; then, in a second round, the overflow chains
    /// of index pages just fetched, which SQLite reads whole whenever a search compares against
    /// such a cell (one round for all of them instead of one per comparison).
    async fn fill(&self, shards: &[Rc<OpenShard>]) -> Result<()> {
        let fetched = self.fetch_missing(shards, false).await?;
        let mut follow = false;
        for (shard, pages) in shards.iter().zip(&fetched) {
            follow |= shard.pages.want_index_overflow_chains(pages);
        }
        if follow {
            self.fetch_missing(shards, false).await?;
        }
        Ok(())
    }

    /// One round: every missing page of every shard, as coalesced ranges, in parallel. Returns
    /// the pages fetched per shard.
    async fn fetch_missing(&self, shards: &[Rc<OpenShard>], pin: bool) -> Result<Vec<Vec<u32>>> {
        let plans = shards
            .iter()
            .map(|s| (s.clone(), s.pages.take_fetch(), pin))
            .collect();
        self.fetch_plans(plans).await
    }

    /// One round: every `(shard, pages, pin)` of `plans`, as coalesced ranges, in parallel.
    /// Returns the pages fetched per plan.
    async fn fetch_plans(
        &self,
        plan: Vec<(Rc<OpenShard>, PageFetch, bool)>,
    ) -> Result<Vec<Vec<u32>>> {
        if plan.iter().all(|(_, fetch, _)| fetch.is_empty()) {
            return Ok(plan.into_iter().map(|(_, f, _)| f.pages).collect());
        }
        PageStats::bump(&self.counters.rounds);
        let reads = plan.iter().flat_map(|(shard, fetch, pin)| {
            let pin = *pin;
            fetch.ranges.iter().map(move |&(offset, length)| {
                let shard = shard.clone();
                async move {
                    let answer = self
                        .fetcher
                        .get_range(&shard.url, "shard database", offset, length)
                        .await?;
                    shard.check(&answer)?;
                    // Pages that fail their checksums are fetched once more (a network that
                    // flipped a bit rarely does it twice); failing again is an error.
                    if shard.pages.store(offset, &answer.bytes, pin).is_err() {
                        PageStats::bump(&self.counters.retries);
                        let again = self
                            .fetcher
                            .get_range(&shard.url, "shard database", offset, length)
                            .await?;
                        shard.check(&again)?;
                        shard
                            .pages
                            .store(offset, &again.bytes, pin)
                            .map_err(|e| shard.corrupt(e.to_string()))?;
                    }
                    Ok::<(), Error>(())
                }
            })
        });
        for outcome in join_all(reads).await {
            outcome?;
        }
        Ok(plan.into_iter().map(|(_, f, _)| f.pages).collect())
    }

    /// Before a cold search: with the sidecar's interior pages pinned, the leaves of the vector
    /// tables are known without I/O, so they are fetched in one round for all shards; their
    /// overflow chains (the vector chunks) in the next. The search itself then runs on cached
    /// pages. Shards without a sidecar are left to the driver (read-ahead).
    async fn plan_vector_reads(&self, shards: &[Rc<OpenShard>], ivf: bool) -> Result<()> {
        let todo: Vec<Rc<OpenShard>> = shards
            .iter()
            .filter(|s| s.has_sidecar && !s.vectors_planned.get())
            .cloned()
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let roots_jobs: Vec<Job<'_, Vec<(String, u32)>>> = todo
            .iter()
            .map(|shard| {
                // A flat shard's search reads every vector; an IVF shard's the small tables
                // leading to its cells, then the probed cells only.
                let roots = match ivf {
                    true => search_plan::sql::IVF_TABLE_ROOTS,
                    false => search_plan::sql::VECTOR_TABLE_ROOTS,
                };
                let job: Statement<'_, Vec<(String, u32)>> = Box::new(move |conn: &Connection| {
                    let mut stmt = conn.prepare(roots)?;
                    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect()
                });
                (shard.clone(), job)
            })
            .collect();
        let roots = self.run_jobs(roots_jobs).await?;
        for (shard, tables) in todo.iter().zip(&roots) {
            shard.pages.want_vector_table_leaves(tables);
        }
        let fetched = self.fetch_missing(&todo, false).await?;
        for (shard, pages) in todo.iter().zip(&fetched) {
            shard.pages.want_overflow_chains(pages);
        }
        self.fetch_missing(&todo, false).await?;
        for shard in &todo {
            shard.vectors_planned.set(true);
        }
        Ok(())
    }
}

impl Snapshot {
    /// Before an IVF search: the vector chunks of each shard's probed `cells` (`cells_of`, in
    /// the order of `shards`), all shards together: chunk ids from the chunk list (fetched by
    /// `plan_vector_reads`), the leaves holding them in one round, their overflow chains in
    /// the next (as runtime-native's `RangeShard::plan_cell_reads`).
    async fn plan_cell_reads(
        &self,
        shards: &[Rc<OpenShard>],
        cells_of: &[Vec<usize>],
    ) -> Result<()> {
        let todo: Vec<(Rc<OpenShard>, &Vec<usize>)> = shards
            .iter()
            .zip(cells_of)
            .filter(|(s, cells)| s.has_sidecar && !cells.is_empty())
            .map(|(s, cells)| (s.clone(), cells))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let jobs: Vec<Job<'_, (u32, Vec<i64>)>> = todo
            .iter()
            .map(|(shard, cells)| {
                let cells: &Vec<usize> = cells;
                let job: Statement<'_, (u32, Vec<i64>)> = Box::new(move |conn: &Connection| {
                    let root: u32 =
                        conn.query_row(search_plan::sql::VECTOR_CHUNKS_ROOT, [], |r| r.get(0))?;
                    let mut stmt = conn.prepare_cached(search_plan::sql::CELL_CHUNKS)?;
                    let mut chunks = Vec::new();
                    for cell in cells {
                        for id in stmt.query_map([*cell as i64], |r| r.get::<_, i64>(0))? {
                            chunks.push(id?);
                        }
                    }
                    Ok((root, chunks))
                });
                (shard.clone(), job)
            })
            .collect();
        let found = self.run_jobs(jobs).await?;
        let shards: Vec<Rc<OpenShard>> = todo.iter().map(|(s, _)| s.clone()).collect();
        let leaves: Vec<Vec<u32>> = shards
            .iter()
            .zip(&found)
            .map(|(shard, (root, chunks))| shard.pages.want_table_rows(*root, chunks))
            .collect();
        self.fetch_missing(&shards, false).await?;
        for ((shard, leaves), (_, chunks)) in shards.iter().zip(&leaves).zip(found) {
            let wanted: std::collections::BTreeSet<i64> = chunks.into_iter().collect();
            shard.pages.want_row_overflow_chains(leaves, &wanted);
        }
        self.fetch_missing(&shards, false).await?;
        Ok(())
    }

    /// Reads the centroids of the IVF shards among `shards` that have none yet (all in one
    /// round), checked (`Cells::from_rows`).
    async fn load_cells(
        &self,
        shards: &[Rc<OpenShard>],
        stored_dim: usize,
        metric: vector::Metric,
    ) -> Result<()> {
        let todo: Vec<Rc<OpenShard>> = shards
            .iter()
            .filter(|s| s.cells.get().is_none())
            .cloned()
            .collect();
        let jobs: Vec<Job<'_, CentroidRows>> = todo
            .iter()
            .map(|shard| {
                let job: Statement<'_, CentroidRows> = Box::new(|conn: &Connection| {
                    let mut stmt = conn.prepare_cached(search_plan::sql::IVF_CENTROIDS)?;
                    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    rows.collect()
                });
                (shard.clone(), job)
            })
            .collect();
        for (shard, rows) in todo.iter().zip(self.run_jobs(jobs).await?) {
            let cells = Cells::from_rows(rows, stored_dim, metric)
                .map_err(|e| shard.corrupt(e.detail().to_string()))?;
            let _ = shard.cells.set(Rc::new(cells));
        }
        Ok(())
    }
}

/// A candidate of a shard's search statement: rowid, distance, stored vector (dot_product),
/// payload (filtered searches).
type KnnRow = (i64, f64, Option<Vec<u8>>, Option<String>);

/// An IVF shard's `vec_ivf_centroids` rows: `(cell, centroid bytes)`.
type CentroidRows = Vec<(i64, Vec<u8>)>;

/// The `fetch` nearest vectors of the IVF `cells` of one shard (`None`: of the whole shard), as
/// `(rowid, distance, stored vector, payload)`: the chunks read with plain SQL and scanned by
/// [`ivf::scan_chunks`] (as runtime-native does); the payload looked up when a filter needs it.
fn cell_rows(
    conn: &Connection,
    stored: &[f32],
    metric: vector::Metric,
    fetch: usize,
    cells: Option<&[usize]>,
    with_payload: bool,
) -> rusqlite::Result<Vec<KnnRow>> {
    let best = ivf::nearest_in_shard(conn, stored, metric, fetch, cells).map_err(|e| match e {
        ivf::ShardScanError::Sql(e) => e,
        ivf::ShardScanError::Corrupt(detail) => rusqlite::Error::ToSqlConversionFailure(
            edgeshard_shared::Error::InvalidArgument(detail).into(),
        ),
    })?;
    let mut lookup = conn.prepare_cached(search_plan::sql::HIT_LOOKUP)?;
    best.into_iter()
        .map(|(rowid, distance, vector)| {
            let payload = match with_payload {
                true => lookup.query_row([rowid], |r| r.get::<_, Option<String>>(1))?,
                false => None,
            };
            Ok((rowid, distance, Some(vector), payload))
        })
        .collect()
}

/// The router of a snapshot's vectors, with its routing artifact fetched (one request) when
/// its routing needs one; every check is [`Router::new`]'s, as in every reader.
async fn read_router(
    root: &str,
    manifest: &Manifest,
    spec: Option<&VectorSpec>,
    fetcher: &Fetcher,
) -> Result<Router> {
    let Some(spec) = spec else {
        return Ok(Router::ByKey);
    };
    let invalid = |url: String, e: edgeshard_shared::Error| Error::InvalidSnapshot {
        url,
        detail: e.to_string(),
    };
    let artifact = search_plan::artifact_to_fetch(manifest, spec)
        .map_err(|e| invalid(layout::join(root, layout::VECTOR_META_DIR), e))?;
    let (url, bytes) = match artifact {
        Some((relative, file)) => {
            let url = layout::join(root, &relative);
            PageStats::bump(&fetcher.counters.rounds);
            let bytes = fetcher.get_whole(&url, file).await?.bytes;
            (url, Some(bytes))
        }
        None => (layout::join(root, layout::VECTOR_META_DIR), None),
    };
    Router::new(spec, manifest.meta.num_dbs, bytes.as_deref()).map_err(|e| invalid(url, e))
}
