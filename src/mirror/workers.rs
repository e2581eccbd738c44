//! Several transfers at once: object stores answer each request after a
//! round trip, so a handful in flight keep the line busy.

use super::MirrorError;
use crate::locks::lock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Runs `work` on every item with `jobs` threads, returning the results in
/// the items' order. After the first error no new item starts, and that
/// error is returned once the running ones end.
pub fn each<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> Result<R, MirrorError> + Sync,
) -> Result<Vec<R>, MirrorError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<MirrorError>> = Mutex::new(None);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, items.len().max(1)) {
            scope.spawn(|| loop {
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { return };
                match work(item) {
                    Ok(r) => lock(&results)[i] = Some(r),
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        lock(&first_error).get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every item ran when none failed"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order() {
        let items: Vec<u32> = (0..100).collect();
        let out = each(&items, 4, |&i| Ok(i * 2)).unwrap();
        assert_eq!(out, (0..100).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_error_stops_new_work() {
        let started = AtomicUsize::new(0);
        let items: Vec<u32> = (0..1000).collect();
        let err = each(&items, 2, |&i| {
            started.fetch_add(1, Ordering::Relaxed);
            if i == 3 {
                Err(MirrorError::Seal("boom".into()))
            } else {
                Ok(())
            }
        });
        assert!(matches!(err, Err(MirrorError::Seal(_))));
        assert!(started.load(Ordering::Relaxed) < 1000);
    }
}
