//! Where a long conversation's window starts. A conversation's KV cache is reused only up to the
//! first token that differs from the last turn's prompt, so a window that slides by one turn at
//! every turn (the oldest turn out, the newest in) changes the prompt at its very start and every
//! turn runs its whole context again. Here the window slides in blocks: when it must move it
//! drops a block of old turns at once, and then stays put for the turns that follow, which reuse
//! the cache. One policy for both windows: the turns the REST API sends (`CONTEXT_TURNS`) and the
//! tokens the model's context holds (`context::fit`).

use super::template::ChatMessage;
use crate::inference::{fnv1a, FNV_OFFSET};

/// When the token window must move, it moves back to this share of the budget, leaving the rest
/// for the turns that follow (a low-water mark).
pub const LOW_WATER: (usize, usize) = (1, 2);

/// The first of a conversation's `turns` turns kept when at most `max` are sent. Until the
/// conversation outgrows `max` all are kept; then the start moves in blocks of half the window, so
/// it stays at the same turn for `max / 2` turns in a row and between `max / 2 + 1` and `max`
/// turns are kept.
pub fn first_kept_turn(turns: usize, max: usize) -> usize {
    if max == 0 {
        return turns;
    }
    if turns <= max {
        return 0;
    }
    let block = (max / 2).max(1);
    (turns - max).div_ceil(block) * block
}

/// The budget a cut moves the token window down to.
pub fn low_water(budget: usize) -> usize {
    budget * LOW_WATER.0 / LOW_WATER.1
}

/// A message's identity across requests (its role and text), to find where the last window
/// started in the next request's messages.
pub fn message_key(message: &ChatMessage) -> u64 {
    let bytes = message.role.bytes().chain([0xff]).chain(message.content.bytes());
    fnv1a(FNV_OFFSET, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_turn_window_moves_in_blocks_of_half_its_size() {
        let starts: Vec<usize> = (0..=20).map(|turns| first_kept_turn(turns, 8)).collect();
        assert_eq!(starts, [0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12]);
        for turns in 9..200 {
            let kept = turns - first_kept_turn(turns, 8);
            assert!((5..=8).contains(&kept), "{turns} turns keep {kept}");
        }
        // A 30-turn conversation moves its start 6 times (before turns 10, 14, 18, 22, 26 and 30).
        let moves = (1..30).filter(|&t| first_kept_turn(t, 8) != first_kept_turn(t - 1, 8)).count();
        assert_eq!(moves, 6);
    }

    #[test]
    fn small_windows() {
        assert_eq!((0..6).map(|t| first_kept_turn(t, 1)).collect::<Vec<_>>(), [0, 0, 1, 2, 3, 4]);
        assert_eq!((0..6).map(|t| first_kept_turn(t, 2)).collect::<Vec<_>>(), [0, 0, 0, 1, 2, 3]);
        assert_eq!((0..8).map(|t| first_kept_turn(t, 3)).collect::<Vec<_>>(), [0, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(first_kept_turn(5, 0), 5, "CONTEXT_TURNS=0 sends no history");
    }

    #[test]
    fn keys_tell_messages_apart() {
        let a = ChatMessage::new("user", "hello");
        assert_eq!(message_key(&a), message_key(&a.clone()));
        assert_ne!(message_key(&a), message_key(&ChatMessage::new("assistant", "hello")));
        assert_ne!(message_key(&ChatMessage::new("user", "ab")), message_key(&ChatMessage::new("usera", "b")));
        assert_eq!(low_water(14_336), 7_168);
    }
}
