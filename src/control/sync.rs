//! The crate's one policy for a poisoned lock: take the data anyway.
//!
//! A panic inside a job is caught where the job runs and reported as that job's failure
//! ([`panic_message`](super::panic_message)); it must not take every other job and thread
//! down with it. Every lock in the crate guards data that is whole between statements
//! (counters, caches, slots, a token map), so the guard a panicking holder left is as good
//! as any other.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// [`Mutex::lock`] under the crate's policy: a poisoned lock is taken as it stands.
pub trait Locked<T: ?Sized> {
    /// The guard, whether or not an earlier holder panicked.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_poisoned_by_a_panic_still_gives_its_data() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let mut g = held.lock().unwrap();
            *g = 2;
            panic!("holder panics");
        })
        .join();
        assert!(m.is_poisoned());
        assert_eq!(*m.locked(), 2);
    }
}
