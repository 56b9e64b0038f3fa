//! What a full sync's run has seen, as far as its final commit needs it:
//! how many distinct ids, when that is known for certain.
//!
//! The store keeps the ids themselves (one row per batch, see migration
//! V12); a completing full sync deletes the stored entities its run did not
//! see. Finding those compares every stored entity of the connection with
//! every id seen, the costliest statement of a large full sync. When the
//! run saw N distinct ids, reported no deletions, and N entities are
//! stored, it saw them all and there is nothing to find; the statement
//! skips the comparison ([`syncway_store::jobs::Batch::seen_total`]).
//!
//! Distinct is checked on 64-bit hashes of the ids: a repeated hash (a
//! repeated id, or very rarely two ids with one hash) only makes the count
//! unknown, and the comparison runs. The hashes cost 8 bytes per entity, up
//! to [`MAX_TRACKED`] entities; a larger run forgets them.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

/// Beyond this many ids (16 MB of hashes) a run stops counting: a worker
/// runs many jobs at once, and a larger sync pays for the comparison (about
/// 0.7 s per million entities) rather than for the memory.
const MAX_TRACKED: usize = 2_000_000;

#[derive(Debug, Default)]
pub(crate) struct SeenIds {
    hashes: Vec<u64>,
    /// Set once the count can no longer be known.
    unknown: bool,
}

impl SeenIds {
    /// Adds a batch the run commits: the ids it saw (unique within it) and
    /// whether it reported deletions.
    pub fn add<'a>(&mut self, ids: impl ExactSizeIterator<Item = &'a str>, deletions: bool) {
        if self.unknown {
            return;
        }
        if deletions || self.hashes.len() + ids.len() > MAX_TRACKED {
            self.forget();
            return;
        }
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        self.hashes.extend(ids.map(|id| hasher.hash_one(id)));
    }

    /// The distinct ids seen, if known for certain. Called once, at the
    /// final commit.
    pub fn total(&mut self) -> Option<i64> {
        if self.unknown {
            return None;
        }
        self.hashes.sort_unstable();
        let distinct = self.hashes.windows(2).all(|pair| pair[0] != pair[1]);
        let total = i64::try_from(self.hashes.len()).ok();
        self.forget();
        total.filter(|_| distinct)
    }

    fn forget(&mut self) {
        self.unknown = true;
        self.hashes = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::SeenIds;

    #[test]
    fn distinct_ids_are_counted_across_batches() {
        let mut seen = SeenIds::default();
        seen.add(["a", "b"].into_iter(), false);
        seen.add(["c"].into_iter(), false);
        assert_eq!(seen.total(), Some(3));
    }

    #[test]
    fn an_id_seen_twice_or_a_deletion_makes_the_count_unknown() {
        let mut seen = SeenIds::default();
        seen.add(["a", "b"].into_iter(), false);
        seen.add(["b"].into_iter(), false);
        assert_eq!(seen.total(), None);

        let mut seen = SeenIds::default();
        seen.add(["a"].into_iter(), false);
        seen.add(std::iter::empty(), true);
        seen.add(["b"].into_iter(), false);
        assert_eq!(seen.total(), None);
    }
}
