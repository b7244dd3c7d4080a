//! Rendezvous (highest-random-weight) hashing: every key ranks every node by a hash of the pair,
//! and goes to the highest. Adding a node moves only the keys it now wins; removing one moves
//! only its own keys, each to its second choice. Pure and stable across processes and restarts
//! (SHA-256, not the std hasher), so every web process routes a conversation alike.

use sha2::{Digest, Sha256};

/// The weight of `key` on `node`.
pub fn score(node: &str, key: &str) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(node.as_bytes());
    // 0xff never occurs in UTF-8: ("ab", "c") and ("a", "bc") differ.
    hasher.update([0xff]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// `nodes` in the order `key` prefers them (ties, practically impossible, by name).
pub fn rank<'a, T>(key: &str, nodes: &'a [T], name: impl Fn(&T) -> &str) -> Vec<&'a T> {
    let mut ranked: Vec<(u64, &T)> = nodes.iter().map(|n| (score(name(n), key), n)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| name(a.1).cmp(name(b.1))));
    ranked.into_iter().map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first<'a>(key: &str, nodes: &'a [&'a str]) -> &'a str {
        rank(key, nodes, |n| n)[0]
    }

    fn keys() -> impl Iterator<Item = String> {
        (0..3000).map(|i| format!("conversation-{i}"))
    }

    #[test]
    fn the_same_key_goes_to_the_same_node_whatever_the_order_given() {
        let a = ["w1", "w2", "w3"];
        let b = ["w3", "w1", "w2"];
        for key in keys() {
            assert_eq!(first(&key, &a), first(&key, &b));
        }
        assert_eq!(score("w1", "k"), score("w1", "k"));
        assert_ne!(score("ab", "c"), score("a", "bc"));
    }

    #[test]
    fn keys_spread_evenly() {
        let nodes = ["w1", "w2", "w3"];
        let mut counts = [0usize; 3];
        for key in keys() {
            counts[nodes.iter().position(|n| *n == first(&key, &nodes)).unwrap()] += 1;
        }
        for c in counts {
            assert!((850..=1150).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn adding_a_node_moves_only_the_keys_it_wins() {
        let before = ["w1", "w2", "w3"];
        let after = ["w1", "w2", "w3", "w4"];
        let mut moved = 0;
        for key in keys() {
            let (was, is) = (first(&key, &before), first(&key, &after));
            if was != is {
                assert_eq!(is, "w4", "{key} moved from {was} to {is}");
                moved += 1;
            }
        }
        // About a quarter: the new node's share.
        assert!((600..=900).contains(&moved), "{moved}");
    }

    #[test]
    fn removing_a_node_moves_only_its_keys_to_their_second_choice() {
        let before = ["w1", "w2", "w3"];
        let after = ["w1", "w3"];
        for key in keys() {
            let ranked = rank(&key, &before, |n| n);
            let is = first(&key, &after);
            if *ranked[0] == "w2" {
                assert_eq!(is, *ranked[1]);
            } else {
                assert_eq!(is, *ranked[0]);
            }
        }
    }
}
