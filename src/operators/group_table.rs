//! Accumulators per group key for one window pane, with every key in one text arena.
//!
//! Contract: a `GroupTable` maps group keys (the JSON text `prepare` builds) to `width`
//! accumulators each. Entries keep the order in which their keys first arrived. Lookups take the
//! key's `key_hash`, computed once per record and reused to route the key to its worker, so no
//! key is hashed twice and no key costs an allocation of its own: a pane with 100k keys holds
//! one `String` and four vectors instead of 200k boxed strings and vectors. That is what keeps
//! high-cardinality jobs (SPS: most (second, device, title, country) keys occur once) cheap.
//! A table crosses process boundaries without its lookup index; the index is rebuilt on first use.

use crate::aggregate::Acc;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

/// The hash of a group key: routes the key to its worker and indexes it in tables. Fixed seed,
/// so every process agrees.
pub fn key_hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}

/// Key equality that never calls `memcmp` for the empty key (a dataflow without group-by): an
/// empty `String`'s pointer is dangling, and glibc's AVX-512 `memcmp` then does a masked load
/// from it that the CPU resolves in a slow assist (13 % of a unique-users run's time).
#[inline]
fn same_key(a: &str, b: &str) -> bool {
    a.len() == b.len() && (a.is_empty() || a == b)
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GroupTable {
    /// Accumulators per entry.
    width: usize,
    /// The keys, one after another; entry `i` ends at `key_ends[i]`.
    text: String,
    key_ends: Vec<usize>,
    hashes: Vec<u64>,
    /// `width` accumulators per entry, entry after entry.
    accs: Vec<Acc>,
    /// Entry numbers by key hash; empty after deserialization until `reindex`.
    #[serde(skip)]
    index: HashTable<usize>,
    /// `(hash, entry)` of the last lookup: records often repeat the previous key (a dataflow
    /// without group-by has a single one), and this skips the index probe for them.
    #[serde(skip)]
    last: Option<(u64, usize)>,
}

impl GroupTable {
    pub fn new(width: usize) -> Self {
        GroupTable {
            width,
            ..Default::default()
        }
    }

    /// An empty table with room for `entries` keys of `key_bytes` in all.
    pub fn with_capacity(width: usize, entries: usize, key_bytes: usize) -> Self {
        GroupTable {
            width,
            text: String::with_capacity(key_bytes),
            key_ends: Vec::with_capacity(entries),
            hashes: Vec::with_capacity(entries),
            accs: Vec::with_capacity(entries * width),
            index: HashTable::with_capacity(entries),
            last: None,
        }
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Total length of the keys.
    pub fn key_bytes(&self) -> usize {
        self.text.len()
    }

    fn key(&self, entry: usize) -> &str {
        key_at(&self.text, &self.key_ends, entry)
    }

    /// Rebuilds the lookup index if the table came from another process.
    #[inline]
    fn reindex(&mut self) {
        if self.index.len() != self.hashes.len() {
            self.rebuild_index();
        }
    }

    #[cold]
    fn rebuild_index(&mut self) {
        let hashes = &self.hashes;
        self.index.clear();
        for (entry, &hash) in hashes.iter().enumerate() {
            self.index
                .insert_unique(hash, entry, |&other| hashes[other]);
        }
    }

    fn find(&self, hash: u64, key: &str) -> Option<usize> {
        self.index
            .find(hash, |&entry| same_key(self.key(entry), key))
            .copied()
    }

    /// Adds an entry for a key not in the table; its accumulators come from `accs`.
    fn push(&mut self, hash: u64, key: &str, accs: impl IntoIterator<Item = Acc>) -> usize {
        let entry = self.append(hash, key, accs);
        let hashes = &self.hashes;
        self.index
            .insert_unique(hash, entry, |&other| hashes[other]);
        entry
    }

    /// Stores a new entry's key, hash and accumulators, without indexing it.
    fn append(&mut self, hash: u64, key: &str, accs: impl IntoIterator<Item = Acc>) -> usize {
        let entry = self.hashes.len();
        self.text.push_str(key);
        self.key_ends.push(self.text.len());
        self.hashes.push(hash);
        self.accs.extend(accs);
        debug_assert_eq!(self.accs.len(), (entry + 1) * self.width);
        entry
    }

    /// The accumulators of `key` (whose `key_hash` is `hash`), created by `new_accs` if absent.
    pub fn accs_mut<I: IntoIterator<Item = Acc>>(
        &mut self,
        hash: u64,
        key: &str,
        new_accs: impl FnOnce() -> I,
    ) -> &mut [Acc] {
        let entry = match self.last {
            Some((last_hash, entry)) if last_hash == hash && same_key(self.key(entry), key) => {
                entry
            }
            _ => {
                let entry = self.find_or_append(hash, key, new_accs);
                self.last = Some((hash, entry));
                entry
            }
        };
        &mut self.accs[entry * self.width..(entry + 1) * self.width]
    }

    /// The entry of `key`, added with `new_accs()` if absent: one index probe either way (most
    /// keys of a high-cardinality job are new).
    fn find_or_append<I: IntoIterator<Item = Acc>>(
        &mut self,
        hash: u64,
        key: &str,
        new_accs: impl FnOnce() -> I,
    ) -> usize {
        self.reindex();
        let (text, key_ends, hashes) = (&self.text, &self.key_ends, &self.hashes);
        let slot = self.index.entry(
            hash,
            |&entry| same_key(key_at(text, key_ends, entry), key),
            |&entry| hashes[entry],
        );
        match slot {
            Entry::Occupied(found) => *found.get(),
            Entry::Vacant(slot) => {
                slot.insert(self.hashes.len());
                self.append(hash, key, new_accs())
            }
        }
    }

    /// Merges every entry of `other` into this table (its accumulators are moved, not copied).
    pub fn merge(&mut self, other: GroupTable) {
        self.reindex();
        let width = other.width;
        let mut accs = other.accs.into_iter();
        for (entry, &hash) in other.hashes.iter().enumerate() {
            let key = key_at(&other.text, &other.key_ends, entry);
            let incoming = accs.by_ref().take(width);
            match self.find(hash, key) {
                Some(found) => {
                    let mine = &mut self.accs[found * width..(found + 1) * width];
                    mine.iter_mut().zip(incoming).for_each(|(a, b)| a.merge(&b));
                }
                None => {
                    self.push(hash, key, incoming);
                }
            }
        }
    }

    /// Merges a copy of every entry of `other` into this table (sliding windows share panes).
    pub fn merge_from(&mut self, other: &GroupTable) {
        self.merge(other.clone());
    }

    /// `(key, accumulators)` of every entry, in arrival order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &[Acc])> + '_ {
        (0..self.len()).map(move |entry| {
            (
                self.key(entry),
                &self.accs[entry * self.width..(entry + 1) * self.width],
            )
        })
    }
}

/// Entry `entry`'s key in a key arena whose entries end at `key_ends`.
fn key_at<'t>(text: &'t str, key_ends: &[usize], entry: usize) -> &'t str {
    let start = entry
        .checked_sub(1)
        .map_or(0, |previous| key_ends[previous]);
    &text[start..key_ends[entry]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(table: &mut GroupTable, key: &str, n: u64) {
        let accs = table.accs_mut(key_hash(key), key, || vec![Acc::Count(0)]);
        for _ in 0..n {
            accs[0].update(None, crate::aggregate::Input::Missing);
        }
    }

    fn counts(table: &GroupTable) -> Vec<(String, u64)> {
        table
            .entries()
            .map(|(key, accs)| match accs {
                [Acc::Count(n)] => (key.to_string(), *n),
                other => panic!("unexpected accumulators {other:?}"),
            })
            .collect()
    }

    #[test]
    fn keys_accumulate_in_arrival_order() {
        let mut table = GroupTable::new(1);
        add(&mut table, "b", 1);
        add(&mut table, "a", 2);
        add(&mut table, "b", 3);
        add(&mut table, "", 1);
        assert_eq!(
            counts(&table),
            vec![("b".into(), 4), ("a".into(), 2), ("".into(), 1)]
        );
    }

    #[test]
    fn merge_adds_shared_keys_and_appends_new_ones() {
        let (mut left, mut right) = (GroupTable::new(1), GroupTable::new(1));
        add(&mut left, "x", 1);
        add(&mut left, "y", 1);
        add(&mut right, "y", 5);
        add(&mut right, "z", 7);
        left.merge_from(&right);
        left.merge(right);
        assert_eq!(
            counts(&left),
            vec![("x".into(), 1), ("y".into(), 11), ("z".into(), 14)]
        );
    }

    #[test]
    fn a_table_from_another_process_is_reindexed() {
        let mut table = GroupTable::new(1);
        for i in 0..100 {
            add(&mut table, &format!("key{i}"), 1);
        }
        let text = serde_json::to_string(&table).unwrap();
        let mut copy: GroupTable = serde_json::from_str(&text).unwrap();
        for i in 0..100 {
            add(&mut copy, &format!("key{i}"), 1);
        }
        assert_eq!(copy.len(), 100);
        assert!(counts(&copy).iter().all(|(_, n)| *n == 2));
    }
}
