//! Turns waiting for the chat engine, served round-robin by end user: each user's turns wait in
//! their own line, and the engine takes the first of each line in turn, so one user sending many
//! requests delays the others by at most one of theirs per round. Pure; `load.rs` wraps it with
//! slots, waiters and estimates.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct FairQueue<T> {
    /// Each user's line; the front line is served next, then moves to the back.
    lines: VecDeque<Line<T>>,
    len: usize,
}

#[derive(Debug)]
struct Line<T> {
    user: String,
    waiting: VecDeque<(u64, T)>,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        FairQueue { lines: VecDeque::new(), len: 0 }
    }
}

impl<T> FairQueue<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Users with turns waiting.
    pub fn users(&self) -> usize {
        self.lines.len()
    }

    /// Turns `user` has waiting.
    pub fn waiting_for(&self, user: &str) -> usize {
        self.lines.iter().find(|l| l.user == user).map_or(0, |l| l.waiting.len())
    }

    /// Put `item` (known by `ticket`) at the end of `user`'s line; a new user's line joins last.
    pub fn push(&mut self, user: &str, ticket: u64, item: T) {
        match self.lines.iter_mut().find(|l| l.user == user) {
            Some(line) => line.waiting.push_back((ticket, item)),
            None => self.lines.push_back(Line { user: user.to_string(), waiting: VecDeque::from([(ticket, item)]) }),
        }
        self.len += 1;
    }

    /// The next turn to serve: the first of the front line, whose line then goes to the back.
    pub fn pop(&mut self) -> Option<(u64, T)> {
        let mut line = self.lines.pop_front()?;
        let next = line.waiting.pop_front();
        if !line.waiting.is_empty() {
            self.lines.push_back(line);
        }
        self.len -= usize::from(next.is_some());
        next
    }

    /// Take a turn out (its caller gave up).
    pub fn remove(&mut self, ticket: u64) -> Option<T> {
        let at = self.lines.iter().position(|l| l.waiting.iter().any(|(t, _)| *t == ticket))?;
        let line = &mut self.lines[at];
        let index = line.waiting.iter().position(|(t, _)| *t == ticket)?;
        let (_, item) = line.waiting.remove(index)?;
        if line.waiting.is_empty() {
            self.lines.remove(at);
        }
        self.len -= 1;
        Some(item)
    }

    /// How many turns are served before `ticket` if nothing else changes (0: it is next).
    pub fn position(&self, ticket: u64) -> Option<usize> {
        let (at, index) = self
            .lines
            .iter()
            .enumerate()
            .find_map(|(at, l)| l.waiting.iter().position(|(t, _)| *t == ticket).map(|i| (at, i)))?;
        Some(self.served_before(at, index))
    }

    /// Where a new turn of `user` would be served (as [`position`](Self::position)).
    pub fn position_of_next(&self, user: &str) -> usize {
        match self.lines.iter().position(|l| l.user == user) {
            Some(at) => self.served_before(at, self.lines[at].waiting.len()),
            None => self.len,
        }
    }

    /// Turns served before the `index`-th of line `at`: it goes in round `index` of the
    /// rotation, after the lines ahead of it that still have a turn in that round.
    fn served_before(&self, at: usize, index: usize) -> usize {
        let ahead = |k: usize, len: usize| usize::from(k < at && len > index);
        self.lines.iter().enumerate().map(|(k, l)| l.waiting.len().min(index) + ahead(k, l.waiting.len())).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Serve everything and say whose turns came out, in order.
    fn drain(queue: &mut FairQueue<&'static str>) -> Vec<&'static str> {
        std::iter::from_fn(|| queue.pop().map(|(_, who)| who)).collect()
    }

    #[test]
    fn users_take_turns_whatever_order_they_came_in() {
        let mut queue = FairQueue::default();
        for ticket in 0..4 {
            queue.push("greedy", ticket, "g");
        }
        queue.push("a", 10, "a");
        queue.push("b", 11, "b");
        queue.push("a", 12, "a");
        assert_eq!((queue.len(), queue.users(), queue.waiting_for("greedy")), (7, 3, 4));
        assert_eq!(drain(&mut queue), ["g", "a", "b", "g", "a", "g", "g"]);
        assert!(queue.is_empty() && queue.users() == 0);
    }

    #[test]
    fn positions_follow_the_rotation() {
        let mut queue = FairQueue::default();
        for ticket in 0..3 {
            queue.push("greedy", ticket, ());
        }
        queue.push("a", 10, ());
        queue.push("b", 11, ());
        // Served: g0 a10 b11 g1 g2.
        let positions: Vec<_> = [0, 10, 11, 1, 2].iter().map(|&t| queue.position(t).unwrap()).collect();
        assert_eq!(positions, [0, 1, 2, 3, 4]);
        assert_eq!(queue.position(99), None);
        // A newcomer goes after one turn of each line ahead, not after the greedy user's three.
        assert_eq!(queue.position_of_next("c"), 5);
        assert_eq!(queue.position_of_next("a"), 4, "a's second turn: after g1, before g2");
        queue.push("c", 20, ());
        assert_eq!(queue.position(20), Some(3));
        assert_eq!(queue.position(1), Some(4));
    }

    #[test]
    fn a_turn_taken_out_moves_the_others_up() {
        let mut queue = FairQueue::default();
        queue.push("a", 1, "a1");
        queue.push("b", 2, "b1");
        queue.push("a", 3, "a2");
        assert_eq!(queue.remove(2), Some("b1"));
        assert_eq!(queue.remove(2), None);
        assert_eq!((queue.users(), queue.position(3)), (1, Some(1)));
        assert_eq!(queue.remove(1), Some("a1"));
        assert_eq!(queue.position(3), Some(0));
        assert_eq!(drain(&mut queue), ["a2"]);
    }
}
