//! The render threads of a process: decoding, resizing and encoding — the CPU-bound part of a
//! job — run on a fixed set of threads, one per core given to the workers, fed in order.
//!
//! Fixed threads rather than tokio's blocking pool: glibc gives each thread that allocates its
//! own heap (arena) and keeps what is freed there for reuse. A render's buffers, tens of
//! megabytes, landing on whichever of many pool threads ran it left that much behind in each
//! arena (`serve --workers 2` peaked at 620–720 MB on a backlog of photos, against 143 MB for
//! one `imgpipe process`); on the same few threads every render reuses its thread's memory.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use protocol::JobError;

type Task = Box<dyn FnOnce() + Send>;

/// The most render threads a process starts, whatever it is asked (tokio's own bound on its
/// blocking pool, which ran the renders before).
const MAX_RENDERS: usize = 512;

/// The renders that may run at once, each on one of the process's render threads. Clones
/// share the threads; they stop once every clone is dropped.
#[derive(Clone, Debug)]
pub struct RenderSlots {
    tasks: mpsc::Sender<Task>,
}

impl RenderSlots {
    /// `renders` threads (at least one, at most 512). A thread the system refuses is logged and left out;
    /// with none at all, every render fails with a retryable error.
    pub fn new(renders: usize) -> Self {
        let (tasks, queue) = mpsc::channel::<Task>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..renders.clamp(1, MAX_RENDERS) {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new().name(format!("render-{i}")).spawn(move || {
                loop {
                    // The lock is held only while waiting for the next task, not while it runs.
                    let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    match next {
                        Ok(task) => task(),
                        Err(mpsc::RecvError) => break,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a render thread");
            }
        }
        Self { tasks }
    }

    /// Runs `render` on a render thread once one is free (renders start in the order asked)
    /// and returns what it returned. A render whose caller has gone by the time a thread is
    /// free is skipped.
    ///
    /// # Errors
    /// A permanent `CorruptImage` when the render panicked (a decoder bug the input
    /// triggered; the thread lives on); a retryable `Internal` when no render thread runs.
    pub async fn run<T: Send + 'static>(&self, render: impl FnOnce() -> T + Send + 'static) -> Result<T, JobError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let task: Task = Box::new(move || {
            if done.is_closed() {
                return;
            }
            let _ = done.send(catch_unwind(AssertUnwindSafe(render)));
        });
        let stopped = || JobError::retryable("Internal", "no render thread is running");
        self.tasks.send(task).map_err(|_| stopped())?;
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                Err(JobError::permanent("CorruptImage", format!("the decoder crashed: {what}")))
            }
            Err(_) => Err(stopped()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn renders_run_on_the_fixed_threads_at_most_n_at_once() {
        let slots = RenderSlots::new(2);
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut all = Vec::new();
        for _ in 0..8 {
            let (slots, running, most) = (slots.clone(), Arc::clone(&running), Arc::clone(&most));
            all.push(tokio::spawn(async move {
                slots
                    .run(move || {
                        use std::sync::atomic::Ordering::SeqCst;
                        let now = running.fetch_add(1, SeqCst) + 1;
                        most.fetch_max(now, SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        running.fetch_sub(1, SeqCst);
                        std::thread::current().name().unwrap_or_default().to_owned()
                    })
                    .await
            }));
        }
        let mut names = std::collections::BTreeSet::new();
        for task in all {
            names.insert(task.await.expect("task").expect("render"));
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(names, ["render-0", "render-1"].map(String::from).into());
    }

    #[tokio::test]
    async fn a_panicking_render_is_a_corrupt_image_and_the_thread_lives_on() {
        let slots = RenderSlots::new(1);
        let err = slots.run(|| -> u8 { panic!("bad huffman table") }).await.expect_err("panicked");
        assert_eq!(err.code, "CorruptImage");
        assert!(err.message.contains("bad huffman table"), "{}", err.message);
        assert!(!err.is_retryable());
        assert_eq!(slots.run(|| 7).await.expect("the same thread renders again"), 7);
    }
}
