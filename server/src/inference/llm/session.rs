//! Idle conversations keep their inference request (and so their KV cache) in a bounded LRU, by
//! count and by estimated KV bytes. A conversation being generated is checked out, so only idle
//! ones are ever evicted; an evicted conversation is simply run from scratch next time.

use super::kv::KvLayout;

pub struct Entry<S> {
    pub session: S,
    pub layout: KvLayout,
}

pub struct SessionCache<S> {
    /// Least recently used first.
    entries: Vec<(String, Entry<S>)>,
    max_sessions: usize,
    max_bytes: usize,
    bytes_per_slot: usize,
}

impl<S> SessionCache<S> {
    /// `bytes_per_slot`: estimated KV bytes of one cache slot (all layers, keys and values).
    pub fn new(max_sessions: usize, max_bytes: usize, bytes_per_slot: usize) -> Self {
        SessionCache { entries: Vec::new(), max_sessions, max_bytes, bytes_per_slot }
    }

    /// Take a conversation's session out for a generation.
    pub fn take(&mut self, key: &str) -> Option<Entry<S>> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(at).1)
    }

    /// Return a session after a generation (it becomes the most recent), then evict the least
    /// recently used until the cache fits. Returns the keys evicted.
    pub fn put(&mut self, key: String, entry: Entry<S>) -> Vec<String> {
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push((key, entry));
        let mut evicted = Vec::new();
        while self.entries.len() > self.max_sessions || (self.bytes() > self.max_bytes && !self.entries.is_empty()) {
            evicted.push(self.entries.remove(0).0);
        }
        evicted
    }

    pub fn bytes(&self) -> usize {
        self.entries.iter().map(|(_, e)| e.layout.physical_len() * self.bytes_per_slot).sum()
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

    fn entry(tokens: usize) -> Entry<()> {
        let mut layout = KvLayout::new();
        layout.append(&vec![1; tokens]);
        Entry { session: (), layout }
    }

    #[test]
    fn evicts_least_recently_used_by_count() {
        let mut cache = SessionCache::new(2, usize::MAX, 1);
        assert!(cache.put("a".into(), entry(1)).is_empty());
        assert!(cache.put("b".into(), entry(1)).is_empty());
        let a = cache.take("a").unwrap(); // a is in use, b idle
        cache.put("a".into(), a); // a now most recent
        assert_eq!(cache.put("c".into(), entry(1)), vec!["b".to_string()]);
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
        big.layout.plan(&[5]); // masks 3 slots; 3 physical slots remain counted
        assert_eq!(big.layout.physical_len(), 3);
        assert_eq!(cache.put("c".into(), big), vec!["a".to_string()]);
        assert_eq!(cache.bytes(), 70);
        // A single session bigger than the budget is not kept at all.
        assert_eq!(cache.put("d".into(), entry(20)), vec!["b", "c", "d"]);
        assert!(cache.is_empty());
    }
}
