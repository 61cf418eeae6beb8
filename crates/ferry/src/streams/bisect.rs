//! Committing a batch the store may refuse: split in halves until each refused item is alone,
//! so the good items are committed once, in Stream order, and only the refused ones are lost
//! to the dead-letter Stream.

use super::{BatchHandler, CommitError};

/// Commits `items` through `handler`; returns the position and reason of each item refused, in
/// order. A refused batch is split in halves until each refused item is alone (an item the
/// handler names is taken out at once), so `k` bad items among `n` cost about `k · log2 n`
/// extra commits. Only an error that stops the commit ([`CommitError::Failed`]) is returned.
pub(super) async fn commit_in_halves<H: BatchHandler>(
    handler: &mut H,
    items: &[H::Item],
) -> Result<Vec<(usize, String)>, H::Error> {
    let mut refused = Vec::new();
    // Ranges still to commit, the next one last.
    let mut todo = Vec::new();
    todo.push(0..items.len());
    while let Some(range) = todo.pop() {
        if range.is_empty() {
            continue;
        }
        match handler.commit(&items[range.clone()]).await {
            Ok(()) => {}
            Err(CommitError::RefusedItem { index, reason }) => {
                let at = range.start + index.min(range.len() - 1);
                refused.push((at, reason));
                todo.push(at + 1..range.end);
                todo.push(range.start..at);
            }
            Err(CommitError::Refused(reason)) if range.len() == 1 => {
                refused.push((range.start, reason));
            }
            Err(CommitError::Refused(_)) => {
                let mid = range.start + range.len() / 2;
                todo.push(mid..range.end);
                todo.push(range.start..mid);
            }
            Err(CommitError::Failed(e)) => return Err(e),
        }
    }
    refused.sort_unstable_by_key(|(i, _)| *i);
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::super::StreamEntry;
    use super::*;
    use ferry_core::error::{Classify, ErrorClass};

    /// Refuses any batch holding a negative number; names the first zero it sees.
    #[derive(Default)]
    struct Numbers {
        committed: Vec<i64>,
        commits: usize,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;

    impl Classify for Never {
        fn class(&self) -> ErrorClass {
            ErrorClass::External
        }
    }

    impl BatchHandler for Numbers {
        type Item = i64;
        type Error = Never;

        fn decode(&self, _: &StreamEntry) -> Result<i64, String> {
            unreachable!("only commits are tested here")
        }

        async fn commit(&mut self, items: &[i64]) -> Result<(), CommitError<Never>> {
            self.commits += 1;
            if let Some(index) = items.iter().position(|i| *i == 0) {
                return Err(CommitError::RefusedItem {
                    index,
                    reason: "zero".into(),
                });
            }
            if items.iter().any(|i| *i < 0) {
                return Err(CommitError::Refused("negative".into()));
            }
            self.committed.extend_from_slice(items);
            Ok(())
        }

        fn redis_error(&self, _: redis::RedisError) -> Never {
            Never
        }
    }

    #[tokio::test]
    async fn refused_items_are_isolated_and_the_rest_committed_in_order() {
        let items: Vec<i64> = (1..=64)
            .map(|i| match i {
                5 | 40 => -i,
                20 => 0,
                _ => i,
            })
            .collect();
        let mut handler = Numbers::default();
        let refused = commit_in_halves(&mut handler, &items).await.unwrap();
        assert_eq!(
            refused,
            vec![
                (4, "negative".to_string()),
                (19, "zero".to_string()),
                (39, "negative".to_string())
            ]
        );
        let good: Vec<i64> = items.iter().copied().filter(|i| *i > 0).collect();
        assert_eq!(handler.committed, good, "each good item once, in order");
        assert!(handler.commits < 40, "{} commits", handler.commits);
    }

    #[tokio::test]
    async fn nothing_to_commit_commits_nothing() {
        let mut handler = Numbers::default();
        assert!(
            commit_in_halves(&mut handler, &[])
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(handler.commits, 0);
    }
}
