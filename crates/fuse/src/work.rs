//! The worker threads that run requests, so that one slow request (a store round trip, a lock
//! handoff) never stalls the others and concurrent writes reach the engine together (its
//! group commit). Replies are sent from the workers.
//!
//! Shutdown: [`Workers::stop`] refuses new jobs from then on and waits until every job taken
//! before has finished; the flag and the count of running jobs share one mutex, so no job can
//! slip in between the check and the wait.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct Gate {
    stopping: bool,
    running: usize,
}

pub(crate) struct Workers {
    tx: Mutex<Option<Sender<Job>>>,
    gate: Arc<(Mutex<Gate>, Condvar)>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Workers {
    pub(crate) fn new(n: usize) -> std::io::Result<Workers> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let gate: Arc<(Mutex<Gate>, Condvar)> = Arc::default();
        let mut threads = Vec::new();
        for i in 0..n.max(1) {
            let rx: Arc<Mutex<Receiver<Job>>> = rx.clone();
            let gate = gate.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("shale-fuse-{i}"))
                    .spawn(move || loop {
                        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                            Ok(j) => j,
                            Err(_) => return,
                        };
                        // A panicking request must not take its worker (and the count of
                        // running jobs, which shutdown waits on) with it; its reply, dropped
                        // unsent, answers EIO.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                            tracing::error!("a FUSE request panicked");
                        }
                        let mut g = gate.0.lock().unwrap_or_else(|p| p.into_inner());
                        g.running -= 1;
                        if g.running == 0 {
                            gate.1.notify_all();
                        }
                    })?,
            );
        }
        Ok(Workers {
            tx: Mutex::new(Some(tx)),
            gate,
            threads: Mutex::new(threads),
        })
    }

    /// Queue `job`; false (and `job` dropped unrun) once stopping.
    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) -> Result<(), ()> {
        let mut g = self.gate.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.stopping {
            return Err(());
        }
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match tx.as_ref().map(|t| t.send(Box::new(job))) {
            Some(Ok(())) => {
                g.running += 1;
                Ok(())
            }
            _ => Err(()),
        }
    }

    /// Count a request that runs outside the workers (submitted to the engine, answered from
    /// its completion) as running until the returned guard is dropped; None once stopping.
    pub(crate) fn enter(&self) -> Option<Running> {
        let mut g = self.gate.0.lock().unwrap_or_else(|p| p.into_inner());
        if g.stopping {
            return None;
        }
        g.running += 1;
        Some(Running(self.gate.clone()))
    }

    /// Refuse new jobs and wait for the running ones; then end the threads.
    pub(crate) fn stop(&self) {
        let mut g = self.gate.0.lock().unwrap_or_else(|p| p.into_inner());
        g.stopping = true;
        while g.running > 0 {
            g = self.gate.1.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        drop(g);
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = t.join();
        }
    }
}

/// A request counted as running ([`Workers::enter`]).
pub(crate) struct Running(Arc<(Mutex<Gate>, Condvar)>);

impl Drop for Running {
    fn drop(&mut self) {
        let mut g = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        g.running -= 1;
        if g.running == 0 {
            self.0 .1.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_panicking_job_keeps_its_worker_and_the_count() {
        let w = Workers::new(1).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        w.run(|| panic!("boom")).unwrap();
        let d = done.clone();
        w.run(move || {
            d.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        w.stop();
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn stop_waits_for_queued_jobs_and_refuses_new_ones() {
        let w = Workers::new(3).unwrap();
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..50 {
            let d = done.clone();
            w.run(move || {
                std::thread::yield_now();
                d.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
        }
        let guard = w.enter().unwrap();
        let stopper = std::thread::spawn({
            let w = Arc::new(w);
            let w2 = w.clone();
            move || {
                w2.stop();
                w
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !stopper.is_finished(),
            "stop must wait for an entered request"
        );
        drop(guard);
        let w = stopper.join().unwrap();
        assert!(w.enter().is_none());
        assert_eq!(done.load(Ordering::SeqCst), 50);
        let d = done.clone();
        assert!(w
            .run(move || {
                d.fetch_add(1, Ordering::SeqCst);
            })
            .is_err());
        assert_eq!(done.load(Ordering::SeqCst), 50);
    }
}
