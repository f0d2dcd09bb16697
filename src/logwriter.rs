//! The log writer behind `serve`'s non-blocking log: lines are buffered and written in
//! batches, at most every [`BATCH_INTERVAL`], instead of one `write(2)` per line.
//!
//! `tracing_appender`'s worker thread writes each line it receives and flushes when its
//! queue is empty. Writing straight to stderr, that is one system call per admission line,
//! and the worker wakes (or spins, yielding) for every line — on a webhook pod with one
//! core that is CPU taken from the requests. Behind [`BatchedWriter`] the worker's flush
//! writes what has accumulated and then waits out the rest of the interval, so the lines of
//! that time arrive together: one write for many lines, and no wake-up per line. A line
//! appears at most one interval (plus the time to write it) late; nothing is lost or
//! reordered, and the queue (16,384 lines) holds far more than an interval's worth.

use std::io::{self, BufWriter, Write};
use std::time::{Duration, Instant};

/// The longest a line waits in the writer's buffer before it is written.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(5);

/// Bytes buffered before a write happens anyway (mid-interval).
const BUFFER_BYTES: usize = 64 * 1024;

/// Buffers writes to `W` and spaces its flushes [`BATCH_INTERVAL`] apart. For the worker
/// thread of a non-blocking writer only: its `flush` sleeps.
pub struct BatchedWriter<W: Write> {
    inner: BufWriter<W>,
    last_flush: Instant,
    interval: Duration,
}

impl<W: Write> BatchedWriter<W> {
    pub fn new(inner: W) -> Self {
        Self::with_interval(inner, BATCH_INTERVAL)
    }

    pub fn with_interval(inner: W, interval: Duration) -> Self {
        Self {
            inner: BufWriter::with_capacity(BUFFER_BYTES, inner),
            last_flush: Instant::now(),
            interval,
        }
    }
}

impl<W: Write> Write for BatchedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)
    }

    /// Writes out the buffer, then waits until an interval has passed since the previous
    /// flush: lines sent meanwhile queue up and are written together next time.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()?;
        let next = self.last_flush + self.interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        self.last_flush = Instant::now();
        Ok(())
    }
}

impl<W: Write> Drop for BatchedWriter<W> {
    fn drop(&mut self) {
        // BufWriter writes what is left when dropped; errors have nowhere to go.
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<usize>>>);

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.len());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_together_at_flush() {
        let rec = Recorder::default();
        let mut w = BatchedWriter::with_interval(rec.clone(), Duration::from_millis(1));
        for _ in 0..100 {
            w.write_all(b"one admission line\n").unwrap();
        }
        assert!(
            rec.0.lock().unwrap().is_empty(),
            "nothing written before the flush"
        );
        w.flush().unwrap();
        assert_eq!(*rec.0.lock().unwrap(), vec![1900], "one write for 100 lines");
        w.write_all(b"last\n").unwrap();
        drop(w);
        assert_eq!(rec.0.lock().unwrap().last(), Some(&5), "dropping writes the rest");
    }

    #[test]
    fn flushes_are_spaced_by_the_interval() {
        let mut w = BatchedWriter::with_interval(io::sink(), Duration::from_millis(20));
        let start = Instant::now();
        w.flush().unwrap();
        w.flush().unwrap();
        assert!(start.elapsed() >= Duration::from_millis(20));
    }
}
