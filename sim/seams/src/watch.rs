//! A single-value broadcast channel: `tokio::sync::watch` in normal builds, and under `--cfg
//! madsim` a small equivalent that wakes its waiters in a fixed order.
//!
//! Why: tokio's `watch` spreads waiters over 8 `Notify`s chosen by tokio's thread random
//! generator, whose seed mixes in a process-global counter. The order in which a send wakes tasks
//! then depends on how many simulations the process ran before, so a seed would replay exactly
//! only as the process's first simulation, and madsim's determinism check (which reruns a seed in
//! the same process) would fail. The stand-in keeps the subset of the API the crates use, with
//! the same meaning: a version per value, `changed` resolving once per new version, and errors
//! once every sender is gone.

#[cfg(not(madsim))]
pub use tokio::sync::watch::{channel, error, Receiver, Ref, Sender};

#[cfg(madsim)]
pub use self::sim::{channel, error, Receiver, Ref, Sender};

#[cfg(madsim)]
mod sim {
    use std::ops::Deref;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, RwLock, RwLockReadGuard};

    use tokio::sync::Notify;

    pub mod error {
        /// Every sender is gone.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct RecvError(pub(super) ());

        impl std::fmt::Display for RecvError {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("channel closed")
            }
        }

        impl std::error::Error for RecvError {}

        /// Every receiver is gone; the value comes back.
        #[derive(Debug, PartialEq, Eq)]
        pub struct SendError<T>(pub T);

        impl<T> std::fmt::Display for SendError<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("channel closed")
            }
        }
    }

    struct Value<T> {
        value: T,
        version: u64,
        closed: bool,
    }

    struct Shared<T> {
        value: RwLock<Value<T>>,
        /// `Notify` keeps its waiters in one list and `notify_waiters` wakes them in order.
        changed: Notify,
        receivers: AtomicUsize,
        senders: AtomicUsize,
    }

    impl<T> Shared<T> {
        fn read(&self) -> RwLockReadGuard<'_, Value<T>> {
            self.value.read().unwrap_or_else(|poisoned| poisoned.into_inner())
        }
    }

    /// A borrowed value; do not hold it across an `.await`.
    pub struct Ref<'a, T>(RwLockReadGuard<'a, Value<T>>);

    impl<T> Deref for Ref<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0.value
        }
    }

    pub struct Sender<T> {
        shared: Arc<Shared<T>>,
    }

    pub struct Receiver<T> {
        shared: Arc<Shared<T>>,
        seen: u64,
    }

    pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
        let sender = Sender::new(init);
        let receiver = sender.subscribe();
        (sender, receiver)
    }

    impl<T> Sender<T> {
        pub fn new(init: T) -> Self {
            let value = RwLock::new(Value { value: init, version: 0, closed: false });
            let shared = Shared { value, changed: Notify::new(), receivers: AtomicUsize::new(0), senders: AtomicUsize::new(1) };
            Sender { shared: Arc::new(shared) }
        }

        pub fn subscribe(&self) -> Receiver<T> {
            self.shared.receivers.fetch_add(1, Ordering::Relaxed);
            Receiver { shared: self.shared.clone(), seen: self.shared.read().version }
        }

        /// Sends a new version unless `modify` says it left the value unchanged.
        pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
            {
                let mut value = self.shared.value.write().unwrap_or_else(|poisoned| poisoned.into_inner());
                if !modify(&mut value.value) {
                    return false;
                }
                value.version += 1;
            }
            self.shared.changed.notify_waiters();
            true
        }

        pub fn send_modify(&self, modify: impl FnOnce(&mut T)) {
            self.send_if_modified(|value| {
                modify(value);
                true
            });
        }

        pub fn send_replace(&self, value: T) -> T {
            let mut old = None;
            self.send_modify(|current| old = Some(std::mem::replace(current, value)));
            old.expect("send_modify runs its closure")
        }

        /// Fails, returning the value, when no receiver is left (as tokio's does).
        pub fn send(&self, value: T) -> Result<(), error::SendError<T>> {
            if self.shared.receivers.load(Ordering::Relaxed) == 0 {
                return Err(error::SendError(value));
            }
            self.send_replace(value);
            Ok(())
        }

        pub fn borrow(&self) -> Ref<'_, T> {
            Ref(self.shared.read())
        }
    }

    impl<T> Clone for Sender<T> {
        fn clone(&self) -> Self {
            self.shared.senders.fetch_add(1, Ordering::Relaxed);
            Sender { shared: self.shared.clone() }
        }
    }

    impl<T> Drop for Sender<T> {
        fn drop(&mut self) {
            if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.shared.value.write().unwrap_or_else(|poisoned| poisoned.into_inner()).closed = true;
                self.shared.changed.notify_waiters();
            }
        }
    }

    impl<T> Receiver<T> {
        pub fn borrow(&self) -> Ref<'_, T> {
            Ref(self.shared.read())
        }

        /// The current value, marked seen.
        pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
            let value = self.shared.read();
            self.seen = value.version;
            Ref(value)
        }

        /// Resolves when a version this receiver has not seen is current (then marks it seen),
        /// or fails once every sender is gone.
        pub async fn changed(&mut self) -> Result<(), error::RecvError> {
            loop {
                let notified = self.shared.changed.notified();
                tokio::pin!(notified);
                // Registered before looking, so a send between the look and the wait wakes it.
                notified.as_mut().enable();
                {
                    let value = self.shared.read();
                    if value.version != self.seen {
                        self.seen = value.version;
                        return Ok(());
                    }
                    if value.closed {
                        return Err(error::RecvError(()));
                    }
                }
                notified.await;
            }
        }

        /// Resolves with the value once `condition` holds for it (marking it seen), or fails once
        /// every sender is gone without it holding.
        pub async fn wait_for(&mut self, mut condition: impl FnMut(&T) -> bool) -> Result<Ref<'_, T>, error::RecvError> {
            loop {
                let notified = self.shared.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                {
                    let value = self.shared.read();
                    self.seen = value.version;
                    if condition(&value.value) {
                        break;
                    }
                    if value.closed {
                        return Err(error::RecvError(()));
                    }
                }
                notified.await;
            }
            Ok(Ref(self.shared.read()))
        }
    }

    impl<T> Clone for Receiver<T> {
        fn clone(&self) -> Self {
            self.shared.receivers.fetch_add(1, Ordering::Relaxed);
            Receiver { shared: self.shared.clone(), seen: self.seen }
        }
    }

    impl<T> Drop for Receiver<T> {
        fn drop(&mut self) {
            self.shared.receivers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[madsim::test]
        async fn changed_sees_each_new_version_once_and_fails_when_senders_are_gone() {
            let (tx, mut rx) = channel(0u64);
            tx.send(1).unwrap();
            rx.changed().await.unwrap();
            assert_eq!(*rx.borrow(), 1);
            let waiter = tokio::spawn(async move {
                rx.changed().await.unwrap();
                let seen = *rx.borrow_and_update();
                (seen, rx.changed().await.is_err())
            });
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            assert!(!tx.send_if_modified(|_| false), "an unmodified value is no new version");
            tx.send_modify(|v| *v += 1);
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            drop(tx);
            assert_eq!(waiter.await.unwrap(), (2, true));
        }

        #[madsim::test]
        async fn wait_for_returns_at_once_when_the_condition_holds_and_send_fails_without_receivers() {
            let (tx, mut rx) = channel(false);
            let stopper = tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                tx.send_replace(true);
                tx
            });
            assert!(*rx.wait_for(|stop| *stop).await.unwrap());
            assert!(*rx.wait_for(|stop| *stop).await.unwrap(), "already true: no wait");
            let tx = stopper.await.unwrap();
            drop(rx);
            assert_eq!(tx.send(false), Err(error::SendError(false)));
        }
    }
}
