//! A timer around blocking collectives, so that a rank whose peers died or stalled stops
//! instead of waiting forever.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A background thread that calls a handler when one operation has been armed for longer
/// than the timeout. Arm it with [`Watchdog::guard`] around each blocking call.
pub struct Watchdog {
    state: Arc<(Mutex<State>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    timeout: Duration,
}

#[derive(Default)]
struct State {
    /// The operation in progress and when it started.
    armed: Option<(&'static str, Instant)>,
    stop: bool,
}

/// Disarms the watchdog when dropped.
pub struct WatchdogGuard<'w> {
    watchdog: &'w Watchdog,
}

impl Watchdog {
    /// Starts the watchdog thread. `on_timeout(operation, timeout)` runs on that thread when an
    /// operation stays armed for `timeout`; it is expected to end the process, and the
    /// watchdog disarms after it returns.
    pub fn start(
        timeout: Duration,
        on_timeout: impl Fn(&'static str, Duration) + Send + 'static,
    ) -> Watchdog {
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let shared = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("gradus-watchdog".into())
            .spawn(move || watch(&shared, timeout, on_timeout))
            .expect("failed to start the watchdog thread");
        Watchdog {
            state,
            thread: Some(thread),
            timeout,
        }
    }

    /// The time an operation may stay armed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Arms the watchdog for `operation` until the guard drops.
    ///
    /// Arming does not wake the watchdog thread, which looks at the clock every
    /// [`poll_interval`] instead: a training step arms it several times, and a wake-up each
    /// time would take a core from the step on a machine with no spare one.
    pub fn guard(&self, operation: &'static str) -> WatchdogGuard<'_> {
        let (lock, _) = &*self.state;
        lock_state(lock).armed = Some((operation, Instant::now()));
        WatchdogGuard { watchdog: self }
    }
}

impl Drop for WatchdogGuard<'_> {
    fn drop(&mut self) {
        let (lock, _) = &*self.watchdog.state;
        lock_state(lock).armed = None;
    }
}

/// How often the watchdog thread looks at the armed operation: an eighth of the timeout,
/// between a millisecond and a second. An operation is caught at most this much after its
/// timeout.
fn poll_interval(timeout: Duration) -> Duration {
    (timeout / 8).clamp(Duration::from_millis(1), Duration::from_secs(1))
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, wake) = &*self.state;
        lock_state(lock).stop = true;
        wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock_state(lock: &Mutex<State>) -> MutexGuard<'_, State> {
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

fn watch(
    state: &(Mutex<State>, Condvar),
    timeout: Duration,
    on_timeout: impl Fn(&'static str, Duration),
) {
    let (lock, wake) = state;
    let poll = poll_interval(timeout);
    let mut guard = lock_state(lock);
    loop {
        if guard.stop {
            return;
        }
        guard = match guard.armed {
            None => {
                wake.wait_timeout(guard, poll)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            Some((operation, since)) => {
                let waited = since.elapsed();
                if waited >= timeout {
                    guard.armed = None;
                    drop(guard);
                    on_timeout(operation, timeout);
                    lock_state(lock)
                } else {
                    let (g, _) = wake
                        .wait_timeout(guard, timeout - waited)
                        .unwrap_or_else(|e| e.into_inner());
                    g
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn fires_on_long_operation() {
        let (send, receive) = mpsc::channel();
        let watchdog = Watchdog::start(Duration::from_millis(50), move |op, t| {
            let _ = send.send((op, t));
        });
        let guard = watchdog.guard("allreduce");
        let (operation, timeout) = receive.recv_timeout(Duration::from_secs(5)).unwrap();
        drop(guard);
        assert_eq!(operation, "allreduce");
        assert_eq!(timeout, Duration::from_millis(50));
    }

    #[test]
    fn quiet_when_operations_finish() {
        let (send, receive) = mpsc::channel::<&'static str>();
        let watchdog = Watchdog::start(Duration::from_millis(200), move |op, _| {
            let _ = send.send(op);
        });
        for _ in 0..20 {
            let _guard = watchdog.guard("broadcast");
            std::thread::sleep(Duration::from_millis(5));
        }
        // Disarmed for longer than the timeout: nothing may fire.
        std::thread::sleep(Duration::from_millis(400));
        assert!(receive.try_recv().is_err());
    }
}
