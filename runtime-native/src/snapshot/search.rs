//! Vector search: shards chosen by the shared search plan, searched on a bounded set of
//! threads (sqlite-vec or LanceDB per shard), merged; filters, projection and exact dot_product.

use super::*;
use edgeshard_shared::ivf::{self, Cells};
use edgeshard_shared::query::{dot_score, CandidatePolicy, Fetch};

impl Snapshot {
    /// The `k` nearest vectors to `query` over the given shards (all non-empty shards when
    /// `shard_ids` is `None`, or the probed shards of a vector-routed snapshot), queried in
    /// parallel and merged. See [`Snapshot::search_with`] for filters, probes and projection.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        shard_ids: Option<&[u32]>,
    ) -> Result<SearchResponse> {
        self.search_with(
            query,
            &SearchOptions {
                k,
                shard_ids: shard_ids.map(<[u32]>::to_vec),
                ..SearchOptions::default()
            },
        )
    }

    /// The `k` nearest vectors to `query` with options: shards (probes / ids), a payload
    /// filter and a payload projection. Scores follow one convention per metric whatever the
    /// backend (`shared::vector`): lower is better.
    pub fn search_with(&self, query: &[f32], options: &SearchOptions) -> Result<SearchResponse> {
        #[cfg(not(feature = "lancedb"))]
        if self.backend == Some(VectorBackend::LanceDb) {
            return Err(Error::Unsupported(
                "this snapshot's vectors are LanceDB shards (vector_index.lance); this build of \
                 edgeshard has no LanceDB support (build with --features lancedb)"
                    .into(),
            ));
        }
        let spec = options
            .check(self.vector.as_ref(), query)
            .map_err(|e| Error::InvalidRequest(e.detail().to_string()))?;
        let k = options.k;
        let dot = match (spec.metric, spec.dot_reduction) {
            // LanceDB has an inner-product distance of its own.
            (Metric::DotProduct, None) if self.backend == Some(VectorBackend::LanceDb) => None,
            (Metric::DotProduct, None) => {
                return Err(Error::Unsupported(
                    "this dot_product snapshot on sqlite-vec records no dot_reduction: \
                     sqlite-vec has no inner-product distance, so it cannot be ranked correctly"
                        .into(),
                ))
            }
            (_, reduction) => reduction,
        };
        let selected = self.select_shards(query, spec, options)?;
        let targets: Vec<&ShardHandle> = selected
            .iter()
            .filter_map(|id| self.shards[*id as usize].as_ref())
            .collect();
        let stored = match dot {
            Some(_) => DotReduction::augment_query(query),
            None => query.to_vec(),
        };
        let ivf = spec.index_type.as_deref() == Some(ivf::INDEX_TYPE)
            && self.backend != Some(VectorBackend::LanceDb)
            && !options.ann.exact;
        let shard_query = ShardQuery {
            bytes: vector::to_le_bytes(&stored),
            stored: &stored,
            ivf: ivf.then(|| options.ann.nprobes.or(spec.ann_defaults.nprobes)),
            query,
            metric: spec.metric,
            dim: spec.dim,
            k,
            filter: options.filter.as_ref(),
            ann: options.ann,
            dot_reduction: dot,
        };
        let with_codes =
            edgeshard_shared::codes::in_use(spec, &options.ann, options.filter.is_some());
        let per_shard = match with_codes {
            true => self.search_with_codes(query, &stored, spec, options, &targets)?,
            false => for_each_bounded(&targets, SEARCH_THREADS, |shard| {
                self.search_shard(shard, &shard_query)
            })
            .into_iter()
            .collect::<Result<Vec<_>>>()?,
        };
        let results = merge_top_k_distinct(per_shard, k, |hit| hit.id.clone())
            .into_iter()
            .map(|s| {
                let mut hit = s.item;
                if let Some(fields) = &options.payload_fields {
                    hit.payload = project(hit.payload.take(), fields);
                }
                hit
            })
            .collect();
        Ok(SearchResponse {
            results,
            shards_queried: targets.len(),
            shards: targets.iter().map(|s| s.entry.db_id).collect(),
        })
    }

    /// The shard ids a search covers, before dropping empty slots.
    pub(super) fn select_shards(
        &self,
        query: &[f32],
        spec: &VectorSpec,
        options: &SearchOptions,
    ) -> Result<Vec<u32>> {
        let router = self.router.as_ref().unwrap_or(&Router::ByKey);
        router
            .shards_to_search(
                spec,
                self.manifest.meta.num_dbs,
                query,
                options.probes,
                options.shard_ids.as_deref(),
            )
            .map_err(|e| Error::InvalidRequest(e.detail().to_string()))
    }

    /// One shard's best hits, scores already in the reported convention. Dispatches on the
    /// backend (a LanceDB backend slots in here beside sqlite-vec).
    pub(super) fn search_shard(
        &self,
        shard: &ShardHandle,
        q: &ShardQuery<'_>,
    ) -> Result<Vec<Scored<SearchHit>>> {
        match self.backend {
            #[cfg(feature = "lancedb")]
            Some(VectorBackend::LanceDb) => self.search_shard_lance(shard, q),
            #[cfg(not(feature = "lancedb"))]
            Some(VectorBackend::LanceDb) => Err(Error::Unsupported(
                "LanceDB vector shards need a build with --features lancedb".into(),
            )),
            Some(VectorBackend::SqliteVec) | None => self.search_shard_sqlite_vec(shard, q),
        }
    }

    /// LanceDB: the shard's table is opened in place (local directory or S3, never
    /// downloaded) on first use and kept; the search runs on the I/O runtime.
    #[cfg(feature = "lancedb")]
    pub(super) fn search_shard_lance(
        &self,
        shard: &ShardHandle,
        q: &ShardQuery<'_>,
    ) -> Result<Vec<Scored<SearchHit>>> {
        use crate::lance::{LanceQuery, LanceShard};
        let db_id = shard.entry.db_id;
        let table = {
            let mut slot = shard
                .lance
                .lock()
                .map_err(|_| Error::poisoned("LanceDB shard"))?;
            match slot.as_ref() {
                Some(table) => table.clone(),
                None => {
                    let (uri, options) = self.lance_location(shard)?;
                    let opened = Arc::new(crate::remote::wait(async move {
                        LanceShard::open(db_id, &uri, options).await
                    })??);
                    *slot = Some(opened.clone());
                    opened
                }
            }
        };
        let defaults = self
            .vector
            .as_ref()
            .map(|v| v.ann_defaults)
            .unwrap_or_default();
        // Per-query values win over the defaults the builder recorded.
        let ann = AnnParams {
            nprobes: q.ann.nprobes.or(defaults.nprobes),
            refine_factor: q.ann.refine_factor.or(defaults.refine_factor),
            ef: q.ann.ef.or(defaults.ef),
            exact: q.ann.exact,
        };
        let vector = q.query.to_vec();
        let filter = q.filter.cloned();
        let (metric, k) = (q.metric, q.k);
        let hits = crate::remote::wait(async move {
            table
                .search(&LanceQuery {
                    vector: &vector,
                    metric,
                    k,
                    filter: filter.as_ref(),
                    ann,
                })
                .await
        })??;
        Ok(hits
            .into_iter()
            .map(|h| Scored {
                score: h.score,
                item: SearchHit {
                    id: h.id,
                    score: h.score,
                    payload: h.payload,
                    shard: db_id,
                },
            })
            .collect())
    }

    /// Where a LanceDB shard's database is (the folder holding `vector_index.lance`) and the
    /// storage options to open it with.
    #[cfg(feature = "lancedb")]
    pub(super) fn lance_location(
        &self,
        shard: &ShardHandle,
    ) -> Result<(String, Vec<(String, String)>)> {
        let composite = self.vector.as_ref().is_some_and(|v| v.unified);
        let relative = layout::lance_db_dir(shard_dir_of(&shard.relative), composite);
        match &self.root {
            Root::Local(base) => Ok((base.join(&relative).display().to_string(), Vec::new())),
            Root::Remote(remote) => remote.lance_location(&relative),
        }
    }

    /// sqlite-vec shards: the nearest rows by the index's own distance, read from `vec0`'s
    /// vector chunks (every chunk, or those of the probed IVF cells) and scanned by
    /// [`ivf::scan_chunks`]'s SIMD loops, the same distances `vec0`'s `MATCH` computes.
    ///
    /// - With a filter, candidates are over-fetched (`4 x` what is needed, doubling up to
    ///   [`edgeshard_shared::query::MAX_K`]) and filtered after; when the cap is reached without enough
    ///   matches, the shard is scanned exactly (`vec_distance_*` over every row, in order), so
    ///   `k` results come back whenever `k` vectors match.
    /// - dot_product (stored as its L2 reduction): the L2 pass yields `k + max(k, 16)`
    ///   candidates, re-ranked by the exact `1 - q.v` computed from the stored vector.
    pub(super) fn search_shard_sqlite_vec(
        &self,
        shard: &ShardHandle,
        q: &ShardQuery<'_>,
    ) -> Result<Vec<Scored<SearchHit>>> {
        let db_id = shard.entry.db_id;
        let corrupt = |detail: String| Error::CorruptShard {
            db_id,
            location: shard.location.clone(),
            detail,
        };
        self.plan_vector_reads(shard, q.ivf.is_some())?;
        // IVF: the cells to read (none: the whole shard, when every cell is probed).
        let cells: Vec<usize> = match q.ivf {
            None => Vec::new(),
            Some(nprobes) => {
                let cells = self.shard_cells(shard, q)?;
                let nprobes = nprobes.unwrap_or_else(|| ivf::default_nprobes(cells.len()));
                match nprobes >= cells.len() {
                    true => Vec::new(),
                    false => cells.probe(q.stored, nprobes),
                }
            }
        };
        self.plan_cell_reads(shard, &cells)?;
        let policy = CandidatePolicy::new(q.k, q.filter.is_some(), q.dot_reduction)
            .in_cells(!cells.is_empty());
        // dot_product is stored as its L2 reduction: each candidate is rescored exactly from
        // its stored vector, so the statements return the vectors too.
        let rescore = q.dot_reduction.is_some();
        let hits = self.with_conn_try(shard, Use::Scan, |conn| {
            let sql = |e: rusqlite::Error| self.sql_error(shard, e);
            let mut fetch = policy.first();
            loop {
                let rows = match fetch {
                    Fetch::Nearest(n) if !cells.is_empty() => {
                        cell_rows(conn, q, n, Some(&cells), &corrupt, &sql)?
                    }
                    // The whole shard through the same chunk scan: its SIMD loops scan about
                    // 5x faster than sqlite-vec's scalar KNN (docs/benchmarks.md, "Exact scan").
                    Fetch::Nearest(n) => cell_rows(conn, q, n, None, &corrupt, &sql)?,
                    Fetch::All => scan_rows(conn, q, rescore).map_err(sql)?,
                };
                let returned = rows.len();
                let last_distance = rows.last().map(|r| r.distance);
                // Rows come nearest first: without rescoring, the first k that match are the
                // hits, and the rest need not be decoded.
                let keep = if rescore { usize::MAX } else { q.k };
                let mut hits = keep_matching(rows, q.filter, keep, &corrupt)?;
                if rescore {
                    for hit in &mut hits {
                        hit.distance = dot_score(q.query, hit.embedding.as_deref(), q.dim)
                            .map_err(|e| corrupt(format!("vector {}: {e}", hit.rowid)))?;
                    }
                    hits.sort_by(|a, b| {
                        a.distance
                            .total_cmp(&b.distance)
                            .then(a.rowid.cmp(&b.rowid))
                    });
                }
                let kth = hits.get(q.k - 1).map(|h| h.distance);
                match policy.next(fetch, returned, kth, last_distance, q.query) {
                    Some(next) => fetch = next,
                    None => break Ok::<_, Error>(hits),
                }
            }
        })?;
        let mut hits = hits;
        hits.truncate(q.k);
        // sqlite-vec distances already follow the reported convention for cosine (1 - cos)
        // and l2 (Euclidean).
        Ok(scored_hits(hits, db_id))
    }

    /// An IVF shard's cells, read from its `vec_ivf_centroids` on first use and kept.
    fn shard_cells(&self, shard: &ShardHandle, q: &ShardQuery<'_>) -> Result<Arc<Cells>> {
        if let Some(cells) = shard.cells.get() {
            return Ok(cells.clone());
        }
        let rows: Vec<(i64, Vec<u8>)> = self.with_conn(shard, Use::Scan, |conn| {
            let mut stmt = conn.prepare_cached(search_plan::sql::IVF_CENTROIDS)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        let cells =
            Cells::from_rows(rows, q.stored.len(), q.metric).map_err(|e| Error::CorruptShard {
                db_id: shard.entry.db_id,
                location: shard.location.clone(),
                detail: e.detail().to_string(),
            })?;
        Ok(shard.cells.get_or_init(|| Arc::new(cells)).clone())
    }
}

/// Threads one search uses to query its shards (at most one per shard): enough to overlap the
/// reads of range-read shards and to use the cores on local ones, without one OS thread per
/// shard when a search covers thousands.
pub(super) const SEARCH_THREADS: usize = 16;

/// `work` over every item on at most `threads` scoped threads; results in item order. A panic
/// in `work` is an error, not a crash of the caller.
pub(super) fn for_each_bounded<I: Sync, T: Send>(
    items: &[I],
    threads: usize,
    work: impl Fn(&I) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = threads.clamp(1, items.len().max(1));
    let mut slots: Vec<Option<Result<T>>> = (0..items.len()).map(|_| None).collect();
    let finished: Vec<Vec<(usize, Result<T>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            break done;
                        };
                        done.push((i, work(item)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for (i, result) in finished.into_iter().flatten() {
        slots[i] = Some(result);
    }
    slots
        .into_iter()
        .map(|slot| {
            slot.unwrap_or_else(|| {
                Err(Error::Unsupported(
                    "internal error: a shard search thread panicked".into(),
                ))
            })
        })
        .collect()
}

/// One search as every shard runs it.
pub(super) struct ShardQuery<'a> {
    /// The query as the index stores vectors (augmented `[q, 0]` for dot_product).
    pub(super) bytes: Vec<u8>,
    /// The same, as floats (IVF probing).
    pub(super) stored: &'a [f32],
    /// IVF shards (`index_type` "ivf"): `Some(nprobes)`, the cells to probe per shard (the
    /// query's, else the snapshot's default, else [`ivf::default_nprobes`]).
    pub(super) ivf: Option<Option<usize>>,
    pub(super) query: &'a [f32],
    pub(super) metric: Metric,
    pub(super) dim: usize,
    pub(super) k: usize,
    pub(super) filter: Option<&'a Filter>,
    #[cfg_attr(not(feature = "lancedb"), allow(dead_code))]
    pub(super) ann: AnnParams,
    /// dot_product on sqlite-vec: the L2 reduction the vectors are stored with.
    pub(super) dot_reduction: Option<DotReduction>,
}

/// A candidate row of a shard.
pub(super) struct RawRow {
    pub(super) rowid: i64,
    pub(super) distance: f64,
    pub(super) original_id: Option<String>,
    pub(super) payload: Option<String>,
    pub(super) embedding: Option<Vec<u8>>,
}

/// A candidate that passed the filter, decoded.
pub(super) struct ShardHit {
    pub(super) rowid: i64,
    pub(super) distance: f64,
    pub(super) id: VectorId,
    pub(super) payload: Option<Value>,
    pub(super) embedding: Option<Vec<u8>>,
}

pub(super) fn read_rows(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<RawRow>> {
    let rows = stmt.query_map(params, |r| {
        Ok(RawRow {
            rowid: r.get(0)?,
            distance: r.get(1)?,
            original_id: r.get(2)?,
            payload: r.get(3)?,
            embedding: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// The `fetch` nearest rows of the IVF `cells` (`None`: of the whole shard), nearest first:
/// their chunks read with plain SQL and scanned by [`ivf::scan_chunks`] (one pass over the
/// vectors with edgeshard's SIMD loops, not one `vec0` statement per cell), then each hit's id
/// and payload looked up. Rows carry their vectors.
pub(super) fn cell_rows(
    conn: &Connection,
    q: &ShardQuery<'_>,
    fetch: usize,
    cells: Option<&[usize]>,
    corrupt: &dyn Fn(String) -> Error,
    sql: &dyn Fn(rusqlite::Error) -> Error,
) -> Result<Vec<RawRow>> {
    let best =
        ivf::nearest_in_shard(conn, q.stored, q.metric, fetch, cells).map_err(|e| match e {
            ivf::ShardScanError::Sql(e) => sql(e),
            ivf::ShardScanError::Corrupt(detail) => corrupt(detail),
        })?;
    let mut lookup = conn
        .prepare_cached(search_plan::sql::HIT_LOOKUP)
        .map_err(sql)?;
    best.into_iter()
        .map(|(rowid, distance, vector)| {
            let (original_id, payload) = lookup
                .query_row([rowid], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql)?;
            Ok(RawRow {
                rowid,
                distance,
                original_id,
                payload,
                embedding: Some(vector),
            })
        })
        .collect()
}

/// Every row of the shard, nearest first: the exact fallback of a filtered search, past the
/// KNN cap (same distances as the index: `vec_distance_cosine` / `vec_distance_l2`).
pub(super) fn scan_rows(
    conn: &Connection,
    q: &ShardQuery<'_>,
    with_vectors: bool,
) -> rusqlite::Result<Vec<RawRow>> {
    let sql = search_plan::sql::scan(q.metric, with_vectors);
    let mut stmt = conn.prepare_cached(&sql)?;
    read_rows(&mut stmt, rusqlite::params![q.bytes])
}

pub(super) fn scored_hits(hits: Vec<ShardHit>, db_id: u32) -> Vec<Scored<SearchHit>> {
    hits.into_iter()
        .map(|h| Scored {
            score: h.distance,
            item: SearchHit {
                id: h.id,
                score: h.distance,
                payload: h.payload,
                shard: db_id,
            },
        })
        .collect()
}

/// Decodes rows in order and keeps the first `want` that pass the filter.
pub(super) fn keep_matching(
    rows: Vec<RawRow>,
    filter: Option<&Filter>,
    want: usize,
    corrupt: &dyn Fn(String) -> Error,
) -> Result<Vec<ShardHit>> {
    let mut out = Vec::with_capacity(want.min(rows.len()));
    for row in rows {
        if out.len() >= want {
            break;
        }
        let payload: Option<Value> = row
            .payload
            .as_deref()
            .map(|text| {
                serde_json::from_str(text)
                    .map_err(|e| corrupt(format!("vec_payloads row {}: {e}", row.rowid)))
            })
            .transpose()?;
        if filter.is_some_and(|f| !f.matches(payload.as_ref())) {
            continue;
        }
        let id = match &row.original_id {
            Some(text) => VectorId::from_stored(text)
                .ok_or_else(|| corrupt(format!("vec_id_map row {}: {text:?}", row.rowid)))?,
            None => {
                return Err(corrupt(format!(
                    "vector {} has no vec_id_map row",
                    row.rowid
                )))
            }
        };
        out.push(ShardHit {
            rowid: row.rowid,
            distance: row.distance,
            id,
            payload,
            embedding: row.embedding,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn bounded_fan_out_keeps_order_caps_threads_and_reports_panics() {
        let items: Vec<u32> = (0..100).collect();
        let running = AtomicU64::new(0);
        let peak = AtomicU64::new(0);
        let results = for_each_bounded(&items, 4, |&i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(1));
            running.fetch_sub(1, Ordering::SeqCst);
            if i == 37 {
                panic!("shard 37 broke");
            }
            Ok(i * 2)
        });
        assert_eq!(results.len(), 100);
        assert!(
            peak.load(Ordering::SeqCst) <= 4,
            "more than 4 threads at once"
        );
        for (i, result) in results.iter().enumerate() {
            match result {
                Ok(v) => assert_eq!(*v, i as u32 * 2),
                // The panicking item and what its thread had finished are errors, never
                // missing or misplaced.
                Err(e) => assert!(e.to_string().contains("panicked"), "{e}"),
            }
        }
        assert!(results[37].is_err());
        assert!(results.iter().filter(|r| r.is_ok()).count() >= 70);
    }
}
