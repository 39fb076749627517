//! Searches over shards with binary codes (`--quantization binary`, [`edgeshard_shared::codes`]):
//! every searched shard's codes give their best estimates, the best `k x refine` of all shards
//! are re-ranked from their full-precision vectors, and the best `k` of those are the answer.
//! The same steps as runtime-wasm's, so both readers return the same hits.

use super::search::{for_each_bounded, keep_matching, scored_hits, RawRow, SEARCH_THREADS};
use super::shards::ShardConn;
use super::*;
use edgeshard_shared::codes::{self, Codes};

impl Snapshot {
    /// The `k` nearest to `query` over `targets` through their codes (see the module doc).
    pub(super) fn search_with_codes(
        &self,
        query: &[f32],
        stored_query: &[f32],
        spec: &VectorSpec,
        options: &SearchOptions,
        targets: &[&ShardHandle],
    ) -> Result<Vec<Vec<Scored<SearchHit>>>> {
        let refine = options
            .ann
            .refine_factor
            .or(spec.ann_defaults.refine_factor);
        let wanted = codes::candidates_for(options.k, refine);
        let estimates = for_each_bounded(targets, SEARCH_THREADS, |shard| {
            Ok(self.shard_codes(shard, spec)?.nearest(query, wanted))
        })
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
        let chosen = codes::select_candidates(&estimates, wanted);
        let work: Vec<(&ShardHandle, Vec<u32>)> = targets
            .iter()
            .zip(chosen)
            .filter(|(_, ordinals)| !ordinals.is_empty())
            .map(|(shard, ordinals)| (*shard, ordinals))
            .collect();
        for_each_bounded(&work, SEARCH_THREADS, |(shard, ordinals)| {
            self.rerank(shard, spec, query, stored_query, ordinals, options.k)
        })
        .into_iter()
        .collect()
    }

    /// One shard's candidates scored exactly from their stored vectors, the best `k` with
    /// their ids and payloads.
    fn rerank(
        &self,
        shard: &ShardHandle,
        spec: &VectorSpec,
        query: &[f32],
        stored_query: &[f32],
        ordinals: &[u32],
        k: usize,
    ) -> Result<Vec<Scored<SearchHit>>> {
        let db_id = shard.entry.db_id;
        let corrupt = |detail: String| Error::CorruptShard {
            db_id,
            location: shard.location.clone(),
            detail,
        };
        let codes = self.shard_codes(shard, spec)?;
        let vectors = self.stored_vectors(shard, &codes, ordinals)?;
        let mut scored: Vec<(f64, i64)> = Vec::with_capacity(ordinals.len());
        for (ordinal, bytes) in ordinals.iter().zip(&vectors) {
            let rowid = codes.rowid(*ordinal as usize);
            let score = codes::exact_score(spec.metric, query, stored_query, bytes)
                .map_err(|e| corrupt(format!("vector {rowid}: {e}")))?;
            scored.push((score, rowid));
        }
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.truncate(k);
        self.plan_hit_lookups(shard, &scored)?;
        let rows: Vec<RawRow> = self.with_conn(shard, Use::FewPages, |conn| {
            let mut lookup = conn.prepare_cached(search_plan::sql::HIT_LOOKUP)?;
            scored
                .iter()
                .map(|(distance, rowid)| {
                    let (original_id, payload) =
                        lookup.query_row([rowid], |r| Ok((r.get(0)?, r.get(1)?)))?;
                    Ok(RawRow {
                        rowid: *rowid,
                        distance: *distance,
                        original_id,
                        payload,
                        embedding: None,
                    })
                })
                .collect()
        })?;
        Ok(scored_hits(keep_matching(rows, None, k, &corrupt)?, db_id))
    }

    /// A range-read shard fetches the leaves its hits' ids and payloads sit on in one round
    /// ([`crate::range::RangeShard::plan_hit_lookups`]); other shards need nothing.
    fn plan_hit_lookups(&self, shard: &ShardHandle, hits: &[(f64, i64)]) -> Result<()> {
        let guard = shard
            .conn
            .lock()
            .map_err(|_| Error::poisoned(&format!("shard {} connection", shard.entry.db_id)))?;
        match guard.as_ref() {
            Some(ShardConn::Range(range)) => {
                let rowids: Vec<i64> = hits.iter().map(|(_, rowid)| *rowid).collect();
                range.plan_hit_lookups(&rowids)
            }
            _ => Ok(()),
        }
    }

    /// The stored vectors at `ordinals`: a range-read shard reads the pages the codes' map
    /// names (one round); a whole file answers `vec0` point queries.
    fn stored_vectors(
        &self,
        shard: &ShardHandle,
        codes: &Codes,
        ordinals: &[u32],
    ) -> Result<Vec<Vec<u8>>> {
        // Opens the shard as a lookup would: a remote shard by range under `auto`.
        self.with_conn_try(shard, Use::FewPages, |_| Ok(()))?;
        let guard = shard
            .conn
            .lock()
            .map_err(|_| Error::poisoned(&format!("shard {} connection", shard.entry.db_id)))?;
        match guard.as_ref() {
            Some(ShardConn::Range(range)) => range.read_vectors(codes, ordinals),
            Some(ShardConn::Whole(conn)) => {
                let read = || -> rusqlite::Result<Vec<Vec<u8>>> {
                    let mut stmt =
                        conn.prepare_cached("SELECT embedding FROM vec_index WHERE rowid = ?1")?;
                    ordinals
                        .iter()
                        .map(|o| stmt.query_row([codes.rowid(*o as usize)], |r| r.get(0)))
                        .collect()
                };
                read().map_err(|e| self.sql_error(shard, e))
            }
            None => Err(Error::Internal(format!(
                "shard {}: connection missing after open",
                shard.entry.db_id
            ))),
        }
    }

    /// The shard's codes, read whole on first use, checked against the size and hash its
    /// manifest row records and against the snapshot's vectors, and kept.
    pub(super) fn shard_codes(&self, shard: &ShardHandle, spec: &VectorSpec) -> Result<Arc<Codes>> {
        if let Some(codes) = shard.codes.get() {
            return Ok(codes.clone());
        }
        let db_id = shard.entry.db_id;
        let relative = format!("{}/{}", shard_dir_of(&shard.relative), codes::FILE_NAME);
        let corrupt = |detail: String| Error::CorruptShard {
            db_id,
            location: self.root.location(&relative),
            detail,
        };
        codes::file_of(&shard.entry).map_err(corrupt)?;
        let bytes = read_counted(&self.root, &relative, &self.stats)?;
        let parsed = codes::load(&shard.entry, spec, &bytes).map_err(corrupt)?;
        Ok(shard.codes.get_or_init(|| Arc::new(parsed)).clone())
    }
}
