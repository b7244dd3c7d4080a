//! Idle conversations keep their KV cache in a bounded LRU, by count and by estimated KV bytes.
//! A conversation being generated is checked out, so only idle ones are ever evicted; an evicted
//! conversation is simply run from scratch next time.

/// A cached conversation's size in cache slots (tokens, masked ones included).
pub trait Slots {
    fn slots(&self) -> usize;
}

impl Slots for super::backend::Cache {
    fn slots(&self) -> usize {
        super::backend::Cache::slots(self)
    }
}

pub struct SessionCache<S> {
    /// Least recently used first.
    entries: Vec<(String, S)>,
    max_sessions: usize,
    max_bytes: usize,
    bytes_per_slot: usize,
}

impl<S: Slots> SessionCache<S> {
    /// `bytes_per_slot`: estimated KV bytes of one cache slot (all layers, keys and values).
    pub fn new(max_sessions: usize, max_bytes: usize, bytes_per_slot: usize) -> Self {
        SessionCache { entries: Vec::new(), max_sessions, max_bytes, bytes_per_slot }
    }

    /// Take a conversation's session out for a generation.
    pub fn take(&mut self, key: &str) -> Option<S> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(at).1)
    }

    /// Return a session after a generation (it becomes the most recent), then evict the least
    /// recently used until the cache fits. Returns what was evicted, to be released.
    pub fn put(&mut self, key: String, entry: S) -> Vec<(String, S)> {
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push((key, entry));
        let mut evicted = Vec::new();
        while self.entries.len() > self.max_sessions || (self.bytes() > self.max_bytes && !self.entries.is_empty()) {
            evicted.push(self.entries.remove(0));
        }
        evicted
    }

    /// Evict the least recently used conversation (to free memory for one in flight).
    pub fn pop_oldest(&mut self) -> Option<(String, S)> {
        (!self.entries.is_empty()).then(|| self.entries.remove(0))
    }

    pub fn bytes(&self) -> usize {
        self.entries.iter().map(|(_, e)| e.slots() * self.bytes_per_slot).sum()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::llm::kv::KvLayout;

    impl Slots for KvLayout {
        fn slots(&self) -> usize {
            self.physical_len()
        }
    }

    fn entry(tokens: usize) -> KvLayout {
        let mut layout = KvLayout::new();
        layout.append(&vec![1; tokens]);
        layout
    }

    fn keys(evicted: Vec<(String, KvLayout)>) -> Vec<String> {
        evicted.into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn evicts_least_recently_used_by_count() {
        let mut cache = SessionCache::new(2, usize::MAX, 1);
        assert!(cache.put("a".into(), entry(1)).is_empty());
        assert!(cache.put("b".into(), entry(1)).is_empty());
        let a = cache.take("a").unwrap(); // a is in use, b idle
        cache.put("a".into(), a); // a now most recent
        assert_eq!(keys(cache.put("c".into(), entry(1))), vec!["b".to_string()]);
        assert_eq!(cache.keys().collect::<Vec<_>>(), vec!["a", "c"]);
        assert!(cache.take("b").is_none());
    }

    #[test]
    fn evicts_by_estimated_bytes_including_masked_slots() {
        let mut cache = SessionCache::new(10, 100, 10); // 10 slots in all
        cache.put("a".into(), entry(4));
        cache.put("b".into(), entry(4));
        assert_eq!(cache.bytes(), 80);
        let mut big = entry(3);
        big.plan(&[5]); // masks 3 slots; 3 physical slots remain counted
        assert_eq!(big.physical_len(), 3);
        assert_eq!(keys(cache.put("c".into(), big)), vec!["a".to_string()]);
        assert_eq!(cache.bytes(), 70);
        assert_eq!(cache.pop_oldest().map(|(k, _)| k).as_deref(), Some("b"));
        // A single session bigger than the budget is not kept at all.
        assert_eq!(keys(cache.put("d".into(), entry(20))), vec!["c", "d"]);
        assert!(cache.is_empty());
    }
}
