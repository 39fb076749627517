//! Key lookups: `get`, `multi_get`, and the routing check before a shard's first "not found".

use super::*;
use edgeshard_shared::key_index::Lookup;
use edgeshard_shared::shard_schema;

impl Snapshot {
    /// The value stored under `key`, or `None` when absent.
    pub fn get(&self, key: &Key) -> Result<Option<Vec<u8>>> {
        let encoded = self
            .manifest
            .meta
            .key_encoding
            .encode(key)
            .map_err(Error::invalid_request)?;
        let db_id = self.route(key)?;
        let Some(shard) = &self.shards[db_id as usize] else {
            return Ok(None);
        };
        if let Some(mut answers) = self.lookup_by_key_index(shard, &[&encoded])? {
            match answers.pop().flatten() {
                Some(Lookup::Found(value)) => return Ok(Some(value)),
                Some(_) => {
                    self.check_routing_on_miss(shard)?;
                    return Ok(None);
                }
                // The index cannot answer for this key: SQLite does.
                None => {}
            }
        }
        let value = self.with_conn(shard, Use::Lookup, |conn| {
            conn.prepare_cached(shard_schema::KV_GET)?
                .query_row([&encoded], |r| r.get(0))
                .optional()
        })?;
        if value.is_none() {
            self.check_routing_on_miss(shard)?;
        }
        Ok(value)
    }

    /// Before a shard's first "not found" is answered, checks that the shard file really holds
    /// this slot's keys: its first stored key must route to its `db_id`. A shard under the
    /// wrong manifest row (swapped or renumbered rows, another `num_dbs`) would otherwise answer
    /// "not found" for every key looked for in it. Found values need no check (a key is stored
    /// only in its own shard). Costs one read of the shard's first leaf, once per shard.
    pub(super) fn check_routing_on_miss(&self, shard: &ShardHandle) -> Result<()> {
        if shard.routing_checked.load(Ordering::Relaxed) {
            return Ok(());
        }
        // A shard opened through its key index knows its first key without a read.
        let indexed = self.with_shard(shard, Use::Lookup, |conn| {
            Ok(match conn {
                ShardConn::Range(range) => range.first_key_from_index().map(<[u8]>::to_vec),
                ShardConn::Whole(_) => None,
            })
        })?;
        let first: Option<Vec<u8>> = match indexed {
            Some(first) => Some(first),
            None => self.with_conn(shard, Use::Lookup, |conn| {
                conn.prepare_cached(shard_schema::KV_FIRST_KEY)?
                    .query_row([], |r| r.get(0))
                    .optional()
            })?,
        };
        if let Some(key) = first {
            self.manifest
                .check_shard_holds_key(shard.entry.db_id, &key)
                .map_err(|e| Error::CorruptShard {
                    db_id: shard.entry.db_id,
                    location: shard.location.clone(),
                    detail: e.to_string(),
                })?;
        }
        shard.routing_checked.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Answers for `keys` of one shard from its key index (see [`RangeShard::lookup`]) when the
    /// shard is read by range through one; `None` otherwise, and per key when the index cannot
    /// answer for it.
    fn lookup_by_key_index(
        &self,
        shard: &ShardHandle,
        keys: &[&[u8]],
    ) -> Result<Option<Vec<Option<Lookup>>>> {
        self.with_shard(shard, Use::Lookup, |conn| match conn {
            ShardConn::Range(range) => range.lookup(keys),
            ShardConn::Whole(_) => Ok(None),
        })
    }

    /// Values for `keys`, in input order; `None` for absent keys. Keys are grouped per shard so
    /// each shard connection is taken once.
    pub fn multi_get(&self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>> {
        let encoding = self.manifest.meta.key_encoding;
        let mut by_shard: Vec<Vec<(usize, Vec<u8>)>> = vec![Vec::new(); self.shards.len()];
        for (i, key) in keys.iter().enumerate() {
            let encoded = encoding.encode(key).map_err(Error::invalid_request)?;
            by_shard[self.route(key)? as usize].push((i, encoded));
        }
        let mut out = vec![None; keys.len()];
        for (db_id, wanted) in by_shard.into_iter().enumerate() {
            let Some(shard) = &self.shards[db_id] else {
                continue;
            };
            if wanted.is_empty() {
                continue;
            }
            // Through the key index first: every key's page in one round.
            let keys: Vec<&[u8]> = wanted.iter().map(|(_, k)| k.as_slice()).collect();
            let mut answered = vec![None; wanted.len()];
            if let Some(answers) = self.lookup_by_key_index(shard, &keys)? {
                answered = answers;
            }
            let mut missed = false;
            let mut rest = Vec::new();
            for ((i, key), answer) in wanted.into_iter().zip(answered) {
                match answer {
                    Some(Lookup::Found(value)) => out[i] = Some(value),
                    Some(_) => missed = true,
                    None => rest.push((i, key)),
                }
            }
            if !rest.is_empty() {
                let found = self.with_conn(shard, Use::Lookup, |conn| {
                    let mut stmt = conn.prepare_cached(shard_schema::KV_GET)?;
                    rest.iter()
                        .map(|(i, k)| Ok((*i, stmt.query_row([k], |r| r.get(0)).optional()?)))
                        .collect::<rusqlite::Result<Vec<(usize, Option<Vec<u8>>)>>>()
                })?;
                for (i, value) in found {
                    missed |= value.is_none();
                    out[i] = value;
                }
            }
            if missed {
                self.check_routing_on_miss(shard)?;
            }
        }
        Ok(out)
    }
}
