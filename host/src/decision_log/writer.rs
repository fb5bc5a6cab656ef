//! The group-commit writer: one thread per open log takes every request queued while the
//! previous batch was being written and synced, and writes them as one frame with one
//! `fdatasync`. COMMITs are answered once durable; DONEs wait in a queue for the next batch
//! (or [`DecisionLogOptions::done_delay`](super::DecisionLogOptions::done_delay)).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak, mpsc};
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime};

use std::io::Write;

use tokio::sync::oneshot;

use super::DecisionLogError;
use super::format::{self, KIND_COMMIT, KIND_DONE};
use super::shared::Shared;
use crate::gid::Gid;

/// Most COMMITs (and, separately, DONEs) one batch takes from the queue.
pub(super) const MAX_BATCH: usize = 4096;

pub(super) enum Request {
    Commit(CommitRequest),
    /// DONEs are waiting in [`Shared::dones`]: the first of them, or a full batch.
    DonesWaiting,
    Flush(oneshot::Sender<Result<(), DecisionLogError>>),
}

pub(super) struct CommitRequest {
    pub(super) gid: Gid,
    pub(super) deadline: SystemTime,
    pub(super) reply: oneshot::Sender<Result<(), DecisionLogError>>,
}

/// The writer thread of one open log and the queue to it. Dropping it closes the queue:
/// the thread writes the DONEs still queued and stops.
pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread of a loaded log.
    pub(super) fn start(shared: Arc<Shared>) -> Result<Self, DecisionLogError> {
        let (requests, receiver) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || run_writer(&writer_shared, &receiver))
            .map_err(|e| shared.io("start the writer thread of", e))?;
        Ok(Writer {
            shared,
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    /// Asks for COMMIT of `gid` and waits until it is durable or refused.
    pub(super) async fn commit(
        &self,
        gid: &Gid,
        deadline: SystemTime,
    ) -> Result<(), DecisionLogError> {
        if let Ok(late) = SystemTime::now().duration_since(deadline) {
            return Err(DecisionLogError::DeadlinePassed {
                gid: gid.clone(),
                late,
            });
        }
        self.shared.check_usable()?;
        let (reply, answer) = oneshot::channel();
        self.send(Request::Commit(CommitRequest {
            gid: gid.clone(),
            deadline,
            reply,
        }))?;
        answer.await.map_err(|_| self.stopped())?
    }

    /// Queues DONE for `gid` without waiting for the write.
    pub(super) fn queue_done(&self, gid: &Gid) -> Result<(), DecisionLogError> {
        self.shared.check_usable()?;
        let waiting = {
            let mut dones = self.shared.lock_dones();
            dones.push(gid.clone());
            dones.len()
        };
        if waiting == 1 || waiting == MAX_BATCH {
            self.send(Request::DonesWaiting)?;
        }
        Ok(())
    }

    /// Waits until every DONE queued before this call is written and synced.
    pub(super) async fn flush(&self) -> Result<(), DecisionLogError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Flush(reply))?;
        answer.await.map_err(|_| self.stopped())?
    }

    pub(super) fn send(&self, request: Request) -> Result<(), DecisionLogError> {
        let sender = self.requests.as_ref().ok_or_else(|| self.stopped())?;
        sender.send(request).map_err(|_| self.stopped())
    }

    fn stopped(&self) -> DecisionLogError {
        DecisionLogError::WriterStopped {
            path: self.shared.path.clone(),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue makes the thread write the queued DONEs and stop; joining it
        // releases the file's locks. The join waits for that last write and its fdatasync,
        // so inside a tokio runtime it happens on the blocking pool, not on a worker.
        self.requests = None;
        let Some(thread) = self.thread.take() else {
            return;
        };
        let stopping = StoppingWriter(Arc::new(Mutex::new(Some(thread))));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                stopping.register(&self.shared.path);
                // A runtime shutting down may drop the task unrun: the drop still joins.
                runtime.spawn_blocking(move || drop(stopping));
            }
            Err(_) => drop(stopping),
        }
    }
}

/// A writer thread told to stop, until someone joins it (and holding the lock meanwhile).
type StoppingThread = Mutex<Option<JoinHandle<()>>>;

/// A writer thread that was told to stop; dropping this joins it. Shared (weakly) with
/// [`STOPPING`], so an open of the same log waits for its last DONEs.
struct StoppingWriter(Arc<StoppingThread>);

/// Writers of this process still stopping on the blocking pool, by log path.
static STOPPING: Mutex<Vec<(PathBuf, Weak<StoppingThread>)>> = Mutex::new(Vec::new());

impl StoppingWriter {
    fn register(&self, path: &Path) {
        let mut stopping = STOPPING.lock().unwrap_or_else(PoisonError::into_inner);
        stopping.retain(|(_, thread)| thread.strong_count() > 0);
        stopping.push((absolute(path), Arc::downgrade(&self.0)));
    }
}

impl Drop for StoppingWriter {
    fn drop(&mut self) {
        join(&self.0);
    }
}

fn join(thread: &StoppingThread) {
    // Held through the join: whoever comes second waits for the thread to be gone.
    let mut thread = thread.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(thread) = thread.take() {
        let _ = thread.join();
    }
}

/// Waits for the writers of the log at `path` that this process is still stopping, so that
/// an open after the last handle was dropped sees its DONEs. Blocking.
pub(super) fn wait_for_stopping_writers(path: &Path) {
    let path = absolute(path);
    let threads: Vec<_> = STOPPING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(stopping, _)| *stopping == path)
        .filter_map(|(_, thread)| thread.upgrade())
        .collect();
    for thread in threads {
        join(&thread);
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl Shared {
    pub(super) fn lock_dones(&self) -> MutexGuard<'_, Vec<Gid>> {
        self.dones.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends one frame with the COMMITs still before their deadline and `dones`, syncs it,
    /// and answers the COMMITs. The `Err` is for the batch as a whole (flushes).
    fn write_batch(
        &self,
        commits: Vec<CommitRequest>,
        dones: &[Gid],
    ) -> Result<(), DecisionLogError> {
        let refuse_all = |commits: Vec<CommitRequest>, error: &DecisionLogError| {
            for commit in commits {
                let _ = commit.reply.send(Err(error.clone()));
            }
        };
        if let Err(error) = self.check_usable() {
            refuse_all(commits, &error);
            return Err(error);
        }
        let mut state = self.lock_state();
        let append = match self.lock_appends(&state, true) {
            Ok(append) => append,
            Err(error) => {
                refuse_all(commits, &error);
                return Err(error);
            }
        };
        if let Err(error) = self.catch_up(&mut state, true) {
            drop(append);
            refuse_all(commits, &error);
            return Err(error);
        }

        // The deadline check that counts: under the append lock, right before the write.
        let now = SystemTime::now();
        let (late, commits): (Vec<_>, Vec<_>) = commits
            .into_iter()
            .partition(|commit| now >= commit.deadline);
        for commit in late {
            let late = now.duration_since(commit.deadline).unwrap_or_default();
            let _ = commit.reply.send(Err(DecisionLogError::DeadlinePassed {
                gid: commit.gid,
                late,
            }));
        }
        if commits.is_empty() && dones.is_empty() {
            return Ok(());
        }

        let mut frame = Vec::new();
        format::encode_frame(
            &mut frame,
            commits
                .iter()
                .map(|c| (KIND_COMMIT, &c.gid))
                .chain(dones.iter().map(|g| (KIND_DONE, g))),
        );
        let start = state.end;
        if let Err(e) = (&state.file).write_all(&frame) {
            let e = Arc::new(e);
            // Remove what part of the frame made it, before anyone can append behind it.
            let error = match state.file.set_len(start) {
                Ok(()) => DecisionLogError::WriteFailed {
                    path: self.path.clone(),
                    source: e,
                },
                Err(truncate) => {
                    self.fail(format!("a write failed ({e}) and its partial frame could not be removed ({truncate})"));
                    DecisionLogError::InDoubt {
                        path: self.path.clone(),
                        action: "writing",
                        source: e,
                    }
                }
            };
            drop(append);
            refuse_all(commits, &error);
            return Err(error);
        }
        // Sync before letting go of the append lock: then only the last frame in the file can
        // be not yet durable, and a crash can only tear the tail (see the module docs).
        let sync_started = std::time::Instant::now();
        let synced = state.file.sync_data();
        metrics::histogram!("wasmtx_decision_log_sync_seconds")
            .record(sync_started.elapsed().as_secs_f64());
        metrics::histogram!("wasmtx_decision_log_batch_size")
            .record((commits.len() + dones.len()) as f64);
        if let Err(e) = synced {
            // After a failed fsync the kernel may have dropped the dirty pages: the content on
            // disk is unknown, and a later fsync could report success regardless.
            self.fail(format!("fdatasync failed: {e}"));
            let error = DecisionLogError::InDoubt {
                path: self.path.clone(),
                action: "fdatasync",
                source: Arc::new(e),
            };
            drop(append);
            refuse_all(commits, &error);
            return Err(error);
        }
        drop(append);
        state.end = start + frame.len() as u64;
        state.synced_end = state.end;
        for commit in &commits {
            state.pending.insert(commit.gid.clone());
        }
        for gid in dones {
            state.pending.remove(gid);
        }
        drop(state);

        let stats = &self.stats;
        stats.synced();
        stats.batches_written.fetch_add(1, Ordering::Relaxed);
        stats
            .commits_written
            .fetch_add(commits.len() as u64, Ordering::Relaxed);
        stats
            .dones_written
            .fetch_add(dones.len() as u64, Ordering::Relaxed);
        for commit in commits {
            let _ = commit.reply.send(Ok(()));
        }
        Ok(())
    }
}

/// The writer thread's loop: until the queue closes, takes every request waiting and
/// writes them as one batch.
fn run_writer(shared: &Shared, requests: &mpsc::Receiver<Request>) {
    // When the DONEs waiting now must be written if no COMMIT batch takes them first.
    let mut dones_due: Option<Instant> = None;
    loop {
        let mut commits = Vec::new();
        let mut flushes = Vec::new();
        let mut closed = false;
        let first = match dones_due {
            None => requests
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(due) => requests.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        let delay = shared.options.done_delay;
        let mut take = |request, commits: &mut Vec<_>, flushes: &mut Vec<_>| match request {
            Request::Commit(commit) => commits.push(commit),
            Request::DonesWaiting => {
                dones_due.get_or_insert_with(|| Instant::now() + delay);
            }
            Request::Flush(reply) => flushes.push(reply),
        };
        match first {
            Ok(request) => take(request, &mut commits, &mut flushes),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => closed = true,
        }
        while !closed && commits.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => take(request, &mut commits, &mut flushes),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => closed = true,
            }
        }
        let waiting = shared.lock_dones().len();
        if waiting == 0 {
            // The wake-up was for DONEs an earlier batch already took.
            dones_due = None;
        }
        let dones_overdue =
            waiting >= MAX_BATCH || dones_due.is_some_and(|due| Instant::now() >= due);
        let write = dones_overdue || closed || !flushes.is_empty() || !commits.is_empty();
        if !write {
            continue;
        }
        // A flush or the end takes every DONE queued so far; otherwise one batch's worth.
        let dones: Vec<Gid> = {
            let mut queued = shared.lock_dones();
            let take = if closed || !flushes.is_empty() {
                queued.len()
            } else {
                queued.len().min(MAX_BATCH)
            };
            dones_due = (queued.len() > take).then(Instant::now);
            queued.drain(..take).collect()
        };
        let mut batches = dones.chunks(MAX_BATCH);
        let mut result = shared.write_batch(commits, batches.next().unwrap_or_default());
        for batch in batches {
            result = result.and_then(|()| shared.write_batch(Vec::new(), batch));
        }
        if let Err(error) = &result
            && !dones.is_empty()
        {
            // Harmless: recovery re-checks those transactions and finds nothing to do.
            tracing::warn!(%error, dropped = dones.len(), "DONE records not written");
        }
        for flush in flushes {
            let _ = flush.send(result.clone());
        }
        if closed {
            return;
        }
        shared.maybe_compact();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;
    use crate::decision_log::format::HEADER_LEN;
    use crate::decision_log::test_support::*;
    use crate::decision_log::{DecisionLog, DecisionLogOptions};
    use crate::decision_store::{DecisionError, DecisionSource, DecisionStore};

    #[tokio::test]
    async fn dones_ride_with_the_next_commit_or_go_after_the_delay() {
        let dir = tempfile::tempdir().unwrap();
        let with_delay = |delay| DecisionLogOptions {
            done_delay: delay,
            ..Default::default()
        };
        let log =
            DecisionLog::open_with(&log_path(&dir), with_delay(Duration::from_secs(600))).unwrap();
        let (a, b, c) = (gid(), gid(), gid());
        log.record_commit(&a, later()).await.unwrap();
        log.record_commit(&b, later()).await.unwrap();
        let before = log.stats();
        log.record_done(&a).await.unwrap();
        log.record_commit(&c, later()).await.unwrap();
        let after = log.stats();
        assert_eq!(
            after.syncs - before.syncs,
            1,
            "DONE shared the COMMIT's write and sync"
        );
        assert_eq!(after.dones_written, 1);
        assert_eq!(log.pending_commits().unwrap(), set(&[&b, &c]));

        let log = DecisionLog::open_with(
            &dir.path().join("other.log"),
            with_delay(Duration::from_millis(20)),
        )
        .unwrap();
        log.record_commit(&a, later()).await.unwrap();
        log.record_done(&a).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.is_committed(&a).await.unwrap() {
            assert!(
                Instant::now() < deadline,
                "the DONE was never written on its own"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn more_dones_than_a_batch_are_written_in_several_frames_by_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let log = DecisionLog::open_with(
            &log_path(&dir),
            DecisionLogOptions {
                done_delay: Duration::from_secs(600),
                ..Default::default()
            },
        )
        .unwrap();
        let gids: Vec<Gid> = (0..MAX_BATCH + 5).map(|_| gid()).collect();
        for gid in &gids[..3] {
            log.record_commit(gid, later()).await.unwrap();
        }
        let before = log.stats();
        for gid in &gids {
            log.record_done(gid).await.unwrap();
        }
        log.flush().await.unwrap();
        let after = log.stats();
        assert_eq!(
            after.dones_written - before.dones_written,
            gids.len() as u64
        );
        assert!(after.batches_written - before.batches_written >= 2);
        assert!(log.pending_commits().unwrap().is_empty());
        drop(log);
        assert!(pending_after_reopening(&log_path(&dir)).is_empty());
    }

    #[tokio::test]
    async fn reopen_sees_records_and_drop_writes_queued_dones() {
        let (_dir, path) = temp_log();
        let (a, b, c) = (gid(), gid(), gid());
        {
            let log = DecisionLog::open(&path).unwrap();
            log.record_commit(&a, later()).await.unwrap();
            log.record_commit(&b, later()).await.unwrap();
            log.record_commit(&c, later()).await.unwrap();
            log.record_done(&b).await.unwrap(); // not flushed: dropping the log writes it
        }
        assert_eq!(pending_after_reopening(&path), set(&[&a, &c]));
    }

    #[tokio::test]
    async fn commit_after_the_deadline_is_refused_and_not_recorded() {
        let (_dir, path) = temp_log();
        let log = DecisionLog::open(&path).unwrap();
        let gid = gid();
        let past = SystemTime::now() - Duration::from_millis(1);
        let error = log.writer.commit(&gid, past).await.unwrap_err();
        assert!(
            matches!(error, DecisionLogError::DeadlinePassed { .. }),
            "{error}"
        );
        let answer = log.record_commit(&gid, past).await.unwrap_err();
        assert!(matches!(answer, DecisionError::NotRecorded(_)), "{answer}");

        // The writer checks again right before writing (a batch may wait behind an fsync).
        let (reply, answer) = oneshot::channel();
        let request = CommitRequest {
            gid: gid.clone(),
            deadline: past,
            reply,
        };
        log.writer.send(Request::Commit(request)).unwrap();
        let error = answer.await.unwrap().unwrap_err();
        assert!(
            matches!(error, DecisionLogError::DeadlinePassed { .. }),
            "{error}"
        );

        assert!(!log.is_committed(&gid).await.unwrap());
        assert_eq!(file_len(&path), HEADER_LEN);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_are_all_durable_and_share_fsyncs() {
        let (_dir, path) = temp_log();
        let log = DecisionLog::open(&path).unwrap();
        let fsyncs_at_open = log.stats().syncs;
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    for _ in 0..10 {
                        let gid = gid();
                        log.record_commit(&gid, later()).await.unwrap();
                        mine.push(gid);
                    }
                    mine
                })
            })
            .collect();
        let mut all = BTreeSet::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        assert_eq!(all.len(), 640);
        let stats = log.stats();
        assert_eq!(stats.commits_written, 640);
        let fsyncs = stats.syncs - fsyncs_at_open;
        assert!(fsyncs < 640, "{fsyncs} fsyncs for 640 commits");
        drop(log);
        assert_eq!(pending_after_reopening(&path), all);
    }

    /// Group-commit throughput. Run on the disk you care about (tmpfs makes fsync free):
    /// `DLOG_BENCH_DIR=/some/dir cargo test --release decision_log::writer::tests::group_commit_throughput -- --ignored --nocapture`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn group_commit_throughput() {
        let dir = match std::env::var_os("DLOG_BENCH_DIR") {
            Some(base) => tempfile::tempdir_in(base).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        println!("log in {}", dir.path().display());
        let run_for = Duration::from_secs(2);
        for tasks in [1usize, 16, 64] {
            let log = DecisionLog::open(&dir.path().join(format!("bench-{tasks}.log"))).unwrap();
            let before = log.stats();
            let started = Instant::now();
            let workers: Vec<_> = (0..tasks)
                .map(|_| {
                    let log = log.clone();
                    tokio::spawn(async move {
                        let mut count = 0u64;
                        while started.elapsed() < run_for {
                            log.record_commit(&gid(), later()).await.unwrap();
                            count += 1;
                        }
                        count
                    })
                })
                .collect();
            let mut records = 0;
            for worker in workers {
                records += worker.await.unwrap();
            }
            let seconds = started.elapsed().as_secs_f64();
            let fsyncs = log.stats().syncs - before.syncs;
            println!(
                "tasks {tasks:>2}: {:>8.0} records/s, {:>6.0} fsyncs/s, {:>5.1} records per fsync",
                records as f64 / seconds,
                fsyncs as f64 / seconds,
                records as f64 / fsyncs as f64,
            );
        }
    }
}
